"""Prefect 3 flows: `deidentify`, `assess`, `transfer` and `release_and_share` (SPEC.md 8).

The flows hold no rule: each task calls one library function (deid.deidentify, deid.assess,
transfer.send_release) and returns ids, paths, counts and digests. Flow parameters are paths and
ids only; the keystore passphrase is read inside the tasks from $GENEGATE_PASSPHRASE and never
passes through Prefect (flows never prompt). Every task that touches identified data or key
material declares `cache_policy=NO_CACHE` and `persist_result=False`: a cached result would be
pickled, world-readable, under $PREFECT_HOME.

De-identification is one task: `deid.deidentify` plans and runs the per-file genomic jobs itself
(two at a time, `deid.genomic.run_jobs`) between the consent filter and the leak guard, and writes
the release atomically; splitting it into per-file tasks would mean re-implementing that sequence
here. Delivery is one task per recipient (`send_release` gates, encrypts every file, uploads,
verifies and logs), submitted together so the task runner spreads them; only delivery retries,
and only on a delivery error that may pass (not a destination that cannot be used, not a denial:
a denied recipient is skipped with the gate's reasons and the denial is in the transfer log).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.tasks import Task

from deid import assess as assess_release_library
from deid import deidentify as deidentify_library
from deid import load_policy
from flows.artifacts import artifact_key, publish_delivery, publish_gate, publish_reid, publish_release
from flows.console import PASSPHRASE_ENV, today
from flows.errors import FlowsError, UsageProblem
from flows.receipts import log_destruction_receipt
from flows.schedule import pending_releases
from keys import ConsentRegister, Keystore, KeyWrapper, Passphrase, Vault, WrapMode
from transfer import (
    TRANSFER_LOG,
    DeliveryError,
    DestinationUnusable,
    TransferLog,
    read_deliveries,
    send_release,
)

DELIVERY_RETRIES = 2
DELIVERY_RETRY_DELAYS = [5.0, 30.0]  # seconds before the first and the second retry


class DeliveryFailed(FlowsError):
    """A delivery task still failed after its retries; names the recipients, never file content."""


def keystore_passphrase() -> Passphrase:
    """$GENEGATE_PASSPHRASE: flows run unattended, so they never prompt and never take it as a parameter."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is None:
        raise UsageProblem(f"no passphrase: set ${PASSPHRASE_ENV} before running a flow (flows never prompt)")
    return Passphrase(value)


def _wrapper(store: Keystore) -> KeyWrapper:
    """What opens the vault and the consent register: the passphrase unless KMS wraps them."""
    needs_passphrase = store.config().wrap_mode is WrapMode.LAB_KEY
    return store.vault_wrapper(keystore_passphrase() if needs_passphrase else None)


@task(name="deidentify-release", cache_policy=NO_CACHE, persist_result=False)
def deidentify_release(
    manifest: str, policy: str, out: str, home: str, summary_only: bool = False, release_id: str | None = None
) -> dict[str, Any]:
    """De-identify manifest into out/<release_id>/ (deid.deidentify, as `genegate deid` does)."""
    chosen = load_policy(policy)
    store = Keystore(Path(home))
    wrapper = _wrapper(store)
    vault = Vault(store.home, chosen.vault_domain, wrapper)
    revoked = ConsentRegister(store.home, wrapper).revocations()
    result = deidentify_library(
        Path(manifest),
        chosen,
        Path(out),
        vault,
        release_id=release_id,
        summary_only=summary_only,
        ledger=store.home / "ledger",
        revoked_subjects=set(revoked),
    )
    counts = result.record["counts"]
    return {
        "release_id": result.release_id,
        "path": str(result.path),
        "rows": counts["manifest_rows"],
        "included": counts["included_samples"],
        "excluded": result.record["excluded"],
        "columns": list(counts["columns_released"]),
        "genomic": result.record["genomic_files"]["released"],
        "summary_only": summary_only,
        "release_sha256": result.record["release_sha256"],
    }


@task(name="assess-release", cache_policy=NO_CACHE, persist_result=False)
def assess_release(release: str, manifest: str, results: str, home: str, seed: int = 0) -> dict[str, Any]:
    """Run the re-identification tests (deid.assess); log the destruction receipt if a keystore exists."""
    outcome = assess_release_library(Path(release), Path(manifest), Path(results), seed=seed).as_dict()
    store = Keystore(Path(home))
    if store.exists():
        log_destruction_receipt(store, Path(release), outcome, keystore_passphrase())
    return outcome


