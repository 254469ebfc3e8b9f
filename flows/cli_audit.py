"""`genegate audit verify | list | export | report | impact`: the reviewer's tools for the transfer log.

Parse, call the library, print. The log is `<home>/transfer-log.jsonl` unless --log names
another; the lab's signing public key comes from the keystore (`signing.pub`), so a reviewer
needs no passphrase. `verify` exits 0 only when every line, the hash chain, every signature and
the signed head hold; otherwise 1, naming the first bad entry and why. `impact` (breach impact,
transfer/impact.py) verifies the log first and, when it does not verify, still answers but says
so on every output and exits 1: its counts rest on entries that may have been altered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.console import err, iso_date, out, settings
from flows.errors import UsageProblem
from keys import Keystore
from transfer import (
    TRANSFER_LOG,
    BreachImpact,
    ImpactFilter,
    LogVerification,
    TransferLog,
    assess_impact,
    entry_country,
    failed_rules,
    human_size,
    is_denied,
    list_ledgers,
    load_breach_table,
    load_law_tables,
    render_impact,
    render_report,
    select_entries,
    total_bytes,
    write_parquet,
)

EXIT_TAMPERED = 1

LogOption = Annotated[
    Path | None, typer.Option("--log", help="The transfer log (default: transfer-log.jsonl in --home).")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON (same as the global --json).")]


def _log(ctx: typer.Context, path: Path | None) -> TransferLog:
    log = TransferLog(path or settings(ctx).home / TRANSFER_LOG)
    if not log.path.exists():
        raise UsageProblem(f"no transfer log at {log.path}; pass --log or --home")
    return log


def register_audit_commands(audit_app: typer.Typer) -> None:
    """Add verify, list, export, report and impact to the audit group."""

    @audit_app.command("verify")
    def verify(ctx: typer.Context, log_path: LogOption = None, json_output: JsonFlag = False) -> int:
        """Verify the chain and every signature of the transfer log (exit 1 names the first bad entry)."""
        log = _log(ctx, log_path)
        key = Keystore(settings(ctx).home).verify_key()
        result = log.verify(key)
        if settings(ctx).json or json_output:
            doc = {"ok": result.ok, "entries": result.entries, "first_bad": result.first_bad}
            out.print_json(json.dumps(doc | {"reason": result.reason, "log": str(log.path)}))
        elif result.ok:
            out.print(
                f"ok: {result.entries} entries; the chain and every signature hold (key {key.fingerprint})",
                markup=False,
            )
        else:
            err.print(f"genegate: audit verify: {log.path}: entry {result.first_bad} is bad", markup=False)
            err.print(f"  {result.reason}", markup=False)
            err.print(f"  entries before it that verified: {result.entries}", markup=False)
        return 0 if result.ok else EXIT_TAMPERED

    @audit_app.command("list")
    def list_entries(
        ctx: typer.Context,
        log_path: LogOption = None,
        recipient: Annotated[str | None, typer.Option("--recipient", help="Only this recipient id.")] = None,
        since: Annotated[
            str | None, typer.Option("--since", help="Only entries on or after (YYYY-MM-DD).")
        ] = None,
        denied: Annotated[bool, typer.Option("--denied", help="Only transfers the gate denied.")] = False,
        country_code: Annotated[
            str | None, typer.Option("--country", help="Only this destination country (ISO code).")
        ] = None,
        json_output: JsonFlag = False,
    ) -> None:
        """List log entries, filtered (does not verify: run `genegate audit verify` for that)."""
        found = select_entries(
            _log(ctx, log_path).entries(),
            recipient=recipient,
            since=iso_date(since, "--since"),
            denied=denied,
            country_code=country_code,
        )
        if settings(ctx).json or json_output:
            out.print_json(json.dumps(found, ensure_ascii=False))
            return
        table = Table()
        for title in ("seq", "time (UTC)", "event", "release", "recipient", "country", "detail"):
            table.add_column(title, overflow="fold")  # a reviewer sees every character, never an ellipsis
        for e in found:
            table.add_row(*(escape(_cell(v)) for v in _row(e)))
        out.print(table)
        out.print(f"{len(found)} entries", markup=False)

    @audit_app.command("export")
    def export(
        ctx: typer.Context,
        parquet: Annotated[Path, typer.Option("--parquet", help="The Parquet file to write.")],
        log_path: LogOption = None,
    ) -> None:
        """Export the log to Parquet: one row per entry, nested values as JSON text."""
        rows = write_parquet(_log(ctx, log_path).entries(), parquet)
        out.print(f"{rows} entries -> {parquet}", markup=False)

    @audit_app.command("report")
    def report(
        ctx: typer.Context,
        html_out: Annotated[Path, typer.Option("--html", help="The HTML file to write.")],
        log_path: LogOption = None,
    ) -> None:
        """Write a self-contained HTML report of the log: verification, plots and entries."""
        log = _log(ctx, log_path)
        verification = log.verify(Keystore(settings(ctx).home).verify_key())
        page = render_report(log.entries(), verification, str(log.path))
        html_out.write_text(page, encoding="utf-8")
        if not verification.ok:
            err.print(
                f"genegate: warning: the log does not verify (entry {verification.first_bad}); "
                "the report says so at the top",
                markup=False,
            )
        out.print(str(html_out), markup=False)

    _impact_command(audit_app)


def _impact_command(audit_app: typer.Typer) -> None:
    @audit_app.command("impact")
    def impact(
        ctx: typer.Context,
        recipient: Annotated[str | None, typer.Option("--recipient", help="A breached recipient id.")] = None,
        key: Annotated[
            str | None, typer.Option("--key", help="A compromised recipient key (SHA256:... fingerprint).")
        ] = None,
        release: Annotated[str | None, typer.Option("--release", help="A breached release id.")] = None,
        since: Annotated[
            str | None, typer.Option("--since", help="Deliveries on or after this day (YYYY-MM-DD).")
        ] = None,
        html_out: Annotated[
            Path | None,
            typer.Option("--html", help="Also write the HTML report (the style of `audit report`)."),
        ] = None,
        log_path: LogOption = None,
        json_output: JsonFlag = False,
    ) -> int:
        """Breach impact (lab-side): transfers, files, bytes, releases, subjects by region (counts) and
        the notification duties that apply. Verifies the log first; exit 1 if it does not verify."""
        selected = ImpactFilter(recipient, key, release, iso_date(since, "--since"))
        if selected.is_empty():
            raise UsageProblem(
                "name what was breached: --recipient ID, --key FINGERPRINT, --release ID or --since DATE"
            )
        log = _log(ctx, log_path)
        store = Keystore(settings(ctx).home)
        verification = log.verify(store.verify_key())
        if not verification.ok:
            err.print(
                f"genegate: WARNING: the transfer log does not verify (entry {verification.first_bad}: "
                f"{verification.reason}); the figures below are UNVERIFIED",
                markup=False,
                soft_wrap=True,
            )
        found = assess_impact(
            log.entries(),
            list_ledgers(store.home),
            selected,
            load_law_tables(),
            load_breach_table(),
            store.config().jurisdiction,
        )
        if html_out is not None:
            html_out.write_text(render_impact(found, verification, str(log.path)), encoding="utf-8")
        if settings(ctx).json or json_output:
            doc = {"log": _verification_json(verification, log.path)} | found.to_json()
            out.print_json(json.dumps(doc, ensure_ascii=False))
        else:
            _print_impact(found, verification, log.path)
            if html_out is not None:
                out.print(f"report: {html_out}", markup=False)
        return 0 if verification.ok else EXIT_TAMPERED


def _verification_json(verification: LogVerification, path: Path) -> dict[str, Any]:
    return {"path": str(path), "verified": verification.ok, "entries": verification.entries,
            "first_bad": verification.first_bad, "reason": verification.reason}  # fmt: skip


def _print_impact(found: BreachImpact, verification: LogVerification, path: Path) -> None:
    if verification.ok:
        out.print(f"log {path}: verified ({verification.entries} entries)", markup=False)
    else:
        out.print(f"log {path}: [bold red]UNVERIFIED[/bold red] (entry {verification.first_bad} is bad)")
    given = ", ".join(f"{k} {v}" for k, v in found.filter.to_json().items() if v is not None)
    out.print(
        f"breach ({given}): {found.transfers} transfer(s), {found.files} file(s), {human_size(found.bytes)} "
        f"({found.bytes} bytes); {len(found.releases)} release(s) at {len(found.recipients)} recipient(s); "
        f"{found.subjects} subject(s)",
        markup=False,
    )
    if found.missing_ledgers:
        err.print(
            f"genegate: warning: no ledger for release(s) {', '.join(found.missing_ledgers)}: "
            "their subjects are not counted",
            markup=False,
        )
    copies = Table(
        "release", "class", "recipient", "country", "transfers", "files", "bytes", "last delivered"
    )
    for c in found.copies:
        copies.add_row(escape(c.release_id), c.release_class, escape(c.recipient_id), c.country or "-",
                       str(c.transfers), str(c.files), human_size(c.bytes), c.last or "-")  # fmt: skip
    out.print(copies)
    regions = Table("residence region", "regime", "subjects")
    for r in found.regions:
        name = r.region if r.region is not None else f"(not recorded: {found.lab_jurisdiction})"
        regions.add_row(
            escape(name), r.regime.value if r.regime else "NO TABLE: assess by hand", str(r.subjects)
        )
    out.print(regions)
    duties = Table("duty", "status", "notify", "deadline", "why", "evidence")
    for d in found.duties:
        extra = f"; also {d.duty.above_notify}" if d.above and d.duty.above_notify else ""
        cells = (f"{d.duty.id} ({d.duty.law})", d.status.value.upper(), d.duty.notify + extra,
                 d.duty.deadline, "; ".join(d.reasons), d.duty.evidence.value)  # fmt: skip
        duties.add_row(*(escape(c) for c in cells))
    out.print(duties)
    out.print(
        f"breach table {found.table_version}: evidence V read in the law's text, S secondary, U unverified; "
        "conditions: --json or --html. Counts only, lab-side; not legal advice.",
        markup=False,
    )


def _row(e: dict[str, Any]) -> tuple[object, ...]:
    detail = (
        ", ".join(failed_rules(e)) if is_denied(e) else (f"{total_bytes(e)} bytes" if e.get("files") else "")
    )
    return (e.get("seq"), e.get("timestamp"), e.get("event"), e.get("release_id"), e.get("recipient_id"),
            entry_country(e), detail)  # fmt: skip


def _cell(value: object) -> str:
    return "-" if value is None or value == "" else str(value)
