"""The `retention` flow: `genegate retention apply` on a schedule (deployment `retention/daily`).

prefect.yaml runs it every day at 03:30 UTC on the `genegate` work pool. It holds no rule: the one
task calls flows.cli_retention.run_retention (the CLI's own call), which removes what the policy's
`[retention]` says is due and logs each removal in the signed transfer log. Its parameters are
paths (and a policy name) only; the passphrase comes from $GENEGATE_PASSPHRASE in the worker's
environment, never from Prefect. The task opens the sealed inventory of identified input paths,
so it neither caches nor persists its result, and its artifact holds classes, release ids,
roots, counts and statuses only, as the CLI prints them.

A run fails (RetentionIncomplete, naming the classes and releases) when an item could not be
removed; the others were removed and logged. An object S3 Object Lock holds is not a failure: it
is retried on the next day's run.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.artifacts import artifact_key
from flows.cli_retention import run_retention
from flows.console import private_prefect_storage
from flows.errors import FlowsError
from flows.pipeline import keystore_passphrase
from keys import Keystore

FLOW_NAME = "retention"
ENTRYPOINT = "flows/lifecycle.py:retention"


class RetentionIncomplete(FlowsError):
    """Some due items could not be removed; names their classes and release ids, never a path."""


@task(name="apply-retention", cache_policy=NO_CACHE, persist_result=False)
def apply_retention_task(home: str, releases: str, results: str, policy: str | None) -> dict[str, Any]:
    """Remove what is due now (transfer.retention.apply_retention); the report as JSON."""
    report = run_retention(
        Keystore(Path(home)),
        policy,
        [Path(releases)],
        [Path(results)],
        secret=keystore_passphrase(),
        dry_run=False,
        now=dt.datetime.now(dt.UTC),
    )
    return report.to_json()


def retention_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One artifact row per due item: class, release, where, counts, status (no path it removed)."""
    keys = ("class", "release_id", "where", "files", "bytes", "held", "held_until", "status")
    return [{k: item[k] for k in keys} for item in report["due"]]


@flow(name=FLOW_NAME, persist_result=False)
def retention(
    home: str = ".genegate", releases: str = "releases", results: str = "results", policy: str | None = None
) -> dict[str, Any]:
    """Apply the retention policy (policy: a policy file or built-in profile; default the defaults).
    Prefect's local storage is made private first: a worker starts this flow without genegate's CLI."""
    private_prefect_storage()
    report = apply_retention_task(home, releases, results, policy)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    create_table_artifact(
        key=artifact_key("retention", stamp),
        table=retention_rows(report),
        description=f"retention: {len(report['due'])} due, {report['waiting']} not yet due",
    )
    failed = [f"{d['class']} of {d['release_id']}" for d in report["due"] if d["status"] == "failed"]
    if failed:
        raise RetentionIncomplete(
            f"retention could not remove {', '.join(failed)}; the transfer log has what was removed; "
            "`genegate retention apply` prints each reason"
        )
    return {"due": len(report["due"]), "waiting": report["waiting"]}
