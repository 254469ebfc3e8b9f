"""Delivery to S3 through boto3, against moto's S3 server over HTTP on loopback.

Objects are streamed to their final keys; the signed manifest, written last, is the completion
marker. These tests check what a recipient that honours the manifest can see at every point.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import crypt4gh.keys
import crypt4gh.lib
import pytest

from keys import (
    Keystore,
    Passphrase,
    Recipient,
    encode_secret_key,
)
from tests.support.releases import add_file, assessed_summary_release, register_partner
from transfer import DeliveryMismatch, RegionMismatch, SendOutcome, SendResult, TransferLog, send_release
from transfer.delivery import (
    MANIFEST_NAME,
    DeliveredFile,
    DeliveryManifest,
    Destination,
    Encrypt,
    S3Destination,
    S3Settings,
    open_destination,
    read_manifest,
)
from transfer.facts import TRANSFER_LOG
from transfer.segments import Writable
from transfer.send import Opener

PASS = Passphrase("correct horse battery")
TODAY = dt.datetime.now(dt.UTC).date()
REGION = "eu-central-2"
PART = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keystore with a summary-only release that passed assessment (built once per module)."""
    root = tmp_path_factory.mktemp("template")
    assessed_summary_release(root, PASS)
    return root


@dataclass(frozen=True, slots=True)
class World:
    store: Keystore
    release: Path
    bucket: str
    partner: Path
    log: TransferLog
    s3: Any


