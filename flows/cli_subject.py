"""`genegate subject delete | pending | close`: a subject's deletion request and the 30-day deadlines.

Parse, call the library, print. `delete` first finds where the subject is (transfer.facts.
locate_subject: their codes in every vault domain, the releases whose ledgers hold them, the
recipients the log records), then erases them (keys.consent_register.erase_subject: the request
recorded in the consent register, the subject and its samples forgotten in every vault domain),
appends a `subject.deleted` entry with counts only to the transfer log, and prints, lab-side
only, each release that held the subject with the recipients that must delete their copy and
the contract or bases under which they must. A second run says when the subject was deleted.

`pending` lists the open revocations and deletion requests by deadline, overdue ones flagged; it
names the subjects, because the operator acts on each one (lab-side output, never logged).
`close` records that a subject's sample was destroyed, which takes their requests off the list.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.cli_gate import vault_wrapper
from flows.console import err, iso_date, out, passphrase, settings, today
from flows.errors import UsageProblem
from keys import (
    ConsentRegister,
    ConsentRequest,
    Erasure,
    Keystore,
    KeyWrapper,
    Recipient,
    Registry,
    RequestKind,
    UnknownRecipient,
    erase_subject,
    pending,
)
from transfer import TRANSFER_LOG, TransferLog, locate_subject

subject_app = typer.Typer(
    help="Subjects' requests: delete a subject, see the 30-day deadlines of revocations and deletions.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON (same as the global --json).")]
SubjectArg = Annotated[str, typer.Argument(metavar="SUBJECT_ID", help="The manifest's subject_id.")]


def register_subject_commands(app: typer.Typer) -> None:
    """Add the `subject` group to the top-level app."""
    app.add_typer(subject_app, name="subject")


@subject_app.command("delete")
def delete(
    ctx: typer.Context,
    subject_id: SubjectArg,
    date: Annotated[
        str | None, typer.Option("--date", help="Date the request was received (YYYY-MM-DD; default today).")
    ] = None,
    manifest: Annotated[
        list[Path] | None,
        typer.Option(
            "--manifest",
            help="A manifest naming the subject's samples (subject_id, sample_id columns); needed only for "
            "sample codes made before the vault recorded each sample's subject. Repeatable.",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Delete a subject: removed from every vault domain, excluded from every later release; prints
    (lab-side only) the delivered releases that held them and who must delete their copy."""
    when = iso_date(date, "--date") or today()
    store = Keystore(settings(ctx).home)
    secret = passphrase()
    wrapper = store.vault_wrapper(secret)  # KMS, when configured, needs no passphrase
    samples = _manifest_samples(manifest or [], subject_id)
    location = locate_subject(store.home, wrapper, subject_id)  # before the codes are gone
    erasure = erase_subject(store.home, wrapper, subject_id, when, location.releases, samples)
    if not erasure.already:
        TransferLog(store.home / TRANSFER_LOG).append(deletion_event(erasure), store.signing_key(secret))
    registry = store.registry()
    unowned = sum(v for _, v in _unowned(store, wrapper)) if not samples else 0
    if settings(ctx).json or json_output:
        out.print_json(json.dumps(_deletion_json(erasure, registry, unowned)))
        return
    _print_deletion(erasure, registry, unowned)


