"""The demo's closing part (flows/demo.py stages 6 and 7): data at rest and the data lifecycle.

Stage 6 stores the individual-level release encrypted for a key made for it alone, opens it once
to prove the copy, then destroys the key (crypto-shredding) and shows that the stored copy no
longer opens. Stage 7 takes one subject of the release delivered to the partner through a
deletion request (vault codes forgotten, register entry, log entry with counts only, the
releases and recipients that must delete their copies), lists the open requests with their days
left, asks what a breach at that partner would expose and which notification duties follow, and
previews what retention will remove a year and a half from now. The closing summary gathers the
figures of every stage. Every line printed is lab-side and names no subject: the demo picks the
subject itself and never shows who it is.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl

from deid import load_policy
from flows.cli_subject import deletion_event
from keys import (
    ConsentRegister,
    Keystore,
    KeyStoreError,
    Passphrase,
    ReleaseKeys,
    erase_subject,
    pending,
)
from transfer import (
    TRANSFER_LOG,
    ImpactFilter,
    TransferLog,
    apply_retention,
    assess_impact,
    destroy_release,
    list_ledgers,
    load_breach_table,
    load_law_tables,
    locate_subject,
    open_release,
    render_impact,
    store_release,
)

RETENTION_PREVIEW_DAYS = 540  # how far ahead the demo's retention preview looks


def at_rest_stage(out: Path, release: Path, secret: Passphrase, lines: list[str]) -> dict[str, Any]:
    """Store the release for its own key, open it, destroy the key, fail to open it again."""
    store = Keystore(out / "keystore")
    keys = ReleaseKeys(store.home, store.vault_wrapper(secret))
    log, signer = TransferLog(store.home / TRANSFER_LOG), store.signing_key(secret)
    stored = store_release(release, out / "archive", keys, log=log, signer=signer)
    opened = open_release(stored.release_id, out / "archive", out / "restored", keys, log=log, signer=signer)
    destroyed = destroy_release(stored.release_id, keys, log=log, signer=signer)
    try:
        open_release(stored.release_id, out / "archive", out / "restored-again", keys, log=log, signer=signer)
        reopened = "opened (NOT shredded)"
    except KeyStoreError:
        reopened = "refused: the key is destroyed"
    lines.append(
        f"at rest: {stored.release_id} stored as {len(stored.files)} Crypt4GH files in archive/ for its own "
        f"key {stored.key_fingerprint}; opened and checked ({len(opened.files)} files); key destroyed on "
        f"{destroyed.record.destroyed_at}; opening the archive again: {reopened}"
    )
    return {
        "release_id": stored.release_id,
        "stored_files": len(stored.files),
        "opened_files": len(opened.files),
        "destroyed": destroyed.record.state.value,
        "reopen": reopened,
    }


def lifecycle_stage(out: Path, partner: str, secret: Passphrase, lines: list[str]) -> dict[str, Any]:
    """One deletion request, the pending list, a breach-impact query for partner, retention preview."""
    store = Keystore(out / "keystore")
    wrapper = store.vault_wrapper(secret)
    log = TransferLog(store.home / TRANSFER_LOG)
    today = dt.datetime.now(dt.UTC).date()
    subject, location = _delivered_subject(out, store, wrapper, partner)
    erasure = erase_subject(store.home, wrapper, subject, today, location.releases)
    log.append(deletion_event(erasure), store.signing_key(secret))
    holders = sorted({(r.release_id, rid) for r in erasure.request.releases for rid in r.recipients})
    registry = store.registry()
    must_delete = [
        f"{rid} deletes its copy of {release_id} under {registry.get(rid).contract_ref or 'its bases'}"
        for release_id, rid in holders
    ]
    lines.append(
        f"subject delete (one subject of the {partner} release, not named here): {erasure.subject_codes} "
        f"subject and {erasure.sample_codes} sample code(s) forgotten in every vault domain; biological "
        f"sample flagged for destruction; due by {erasure.request.due_on}; " + "; ".join(must_delete)
    )
    open_requests = pending(ConsentRegister(store.home, wrapper).requests())
    lines.append(
        f"subject pending: {len(open_requests)} open request(s), the nearest due in "
        f"{min((r.days_left(today) for r in open_requests), default=0)} days"
    )
    verification = log.verify(store.verify_key())
    impact = assess_impact(
        log.entries(), list_ledgers(store.home), ImpactFilter(partner, None, None, None),
        load_law_tables(), load_breach_table(), store.config().jurisdiction,
    )  # fmt: skip
    html = out / f"impact-{partner}.html"
    html.write_text(render_impact(impact, verification, str(log.path)), encoding="utf-8")
    regions = ", ".join(f"{r.region or 'unrecorded'} {r.subjects}" for r in impact.regions)
    duties = ", ".join(f"{d.duty.id} ({d.status})" for d in impact.duties) or "none"
    lines.append(
        f"audit impact --recipient {partner}: {impact.transfers} transfer(s), {impact.files} files, "
        f"{impact.bytes} bytes, releases {', '.join(impact.releases)}; {impact.subjects} subjects by "
        f"region: {regions}; notification duties: {duties}; report {html.relative_to(out)}"
    )
    preview = _retention_preview(out, store, wrapper, today)
    lines.append(
        f"retention preview ({RETENTION_PREVIEW_DAYS} days ahead, cgipa periods, dry run): "
        + (", ".join(f"{n} {kind}" for kind, n in sorted(preview.items())) or "nothing due")
    )
    return {
        "deleted_codes": erasure.subject_codes + erasure.sample_codes,
        "holders": [list(h) for h in holders],
        "pending": len(open_requests),
        "impact": impact.to_json(),
        "retention_due": preview,
        "log_ok": log.verify(store.verify_key()).ok,
    }


def closing_summary(stages: dict[str, dict[str, Any]]) -> list[str]:
    """The demo's last lines: samples, tests, decisions, deliveries, log, report."""
    lines = ["--- summary ---"]
    for key in ("summary", "individual"):
        run = stages[key]
        allowed = [s["recipient_id"] for s in run["sends"] if s["outcome"] != "denied"]
        denied = [s["recipient_id"] for s in run["sends"] if s["outcome"] == "denied"]
        files = sum(len(s["files"]) for s in run["sends"] if s["outcome"] == "delivered")
        lines.append(
            f"{key}: {run['included']} of {run['rows']} samples in, "
            f"{run['rows'] - run['included']} excluded; "
            f"tests {run['status']} (class {run['class']}); sent to {', '.join(allowed) or 'no one'} "
            f"({files} files), denied {', '.join(denied) or 'none'}"
        )
    audit, life = stages["audit"], stages["lifecycle"]
    lines.append(
        f"log: {'verified' if life['log_ok'] else 'NOT verified'}; report {audit['report']}; "
        f"crypto-shredded at rest: {stages['at_rest']['release_id']}"
    )
    return lines