@pytest.fixture
def s3(moto_endpoint: str, aws_test_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client for the loopback server; genegate is pointed at it through GENEGATE_S3_*."""
    monkeypatch.setenv("GENEGATE_S3_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("GENEGATE_S3_ADDRESSING_STYLE", "path")
    monkeypatch.setenv("GENEGATE_S3_PART_SIZE", str(PART))
    return boto3.client("s3", region_name=REGION, endpoint_url=moto_endpoint)


def make_bucket(s3: Any, region: str) -> str:
    name = f"inbox-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", region_name=region, endpoint_url=s3.meta.endpoint_url)
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    return name


def keys_in(s3: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


@pytest.fixture
def world(template: Path, tmp_path: Path, s3: Any) -> World:
    """The Swiss partner (contract + APPI/PIPL/HGR bases) delivering to a fresh bucket in eu-central-2."""
    shutil.copytree(template / "ks", tmp_path / "ks")
    shutil.copytree(template / "releases" / "the-release", tmp_path / "release")
    store = Keystore(tmp_path / "ks")
    bucket = make_bucket(s3, REGION)
    key = register_partner(store, PASS, "ch-zurich", "CH", REGION, f"s3://{bucket}/incoming", today=TODAY)
    partner = tmp_path / "ch-zurich.sec"
    partner.write_bytes(encode_secret_key(key, PASS.reveal()))
    return World(store, tmp_path / "release", bucket, partner, TransferLog(store.home / TRANSFER_LOG), s3)


def send(world: World, opener: Opener | None = None) -> SendResult:
    wrapper = world.store.vault_wrapper(PASS)
    return send_release(
        world.store, world.release, "ch-zurich", PASS, TODAY, wrapper=wrapper, log=world.log, opener=opener
    )


def release_names(release: Path) -> list[str]:
    doc = json.loads((release / "release.json").read_text())
    return sorted(["release.json", *(f["name"] for f in doc["files"])])


def release_id(release: Path) -> str:
    return str(json.loads((release / "release.json").read_text())["release_id"])


def decrypt_object(world: World, key: str) -> bytes:
    """Fetch an object and decrypt it with EGA's reference crypt4gh library, as the recipient would."""
    secret = crypt4gh.keys.get_private_key(str(world.partner), PASS.reveal)
    body = io.BytesIO(world.s3.get_object(Bucket=world.bucket, Key=key)["Body"].read())
    out = io.BytesIO()
    crypt4gh.lib.decrypt([(0, secret, None)], body, out)
    return out.getvalue()


class FailingAfter:
    """Wraps a destination so that deliver raises after `limit` files (a dropped connection)."""

    def __init__(self, inner: Destination, limit: int | None) -> None:
        self.inner, self.limit = inner, limit
        self.puts: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def deliver(self, name: str, write: Encrypt, size_hint: int) -> DeliveredFile:
        if self.limit is not None and len(self.puts) >= self.limit:
            raise DeliveryMismatch(self.inner.uri, "connection dropped (test fault)")
        self.puts.append(name)
        return self.inner.deliver(name, write, size_hint)


def opener_with(limit: int | None, made: list[FailingAfter]) -> Opener:
    def opener(recipient: Recipient, rid: str, transfer_id: str) -> Destination:
        made.append(FailingAfter(open_destination(recipient, rid, transfer_id), limit))
        return made[-1]

    return opener


def manifest_at(world: World, root: str) -> DeliveryManifest:
    data = world.s3.get_object(Bucket=world.bucket, Key=root + MANIFEST_NAME)["Body"].read()
    return read_manifest(data, world.store.verify_key(), "test")


def assert_objects_match(world: World, root: str, manifest: DeliveryManifest) -> None:
    """Every listed object has the recorded size and checksum (HeadObject); nothing else is in the bucket."""
    for entry in manifest.files:
        head = world.s3.head_object(Bucket=world.bucket, Key=root + entry.name, ChecksumMode="ENABLED")
        assert (entry.name, entry.bytes, entry.checksum) == (
            entry.name,
            head["ContentLength"],
            head["ChecksumSHA256"].split("-")[0],
        )
    expected = sorted([root + MANIFEST_NAME, *(root + f.name for f in manifest.files)])
    assert expected == keys_in(world.s3, world.bucket)


def writing(data: bytes, chunk: int = 1024 * 1024 + 7) -> Encrypt:
    """An Encrypt that writes `data` (standing for ciphertext) in odd-sized chunks."""

    def write(sink: Writable) -> DeliveredFile:
        for start in range(0, len(data), chunk):
            sink.write(memoryview(data)[start : start + chunk])
        digest = hashlib.sha256(data).hexdigest()
        return DeliveredFile("big.c4gh", "0" * 64, digest, len(data), len(data))

    return write


def s3_checksum(data: bytes, part: int) -> str:
    """What S3 computes: SHA-256 for one PUT, else SHA-256 of the part SHA-256s (bare, no -N)."""
    if len(data) <= part:
        return base64.b64encode(hashlib.sha256(data).digest()).decode()
    digests = b"".join(hashlib.sha256(data[i : i + part]).digest() for i in range(0, len(data), part))
    return base64.b64encode(hashlib.sha256(digests).digest()).decode()


def test_a_release_lands_in_the_bucket_and_decrypts_to_the_release_bytes(world: World) -> None:
    """Objects under <prefix>/<release_id>/, manifest beside them, no .partial left; crypt4gh decrypts each."""
    result = send(world)
    root = f"incoming/{release_id(world.release)}/"
    names = release_names(world.release)
    assert SendOutcome.DELIVERED == result.outcome
    manifest = manifest_at(world, root)
    assert sorted(f"{n}.c4gh" for n in names) == sorted(f.name for f in manifest.files)
    assert_objects_match(world, root, manifest)
    for name in names:
        assert (world.release / name).read_bytes() == decrypt_object(world, f"{root}{name}.c4gh")
    for entry in manifest.files:  # single PUTs here: S3's checksum is the ciphertext SHA-256 itself
        assert base64.b64encode(bytes.fromhex(entry.ciphertext_sha256)).decode() == entry.checksum
    assert f"s3://{world.bucket}/{root}" == world.log.entries()[-1]["destination"]["uri"]


def test_a_rerun_sends_nothing_and_logs_unchanged(world: World) -> None:
    """The second run compares plaintext digests from the signed manifest: no upload, "transfer.unchanged"."""
    send(world)
    made: list[FailingAfter] = []
    result = send(world, opener_with(None, made))
    assert (SendOutcome.UNCHANGED, []) == (result.outcome, made[0].puts)
    assert "transfer.unchanged" == world.log.entries()[-1]["event"]


def test_an_interrupted_upload_is_vouched_for_by_no_manifest_and_a_rerun_finishes_it(world: World) -> None:
    """After a drop mid-transfer there is no manifest; the re-run uploads only the rest, then publishes."""
    made: list[FailingAfter] = []
    with pytest.raises(DeliveryMismatch, match="test fault"):
        send(world, opener_with(1, made))
    root = f"incoming/{release_id(world.release)}/"
    left = keys_in(world.s3, world.bucket)
    assert [] == [k for k in left if k.endswith(MANIFEST_NAME)]
    assert [root + made[0].puts[0]] == [k for k in left if "/.partial/" not in k]
    again: list[FailingAfter] = []
    send(world, opener_with(None, again))
    names = [n + ".c4gh" for n in release_names(world.release)]
    assert sorted(set(names) - set(made[0].puts)) == sorted(again[0].puts)
    assert_objects_match(world, root, manifest_at(world, root))


def test_a_changed_release_takes_the_old_manifest_down_before_replacing_a_file(world: World) -> None:
    """A stale manifest never vouches for a half-replaced set; the re-run keeps what did not change."""
    send(world)
    root = f"incoming/{release_id(world.release)}/"
    old = manifest_at(world, root)
    add_file(world.release, world.store.home, "extra/table.tsv", os.urandom(70_000))  # release.json changes
    made: list[FailingAfter] = []
    with pytest.raises(DeliveryMismatch, match="test fault"):
        send(world, opener_with(1, made))
    assert ["release.json.c4gh"] == made[0].puts  # replaced under its final key ...
    assert root + MANIFEST_NAME not in keys_in(world.s3, world.bucket)  # ... with the old manifest down
    again: list[FailingAfter] = []
    result = send(world, opener_with(None, again))
    assert (SendOutcome.DELIVERED, ["extra/table.tsv.c4gh"]) == (result.outcome, again[0].puts)
    new = manifest_at(world, root)
    assert_objects_match(world, root, new)
    unchanged = {f.name for f in old.files} - {"release.json.c4gh"}
    assert {f.name: f for f in old.files if f.name in unchanged} == {
        f.name: f for f in new.files if f.name in unchanged
    }
    assert (world.release / "release.json").read_bytes() == decrypt_object(world, root + "release.json.c4gh")


def test_region_mismatch_is_refused_before_any_upload(world: World) -> None:
    """A bucket in eu-central-1 for a recipient declaring eu-central-2: RegionMismatch, nothing uploaded, logged."""
    other = make_bucket(world.s3, "eu-central-1")

    def elsewhere(recipient: Recipient, rid: str, transfer_id: str) -> Destination:
        moved = dataclasses.replace(recipient, destination=f"s3://{other}/incoming")
        return open_destination(moved, rid, transfer_id)

    with pytest.raises(RegionMismatch, match="eu-central-1"):
        send(world, elsewhere)
    assert ([], []) == (keys_in(world.s3, other), keys_in(world.s3, world.bucket))
    entry = world.log.entries()[-1]
    assert "transfer.failed" == entry["event"]
    assert "eu-central-2" in entry["message"]


@pytest.mark.parametrize(
    "size", [1, PART, PART + 1, 2 * PART + 12345], ids=["tiny", "one-part", "two", "three"]
)
def test_a_stream_goes_up_in_parts_with_the_checksum_s3_computes(world: World, size: int) -> None:
    """Written in odd chunks: one PUT up to the part size, else parts; S3's checksum equals ours; bytes intact."""
    data = os.urandom(size)
    destination = S3Destination(
        world.bucket, "mp", "rel-1", "t-1", region=REGION, settings=S3Settings.from_env(os.environ)
    )
    delivered = destination.deliver("big.c4gh", writing(data), size)
    got = world.s3.get_object(Bucket=world.bucket, Key="mp/rel-1/big.c4gh", ChecksumMode="ENABLED")
    parts = -(-size // PART)
    suffix = f"-{parts}" if parts > 1 else ""
    assert (s3_checksum(data, PART), s3_checksum(data, PART) + suffix) == (
        delivered.checksum,
        got["ChecksumSHA256"],
    )
    assert data == got["Body"].read()
    assert {"big.c4gh": delivered} == destination.pending()


def test_a_failing_stream_aborts_its_multipart_upload_and_leaves_nothing(world: World) -> None:
    """The producer fails after two parts went up: the upload is aborted, no object, no receipt."""
    destination = S3Destination(
        world.bucket, "ab", "rel-1", "t-1", region=REGION, settings=S3Settings.from_env(os.environ)
    )

    open_uploads: list[int] = []

    def failing(sink: Writable) -> DeliveredFile:
        sink.write(os.urandom(2 * PART + 1))
        sink.write(os.urandom(PART))  # parts 1 and 2 are sent by now, part 3 is filling
        open_uploads.append(len(world.s3.list_multipart_uploads(Bucket=world.bucket).get("Uploads", [])))
        raise DeliveryMismatch("test", "the source broke off (test fault)")

    with pytest.raises(DeliveryMismatch, match="test fault"):
        destination.deliver("big.c4gh", failing, 3 * PART)
    assert [1] == open_uploads
    assert ([], []) == (
        keys_in(world.s3, world.bucket),
        world.s3.list_multipart_uploads(Bucket=world.bucket).get("Uploads", []),
    )


def test_an_object_corrupted_after_upload_fails_verification(world: World) -> None:
    """moto accepts any client checksum, so we overwrite the object ourselves; verify catches the change."""
    data = b"crypt4gh bytes" * 100
    settings = S3Settings.from_env(os.environ)
    destination = S3Destination(world.bucket, "c", "rel-1", "t-1", region=REGION, settings=settings)
    delivered = destination.deliver("big.c4gh", writing(data), len(data))
    destination.verify(delivered)
    corrupted = bytearray(data)
    corrupted[100] ^= 1
    world.s3.put_object(
        Bucket=world.bucket, Key="c/rel-1/big.c4gh", Body=bytes(corrupted), ChecksumAlgorithm="SHA256"
    )
    with pytest.raises(DeliveryMismatch, match=r"big\.c4gh"):
        destination.verify(delivered)
    fresh = S3Destination(world.bucket, "c", "rel-1", "t-1", region=REGION, settings=settings)
    assert {} == fresh.pending()  # its receipt is there, but a re-run does not reuse it
