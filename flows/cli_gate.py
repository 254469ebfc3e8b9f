"""`genegate transfer [--dry-run]`, `genegate law show`, `genegate consent revoke | impact`.

Deletion requests and the 30-day deadlines are `genegate subject` (flows/cli_subject.py).

Parse, call the library, print. The gate's rules live in transfer/gate.py; this module gathers
its facts (release.json and the ledger, the recipient, the consent register mapped to vault
codes, the transfer log) and prints the decision; without --dry-run it calls transfer.send_release
and prints what was delivered; with --flow (or $PREFECT_API_URL set) the send runs as the Prefect
flow `transfer`, printing the same and exiting the same. Exit codes: 0 allowed (and delivered),
3 denied, 2 bad input, 1 failure.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.console import (
    FlowFlag,
    err,
    flow_requested,
    iso_date,
    out,
    passphrase,
    require_flow_passphrase,
    run_flow,
    settings,
    today,
)
from flows.errors import UsageProblem
from flows.synth_view import progress_bars
from keys import REQUEST_DAYS, ConsentRegister, Keystore, KeyWrapper, WrapMode
from transfer import (
    TRANSFER_LOG,
    Adequacy,
    Decision,
    DeliveryError,
    DestinationUnusable,
    LawTables,
    SendOutcome,
    TransferLog,
    check_transfer,
    load_law_tables,
    locate_subject,
    send_release,
)

EXIT_DENIED = 3
EXIT_FAILURE = 1

consent_app = typer.Typer(
    help="The lab's consent register: record revocations, see which releases hold a subject.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON (same as the global --json).")]


def vault_wrapper(store: Keystore) -> KeyWrapper:
    """What opens the vault and the consent register; asks for the passphrase unless KMS wraps them."""
    needs_passphrase = store.config().wrap_mode is WrapMode.LAB_KEY
    return store.vault_wrapper(passphrase() if needs_passphrase else None)


_wrapper = vault_wrapper  # the name this module used before `genegate subject` shared it


def register_gate_commands(app: typer.Typer, law_app: typer.Typer) -> None:
    """Add `transfer` to the top-level app and `show` to the law group."""

    @app.command("transfer")
    def transfer(
        ctx: typer.Context,
        release: Annotated[Path, typer.Argument(help="The release directory (releases/<id>).")],
        to: Annotated[str, typer.Option("--to", help="Recipient id from the registry.")],
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Run the gate and print its decision; send nothing.")
        ] = False,
        json_output: JsonFlag = False,
        as_flow: FlowFlag = False,
    ) -> int:
        """Gate a release for one recipient: every rule of the transfer gate, with reasons."""
        store = Keystore(settings(ctx).home)
        if dry_run and as_flow:
            raise UsageProblem("--dry-run runs the gate here, not as a flow; drop --flow")
        if not dry_run and flow_requested(as_flow):
            return _send_flow(ctx, store, release, to, settings(ctx).json or json_output)
        if not dry_run:
            return _send(store, release, to, settings(ctx).json or json_output)
        decision = check_transfer(store, release, to, today(), vault_wrapper(store))
        if settings(ctx).json or json_output:
            out.print_json(json.dumps(decision.to_json(), ensure_ascii=False))
        else:
            _print_decision(decision)
        return 0 if decision.allowed else EXIT_DENIED

    @law_app.command("show")
    def show(ctx: typer.Context, json_output: JsonFlag = False) -> None:
        """Print the legal tables the gate applies, with their versions, sources and digest."""
        tables = load_law_tables()
        if settings(ctx).json or json_output:
            out.print_json(json.dumps(tables.to_json(), ensure_ascii=False))
            return
        _print_tables(tables)


def _send(store: Keystore, release: Path, to: str, as_json: bool) -> int:
    """Run send_release; exit 0 delivered or unchanged, 3 denied, 1 a delivery failure."""
    secret = passphrase()
    wrapper = store.vault_wrapper(secret)  # KMS, when configured, needs no passphrase
    log = TransferLog(store.home / TRANSFER_LOG)
    try:
        with progress_bars(err, enabled=not as_json) as progress:
            result = send_release(
                store, release, to, secret, today(), wrapper=wrapper, log=log, progress=progress
            )
    except DeliveryError as exc:
        if isinstance(exc, DestinationUnusable):
            raise  # bad input: exit 2 with one line
        return _failed(exc)
    return _print_send(result.to_json(), as_json)


def _send_flow(ctx: typer.Context, store: Keystore, release: Path, to: str, as_json: bool) -> int:
    """Run the `transfer` flow (flows/pipeline.py) for one recipient: the same output and exit codes as
    _send, the error that failed the delivery task standing in for the flow's DeliveryFailed."""
    from flows.pipeline import DeliveryFailed
    from flows.pipeline import transfer as transfer_flow

    require_flow_passphrase()
    failure: BaseException | None = None
    try:
        sends = run_flow(
            transfer_flow,
            settings(ctx).verbose,
            release=str(release),
            recipients=[to],
            home=str(store.home),
        )
    except DeliveryFailed as exc:
        failure = exc.__cause__ or exc
    if isinstance(failure, DeliveryFailed | DeliveryError) and not isinstance(failure, DestinationUnusable):
        return _failed(failure)  # what _send prints: the delivery error, after the task's retries
    if failure is not None:
        raise failure  # bad input (exit 2) or a bug, described as the plain call describes it
    return _print_send({k: v for k, v in sends[0].items() if k != "reasons"}, as_json)


