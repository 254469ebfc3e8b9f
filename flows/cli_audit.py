"""`genegate audit verify | list | export | report`: the reviewer's tools for the transfer log.

Parse, call the library, print. The log is `<home>/transfer-log.jsonl` unless --log names
another; the lab's signing public key comes from the keystore (`signing.pub`), so a reviewer
needs no passphrase. `verify` exits 0 only when every line, the hash chain, every signature and
the signed head hold; otherwise 1, naming the first bad entry and why.
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
    TransferLog,
    entry_country,
    failed_rules,
    is_denied,
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
    """Add verify, list, export and report to the audit group."""

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


def _row(e: dict[str, Any]) -> tuple[object, ...]:
    detail = (
        ", ".join(failed_rules(e)) if is_denied(e) else (f"{total_bytes(e)} bytes" if e.get("files") else "")
    )
    return (e.get("seq"), e.get("timestamp"), e.get("event"), e.get("release_id"), e.get("recipient_id"),
            entry_country(e), detail)  # fmt: skip


def _cell(value: object) -> str:
    return "-" if value is None or value == "" else str(value)
