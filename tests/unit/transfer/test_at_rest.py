"""Releases at rest: stored for a key of their own, opened and checked, crypto-shredded by destroying the key."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from keys import Keystore, KeyStoreError, Passphrase, SigningKey
from keys.release_keys import ReleaseKeys
from tests.support.plain_release import write_release
from transfer.at_rest import (
    DESTROYED_EVENT,
    SHREDDING_LIMIT,
    destroy_release,
    locate_stored,
    open_release,
    store_release,
)
from transfer.envelope import decrypt_file, encrypt_file, header_recipients_count
from transfer.errors import EnvelopeError, IntegrityError, NoKeyForFile, ReleaseUnreadable
from transfer.log import TransferLog

PASS = Passphrase("correct horse battery")
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
CONTENTS = {
    "samples.parquet": os.urandom(3 * 65536 + 17),
    "genotypes/cohort.vcf.gz": b"##fileformat=VCFv4.2\n",
    "genotypes/empty.txt": b"",
}


class Lab:
    """A keystore copy, its release-key table, signer and log, and a release R-1 to store."""

    def __init__(self, home: Path, root: Path) -> None:
        self.store = Keystore(home)
        self.keys = ReleaseKeys(home, self.store.vault_wrapper(PASS))
        self.signer: SigningKey = self.store.signing_key(PASS)
        self.log = TransferLog(home / "transfer-log.jsonl")
        self.root = root
        self.release = write_release(root / "releases", "R-1", CONTENTS)

    def store_to(self, name: str, release: Path | None = None) -> Path:
        stored = store_release(
            release or self.release,
            self.root / name,
            self.keys,
            log=self.log,
            signer=self.signer,
            now=lambda: NOW,
        )
        return stored.directory

    def open_from(self, source: Path, out: str, release_id: str = "R-1") -> Path:
        opened = open_release(
            release_id, source, self.root / out, self.keys, log=self.log, signer=self.signer
        )
        return opened.directory

    def destroy(self, release_id: str = "R-1") -> bool:
        return destroy_release(
            release_id, self.keys, log=self.log, signer=self.signer, now=lambda: NOW
        ).already

    def events(self) -> list[str]:
        return [str(e["event"]) for e in self.log.entries()]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keystore made once per module (scrypt is slow), copied by each test."""
    return Keystore.init(tmp_path_factory.mktemp("at-rest") / "ks", PASS).home


