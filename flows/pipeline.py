"""Prefect 3 flows: `deidentify`, `assess`, `transfer` and `release_and_share` (SPEC.md 8).

The flows hold no rule: each task calls one library function (deid.deidentify, deid.assess,
transfer.plan_transfer / deliver_file / finish_transfer) and returns ids, paths, counts and
digests. Flow parameters are paths and ids only; the keystore passphrase is read in the flow's
process from $GENEGATE_PASSPHRASE and never passes through Prefect (flows never prompt). Every
task that touches identified data or key material declares `cache_policy=NO_CACHE` and
`persist_result=False`: a cached result would be pickled, world-readable, under $PREFECT_HOME.

De-identification is one task, `deidentify-release`, that calls `deid.deidentify` (consent filter,
transforms, leak guard, atomic rename) with a job runner that submits each genomic file — one VCF,
one BAM/CRAM, one FASTQ file or pair, the summary — as its own `deidentify-file` task to the flow's
task runner (threads here, or Dask workers: flows.runners) and waits for all; the first failure
fails the release and its work folder is removed. A job holds sample names beside their
pseudonyms, so it never travels as a task parameter: `deid.genomic.job_specs` writes the jobs
lab-side (private, outside the release) and a task gets the folder's path and its job's index.
Delivery (flows.delivery_tasks) is a `plan-transfer` task per recipient (the gate, what to send),
one `deliver-<i>` task per file to send, submitted together to the flow's task runner, and a
`finish-transfer` task (the signed manifest, last); only these retry, and only on a delivery
error that may pass (not a destination that cannot be used, not a denial: a denied recipient is
skipped with the gate's reasons and the denial is in the transfer log).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait

from deid import GenomicRules, Job, job_specs, job_totals, load_policy, run_job_spec
from deid import assess as assess_release_library
from deid import deidentify as deidentify_library
from flows.artifacts import artifact_key, publish_audit_report, publish_reid, publish_release
from flows.cli_retention import purge_after_assessment
from flows.console import private_prefect_storage
from flows.delivery_tasks import DeliveryFailed, keystore_passphrase, keystore_wrapper, send_all
from flows.receipts import log_destruction_receipt
from flows.runners import local_runner, on_caller_runner
from flows.schedule import pending_releases
from keys import ConsentRegister, Keystore, Vault
from transfer import TRANSFER_LOG, read_deliveries, record_release

__all__ = [
    "DeliveryFailed",
    "assess",
    "assess_release",
    "deidentify",
    "deidentify_file",
    "deidentify_release",
    "keystore_passphrase",
    "partner_sync",
    "release_and_share",
    "run_files_as_tasks",
    "transfer",
]


@task(
    name="deidentify-file",
    task_run_name="deidentify-{kind}-{index}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def deidentify_file(jobs: str, index: int, kind: str) -> dict[str, int]:  # noqa: ARG001 - kind names the run
    """De-identify one genomic file (or FASTQ pair) from job index of the job_specs folder jobs; its counts.

    kind only names the task run. A failure is a DeidError naming the released file, not the input.
    """
    return run_job_spec(Path(jobs), index)


def run_files_as_tasks(jobs: Sequence[Job], work: Path, rules: GenomicRules) -> dict[str, Any]:
    """deid's job runner inside a flow: one deidentify-file task per job on the flow's task runner.

    Waits for every task before raising the first failure in job order: a started task cannot be
    stopped mid-write, and deid removes the work folder as soon as this returns or raises.
    """
    if not jobs:
        return {}
    with job_specs(jobs, work, rules) as folder:
        futures = [deidentify_file.submit(str(folder), i, job.kind) for i, job in enumerate(jobs)]
        wait(futures)
        counts = [future.result() for future in futures]
    return job_totals(jobs, counts)


@task(name="deidentify-release", cache_policy=NO_CACHE, persist_result=False)
def deidentify_release(
    manifest: str,
    policy: str,
    out: str,
    home: str,
    summary_only: bool = False,
    release_id: str | None = None,
    for_recipient: str | None = None,
    purge_inputs: bool = False,
) -> dict[str, Any]:
    """De-identify manifest into out/<release_id>/ (deid.deidentify, as `genegate deid` does), and
    record its identified inputs for retention (sealed; purge_inputs: removed once certified)."""
    chosen = load_policy(policy)
    store = Keystore(Path(home))
    wrapper = keystore_wrapper(store)
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
        job_runner=run_files_as_tasks,
        for_recipient=for_recipient,
    )
    record_release(store.home, wrapper, result.path, result.inputs, purge=purge_inputs)
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
def assess_release(
    release: str, manifest: str, results: str, home: str, seed: int = 0, policy: str | None = None
) -> dict[str, Any]:
    """Run the re-identification tests (deid.assess; policy: default the release's); log the
    destruction receipt if a keystore exists."""
    chosen = load_policy(policy) if policy is not None else None
    result = assess_release_library(Path(release), Path(manifest), Path(results), chosen, seed=seed)
    outcome = result.as_dict()
    store = Keystore(Path(home))
    if store.exists():
        log_destruction_receipt(store, Path(release), outcome, keystore_passphrase())
        purged = purge_after_assessment(store.home, Path(release), outcome["status"])
        if purged is not None:
            outcome = {**outcome, "inputs_purged": purged}
    return outcome


@flow(name="deidentify", persist_result=False, validate_parameters=True, task_runner=local_runner())
def deidentify(
    manifest: str,
    policy: str,
    out: str = "releases",
    home: str = ".genegate",
    summary_only: bool = False,
    release_id: str | None = None,
    for_recipient: str | None = None,
    purge_inputs: bool = False,
) -> dict[str, Any]:
    """De-identify a manifest and its genomic files into out/<release_id>/; publish the release summary.

    The per-file tasks run on this flow's task runner: `deidentify.with_options(task_runner=...)`.
    for_recipient: a release for one partner (consenting subjects only); purge_inputs: the
    identified inputs are removed once the assessment certifies the release.
    """
    release = deidentify_release(
        manifest, policy, out, home, summary_only, release_id, for_recipient, purge_inputs
    )
    publish_release(release)
    return release


@flow(name="assess", persist_result=False)
def assess(
    release: str,
    manifest: str,
    results: str = "results",
    home: str = ".genegate",
    seed: int = 0,
    policy: str | None = None,
) -> dict[str, Any]:
    """Run the re-identification tests on a release; publish the results table. Returns the outcome
    as `genegate assess --json` prints it (aggregates only)."""
    outcome = assess_release(release, manifest, results, home, seed, policy)
    publish_reid(outcome)
    return outcome


@flow(name="transfer", persist_result=False)
def transfer(release: str, recipients: list[str], home: str = ".genegate") -> list[dict[str, Any]]:
    """Send a release to each recipient the gate allows; publish each decision and the delivery summary.

    Raises DeliveryFailed (the run ends Failed, naming the recipients) when a delivery still failed
    after its retries; the other recipients' deliveries and artifacts are complete by then.
    """
    release_id = Path(release).name
    return send_all([(release, rid) for rid in recipients], home, artifact_key("delivery", release_id))


@flow(name="partner-sync", persist_result=False)
def partner_sync(recipient: str, releases: str = "releases", home: str = ".genegate") -> list[dict[str, Any]]:
    """Send every certified release under releases/ that the transfer log does not show as delivered
    to recipient (the scheduled deployment partner-sync/<recipient>); with nothing new it sends nothing.
    A worker or a served deployment starts it without genegate's CLI, so it makes Prefect's local
    storage private itself (flows.console.private_prefect_storage)."""
    private_prefect_storage()
    store = Keystore(Path(home))
    delivered = read_deliveries(store.home / TRANSFER_LOG)
    pending = pending_releases(Path(releases), store.home, delivered, recipient)
    key = artifact_key("delivery", "sync", recipient)
    return send_all([(str(p), recipient) for p in pending], home, key)


@flow(name="release-and-share", persist_result=False, task_runner=local_runner())
def release_and_share(
    manifest: str,
    policy: str,
    recipients: list[str],
    out: str = "releases",
    results: str = "results",
    home: str = ".genegate",
    summary_only: bool = False,
    seed: int = 0,
    for_recipient: str | None = None,
    purge_inputs: bool = False,
) -> dict[str, Any]:
    """De-identify, assess, then send to each recipient, skipping denied ones with their reasons.

    The per-file tasks (de-identification, then delivery) run on this flow's task runner
    (`with_options`); the assessment, the gate and the transfer log stay in this process.
    for_recipient and purge_inputs are `genegate deid --for` and `--purge-inputs`.
    """
    release = on_caller_runner(deidentify)(
        manifest, policy, out, home, summary_only, for_recipient=for_recipient, purge_inputs=purge_inputs
    )
    outcome = assess(release["path"], manifest, results, home, seed)
    sends = on_caller_runner(transfer)(release["path"], recipients, home)
    publish_audit_report(home)  # the transfer sub-flow's report file, linked from this run too
    return {
        "release_id": release["release_id"],
        "release": release["path"],
        "included": release["included"],
        "rows": release["rows"],
        "status": outcome["status"],
        "class": outcome["class"],
        "blocking_failed": outcome["blocking_failed"],
        "excluded": release["excluded"],
        "genomic": release["genomic"],
        "sends": sends,
    }
