"""send_release to a file:// outbox: gate, encrypt into staging, verify, publish, log; re-runs and interruptions."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import crypt4gh.keys
import crypt4gh.lib
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keys import (
    Keystore,
    Passphrase,
    Recipient,
    SecretKey,
    SigningKey,
)
from tests.support.releases import OutboxWorld, assessed_summary_release, outbox_world, register_partner
from transfer import DeliveryMismatch, SendOutcome, SendResult, send_release
from transfer.delivery import (
    MANIFEST_NAME,
    DeliveredFile,
    DeliveryManifest,
    Destination,
    Encrypt,
    LocalOutbox,
    ObjectInfo,
    ReleaseFile,
    open_destination,
    plan_delivery,
    read_manifest,
)
from transfer.segments import Writable
from transfer.send import Opener

PASS = Passphrase("correct horse battery")
TODAY = dt.datetime.now(dt.UTC).date()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keystore with a summary-only release that passed assessment (built once per module)."""
    root = tmp_path_factory.mktemp("template")
    assessed_summary_release(root, PASS)
    return root


World = OutboxWorld


def add_partner(
    store: Keystore, rid: str, country: str, region: str, destination: str, *, bases: bool
) -> SecretKey:
    """Register a recipient (the demo's Swiss partner when bases=True: contract + APPI/PIPL/HGR)."""
    return register_partner(store, PASS, rid, country, region, destination, bases=bases, today=TODAY)


@pytest.fixture
def world(template: Path, tmp_path: Path) -> World:
    """A private copy of the template with the Swiss partner delivering to a local outbox."""
    return outbox_world(template, tmp_path, PASS, TODAY)


def send(world: World, opener: Opener | None = None) -> SendResult:
    return send_release(
        world.store,
        world.release,
        "ch-zurich",
        PASS,
        TODAY,
        wrapper=world.store.vault_wrapper(PASS),
        log=world.log,
        opener=opener,
    )


def release_names(release: Path) -> list[str]:
    doc = json.loads((release / "release.json").read_text())
    return sorted(["release.json", *(f["name"] for f in doc["files"])])


def decrypt_with_reference(path: Path, secret_file: Path) -> bytes:
    """Decrypt with EGA's reference crypt4gh library, as a recipient would."""
    secret = crypt4gh.keys.get_private_key(str(secret_file), PASS.reveal)
    out = io.BytesIO()
    with open(path, "rb") as fin:
        crypt4gh.lib.decrypt([(0, secret, None)], fin, out)
    return out.getvalue()


class Recording:
    """A destination wrapper that records deliveries and can fail after a number of them."""

    def __init__(self, inner: Destination, fail_after: int | None = None) -> None:
        self.inner = inner
        self.fail_after = fail_after
        self.puts: list[str] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def deliver(self, name: str, write: Encrypt, size_hint: int) -> DeliveredFile:
        if self.fail_after is not None and len(self.puts) >= self.fail_after:
            raise DeliveryMismatch(self.inner.uri, "connection dropped (test fault)")
        self.puts.append(name)
        return self.inner.deliver(name, write, size_hint)


def recording_opener(fail_after: int | None = None) -> tuple[list[Recording], Opener]:
    made: list[Recording] = []

    def opener(recipient: Recipient, release_id: str, transfer_id: str) -> Destination:
        wrapped = Recording(open_destination(recipient, release_id, transfer_id), fail_after)
        made.append(wrapped)
        return wrapped  # type: ignore[return-value]

    return made, opener


def published(world: World) -> Iterator[Path]:
    return (p for p in world.outbox.rglob("*") if p.is_file())


def test_delivered_files_decrypt_with_the_reference_tool_to_the_release_bytes(world: World) -> None:
    """Every release file arrives as <name>.c4gh that crypt4gh decrypts byte for byte; the manifest is signed."""
    result = send(world)
    assert SendOutcome.DELIVERED == result.outcome
    root = next(world.outbox.iterdir())
    names = release_names(world.release)
    assert sorted([*(n + ".c4gh" for n in names), MANIFEST_NAME]) == sorted(
        p.relative_to(root).as_posix() for p in published(world)
    )
    for name in names:
        assert (world.release / name).read_bytes() == decrypt_with_reference(
            root / f"{name}.c4gh", world.partner
        )
    manifest = read_manifest((root / MANIFEST_NAME).read_bytes(), world.store.verify_key(), "test")
    expected = {n + ".c4gh": hashlib.sha256((world.release / n).read_bytes()).hexdigest() for n in names}
    assert expected == {f.name: f.plaintext_sha256 for f in manifest.files}
    assert {f.name: hashlib.sha256((root / f.name).read_bytes()).hexdigest() for f in manifest.files} == {
        f.name: f.ciphertext_sha256 for f in manifest.files
    }
    entry = world.log.entries()[-1]
    assert ("transfer.delivered", manifest.release_id) == (entry["event"], entry["release_id"])
    assert sorted(expected) == sorted(f["name"] for f in entry["files"])
    assert {"country": "CH", "uri": root.as_uri()} == entry["destination"]


