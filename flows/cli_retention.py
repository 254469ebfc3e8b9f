"""`genegate retention apply`: remove what the retention policy says is due (issue #9).

Parse, call the library, print. The periods come from --policy (a policy file's `[retention]`, or
a built-in profile; without it, deid.retention's defaults); what is there and how old it is from
the keystore (the sealed inventory `genegate deid` writes, the transfer log's deliveries) and the
--releases and --results directories. Each due item is printed as class, release id, where (a
scheme and root, never an input path), files, bytes and what happened; nothing here prints or logs
a path the inventory holds.

Exit codes: 0 done (an item held by S3 Object Lock is done for now: it is tried again next run),
1 an item could not be removed (the others were), 2 bad input. --dry-run removes nothing and
writes nothing, not even a log entry; --as-of previews a later date and needs --dry-run, since a
removal always goes by the clock.

Also here, for `genegate assess` (and the assess flow), the call that ties it to retention:
purge_after_assessment (`genegate deid` records its inputs with transfer.inventory.record_release).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from flows.console import err, iso_date, out, passphrase, settings
from flows.errors import UsageProblem
from keys import Keystore, Passphrase, WrapMode

if TYPE_CHECKING:
    from transfer import RetentionOutcome as Outcome
    from transfer import RetentionReport

EXIT_FAILURE = 1

retention_app = typer.Typer(
    help="Remove what the retention policy says is due: inputs, releases, outbox copies, results.",
    no_args_is_help=True,
)


def register_retention_commands(app: typer.Typer) -> None:
    """Add the `retention` group to the top-level app."""
    app.add_typer(retention_app, name="retention")


@retention_app.command("apply")
def apply_command(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what is due; remove nothing, write nothing.")
    ] = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", metavar="DATE", help="With --dry-run: what is due on this date (YYYY-MM-DD)."
        ),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy", metavar="POLICY", help="Policy TOML or built-in profile whose [retention] applies."
        ),
    ] = None,
    releases: Annotated[
        list[Path] | None,
        typer.Option("--releases", metavar="DIR", help="A directory of releases (repeatable)."),
    ] = None,
    results: Annotated[
        list[Path] | None,
        typer.Option("--results", metavar="DIR", help="An assess results dataset (repeatable)."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON (same as the global --json).")
    ] = False,
) -> int:
    """Remove every due item (files unlinked, S3 versions deleted unless Object Lock holds them),
    one signed log entry per removal."""
    day = iso_date(as_of, "--as-of")
    if day is not None and not dry_run:
        raise UsageProblem("--as-of previews a date and needs --dry-run; a removal always goes by the clock")
    now = dt.datetime.now(dt.UTC)
    if day is not None:
        now = dt.datetime.combine(day, dt.time(23, 59, 59), dt.UTC)
    store = Keystore(settings(ctx).home)
    needs_secret = not dry_run or store.config().wrap_mode is WrapMode.LAB_KEY
    report = run_retention(
        store,
        policy,
        [Path("releases")] if releases is None else releases,
        [Path("results")] if results is None else results,
        secret=passphrase() if needs_secret else None,
        dry_run=dry_run,
        now=now,
    )
    if settings(ctx).json or json_output:
        out.print_json(json.dumps(report.to_json()))
    else:
        _print_report(report)
    return EXIT_FAILURE if any(o.status == "failed" for o in report.outcomes) else 0


def run_retention(
    store: Keystore,
    policy: str | None,
    releases: Sequence[Path],
    results: Sequence[Path],
    *,
    secret: Passphrase | None,
    dry_run: bool,
    now: dt.datetime,
) -> RetentionReport:
    """transfer.retention.apply_retention under the policy's [retention] (the CLI and the flow)."""
    from deid import RetentionPolicy, load_policy
    from transfer import apply_retention

    schedule = load_policy(policy).retention if policy is not None else RetentionPolicy()
    if not dry_run and secret is None:
        raise UsageProblem("retention apply signs a log entry per removal: it needs the keystore passphrase")
    signer = None if dry_run or secret is None else store.signing_key(secret)
    return apply_retention(
        store,
        schedule,
        store.vault_wrapper(secret),
        now=now,
        releases=releases,
        results=results,
        signer=signer,
    )


def purge_after_assessment(home: Path, release: Path, status: str) -> dict[str, Any] | None:
    """After an assessment: if it certifies the release (transfer.gate.certified) and deid recorded
    the release with --purge-inputs, remove its identified inputs and log `inputs.purged`; the
    counts, or None when nothing was to be done. An assessment that does not certify keeps them."""
    from transfer import INVENTORY_FILE, purge_certified

    store = Keystore(home)
    if status not in ("passed", "failed") or not (home / INVENTORY_FILE).is_file():
        return None
    secret = passphrase()
    outcome = purge_certified(
        store, store.vault_wrapper(secret), release, store.signing_key(secret), now=dt.datetime.now(dt.UTC)
    )
    return None if outcome is None else outcome.to_json()


def _print_report(report: RetentionReport) -> None:
    table = Table("class", "release", "where", "files", "bytes", "status")
    for o in report.outcomes:
        table.add_row(
            str(o.item.holding), o.item.release_id, o.item.where, str(o.files), str(o.bytes), _status(o)
        )
    if report.outcomes:
        out.print(table)
    removed = sum(1 for o in report.outcomes if o.status in ("removed", "held"))
    held = sum(1 for o in report.outcomes if o.held)
    failed = sum(1 for o in report.outcomes if o.status == "failed")
    head = "retention (dry run, nothing removed):" if report.dry_run else f"retention: {removed} removed,"
    err.print(
        f"{head} {len(report.outcomes)} due, {held} held by Object Lock, {report.waiting} not yet due"
        + (f", {failed} failed" if failed else ""),
        markup=False,
    )
    for o in report.outcomes:
        if o.error:
            err.print(f"  {o.item.holding} of {o.item.release_id}: {o.error}", markup=False)


def _status(o: Outcome) -> str:
    if o.held:
        until = "legal hold" if o.held_until is None else f"until {o.held_until.date().isoformat()}"
        return f"{o.status}; {o.held} held by Object Lock ({until}), tried again next run"
    return o.status