@subject_app.command("pending")
def pending_requests(
    ctx: typer.Context,
    on: Annotated[
        str | None, typer.Option("--today", help="Count the days left from this day (default today).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Open revocations and deletion requests by deadline (30 days), overdue ones flagged (lab-side)."""
    day = iso_date(on, "--today") or today()
    store = Keystore(settings(ctx).home)
    store.config()
    found = pending(ConsentRegister(store.home, vault_wrapper(store)).requests())
    if settings(ctx).json or json_output:
        out.print_json(
            json.dumps({"today": day.isoformat(), "pending": [_request_json(r, day) for r in found]})
        )
        return
    table = Table()
    for title in ("due", "days left", "kind", "subject", "received", "copies to delete"):
        table.add_column(title, no_wrap=title != "subject", overflow="fold")  # a subject id is never cut
    for r in found:
        left = r.days_left(day)
        status = f"[bold red]OVERDUE by {-left}[/bold red]" if left < 0 else str(left)
        copies = sum(len(x.recipients) for x in r.releases) if r.kind is RequestKind.DELETION else "-"
        table.add_row(
            str(r.due_on), status, r.kind.value, escape(r.subject_id), str(r.received_on), str(copies)
        )
    out.print(table)
    overdue = sum(1 for r in found if r.days_left(day) < 0)
    out.print(
        f"{len(found)} open request(s), {overdue} overdue, as of {day}; `genegate subject close SUBJECT_ID` "
        "records that a sample was destroyed",
        markup=False,
    )


@subject_app.command("close")
def close(
    ctx: typer.Context,
    subject_id: SubjectArg,
    date: Annotated[
        str | None, typer.Option("--date", help="Date the sample was destroyed (YYYY-MM-DD; default today).")
    ] = None,
) -> None:
    """Record that the subject's biological sample was destroyed (and, for a deletion, the recipients
    confirmed theirs): the subject's open requests leave `subject pending`."""
    when = iso_date(date, "--date") or today()
    store = Keystore(settings(ctx).home)
    closed = ConsentRegister(store.home, vault_wrapper(store)).close(subject_id, when)
    out.print(f"closed on {when}: {', '.join(k.value for k in closed)}", markup=False)


def _manifest_samples(paths: list[Path], subject_id: str) -> tuple[str, ...]:
    """The sample ids the manifests give the subject (canonical subject_id and sample_id columns)."""
    if not paths:
        return ()
    import polars as pl

    from deid import read_manifest

    found: list[str] = []
    for path in paths:
        frame = read_manifest(path)
        rows = frame.filter(pl.col("subject_id").str.strip_chars() == subject_id.strip())
        found += rows.get_column("sample_id").to_list()
    if not found:
        raise UsageProblem("no row of the --manifest file(s) has this subject_id; check the id and the files")
    return tuple(found)


def _unowned(store: Keystore, wrapper: KeyWrapper) -> list[tuple[str, int]]:
    """Vault domains whose sample entries predate owner records, with how many they hold."""
    from keys import Vault, vault_domains

    counts = [(d, Vault(store.home, d, wrapper).unowned_samples()) for d in vault_domains(store.home)]
    return [(d, n) for d, n in counts if n]


def deletion_event(erasure: Erasure) -> dict[str, Any]:
    """The log entry: counts only (no subject id, no code, no date that the register does not hold)."""
    recipients = {r for x in erasure.request.releases for r in x.recipients}
    return {
        "event": "subject.deleted",
        "counts": {
            "vault_domains": sum(1 for f in erasure.forgotten if f.removed),
            "subject_codes": erasure.subject_codes,
            "sample_codes": erasure.sample_codes,
            "releases": len(erasure.request.releases),
            "recipients": len(recipients),
        },
        "message": "deletion request recorded; the subject was removed from the pseudonym vault; "
        "biological sample flagged for destruction",
    }


def _deletion_json(erasure: Erasure, registry: Registry, unowned: int) -> dict[str, Any]:
    r = erasure.request
    return {
        "deleted_on": r.received_on.isoformat(),
        "due_on": r.due_on.isoformat(),
        "already": erasure.already,
        "vault": {
            "domains": sum(1 for f in erasure.forgotten if f.removed),
            "subject_codes": erasure.subject_codes,
            "sample_codes": erasure.sample_codes,
            "unowned_sample_codes": unowned,
        },
        "sample": "flagged for destruction",
        "releases": [
            {
                "release_id": x.release_id,
                "vault_domain": x.vault_domain,
                "recipients": [_recipient_json(registry, rid) for rid in x.recipients],
            }
            for x in r.releases
        ],
    }


def _print_deletion(erasure: Erasure, registry: Registry, unowned: int) -> None:
    r = erasure.request
    if erasure.already:
        out.print(f"already deleted on {r.received_on}; destroy the sample by {r.due_on}", markup=False)
    else:
        touched = sum(1 for f in erasure.forgotten if f.removed)
        out.print(
            f"deleted: removed from {touched} of {len(erasure.forgotten)} vault domain(s) "
            f"({erasure.subject_codes} subject code(s), {erasure.sample_codes} sample code(s)); request "
            f"recorded, dated {r.received_on}; biological sample flagged for destruction by {r.due_on}. "
            "Later releases exclude the subject.",
            markup=False,
        )
    if unowned:
        err.print(
            f"genegate: warning: {unowned} sample code(s) in the vault predate owner records; if the subject "
            "had samples coded before then, run again with --manifest naming them",
            markup=False,
        )
    if not r.releases:
        out.print("no release held the subject", markup=False)
        return
    out.print("lab-side only: releases that held the subject, and who must delete their copy", markup=False)
    table = Table("release", "vault domain", "recipient", "country", "must delete under")
    for x in r.releases:
        for rid in x.recipients or ("(not delivered)",):
            doc = _recipient_json(registry, rid) if x.recipients else None
            country = str(doc["country"]) if doc else "-"
            terms = str(doc["delete_under"]) if doc else "-"
            table.add_row(escape(x.release_id), escape(x.vault_domain), escape(rid), country, escape(terms))
    out.print(table)


def _recipient_json(registry: Registry, recipient_id: str) -> dict[str, Any]:
    """A recipient and the contract or bases under which it must delete its copy."""
    try:
        found: Recipient | None = registry.get(recipient_id)
    except UnknownRecipient:
        found = None
    if found is None:
        return {"id": recipient_id, "name": None, "country": None, "delete_under": "not in the registry"}
    terms = [f"contract {found.contract_ref} (signed {found.contract_signed})"] if found.contract_ref else []
    terms += [f"{b.type.value} {b.ref}" for b in found.bases]
    return {
        "id": found.id,
        "name": found.name,
        "country": found.country,
        "delete_under": "; ".join(terms) or "no contract or basis on record: contact the recipient",
    }


def _request_json(r: ConsentRequest, day: dt.date) -> dict[str, Any]:
    return {
        "subject_id": r.subject_id,
        "kind": r.kind.value,
        "received_on": r.received_on.isoformat(),
        "due_on": r.due_on.isoformat(),
        "days_left": r.days_left(day),
        "overdue": r.days_left(day) < 0,
        "releases": [x.to_json() for x in r.releases],
    }