def test_a_rerun_delivers_nothing_and_logs_unchanged(world: World) -> None:
    """A second run finds every file in place by plaintext digest: no put, the same bytes, "transfer.unchanged"."""
    send(world)
    before = {p: p.read_bytes() for p in published(world)}
    made, opener = recording_opener()
    result = send(world, opener)
    assert (SendOutcome.UNCHANGED, [], 0) == (result.outcome, made[0].puts, result.bytes_sent)
    assert before == {p: p.read_bytes() for p in published(world)}
    assert ["transfer.delivered", "transfer.unchanged"] == [e["event"] for e in world.log.entries()]


def test_an_interrupted_transfer_publishes_nothing_and_a_rerun_sends_only_the_rest(world: World) -> None:
    """put fails after the first file: no manifest, "transfer.failed"; the re-run sends only the missing files."""
    made, failing = recording_opener(fail_after=1)
    with pytest.raises(DeliveryMismatch, match="test fault"):
        send(world, failing)
    root = world.outbox / json.loads((world.release / "release.json").read_text())["release_id"]
    assert not (root / MANIFEST_NAME).exists()
    assert [] == [p for p in root.iterdir() if p.name != ".partial"]  # nothing visible outside staging
    first = made[0].puts
    assert 1 == len(first)
    assert "transfer.failed" == world.log.entries()[-1]["event"]
    made, opener = recording_opener()
    result = send(world, opener)
    names = [n + ".c4gh" for n in release_names(world.release)]
    assert sorted(set(names) - set(first)) == sorted(made[0].puts)
    assert (SendOutcome.DELIVERED, sorted(names)) == (result.outcome, sorted(f.name for f in result.files))
    assert not (root / ".partial").exists()
    for name in release_names(world.release):
        assert (world.release / name).read_bytes() == decrypt_with_reference(
            root / f"{name}.c4gh", world.partner
        )


def test_a_damaged_published_file_is_sent_again_alone(world: World) -> None:
    """A published file altered at the destination no longer matches the manifest: only it is re-sent."""
    send(world)
    root = next(world.outbox.iterdir())
    victim = root / "release.json.c4gh"
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    made, opener = recording_opener()
    result = send(world, opener)
    assert (SendOutcome.DELIVERED, ["release.json.c4gh"]) == (result.outcome, made[0].puts)
    assert (world.release / "release.json").read_bytes() == decrypt_with_reference(victim, world.partner)


def test_a_denied_transfer_is_logged_and_writes_nothing(world: World, tmp_path: Path) -> None:
    """A US recipient with no basis for EU-origin data: denied, "transfer.denied" logged, no outbox created."""
    outbox = tmp_path / "outbox" / "us-boston"
    add_partner(world.store, "us-boston", "US", "us-east-1", outbox.as_uri(), bases=False)
    result = send_release(
        world.store,
        world.release,
        "us-boston",
        PASS,
        TODAY,
        wrapper=world.store.vault_wrapper(PASS),
        log=world.log,
    )
    assert SendOutcome.DENIED == result.outcome
    assert not outbox.exists()
    entry = world.log.entries()[-1]
    assert ("transfer.denied", False) == (entry["event"], entry["decision"]["allowed"])
    assert {"country": "US", "uri": outbox.as_uri()} == entry["destination"]
    assert entry["decision"]["failed_rules"]


def test_a_manifest_signed_by_another_key_is_refused(world: World) -> None:
    """read_manifest accepts only the lab's signature; an edited or foreign manifest raises."""
    send(world)
    root = next(world.outbox.iterdir())
    data = (root / MANIFEST_NAME).read_bytes()
    with pytest.raises(DeliveryMismatch, match="signature"):
        read_manifest(data, SigningKey.generate().verify_key(), "test")
    edited = data.replace(b'"bytes": ', b'"bytes": 1', 1)
    with pytest.raises(DeliveryMismatch, match="signature"):
        read_manifest(edited, world.store.verify_key(), "test")


