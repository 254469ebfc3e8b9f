"""The signed transfer log: chain, signatures, allow-list, torn lines, concurrent writers, mirror."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import transfer.log as log_module
from keys import Passphrase, SigningKey
from transfer import (
    LogEventRefused,
    LogMirrorFailed,
    TornLogError,
    TransferLog,
    TransferLogError,
    mirror_entry,
    read_deliveries,
)

REPO = Path(__file__).resolve().parents[3]
SHA = "ab" * 32


def _event(n: int = 1, event: str = "transfer.delivered", **extra: Any) -> dict[str, Any]:
    return {
        "event": event,
        "release_id": f"rel-{n}",
        "release_sha256": SHA,
        "recipient_id": "ch-zurich",
        "destination": {"country": "CH", "uri": "file:///outbox/ch-zurich"},
        "files": [
            {"name": "cohort.vcf.gz", "plaintext_sha256": SHA, "ciphertext_sha256": SHA, "bytes": 10 * n}
        ],
        **extra,
    }


@pytest.fixture
def key() -> SigningKey:
    """A fresh lab signing key."""
    return SigningKey.generate()


@pytest.fixture
def log(tmp_path: Path, key: SigningKey) -> TransferLog:
    """A log with three entries."""
    log = TransferLog(tmp_path / "transfer-log.jsonl")
    for n in (1, 2, 3):
        log.append(_event(n), key)
    return log


def test_entries_are_chained_signed_and_stamped(log: TransferLog, key: SigningKey) -> None:
    """seq counts from 1, prev_hash is the previous entry_hash (zeros first), signatures verify, UTC Z stamps."""
    entries = log.entries()
    assert [1, 2, 3] == [e["seq"] for e in entries]
    assert ["0" * 64, entries[0]["entry_hash"], entries[1]["entry_hash"]] == [e["prev_hash"] for e in entries]
    for e in entries:
        assert e["entry_hash"] == log_module.entry_hash(e)
        assert key.verify_key().verify(e["entry_hash"].encode(), base64.b64decode(e["signature"]))
        assert e["timestamp"].endswith("Z")
        assert key.verify_key().fingerprint == e["signed_by"]
    assert log_module.LogVerification(True, 3) == log.verify(key.verify_key())


def test_append_returns_the_entry_as_written(tmp_path: Path, key: SigningKey) -> None:
    """append returns exactly the last line of the file, with the clock's UTC time and default operator."""
    clock = lambda: dt.datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)  # noqa: E731
    log = TransferLog(tmp_path / "t.jsonl", clock=clock)
    written = log.append(_event(), key)
    assert json.loads(log.path.read_text().splitlines()[-1]) == written
    assert ("2025-03-01T12:00:00.123Z", "operator") == (written["timestamp"], written["operator"])


