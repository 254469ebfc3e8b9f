"""What every flow run publishes to Prefect (SPEC.md 8): tables built from library results.

Artifacts are stored in the Prefect database and shown to anyone who can open the UI, so they hold
aggregates, rule outcomes, ids, paths, sizes and digests only: never an identifier value, a
pseudonym mapping or a rule's evidence (which may quote contract references). The row builders are
pure functions of the library's JSON results; `publish_*` hand them to Prefect, inside a flow run.

Artifact keys (lowercase letters, digits and dashes; Prefect keeps every version of a key):
`release-<release>` the release summary, `reid-<release>` the re-identification results,
`gate-<release>-<recipient>` one gate decision, `delivery-<release>` the delivery summary of a
transfer run, `delivery-sync-<recipient>` that of a scheduled partner sync, and `audit-report` a
link to the HTML report of the transfer log.

The report (transfer.render_report, as `genegate audit report --html` writes it) is a file beside
the log, `<home>/reports/audit-<root flow run id>.html`, written after every transfer,
release-and-share and partner-sync run, failed deliveries included; the artifact holds only its
file:// address, so the Prefect database never holds the log's content.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from keys import Keystore, KeyStoreError, write_atomic
from transfer import TRANSFER_LOG, TransferError, TransferLog, render_report

_KEY_CHARS = re.compile(r"[^a-z0-9-]+")
REPORT_KEY = "audit-report"
REPORTS_DIR = "reports"


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key from ids: lowercase, every other character a dash, at most 120 long."""
    text = "-".join(_KEY_CHARS.sub("-", p.lower()).strip("-") for p in parts)
    return re.sub("-{2,}", "-", text)[:120].strip("-")


def release_markdown(release: Mapping[str, Any]) -> str:
    """The release summary: counts, exclusions by reason, released columns and files (no values)."""
    excluded = ", ".join(f"{reason} {n}" for reason, n in release["excluded"].items() if n) or "none"
    genomic = ", ".join(
        f"{kind}: {counts.get('outputs', 0)} file(s)" for kind, counts in release["genomic"].items()
    )
    return "\n".join(
        [
            f"# Release {release['release_id']}",
            "",
            f"- samples released: {release['included']} of {release['rows']} manifest rows",
            f"- excluded by reason: {excluded}",
            f"- columns released: {', '.join(release['columns'])}",
            f"- genomic files: {genomic or 'none'}",
            f"- summary only: {release['summary_only']}",
            f"- release sha256: `{release['release_sha256']}`",
        ]
    )