@pytest.fixture
def lab(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    """A private keystore and release; the temporary directory is the test's own, to see what is left there."""
    shutil.copytree(template, tmp_path / "ks")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return Lab(tmp_path / "ks", tmp_path)


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_store_then_open_restores_every_file_and_leaves_no_plaintext(lab: Lab) -> None:
    """The stored copy holds only .c4gh files; open restores each byte for byte (0600); no temporary is left."""
    stored = lab.store_to("stored")
    names = ["genotypes/cohort.vcf.gz", "genotypes/empty.txt", "release.json", "samples.parquet"]
    assert [f"{n}.c4gh" for n in names] == _tree(stored)
    assert ["R-1"] == os.listdir(lab.root / "stored")  # no hidden partial directory
    assert [] == os.listdir(lab.root / "tmp")
    restored = lab.open_from(lab.root / "stored", "restored")
    assert names == _tree(restored)
    assert [(lab.release / n).read_bytes() for n in names] == [(restored / n).read_bytes() for n in names]
    assert {0o600} == {stat.S_IMODE((restored / n).stat().st_mode) for n in names}
    assert ["R-1"] == os.listdir(lab.root / "restored")
    assert ["release.stored", "release.opened"] == lab.events()
    assert lab.log.verify(lab.store.verify_key()).ok


def test_the_stored_files_open_with_the_release_key_only(lab: Lab) -> None:
    """Each header holds one packet, for the release key: the lab's own keys do not open it."""
    stored = lab.store_to("stored")
    secret = lab.keys.secret_key("R-1")
    for name in _tree(stored):
        assert 1 == header_recipients_count(stored / name)
        with pytest.raises(NoKeyForFile):
            decrypt_file(stored / name, lab.root / "out", lab.store.lab_secret_keys(PASS))
        decrypt_file(stored / name, lab.root / "out", [secret])
        assert (lab.release / name.removesuffix(".c4gh")).read_bytes() == (lab.root / "out").read_bytes()


def test_open_finds_the_copy_under_the_root_or_given_directly(lab: Lab) -> None:
    """--from may be the root store wrote into or the release's own stored directory."""
    stored = lab.store_to("stored")
    assert stored == locate_stored(lab.root / "stored", "R-1") == locate_stored(stored, "R-1")
    with pytest.raises(EnvelopeError, match="no stored copy of release R-1 here"):
        locate_stored(lab.root, "R-1")


def test_destroy_shreds_every_copy_and_is_logged_once(lab: Lab) -> None:
    """Two copies share the key; after destroy neither opens, by genegate or with any key it still holds."""
    first, second = lab.store_to("disk-a"), lab.store_to("disk-b")
    backup = shutil.copytree(first, lab.root / "backup" / "R-1")
    other = write_release(lab.root / "releases", "R-2", {"x.bin": b"other release"})
    lab.store_to("disk-a", other)
    assert 2 == lab.keys.record("R-1").copies
    assert lab.destroy() is False
    for source in (first, second, backup):
        with pytest.raises(KeyStoreError, match="R-1: its key was destroyed on 2026-11-22"):
            lab.open_from(source, "restored")
        held = [*lab.store.lab_secret_keys(PASS), lab.keys.secret_key("R-2")]
        for name in _tree(source):
            with pytest.raises(NoKeyForFile):
                decrypt_file(source / name, lab.root / "attempt", held)
    assert not (lab.root / "restored").exists()
    assert lab.destroy() is True
    entries = [e for e in lab.log.entries() if e["event"] == DESTROYED_EVENT]
    assert 1 == len(entries)
    plaintext = sum(map(len, CONTENTS.values())) + (lab.release / "release.json").stat().st_size
    assert {"stored_copies": 2, "files": 4, "bytes": plaintext} == entries[0]["counts"]
    assert SHREDDING_LIMIT in entries[0]["message"]
    assert lab.keys.record("R-1").fingerprint == entries[0]["key_fingerprints"]["release_key"]
    assert lab.log.verify(lab.store.verify_key()).ok


def test_a_destroy_whose_log_entry_was_lost_is_logged_by_the_next_run(lab: Lab) -> None:
    """A crash between destroying the key and logging it: the rerun logs it, and only once."""
    lab.store_to("stored")
    lab.keys.destroy("R-1", NOW)  # the key is gone, the log does not say so yet
    assert lab.destroy() is True
    assert lab.destroy() is True
    assert ["release.stored", "release.destroyed"] == lab.events()


def test_the_log_holds_no_key_material(lab: Lab) -> None:
    """Neither the release key's secret bytes nor their encodings reach the log."""
    lab.store_to("stored")
    secret = lab.keys.secret_key("R-1").raw()
    lab.open_from(lab.root / "stored", "restored")
    lab.destroy()
    text = lab.log.path.read_bytes()
    assert [] == [form for form in (secret, secret.hex().encode(), base64.b64encode(secret)) if form in text]


def test_store_refuses_a_release_changed_after_deid_and_leaves_nothing(lab: Lab) -> None:
    """A file whose SHA-256 differs from release.json stops the store; no partial copy remains."""
    (lab.release / "samples.parquet").write_bytes(b"changed")
    with pytest.raises(ReleaseUnreadable, match=r"its SHA-256 differs from release\.json"):
        lab.store_to("stored")
    assert [] == os.listdir(lab.root / "stored")
    assert [] == lab.events()


def test_store_never_replaces_a_stored_copy(lab: Lab) -> None:
    """Storing into a root that already holds the release is refused."""
    lab.store_to("stored")
    with pytest.raises(EnvelopeError, match="already exists and is never replaced"):
        lab.store_to("stored")


def _flip_payload_byte(stored: Path, lab: Lab) -> None:
    path = stored / "samples.parquet.c4gh"
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    path.write_bytes(bytes(data))


def _drop_file(stored: Path, lab: Lab) -> None:
    (stored / "genotypes" / "empty.txt.c4gh").unlink()


def _add_unlisted(stored: Path, lab: Lab) -> None:
    extra = lab.root / "extra.bin"
    extra.write_bytes(b"not in release.json")
    encrypt_file(extra, stored / "extra.bin.c4gh", [lab.keys.secret_key("R-1").public_key()])


def _add_plaintext(stored: Path, lab: Lab) -> None:
    (stored / "notes.txt").write_bytes(b"plaintext does not belong here")


def _swap_release_json(stored: Path, lab: Lab) -> None:
    other = write_release(lab.root / "releases", "R-9", {"x.bin": b"x"})
    store_release(other, lab.root / "others", lab.keys, log=lab.log, signer=lab.signer)
    shutil.copy2(lab.root / "others" / "R-9" / "release.json.c4gh", stored / "release.json.c4gh")


def _forge_release_json(stored: Path, lab: Lab) -> None:
    plain = lab.root / "release.json"
    decrypt_file(stored / "release.json.c4gh", plain, [lab.keys.secret_key("R-1")])
    doc = json.loads(plain.read_text())
    doc["release_sha256"] = "0" * 64
    plain.write_text(json.dumps(doc))
    encrypt_file(plain, stored / "release.json.c4gh", [lab.keys.secret_key("R-1").public_key()])


@pytest.mark.parametrize(
    ("alter", "error", "message"),
    [
        (_flip_payload_byte, IntegrityError, "failed authentication"),
        (_drop_file, IntegrityError, "the stored copy is incomplete or altered"),
        (_add_unlisted, IntegrityError, "release.json does not list this file"),
        (_add_plaintext, IntegrityError, "a stored copy holds only .c4gh files"),
        (_swap_release_json, NoKeyForFile, "none of the keys tried"),
        (_forge_release_json, IntegrityError, "is not release R-1 with the content its key was made for"),
    ],
    ids=["flipped-byte", "missing-file", "unlisted-file", "plaintext-file", "other-key", "other-content"],
)
def test_open_refuses_an_altered_copy_and_leaves_no_plaintext(
    lab: Lab, alter: Callable[[Path, Lab], None], error: type[Exception], message: str
) -> None:
    """Every kind of alteration is refused with a line naming the file; nothing is left in --out."""
    stored = lab.store_to("stored")
    alter(stored, lab)
    with pytest.raises(error, match=message):
        lab.open_from(lab.root / "stored", "restored")
    out = lab.root / "restored"
    assert [] == (os.listdir(out) if out.exists() else [])
    assert "release.opened" not in lab.events()


def test_open_of_an_unknown_release_is_refused(lab: Lab) -> None:
    """A release never stored with this keystore has no key: the error says so and how to check."""
    with pytest.raises(KeyStoreError, match="release R-7 has no key at rest in this keystore"):
        lab.open_from(lab.root / "stored", "restored", release_id="R-7")
