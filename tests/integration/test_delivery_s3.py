"""Delivery to S3 through boto3, against moto's S3 server over HTTP on loopback."""

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
from tests.support.releases import assessed_summary_release, register_partner
from transfer import DeliveryMismatch, RegionMismatch, SendOutcome, SendResult, TransferLog, send_release
from transfer.delivery import (
    MANIFEST_NAME,
    Destination,
    S3Destination,
    S3Settings,
    open_destination,
    read_manifest,
)
from transfer.delivery.s3 import META_CIPHERTEXT, META_SENT_CHECKSUM, composite_checksum
from transfer.facts import TRANSFER_LOG
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
    """Wraps a destination so that put raises after `limit` files (a dropped connection)."""

    def __init__(self, inner: Destination, limit: int | None) -> None:
        self.inner, self.limit = inner, limit
        self.puts: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put(self, name: str, path: Path, sha256: str, size: int) -> None:
        if self.limit is not None and len(self.puts) >= self.limit:
            raise DeliveryMismatch(self.inner.uri, "connection dropped (test fault)")
        self.puts.append(name)
        self.inner.put(name, path, sha256, size)


def opener_with(limit: int | None, made: list[FailingAfter]) -> Opener:
    def opener(recipient: Recipient, rid: str, transfer_id: str) -> Destination:
        made.append(FailingAfter(open_destination(recipient, rid, transfer_id), limit))
        return made[-1]

    return opener


def test_a_release_lands_in_the_bucket_and_decrypts_to_the_release_bytes(world: World) -> None:
    """Objects under <prefix>/<release_id>/, manifest beside them, staging gone; crypt4gh decrypts each."""
    result = send(world)
    root = f"incoming/{release_id(world.release)}/"
    names = release_names(world.release)
    assert SendOutcome.DELIVERED == result.outcome
    assert sorted([root + MANIFEST_NAME, *(f"{root}{n}.c4gh" for n in names)]) == keys_in(
        world.s3, world.bucket
    )
    for name in names:
        assert (world.release / name).read_bytes() == decrypt_object(world, f"{root}{name}.c4gh")
    data = world.s3.get_object(Bucket=world.bucket, Key=root + MANIFEST_NAME)["Body"].read()
    manifest = read_manifest(data, world.store.verify_key(), "test")
    for entry in manifest.files:
        head = world.s3.head_object(Bucket=world.bucket, Key=root + entry.name, ChecksumMode="ENABLED")
        expected = base64.b64encode(bytes.fromhex(entry.ciphertext_sha256)).decode()
        assert (entry.bytes, expected) == (head["ContentLength"], head["ChecksumSHA256"])
    assert f"s3://{world.bucket}/{root}" == world.log.entries()[-1]["destination"]["uri"]


def test_a_rerun_sends_nothing_and_logs_unchanged(world: World) -> None:
    """The second run compares plaintext digests from the signed manifest: no upload, "transfer.unchanged"."""
    send(world)
    made: list[FailingAfter] = []
    result = send(world, opener_with(None, made))
    assert (SendOutcome.UNCHANGED, []) == (result.outcome, made[0].puts)
    assert "transfer.unchanged" == world.log.entries()[-1]["event"]


def test_an_interrupted_upload_shows_nothing_complete_and_a_rerun_finishes_it(world: World) -> None:
    """After a drop mid-transfer only staging holds objects (no manifest); the re-run uploads the rest once."""
    made: list[FailingAfter] = []
    with pytest.raises(DeliveryMismatch, match="test fault"):
        send(world, opener_with(1, made))
    root = f"incoming/{release_id(world.release)}/"
    staged = keys_in(world.s3, world.bucket)
    assert 1 == len(staged)
    assert staged[0].startswith(root + ".partial/")
    again: list[FailingAfter] = []
    send(world, opener_with(None, again))
    names = [n + ".c4gh" for n in release_names(world.release)]
    assert sorted(set(names) - set(made[0].puts)) == sorted(again[0].puts)
    assert sorted([root + MANIFEST_NAME, *(root + n for n in names)]) == keys_in(world.s3, world.bucket)


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


def test_multipart_upload_carries_a_composite_sha256_that_verify_checks(world: World, tmp_path: Path) -> None:
    """A file larger than the part size goes up in parts; S3's composite checksum equals ours."""
    data = os.urandom(2 * PART + 12345)
    path = tmp_path / "big.c4gh"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    settings = S3Settings.from_env(os.environ)
    destination = S3Destination(world.bucket, "mp", "rel-1", "t-1", region=REGION, settings=settings)
    destination.put("big.c4gh", path, digest, len(data))
    destination.verify("big.c4gh", digest, len(data))
    head = world.s3.head_object(
        Bucket=world.bucket, Key="mp/rel-1/.partial/t-1/big.c4gh", ChecksumMode="ENABLED"
    )
    ours = composite_checksum(path, PART)
    assert (ours.split("-")[0], "-3") == (head["ChecksumSHA256"].split("-")[0], ours[-2:])
    assert digest == head["Metadata"][META_CIPHERTEXT]


def test_an_object_corrupted_after_upload_fails_verification(world: World, tmp_path: Path) -> None:
    """moto accepts any client checksum, so we overwrite the object ourselves; verify catches the change."""
    path = tmp_path / "small.c4gh"
    path.write_bytes(b"crypt4gh bytes" * 100)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    settings = S3Settings.from_env(os.environ)
    destination = S3Destination(world.bucket, "c", "rel-1", "t-1", region=REGION, settings=settings)
    destination.put("small.c4gh", path, digest, path.stat().st_size)
    destination.verify("small.c4gh", digest, path.stat().st_size)
    key = "c/rel-1/.partial/t-1/small.c4gh"
    metadata = world.s3.head_object(Bucket=world.bucket, Key=key)["Metadata"]
    corrupted = bytearray(path.read_bytes())
    corrupted[100] ^= 1
    world.s3.put_object(
        Bucket=world.bucket, Key=key, Body=bytes(corrupted), ChecksumAlgorithm="SHA256", Metadata=metadata
    )
    assert {META_CIPHERTEXT, META_SENT_CHECKSUM} <= set(metadata)
    with pytest.raises(DeliveryMismatch, match=r"small\.c4gh"):
        destination.verify("small.c4gh", digest, path.stat().st_size)
    fresh = S3Destination(world.bucket, "c", "rel-1", "t-1", region=REGION, settings=settings)
    assert {} == fresh.staged()  # a re-run does not reuse it
