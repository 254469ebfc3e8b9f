"""Retention at s3:// destinations on a real S3 protocol server (moto): every version of a due
delivery is deleted by id, an object under Object Lock (COMPLIANCE retention or a legal hold) is
never deleted and is reported held until its date, each removal is one signed log entry, and the
daily `retention` flow does the same."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from deid.retention import RetentionPolicy
from keys import Keystore, Passphrase
from transfer.facts import TRANSFER_LOG
from transfer.log import TransferLog
from transfer.retention import apply_retention

SECRET_TEXT = "correct horse battery staple"
SECRET = Passphrase(SECRET_TEXT)
REGION = "eu-central-1"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
LOCKED_UNTIL = NOW + dt.timedelta(days=30)


@dataclass(frozen=True)
class Outbox:
    store: Keystore
    client: Any
    bucket: str

    def keys(self, prefix: str) -> list[str]:
        """Every object version under prefix, as its key (a key twice for two versions)."""
        page = self.client.list_object_versions(Bucket=self.bucket, Prefix=prefix)
        return sorted(v["Key"] for v in page.get("Versions", []))

    def entries(self, event: str) -> list[dict[str, Any]]:
        return [e for e in TransferLog(self.store.home / TRANSFER_LOG).entries() if e["event"] == event]


def _deliver(store: Keystore, bucket: str, release_id: str, days_ago: int) -> None:
    """The transfer.delivered entry send_release writes for an s3:// destination."""
    event = {
        "event": "transfer.delivered",
        "release_id": release_id,
        "recipient_id": "ch-partner",
        "destination": {"country": "CH", "uri": f"s3://{bucket}/outbox/{release_id}/"},
        "files": [{"name": "samples.parquet.c4gh", "bytes": 100}],
    }
    clock = lambda: NOW - dt.timedelta(days=days_ago)  # noqa: E731
    TransferLog(store.home / TRANSFER_LOG, clock=clock).append(event, store.signing_key(SECRET))


@pytest.fixture
def outbox(
    moto_endpoint: str, aws_test_credentials: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Outbox]:
    """An Object Lock bucket: r-old delivered 100 days ago (one file overwritten once, the manifest,
    objects under COMPLIANCE and GOVERNANCE retention for 30 more days, one under a legal hold), r-new 10 days ago."""
    monkeypatch.setenv("GENEGATE_S3_ENDPOINT_URL", moto_endpoint)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    bucket = f"retention-{uuid.uuid4().hex[:12]}"
    client.create_bucket(
        Bucket=bucket,
        CreateBucketConfiguration={"LocationConstraint": REGION},
        ObjectLockEnabledForBucket=True,
    )
    old = "outbox/r-old/"
    client.put_object(Bucket=bucket, Key=old + "samples.parquet.c4gh", Body=b"a" * 100)
    client.put_object(Bucket=bucket, Key=old + "samples.parquet.c4gh", Body=b"b" * 120)  # a re-delivery
    client.put_object(Bucket=bucket, Key=old + "delivery-manifest.json", Body=b"{}")
    client.put_object(
        Bucket=bucket,
        Key=old + "locked.c4gh",
        Body=b"l" * 50,
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=LOCKED_UNTIL,
        ChecksumAlgorithm="SHA256",
    )
    client.put_object(
        Bucket=bucket,
        Key=old + "governance.c4gh",
        Body=b"g" * 20,
        ObjectLockMode="GOVERNANCE",  # deletable with BypassGovernanceRetention, which genegate never sends
        ObjectLockRetainUntilDate=LOCKED_UNTIL,
        ChecksumAlgorithm="SHA256",
    )
    client.put_object(
        Bucket=bucket,
        Key=old + "held.c4gh",
        Body=b"h" * 30,
        ObjectLockLegalHoldStatus="ON",
        ChecksumAlgorithm="SHA256",
    )
    client.put_object(Bucket=bucket, Key="outbox/r-new/samples.parquet.c4gh", Body=b"n" * 80)
    store = Keystore.init(tmp_path / "ks", SECRET)
    _deliver(store, bucket, "r-old", 100)
    _deliver(store, bucket, "r-new", 10)
    yield Outbox(store, client, bucket)
    for v in client.list_object_versions(Bucket=bucket).get("Versions", []):
        client.put_object_legal_hold(
            Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"], LegalHold={"Status": "OFF"}
        )