def _transient(_task: Task[..., Any], _run: TaskRun, state: State[Any]) -> bool:
    """Retry a delivery that may pass on a second try; not an unusable destination, not a bug."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, DeliveryError) and not isinstance(error, DestinationUnusable)


@task(
    name="send-release",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=DELIVERY_RETRIES,
    retry_delay_seconds=DELIVERY_RETRY_DELAYS,
    retry_condition_fn=_transient,
)
def send_to_recipient(release: str, recipient: str, home: str) -> dict[str, Any]:
    """Gate, encrypt, deliver, verify and log the release for one recipient (transfer.send_release)."""
    store = Keystore(Path(home))
    secret = keystore_passphrase()
    wrapper = store.vault_wrapper(secret if store.config().wrap_mode is WrapMode.LAB_KEY else None)
    run_id = flow_run.get_id()
    result = send_release(
        store,
        Path(release),
        recipient,
        secret,
        today(),
        wrapper=wrapper,
        log=TransferLog(store.home / TRANSFER_LOG),
        flow_run_id=str(run_id) if run_id else None,
    )
    decision = result.decision
    return {**result.to_json(), "reasons": list(decision.reasons), "decision": decision.to_json()}


@flow(name="deidentify", persist_result=False, validate_parameters=True)
def deidentify(
    manifest: str,
    policy: str,
    out: str = "releases",
    home: str = ".genegate",
    summary_only: bool = False,
    release_id: str | None = None,
) -> dict[str, Any]:
    """De-identify a manifest and its genomic files into out/<release_id>/; publish the release summary."""
    release = deidentify_release(manifest, policy, out, home, summary_only, release_id)
    publish_release(release)
    return release


@flow(name="assess", persist_result=False)
def assess(
    release: str, manifest: str, results: str = "results", home: str = ".genegate", seed: int = 0
) -> dict[str, Any]:
    """Run the re-identification tests on a release; publish the results table (aggregates only)."""
    outcome = assess_release(release, manifest, results, home, seed)
    publish_reid(outcome)
    return {k: outcome[k] for k in ("release_id", "status", "class", "blocking_failed", "results")}


@flow(name="transfer", persist_result=False)
def transfer(release: str, recipients: list[str], home: str = ".genegate") -> list[dict[str, Any]]:
    """Send a release to each recipient the gate allows; publish each decision and the delivery summary.

    Raises DeliveryFailed (the run ends Failed, naming the recipients) when a delivery still failed
    after its retries; the other recipients' deliveries and artifacts are complete by then.
    """
    release_id = Path(release).name
    return _send_all([(release, rid) for rid in recipients], home, artifact_key("delivery", release_id))


@flow(name="partner-sync", persist_result=False)
def partner_sync(recipient: str, releases: str = "releases", home: str = ".genegate") -> list[dict[str, Any]]:
    """Send every certified release under releases/ that the transfer log does not show as delivered
    to recipient (the scheduled deployment partner-sync/<recipient>); with nothing new it sends nothing."""
    store = Keystore(Path(home))
    delivered = read_deliveries(store.home / TRANSFER_LOG)
    pending = pending_releases(Path(releases), store.home, delivered, recipient)
    key = artifact_key("delivery", "sync", recipient)
    return _send_all([(str(p), recipient) for p in pending], home, key)


def _send_all(jobs: list[tuple[str, str]], home: str, key: str) -> list[dict[str, Any]]:
    """One send task per (release, recipient), all submitted; publish the artifacts; raise on failure."""
    futures = [send_to_recipient.submit(release, rid, home) for release, rid in jobs]
    wait(futures)
    sends: list[dict[str, Any]] = []
    failed: list[str] = []
    for (release, rid), future in zip(jobs, futures, strict=True):
        state = future.state
        if state.is_completed():
            send = future.result()
            publish_gate(send)
            sends.append(send)
        else:
            name = Path(release).name
            failed.append(f"{name} -> {rid} ({type(state.result(raise_on_failure=False)).__name__})")
            sends.append({"release_id": name, "recipient_id": rid, "outcome": "failed", "files": []})
    publish_delivery(key, sends)
    if failed:
        raise DeliveryFailed(
            f"delivery failed for {', '.join(failed)} after {DELIVERY_RETRIES} retries; the transfer log "
            "has each failure; fix the destination and rerun (files already delivered are kept)"
        )
    shown = ("release_id", "recipient_id", "outcome", "destination", "reasons")
    return [{k: s[k] for k in shown} for s in sends]


@flow(name="release-and-share", persist_result=False)
def release_and_share(
    manifest: str,
    policy: str,
    recipients: list[str],
    out: str = "releases",
    results: str = "results",
    home: str = ".genegate",
    summary_only: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """De-identify, assess, then send to each recipient, skipping denied ones with their reasons."""
    release = deidentify(manifest, policy, out, home, summary_only)
    outcome = assess(release["path"], manifest, results, home, seed)
    sends = transfer(release["path"], recipients, home)
    return {
        "release_id": release["release_id"],
        "release": release["path"],
        "included": release["included"],
        "rows": release["rows"],
        "status": outcome["status"],
        "class": outcome["class"],
        "blocking_failed": outcome["blocking_failed"],
        "sends": sends,
    }