def test_operator_label_comes_from_the_environment(
    tmp_path: Path, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$GENEGATE_OPERATOR is recorded; a login-like value (with @) is refused."""
    monkeypatch.setenv("GENEGATE_OPERATOR", "data-steward-2")
    log = TransferLog(tmp_path / "t.jsonl")
    assert "data-steward-2" == log.append(_event(), key)["operator"]
    monkeypatch.setenv("GENEGATE_OPERATOR", "jane.doe@lab.example")
    with pytest.raises(LogEventRefused) as caught:
        log.append(_event(), key)
    assert "jane" not in str(caught.value)


@pytest.mark.parametrize(
    ("event", "named"),
    [
        (_event(subject_id="SUBJ-0042"), '"subject_id" is not a transfer-log field'),
        (_event(NA12878="x"), "a field is not a transfer-log field"),
        (_event(seq=7), '"seq" is not a transfer-log field'),
        (_event(release_sha256="SUBJ-0042"), '"release_sha256" must be hex SHA-256'),
        (_event(event="Delivered"), '"event" must be a dotted name'),
        (_event(files=[{"name": "a", "sample": "SUBJ-0042"}]), '"files" [1] must be'),
        ({"release_id": "rel-1"}, '"event" is required'),
    ],
)
def test_event_outside_the_allow_list_is_refused(
    tmp_path: Path, key: SigningKey, event: dict[str, Any], named: str
) -> None:
    """Unknown or reserved fields and malformed values are refused, naming the field and never the value."""
    log = TransferLog(tmp_path / "t.jsonl")
    with pytest.raises(LogEventRefused) as caught:
        log.append(event, key)
    assert named in str(caught.value)
    assert "SUBJ-0042" not in str(caught.value)
    assert "NA12878" not in str(caught.value)
    assert not log.path.exists() or b"" == log.path.read_bytes()


def test_torn_last_line_is_reported_never_dropped(log: TransferLog, key: SigningKey) -> None:
    """A partial last line: entries() raises naming line 4, verify fails at 4, append refuses."""
    with log.path.open("ab") as fh:
        fh.write(b'{"entry_hash":"12')
    with pytest.raises(TornLogError) as caught:
        log.entries()
    assert 4 == caught.value.line
    assert "line 4 is cut short" in str(caught.value)
    result = log.verify(key.verify_key())
    assert (False, 3, 4) == (result.ok, result.entries, result.first_bad)
    with pytest.raises(TornLogError):
        log.append(_event(4), key)


def test_crash_mid_write_leaves_a_torn_line(
    log: TransferLog, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies halfway through writing an entry: the next reader sees a torn line 4."""

    def half_then_die(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(log_module, "_write_all", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        log.append(_event(4), key)
    monkeypatch.undo()
    with pytest.raises(TornLogError) as caught:
        TransferLog(log.path).entries()
    assert 4 == caught.value.line


def test_two_writer_processes_keep_one_chain(tmp_path: Path, key: SigningKey) -> None:
    """Two processes append 50 entries each at once: 100 entries, seq 1..100, a chain that verifies."""
    pem = tmp_path / "signing.key"
    pem.write_bytes(key.to_pem(Passphrase("correct horse battery")))
    script = (
        "import sys; from pathlib import Path; from keys import SigningKey, Passphrase;"
        "from transfer import TransferLog;"
        "k = SigningKey.from_pem(Path(sys.argv[1]).read_bytes(), Passphrase('correct horse battery'), 'k');"
        "log = TransferLog(Path(sys.argv[2]));"
        "[log.append({'event': 'transfer.delivered', 'release_id': f'{sys.argv[3]}-{i}'}, k) for i in range(50)]"
    )
    target = tmp_path / "transfer-log.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(pem), str(target), name], env=env, cwd=REPO)
        for name in ("a", "b")
    ]
    assert [0, 0] == [w.wait(timeout=120) for w in writers]
    log = TransferLog(target)
    entries = log.entries()
    assert list(range(1, 101)) == [e["seq"] for e in entries]
    assert {f"{w}-{i}" for w in "ab" for i in range(50)} == {e["release_id"] for e in entries}
    assert log_module.LogVerification(True, 100) == log.verify(key.verify_key())


def test_entries_removed_from_the_end_are_detected(log: TransferLog, key: SigningKey) -> None:
    """Dropping the last entry (at a line boundary) leaves the chain whole, but the signed head catches it."""
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(b"".join(lines[:2]))
    result = log.verify(key.verify_key())
    assert (False, 2, 3) == (result.ok, result.entries, result.first_bad)
    assert "entries were removed" in str(result.reason)
    with pytest.raises(TransferLogError, match="entries were removed"):
        log.append(_event(4), key)


def test_missing_head_is_detected(log: TransferLog, key: SigningKey) -> None:
    """A log of several entries without its signed head does not verify."""
    log.head_path.unlink()
    assert "head of the log is missing" in str(log.verify(key.verify_key()).reason)


def test_a_log_resigned_with_another_key_fails(log: TransferLog, key: SigningKey, tmp_path: Path) -> None:
    """An attacker rebuilds the whole log with their own key: every entry is foreign to the lab key."""
    forged = TransferLog(tmp_path / "forged.jsonl")
    other = SigningKey.generate()
    for e in log.entries():
        forged.append({k: v for k, v in e.items() if k not in log_module.ADDED_FIELDS}, other)
    result = forged.verify(key.verify_key())
    assert (False, 1) == (result.ok, result.first_bad)
    assert "signed by another key" in str(result.reason)


def test_edited_field_is_named(log: TransferLog, key: SigningKey) -> None:
    """Changing a recipient in entry 2 and rewriting the line canonically: entry 2, 'a field was edited'."""
    lines = log.path.read_bytes().splitlines()
    entry = json.loads(lines[1])
    entry["recipient_id"] = "us-boston"
    lines[1] = log_module.canonical(entry)
    log.path.write_bytes(b"\n".join(lines) + b"\n")
    result = log.verify(key.verify_key())
    assert (False, 1, 2) == (result.ok, result.entries, result.first_bad)
    assert "a field was edited" in str(result.reason)


def test_read_deliveries_reads_the_signed_log(log: TransferLog, key: SigningKey) -> None:
    """The gate's prior-delivery count still reads entries written by TransferLog."""
    log.append(_event(4, event="transfer.denied"), key)
    deliveries = read_deliveries(log.path)
    assert deliveries is not None
    assert ["rel-1", "rel-2", "rel-3"] == [d.release_id for d in deliveries]


def test_mirror_puts_each_entry_under_object_lock(
    tmp_path: Path, key: SigningKey, moto_endpoint: str, aws_test_credentials: None
) -> None:
    """With a mirror, each entry lands in an Object Lock bucket under COMPLIANCE retention, byte for byte."""
    import functools

    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-central-1")
    s3.create_bucket(
        Bucket="audit-mirror",
        CreateBucketConfiguration={"LocationConstraint": "eu-central-1"},
        ObjectLockEnabledForBucket=True,
    )
    mirror = functools.partial(mirror_entry, bucket="audit-mirror", prefix="lab/log", client=s3)
    log = TransferLog(tmp_path / "t.jsonl", mirror=mirror)
    first, second = log.append(_event(1), key), log.append(_event(2), key)
    listed = s3.list_objects_v2(Bucket="audit-mirror", Prefix="lab/log/")["Contents"]
    keys = [o["Key"] for o in listed]
    assert [f"lab/log/{e['seq']:012d}-{e['entry_hash']}.json" for e in (first, second)] == keys
    body = s3.get_object(Bucket="audit-mirror", Key=keys[1])["Body"].read()
    assert log.path.read_bytes().splitlines(keepends=True)[1] == body
    head = s3.head_object(Bucket="audit-mirror", Key=keys[1])
    assert "COMPLIANCE" == head["ObjectLockMode"]
    with pytest.raises(s3.exceptions.ClientError):  # a locked version cannot be deleted
        s3.delete_object(Bucket="audit-mirror", Key=keys[1], VersionId=head["VersionId"])
    with pytest.raises(LogMirrorFailed, match="Object Lock mirror refused entry 3"):
        TransferLog(log.path, mirror=functools.partial(mirror, bucket="no-such-bucket")).append(
            _event(3), key
        )
    assert 3 == len(log.entries())
