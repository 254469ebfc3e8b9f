"""What every CLI command shares: global settings, the two consoles, passphrase and date input, and
running a command as a Prefect flow.

`genegate deid | assess | transfer` run as the flows of flows/pipeline.py when --flow is given or
$PREFECT_API_URL is set, else as plain library calls (no Prefect import, no server). A flow run
prints what the plain command prints: Prefect's own console lines (its temporary server, each task,
the traceback of a failed one) are held back unless -v, and the exception that failed the run is
raised here, so the CLI shows the same one line and exit code as the plain call. The flow runs in
this process and directory, so its parameters are the paths as the operator gave them (an error
names a file as the plain call names it).
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import typer
from rich.console import Console

from flows.errors import UsageProblem
from keys import Passphrase

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.client.schemas.objects import State

T = TypeVar("T")

err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)
PASSPHRASE_ENV = "GENEGATE_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
API_URL_ENV = "PREFECT_API_URL"
_PREFECT_LOGGERS = ("prefect", "uvicorn", "fastapi")  # Prefect's client, its engine and its server
FlowFlag = Annotated[
    bool,
    typer.Option("--flow", help="Run as a Prefect flow (the default when $PREFECT_API_URL is set)."),
]


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


def flow_requested(flag: bool) -> bool:
    """Run as a Prefect flow: --flow was given or $PREFECT_API_URL names a Prefect server."""
    return flag or bool(os.environ.get(API_URL_ENV))


def require_flow_passphrase() -> None:
    """A flow's tasks read $GENEGATE_PASSPHRASE and never prompt: fail before the flow starts without it."""
    if PASSPHRASE_ENV not in os.environ:
        raise UsageProblem(
            f"no passphrase: set ${PASSPHRASE_ENV} to run as a flow (a flow run never prompts), or drop "
            f"--flow and unset ${API_URL_ENV} to be asked here"
        )


def private_prefect_storage() -> Path:
    """Prefect's local result storage, made 0700: Prefect 3.8 writes a failed run's exception
    (message and traceback) there as a 0644 file even when results are not persisted, so the
    folder must not let other accounts in. Returns the folder.

    Also turns off the telemetry that Prefect's temporary local server sends to Prefect (unless the
    operator set PREFECT_SERVER_ANALYTICS_ENABLED): genegate runs in labs that allow no such
    traffic, and the demo promises no network."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.settings import get_current_settings

    folder = Path(get_current_settings().results.local_storage_path).expanduser()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder


def run_flow(flow: Flow[..., T], verbose: int, **parameters: Any) -> T:
    """Run flow in this process and return its result, or raise the exception that failed the run.

    With a Prefect API (a server, or the test harness) the run's id and UI address go to stderr.
    Prefect's console log lines are shown with -v only. Prefect's local storage is made private
    first (private_prefect_storage)."""
    from prefect.settings import get_current_settings
    from prefect.utilities.urls import url_for

    private_prefect_storage()

    quiet = _NotPrefect()
    handlers = [] if verbose else _console_handlers()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        # Flow[..., T] matches the overload without return_state first; this one returns the State
        state = cast("State[T]", flow(return_state=True, **parameters))
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)
    api = get_current_settings().api.url
    if api:
        run_id = state.state_details.flow_run_id
        where = url_for("flow-run", obj_id=run_id) if run_id else None
        line = f"flow run {run_id}: {state.name}" + (f", {where}" if where else "")
        err.print(line, markup=False, soft_wrap=True)
    elif not verbose:
        # the temporary server Prefect started stops at exit, logging it: hold that line back too
        atexit.unregister(_quiet_at_exit)
        atexit.register(_quiet_at_exit)
    result: T = state.result()
    return result


class _NotPrefect(logging.Filter):
    """Drops the records of Prefect's loggers (they still reach the Prefect API)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(_PREFECT_LOGGERS)


def _console_handlers() -> list[logging.Handler]:
    """The handlers of the root logger and of the Prefect loggers that do not pass records on to it."""
    found = {h for name in ("", *_PREFECT_LOGGERS) for h in logging.getLogger(name).handlers}
    return sorted(found, key=id)


def _quiet_at_exit() -> None:
    """Hold back Prefect's records from here on (runs before Prefect's own exit handlers)."""
    for handler in _console_handlers():
        handler.addFilter(_NotPrefect())