def _apply(o: Outbox, *, dry_run: bool) -> list[tuple[str, str, str, int, int, int, str | None]]:
    report = apply_retention(
        o.store,
        RetentionPolicy(),  # outbox_days = 90
        o.store.vault_wrapper(SECRET),
        now=NOW,
        signer=None if dry_run else o.store.signing_key(SECRET),
    )
    assert 1 == report.waiting  # r-new
    return [
        (
            str(x.item.holding),
            x.item.release_id,
            x.status,
            x.files,
            x.bytes,
            x.held,
            x.to_json()["held_until"],
        )
        for x in report.outcomes
    ]


def test_dry_run_reports_due_and_held_and_deletes_nothing(outbox: Outbox) -> None:
    """The dry run lists r-old: three versions due (222 bytes), three held (until the locks' date)."""
    before = outbox.keys("outbox/")
    assert [("outbox", "r-old", "due", 3, 222, 3, LOCKED_UNTIL.isoformat())] == _apply(outbox, dry_run=True)
    assert before == outbox.keys("outbox/")
    assert [] == outbox.entries("retention.removed")


def test_real_run_deletes_every_free_version_and_never_a_locked_one(outbox: Outbox) -> None:
    """Both versions of the re-delivered file and the manifest go for good (not behind a delete
    marker); the COMPLIANCE, GOVERNANCE and legal-hold objects stay and are reported; one log entry; a re-run
    deletes nothing and logs nothing."""
    assert [("outbox", "r-old", "held", 3, 222, 3, LOCKED_UNTIL.isoformat())] == _apply(outbox, dry_run=False)
    assert [
        "outbox/r-old/governance.c4gh",
        "outbox/r-old/held.c4gh",
        "outbox/r-old/locked.c4gh",
    ] == outbox.keys("outbox/r-old/")
    assert ["outbox/r-new/samples.parquet.c4gh"] == outbox.keys("outbox/r-new/")
    [entry] = outbox.entries("retention.removed")
    assert (
        "r-old",
        "ch-partner",
        {"uri": f"s3://{outbox.bucket}/outbox/r-old/"},
        {"files": 3, "bytes": 222, "held": 3},
        f"s3://{outbox.bucket}",
    ) == (
        entry["release_id"],
        entry["recipient_id"],
        entry["destination"],
        entry["counts"],
        entry["receipt"]["where"],
    )
    assert [("outbox", "r-old", "held", 0, 0, 3, LOCKED_UNTIL.isoformat())] == _apply(outbox, dry_run=False)
    assert 1 == len(outbox.entries("retention.removed"))
    assert TransferLog(outbox.store.home / TRANSFER_LOG).verify(outbox.store.verify_key()).ok


def test_an_unversioned_bucket_is_emptied_too(
    moto_endpoint: str, aws_test_credentials: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without versioning the objects are deleted by their "null" version id, as AWS names them."""
    monkeypatch.setenv("GENEGATE_S3_ENDPOINT_URL", moto_endpoint)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    bucket = f"plain-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    client.put_object(Bucket=bucket, Key="outbox/r-old/a.c4gh", Body=b"a" * 10)
    store = Keystore.init(tmp_path / "ks", SECRET)
    _deliver(store, bucket, "r-old", 100)
    report = apply_retention(
        store, RetentionPolicy(), store.vault_wrapper(SECRET), now=NOW, signer=store.signing_key(SECRET)
    )
    assert [("removed", 1, 10)] == [(o.status, o.files, o.bytes) for o in report.outcomes]
    assert [] == client.list_objects_v2(Bucket=bucket).get("Contents", [])


def test_the_daily_flow_removes_what_is_due(
    prefect_home: Path, outbox: Outbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `retention` flow (deployment retention/daily) applies the default policy: r-old's free
    versions go, the held ones stay, one log entry."""
    from flows.lifecycle import retention

    monkeypatch.setenv("GENEGATE_PASSPHRASE", SECRET_TEXT)
    monkeypatch.chdir(tmp_path)
    summary = retention(home=str(outbox.store.home))
    assert {"due": 1, "waiting": 1} == summary
    assert [
        "outbox/r-old/governance.c4gh",
        "outbox/r-old/held.c4gh",
        "outbox/r-old/locked.c4gh",
    ] == outbox.keys("outbox/r-old/")
    assert [{"files": 3, "bytes": 222, "held": 3}] == [
        e["counts"] for e in outbox.entries("retention.removed")
    ]