def _failed(exc: BaseException) -> int:
    err.print(f"genegate: error: transfer failed: {' '.join(str(exc).split())}", markup=False, soft_wrap=True)
    return EXIT_FAILURE


def _print_send(result: dict[str, Any], as_json: bool) -> int:
    """Print a send (SendResult.to_json()); exit 0 delivered or unchanged, 3 denied."""
    denied = result["outcome"] == SendOutcome.DENIED
    if as_json:
        out.print_json(json.dumps(result, ensure_ascii=False))
    elif denied:
        failing = ", ".join(result["failed_rules"])
        err.print(
            f"genegate: transfer denied by the gate ({failing}); --dry-run shows why",
            markup=False,
            soft_wrap=True,
        )
    else:
        _print_sent(result)
    return EXIT_DENIED if denied else 0


def _print_sent(result: dict[str, Any]) -> None:
    files = result["files"]
    total = sum(f["bytes"] for f in files)
    if result["outcome"] == SendOutcome.UNCHANGED:
        head = f"unchanged: release {result['release_id']} is already at {result['destination']}"
    else:
        head = (
            f"delivered: release {result['release_id']} -> {result['recipient_id']} at "
            f"{result['destination']}; sent {len(result['sent'])} of {len(files)} file(s), "
            f"{result['bytes_sent']} bytes"
        )
    out.print(f"{head} ({len(files)} file(s), {total} bytes encrypted)", markup=False)
    table = Table("file", "bytes", "plaintext sha256", "ciphertext sha256")
    for f in files:
        digests = (f["plaintext_sha256"][:16], f["ciphertext_sha256"][:16])
        table.add_row(escape(f["name"]), str(f["bytes"]), *digests)
    out.print(table)


def _print_decision(decision: Decision) -> None:
    verdict = "ALLOWED" if decision.allowed else "DENIED"
    out.print(
        f"{verdict}: release {decision.release_id} ({decision.release_class}) -> "
        f"{decision.recipient_id} ({decision.destination_country or 'unknown'}) on {decision.decided_on}; "
        f"origin regimes: {', '.join(decision.origin_regimes) or '-'}",
        markup=False,
    )
    table = Table("rule", "result", "reason", "evidence")
    for rule in decision.rules:
        result = "pass" if rule.passed and rule.applies else ("n/a" if rule.passed else "FAIL")
        evidence = ", ".join(f"{k}={_short(v)}" for k, v in sorted(rule.evidence.items()) if v is not None)
        table.add_row(rule.rule.value, result, escape(rule.reason), escape(evidence or "-"))
    out.print(table)
    versions = ", ".join(f"{k} {v}" for k, v in decision.table_versions)
    out.print(f"legal tables {decision.tables_digest} ({versions})", markup=False)


def _adequate_text(entries: tuple[Adequacy, ...], eu_eea: frozenset[str]) -> list[str]:
    """One line per adequacy entry; the EU/EEA members, when all listed, as one."""
    listed = {a.country for a in entries}
    shown: list[str] = ["EU/EEA"] if eu_eea <= listed else []
    for a in entries:
        if a.country in eu_eea and shown[:1] == ["EU/EEA"]:
            continue
        condition = f" [{a.condition}]" if a.condition else ""
        until = f" until {a.valid_until}" if a.valid_until else ""
        shown.append(f"{a.country}{condition} from {a.effective_from}{until}")
    return shown


def _short(value: object) -> str:
    return ";".join(value) if isinstance(value, tuple) else str(value)