def writing(data: bytes, name: str = "a.c4gh", reported: bytes | None = None) -> Encrypt:
    """An Encrypt that writes `data` (already 'ciphertext') and reports the digest of `reported`."""

    def write(sink: Writable) -> DeliveredFile:
        sink.write(data)
        digest = hashlib.sha256(data if reported is None else reported).hexdigest()
        return DeliveredFile(name, "0" * 64, digest, len(data), len(data))

    return write


def test_a_staged_file_is_read_back_and_a_changed_copy_is_not_reused(tmp_path: Path) -> None:
    """deliver reads the staged copy back against the digest written; a copy altered later is sent again."""
    outbox = LocalOutbox(tmp_path / "outbox", "rel-1", "t-1")
    delivered = outbox.deliver("a.c4gh", writing(b"ciphertext"), 10)
    digest = hashlib.sha256(b"ciphertext").hexdigest()
    assert DeliveredFile("a.c4gh", "0" * 64, digest, 10, 10, digest) == delivered
    assert {"a.c4gh": delivered} == outbox.pending()
    assert ({}, None) == (outbox.existing(), outbox.manifest())  # nothing published before publish
    (outbox.staging / "a.c4gh").write_bytes(b"ciphertexT")
    assert {} == outbox.pending()


def test_a_stream_that_differs_from_its_reported_digest_is_refused(tmp_path: Path) -> None:
    """If the bytes that reached the outbox are not the ones the encryption hashed, deliver raises."""
    outbox = LocalOutbox(tmp_path / "outbox", "rel-1", "t-1")
    with pytest.raises(DeliveryMismatch, match=r"a\.c4gh"):
        outbox.deliver("a.c4gh", writing(b"ciphertext", reported=b"ciphertexT"), 10)
    assert {} == outbox.pending()


def test_an_interrupted_publish_is_finished_by_the_rerun_without_sending_again(world: World) -> None:
    """A crash after publish renamed files but before the manifest: the re-run reuses them and publishes."""
    send(world)
    root = world.outbox / json.loads((world.release / "release.json").read_text())["release_id"]
    manifest = (root / MANIFEST_NAME).read_bytes()
    (root / ".partial").mkdir()
    (root / MANIFEST_NAME).rename(root / ".partial" / "withdrawn-manifest.json")  # what publish does first
    again, opener = recording_opener()
    result = send(world, opener)
    assert (SendOutcome.DELIVERED, []) == (result.outcome, again[0].puts)
    assert (
        read_manifest(manifest, world.store.verify_key(), "t").files
        == read_manifest((root / MANIFEST_NAME).read_bytes(), world.store.verify_key(), "t").files
    )
    assert not (root / ".partial").exists()


_hex = st.text("0123456789abcdef", min_size=64, max_size=64)


def draw_previous(data: st.DataObject, release: list[ReleaseFile]) -> DeliveryManifest | None:
    """A previous manifest for the same key listing some of the release files (or none at all)."""
    if not data.draw(st.booleans()):
        return None
    listed = [f for f in release if data.draw(st.booleans())]
    files = tuple(
        DeliveredFile(f.delivered_name, f.plaintext_sha256, cipher, 3, 1, cipher)
        for f in listed
        for cipher in [data.draw(_hex)]
    )
    return DeliveryManifest("rel-1", "0" * 64, "ch-zurich", "SHA256:x", "t-1", "2026-01-01T00:00:00", files)


@given(
    st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), st.tuples(_hex, _hex), max_size=8),
    st.data(),
)
def test_plan_puts_every_release_file_in_exactly_one_bucket(
    files: dict[str, tuple[str, str]], data: st.DataObject
) -> None:
    """Whatever is published or pending, each release file is kept, reused or sent, exactly once."""
    release = [ReleaseFile(name, plain, 1) for name, (plain, _) in files.items()]
    pending = {
        f.delivered_name: DeliveredFile(f.delivered_name, f.plaintext_sha256, cipher, 2, 1, cipher)
        for f, (_, cipher) in zip(release, files.values(), strict=True)
        if data.draw(st.booleans())
    }
    previous = draw_previous(data, release)
    existing = {
        f.name: ObjectInfo(f.bytes, f.checksum if data.draw(st.booleans()) else "altered")
        for f in (previous.files if previous is not None else ())
    }
    plan = plan_delivery(release, previous, "SHA256:x", existing, pending)
    names = (
        [f.name for f in plan.kept] + [f.name for f in plan.reused] + [f.delivered_name for f in plan.to_send]
    )
    assert sorted(f.delivered_name for f in release) == sorted(names)
    kept = {f.name for f in plan.kept}
    assert kept == {n for n, info in existing.items() if info.checksum != "altered"}
    assert sorted(set(pending) - kept) == sorted(f.name for f in plan.reused)
