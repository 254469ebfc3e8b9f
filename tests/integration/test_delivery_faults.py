"""A connection cut mid-upload, between boto3 and moto's S3 server, by a fault-injecting TCP proxy.

The proxy forwards loopback TCP to the moto server and resets both sockets once the bytes sent
by the client reach a budget, in the middle of a multipart part. Retries are off
(GENEGATE_S3_MAX_ATTEMPTS=1) so the cut surfaces as the transfer's one error. Objects go straight
to their final keys and the signed manifest, written last, is the completion marker: so at the
cut and after it there must be no manifest (nothing vouched for), and a re-run through the healthy
endpoint must end with exactly the manifest and the objects it lists, each with the recorded size
and checksum: nothing duplicated, no `.partial/` left, no incomplete multipart upload.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import selectors
import shutil
import socket
import struct
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import crypt4gh.keys
import crypt4gh.lib
import pytest

from keys import Keystore, Passphrase, encode_secret_key
from tests.support.releases import RELEASE_NAME, add_file, assessed_summary_release, register_partner
from transfer import DeliveryRejected, DestinationUnusable, SendOutcome, TransferLog, send_release
from transfer.delivery import MANIFEST_NAME, S3Settings, read_manifest
from transfer.facts import TRANSFER_LOG

PASS = Passphrase("correct horse battery")
TODAY = dt.datetime.now(dt.UTC).date()
REGION = "eu-central-2"
PART = 5 * 1024 * 1024
BIG = 12 * 1024 * 1024 + 4321  # three parts: 5 MiB, 5 MiB, the rest
CUT_AFTER = 8 * 1024 * 1024  # client bytes: inside the second part of the big file


class CuttingProxy:
    """Loopback TCP proxy to `upstream`; resets every socket once `budget` client bytes have passed.

    `persistent=False` cuts once and then forwards normally (a transient drop);
    `persistent=True` cuts every later connection at once (the network stays down).
    `on_cut` runs in the proxy thread at the moment of the cut.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        budget: int,
        *,
        persistent: bool,
        on_cut: Callable[[], None] | None = None,
    ) -> None:
        self.upstream, self.budget, self.persistent, self.on_cut = upstream, budget, persistent, on_cut
        self.sent = 0
        self.cuts = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._upstream_side: set[socket.socket] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for sock in list(self._peers):
            self._close(sock, reset=False)
        self._selector.close()
        self._listener.close()

    @property
    def down(self) -> bool:
        return self.cuts > 0 and self.persistent

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept()
                elif sock in self._peers:
                    self._pump(sock)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        if self.down:
            self._reset(client)
            return
        server = socket.create_connection(self.upstream)
        self._peers[client], self._peers[server] = server, client
        self._upstream_side.add(server)
        for sock in (client, server):
            self._selector.register(sock, selectors.EVENT_READ, None)

    def _pump(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close(sock, reset=False)
            return
        if sock not in self._upstream_side:  # client -> server: spend the budget
            if self.cuts == 0 and self.sent + len(data) >= self.budget:
                self.cuts += 1
                if self.on_cut is not None:
                    self.on_cut()
                self._close(sock, reset=True)
                return
            self.sent += len(data)
        self._peers[sock].sendall(data)

    def _close(self, sock: socket.socket, *, reset: bool) -> None:
        other = self._peers.pop(sock, None)
        for each in (sock, other):
            if each is None:
                continue
            self._peers.pop(each, None)
            self._upstream_side.discard(each)
            self._selector.unregister(each)
            if reset:
                self._reset(each)
            else:
                each.close()

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        """Close with SO_LINGER 0: the peer sees a TCP reset, as on a dropped link."""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keystore with an assessed summary release, grown by one 12 MiB file (built once per module)."""
    root = tmp_path_factory.mktemp("template")
    store = assessed_summary_release(root, PASS)
    release = root / "releases" / RELEASE_NAME
    add_file(release, store.home, "big-table.tsv", os.urandom(BIG))
    return root


@dataclass(frozen=True, slots=True)
class World:
    store: Keystore
    release: Path
    bucket: str
    partner: Path
    log: TransferLog
    s3: Any
    endpoint: str


@pytest.fixture
def world(
    template: Path,
    tmp_path: Path,
    moto_endpoint: str,
    aws_test_credentials: None,
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    """The Swiss partner delivering to a fresh bucket in eu-central-2; 5 MiB parts, no retries."""
    monkeypatch.setenv("GENEGATE_S3_ADDRESSING_STYLE", "path")
    monkeypatch.setenv("GENEGATE_S3_PART_SIZE", str(PART))
    monkeypatch.setenv("GENEGATE_S3_MAX_ATTEMPTS", "1")
    shutil.copytree(template / "ks", tmp_path / "ks")
    shutil.copytree(template / "releases" / "the-release", tmp_path / "release")
    store = Keystore(tmp_path / "ks")
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_endpoint)
    bucket = f"inbox-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    key = register_partner(store, PASS, "ch-zurich", "CH", REGION, f"s3://{bucket}/incoming", today=TODAY)
    partner = tmp_path / "ch-zurich.sec"
    partner.write_bytes(encode_secret_key(key, PASS.reveal()))
    log = TransferLog(store.home / TRANSFER_LOG)
    return World(store, tmp_path / "release", bucket, partner, log, s3, moto_endpoint)


def send_via(world: World, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("GENEGATE_S3_ENDPOINT_URL", endpoint)
    wrapper = world.store.vault_wrapper(PASS)
    return send_release(world.store, world.release, "ch-zurich", PASS, TODAY, wrapper=wrapper, log=world.log)


def keys_in(world: World) -> list[str]:
    return sorted(o["Key"] for o in world.s3.list_objects_v2(Bucket=world.bucket).get("Contents", []))


def unfinished(world: World) -> list[str]:
    return sorted(u["Key"] for u in world.s3.list_multipart_uploads(Bucket=world.bucket).get("Uploads", []))


def expected_keys(release: Path) -> list[str]:
    doc = json.loads((release / "release.json").read_text())
    root = f"incoming/{doc['release_id']}/"
    names = ["release.json", *(f["name"] for f in doc["files"])]
    return sorted([root + MANIFEST_NAME, *(f"{root}{n}.c4gh" for n in names)])


def manifests(world: World) -> list[str]:
    """Delivery manifests a recipient could find: the only thing that vouches for a delivery."""
    return [k for k in keys_in(world) if k.endswith("/" + MANIFEST_NAME) and "/.partial/" not in k]


def assert_vouched_exactly(world: World) -> None:
    """The bucket holds the manifest and exactly the objects it lists, each with its size and checksum."""
    (key,) = manifests(world)
    data = world.s3.get_object(Bucket=world.bucket, Key=key)["Body"].read()
    manifest = read_manifest(data, world.store.verify_key(), key)
    root = key.removesuffix(MANIFEST_NAME)
    for entry in manifest.files:
        head = world.s3.head_object(Bucket=world.bucket, Key=root + entry.name, ChecksumMode="ENABLED")
        assert (entry.name, entry.bytes, entry.checksum) == (
            entry.name,
            head["ContentLength"],
            head["ChecksumSHA256"].split("-")[0],
        )
    assert sorted([key, *(root + f.name for f in manifest.files)]) == keys_in(world)


def upstream(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


@pytest.mark.parametrize("persistent", [False, True], ids=["transient-drop", "network-stays-down"])
def test_a_cut_mid_part_fails_once_shows_nothing_and_a_rerun_completes_without_duplicates(
    world: World, monkeypatch: pytest.MonkeyPatch, persistent: bool
) -> None:
    """The cut surfaces as one DeliveryRejected; the healthy re-run leaves exactly the expected objects."""
    seen_at_cut: list[list[str]] = []

    def snapshot() -> None:  # the manifests a recipient listing the bucket finds at the moment of the cut
        seen_at_cut.append(manifests(world))

    proxy = CuttingProxy(upstream(world.endpoint), CUT_AFTER, persistent=persistent, on_cut=snapshot)
    failing = pytest.raises(DeliveryRejected, match=r"UploadPart \S*big-table\.tsv\.c4gh.*network")
    with proxy, failing:
        send_via(world, proxy.url, monkeypatch)
    assert 1 == proxy.cuts
    assert [[]] == seen_at_cut
    assert [] == manifests(world)  # objects of the cut run may be listed, but nothing vouches for them
    assert [] == [k for k in keys_in(world) if k.endswith("big-table.tsv.c4gh")]  # the cut file is absent
    entry = world.log.entries()[-1]
    assert "transfer.failed" == entry["event"]
    # a transient drop lets the abort through at once; with the network down, the re-run aborts it
    assert ([] if not persistent else ["big-table.tsv.c4gh"]) == [
        k.rsplit("/", 1)[-1] for k in unfinished(world)
    ]

    result = send_via(world, world.endpoint, monkeypatch)
    assert (SendOutcome.DELIVERED, ("big-table.tsv.c4gh",)) == (result.outcome, result.sent)
    assert expected_keys(world.release) == keys_in(world)
    assert_vouched_exactly(world)
    assert [] == unfinished(world)
    secret = crypt4gh.keys.get_private_key(str(world.partner), PASS.reveal)
    rid = json.loads((world.release / "release.json").read_text())["release_id"]
    body = world.s3.get_object(Bucket=world.bucket, Key=f"incoming/{rid}/big-table.tsv.c4gh")["Body"].read()
    out = _decrypt(secret, body)
    assert (world.release / "big-table.tsv").read_bytes() == out

    again = send_via(world, world.endpoint, monkeypatch)
    assert (SendOutcome.UNCHANGED, expected_keys(world.release)) == (again.outcome, keys_in(world))


def _decrypt(secret: bytes, body: bytes) -> bytes:
    out = io.BytesIO()
    crypt4gh.lib.decrypt([(0, secret, None)], io.BytesIO(body), out)
    return out.getvalue()


def test_with_retries_allowed_a_transient_cut_is_retried_and_the_transfer_completes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GENEGATE_S3_MAX_ATTEMPTS=2: botocore resends the cut part; one delivery, no leftovers."""
    monkeypatch.setenv("GENEGATE_S3_MAX_ATTEMPTS", "2")
    with CuttingProxy(upstream(world.endpoint), CUT_AFTER, persistent=False) as proxy:
        result = send_via(world, proxy.url, monkeypatch)
    assert (1, SendOutcome.DELIVERED) == (proxy.cuts, result.outcome)
    assert (expected_keys(world.release), []) == (keys_in(world), unfinished(world))
    assert_vouched_exactly(world)


@pytest.mark.parametrize("value", ["0", "-1", "three", ""])
def test_a_bad_max_attempts_names_the_variable(value: str) -> None:
    with pytest.raises(DestinationUnusable, match="GENEGATE_S3_MAX_ATTEMPTS"):
        S3Settings.from_env({"GENEGATE_S3_MAX_ATTEMPTS": value})


def test_max_attempts_defaults_to_six_and_reads_the_variable() -> None:
    assert (6, 1) == (
        S3Settings.from_env({}).max_attempts,
        S3Settings.from_env({"GENEGATE_S3_MAX_ATTEMPTS": "1"}).max_attempts,
    )