def reid_rows(outcome: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per metric of an assessment (AssessmentResult.as_dict()): aggregates and verdicts only."""
    rows = []
    for m in outcome["metrics"]:
        value = m["value"]
        if isinstance(value, float) and math.isfinite(value):
            value = round(value, 6)
        rows.append(
            {
                "test": m["test_id"],
                "metric": m["metric"],
                "value": value,
                "threshold": m["threshold"],
                "comparator": m["comparator"],
                "passed": m["passed"],
                "severity": m["severity"],
                "status": m["status"],
            }
        )
    return rows


def gate_rows(decision: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per rule of a gate decision (Decision.to_json()): the rule, its result and its reason."""
    rows = []
    for rule in decision["rules"]:
        result = "pass" if rule["passed"] and rule["applies"] else ("n/a" if rule["passed"] else "FAIL")
        rows.append({"rule": rule["id"], "result": result, "reason": rule["reason"]})
    return rows


def delivery_rows(sends: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per delivered file, and one per recipient that received no file (denied, failed)."""
    rows: list[dict[str, Any]] = []
    for send in sends:
        base = {
            "release": send["release_id"],
            "recipient": send["recipient_id"],
            "outcome": send["outcome"],
            "destination": send.get("destination") or "-",
        }
        files = send.get("files") or []
        if not files:
            rows.append({**base, "file": "-", "bytes": 0, "plaintext_sha256": "-", "ciphertext_sha256": "-"})
        for f in files:
            rows.append(
                {
                    **base,
                    "file": f["name"],
                    "bytes": f["bytes"],
                    "plaintext_sha256": f["plaintext_sha256"],
                    "ciphertext_sha256": f["ciphertext_sha256"],
                }
            )
    return rows


def publish_release(release: Mapping[str, Any]) -> None:
    """The release summary of a deidentify run."""
    create_markdown_artifact(
        release_markdown(release),
        key=artifact_key("release", release["release_id"]),
        description=f"De-identified release {release['release_id']}",
    )


def publish_reid(outcome: Mapping[str, Any]) -> None:
    """The re-identification results table of an assess run."""
    failed = ", ".join(outcome["blocking_failed"]) or "none"
    create_table_artifact(
        reid_rows(outcome),
        key=artifact_key("reid", outcome["release_id"]),
        description=(
            f"Re-identification tests of release {outcome['release_id']}: {outcome['status']}, "
            f"class {outcome['class']}; blocking failures: {failed}"
        ),
    )


def publish_gate(send: Mapping[str, Any]) -> None:
    """The gate's decision for one recipient of a transfer run, with every rule and its reason."""
    decision = send["decision"]
    verdict = "allowed" if decision["allowed"] else "denied"
    failed = ", ".join(send["failed_rules"]) or "none"
    create_table_artifact(
        gate_rows(decision),
        key=artifact_key("gate", send["release_id"], send["recipient_id"]),
        description=(
            f"Gate: release {send['release_id']} ({decision['release_class']}) -> {send['recipient_id']}"
            f" ({decision['destination_country'] or 'unknown country'}): {verdict}; failed rules: {failed}"
        ),
    )


def publish_delivery(key: str, sends: Sequence[Mapping[str, Any]]) -> None:
    """The delivery summary of a transfer run: per recipient, the files, bytes, digests and destination."""
    outcomes = ", ".join(f"{s['release_id']} -> {s['recipient_id']} {s['outcome']}" for s in sends)
    create_table_artifact(
        delivery_rows(sends),
        key=key,
        description=f"Delivery summary: {outcomes or 'nothing to send'}",
    )


def report_path(home: Path, run_id: str | None) -> Path:
    """Where a flow run writes the HTML report of the transfer log: beside the log, one file per run."""
    return home / REPORTS_DIR / f"audit-{run_id or 'local'}.html"


def publish_audit_report(home: str, report: str | None = None) -> Path | None:
    """Write the HTML report of the transfer log in home to report (default: report_path of the root
    flow run, so a sub-flow and its parent share one file) and publish a link artifact to it.

    None, with nothing published, when there is no log yet. A report that cannot be written is a
    warning in the run's log, not a failure: the deliveries it describes are done and logged."""
    store = Keystore(Path(home))
    log = TransferLog(store.home / TRANSFER_LOG)
    if not log.path.exists():
        return None
    target = Path(report) if report else report_path(store.home, flow_run.get_root_flow_run_id())
    try:
        verification = log.verify(store.verify_key())
        _write_text(target, render_report(log.entries(), verification, str(log.path)))
    except (OSError, TransferError, KeyStoreError) as exc:
        get_run_logger().warning("audit report not written (%s): %s", type(exc).__name__, exc)
        return None
    verdict = (
        f"verified, {verification.entries} entries"
        if verification.ok
        else f"DOES NOT VERIFY at entry {verification.first_bad}"
    )
    create_link_artifact(
        target.resolve().as_uri(),
        link_text=f"Transfer log report ({verdict})",
        key=REPORT_KEY,
        description=f"HTML report of the signed transfer log {log.path}: {verdict}",
    )
    return target


def _write_text(path: Path, text: str) -> None:
    """Write text to path (mode 0600, its folder 0700) through a temporary file renamed into place."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, text.encode("utf-8"), mode=0o600)