def _delivered_subject(out: Path, store: Keystore, wrapper: Any, partner: str) -> tuple[str, Any]:
    """A subject of the cohort whose data reached partner (read from the synthetic manifest)."""
    subjects = pl.read_csv(out / "cohort" / "manifest.csv", infer_schema=False)["subject_id"].unique(
        maintain_order=True
    )
    for subject in subjects.to_list():
        location = locate_subject(store.home, wrapper, subject)
        if any(partner in r.recipients for r in location.releases):
            return subject, location
    raise RuntimeError(f"no subject of the demo cohort reached {partner}; the demo's sharing stage failed")


def _retention_preview(out: Path, store: Keystore, wrapper: Any, today: dt.date) -> dict[str, int]:
    """Counts by class of what retention would remove RETENTION_PREVIEW_DAYS from now (dry run)."""
    ahead = dt.datetime.combine(today, dt.time(12), dt.UTC) + dt.timedelta(days=RETENTION_PREVIEW_DAYS)
    report = apply_retention(
        store, load_policy("cgipa").retention, wrapper, now=ahead,
        releases=[out / "releases"], results=[out / "results"],
    )  # fmt: skip
    due: dict[str, int] = {}
    for outcome in report.outcomes:
        due[str(outcome.item.holding)] = due.get(str(outcome.item.holding), 0) + 1
    return due
