"""What every CLI command shares: global settings, the two consoles, passphrase and date input."""

from __future__ import annotations

import datetime as dt
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console

from flows.errors import UsageProblem
from keys import Passphrase

err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)
PASSPHRASE_ENV = "GENEGATE_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret


@dataclass(frozen=True, slots=True)
class Settings:
    """Global options, shared by every command through the click context."""

    home: Path
    json: bool
    verbose: int
    debug: bool


def settings(ctx: typer.Context) -> Settings:
    """The global options of this invocation."""
    value = ctx.find_root().obj
    if not isinstance(value, Settings):
        raise UsageProblem("global options were not parsed")
    return value


def passphrase(confirm: bool = False) -> Passphrase:
    """$GENEGATE_PASSPHRASE, else a hidden prompt on a terminal; never a command-line argument."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is not None:
        return Passphrase(value)
    if not sys.stdin.isatty():
        raise UsageProblem(f"no passphrase: set ${PASSPHRASE_ENV} or run genegate in a terminal")
    text: str = typer.prompt("Keystore passphrase", hide_input=True, confirmation_prompt=confirm, err=True)
    return Passphrase(text)


def iso_date(value: str | None, option: str) -> dt.date | None:
    """Parse an ISO date option, naming the option and the expected form on error."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UsageProblem(f"{option} {value!r} is not an ISO date (YYYY-MM-DD)") from None


def today() -> dt.date:
    """Today's date in UTC: the date every validity check uses."""
    return dt.datetime.now(dt.UTC).date()


def now_stamp() -> str:
    """Now in UTC, to the second, ISO 8601."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