def _print_tables(tables: LawTables) -> None:
    for info in tables.info:
        out.print(
            f"\n[bold]{escape(info.name)}[/bold]  version {info.version}, effective {info.effective_from}"
        )
        out.print(f"source: {info.source}", markup=False)
    regimes = Table("regime", "territory", "adequate destinations (condition, from..until)", "accepted bases")
    for regime, spec in tables.regimes.items():
        adequate = _adequate_text(spec.adequate, tables.eu_eea)
        territory = "EU/EEA" if spec.territory == tables.eu_eea else ", ".join(sorted(spec.territory))
        listed = "; ".join(adequate) if spec.restricts_transfers else f"no restriction: {spec.note}"
        accepts = ", ".join(spec.accepts) or "-"
        regimes.add_row(escape(f"{regime} ({spec.name})"), territory, escape(listed or "none"), accepts)
    out.print(regimes)
    bases = Table("basis", "needs", "limits")
    for basis, rules in tables.bases.items():
        limits = {
            "modules": ",".join(map(str, rules.modules)) or None,
            "max_tia_age_days": rules.max_tia_age_days,
            "max_check_age_days": rules.max_check_age_days,
            "countries": ",".join(sorted(rules.countries)) if rules.countries else None,
            "security_review_above": rules.security_review_above,
        }
        shown = ", ".join(f"{k}={v}" for k, v in limits.items() if v is not None)
        bases.add_row(escape(f"{basis} ({rules.name})"), ", ".join(rules.needs) or "-", escape(shown or "-"))
    out.print(bases)
    out.print(
        f"28 CFR 202 countries of concern: {', '.join(sorted(tables.concern_countries))}; bulk genomic "
        f"data: more than {tables.bulk_genomic_us_persons} US persons",
        markup=False,
    )
    out.print(f"EU/EEA: {', '.join(sorted(tables.eu_eea))}", markup=False)
    regions = ", ".join(f"{k}={v}" for k, v in sorted(tables.storage_regions.items()))
    out.print(f"storage regions: {regions}", markup=False)
    purposes = ", ".join(f"{k} {tables.duo.labels[k]}" for k in sorted(tables.duo.permissions))
    out.print(f"DUO permissions: {purposes}", markup=False)
    out.print(f"digest {tables.digest}", markup=False)


@consent_app.command("revoke")
def revoke(
    ctx: typer.Context,
    subject_id: Annotated[str, typer.Argument(metavar="SUBJECT_ID", help="The manifest's subject_id.")],
    date: Annotated[
        str | None, typer.Option("--date", help="Date of the revocation (YYYY-MM-DD; default today).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Record that a subject revoked consent: new releases exclude them, older ones stop at the gate."""
    when = iso_date(date, "--date") or today()
    store = Keystore(settings(ctx).home)
    register = ConsentRegister(store.home, vault_wrapper(store))
    held = register.revoke(subject_id, when)
    data = {"revoked_on": held.isoformat(), "act_by": _act_by(held), "register": str(register.path)}
    if settings(ctx).json or json_output:
        out.print_json(json.dumps(data))
        return
    earlier = " (an earlier revocation was already recorded)" if held != when else ""
    out.print(
        f"revocation recorded, dated {held}{earlier}; act by {data['act_by']}. "
        "`genegate consent impact` lists the releases and recipients that hold the subject.",
        markup=False,
    )


@consent_app.command("impact")
def impact(
    ctx: typer.Context,
    subject_id: Annotated[str, typer.Argument(metavar="SUBJECT_ID", help="The manifest's subject_id.")],
    json_output: JsonFlag = False,
) -> None:
    """List (lab-side only) the releases that hold a subject and the recipients they went to."""
    store = Keystore(settings(ctx).home)
    store.config()  # a keystore must exist here
    wrapper = vault_wrapper(store)
    location = locate_subject(store.home, wrapper, subject_id)
    register = ConsentRegister(store.home, wrapper)
    revoked_on = register.revoked_on(subject_id)
    deletion = register.deletion(subject_id)
    # after a deletion the vault no longer knows the subject: the register kept the releases
    found = location.releases or (deletion.releases if deletion is not None else ())
    data: dict[str, Any] = {
        "revoked_on": revoked_on.isoformat() if revoked_on else None,
        "act_by": _act_by(revoked_on) if revoked_on else None,
        "deleted_on": deletion.received_on.isoformat() if deletion is not None else None,
        "ledgers_checked": location.ledgers_checked,
        "transfer_log": "read" if location.log_present else "absent",
        "releases": [f.to_json() for f in found],
    }
    if settings(ctx).json or json_output:
        out.print_json(json.dumps(data))
        return
    status = f"revoked on {revoked_on}, act by {data['act_by']}" if revoked_on else "no revocation recorded"
    if deletion is not None:
        status += f"; deleted on {deletion.received_on} (releases as recorded at deletion)"
    out.print(
        f"subject: {status}; {len(found)} of {location.ledgers_checked} release(s) hold them", markup=False
    )
    for f in found:
        if not location.log_present and deletion is None:
            held_by = "no transfer log yet"
        else:
            held_by = ", ".join(f.recipients) or "not delivered to any recipient"
        out.print(f"  {f.release_id} (vault domain {f.vault_domain}): {held_by}", markup=False)


def _act_by(day: dt.date) -> str:
    return (day + dt.timedelta(days=REQUEST_DAYS)).isoformat()
