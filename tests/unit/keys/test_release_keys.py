"""The release-key table: one key per release, sealed at rest, re-sealed under a fresh data key, destroyable."""

from __future__ import annotations

import base64
import datetime as dt
import json
import multiprocessing
import shutil
import stat
from pathlib import Path

import pytest

from keys import KeyFormatError, Keystore, KeyStoreError, Passphrase
from keys.release_keys import KeyState, ReleaseKeys

PASS = Passphrase("correct horse battery")
SHA_A, SHA_B = "a" * 64, "b" * 64
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
LATER = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keystore made once per module (scrypt is slow), copied by each test."""
    return Keystore.init(tmp_path_factory.mktemp("release-keys") / "ks", PASS).home


@pytest.fixture
def home(template: Path, tmp_path: Path) -> Path:
    """A private copy of the keystore."""
    shutil.copytree(template, tmp_path / "ks")
    return tmp_path / "ks"


def _table(home: Path) -> ReleaseKeys:
    return ReleaseKeys(home, Keystore(home).vault_wrapper(PASS))


def _wrapped_key(path: Path) -> str:
    return str(json.loads(path.read_bytes().partition(b"\n")[0])["wrapped_key"]["ciphertext"])


def test_each_release_gets_its_own_key_and_every_copy_reuses_it(home: Path) -> None:
    """issue makes a key on first use, returns the same one for the same content, another for another release."""
    table = _table(home)
    first, public = table.issue("rel-a", SHA_A, NOW)
    again, public_again = _table(home).issue("rel-a", SHA_A, LATER)
    _, other = table.issue("rel-b", SHA_B, NOW)
    assert (first, public) == (again, public_again)
    assert public.fingerprint == first.fingerprint
    assert public == _table(home).secret_key("rel-a").public_key()
    assert public != other
    assert (KeyState.LIVE, "2026-11-22T12:00:00+00:00") == (first.state, first.created_at)
    assert ["rel-a", "rel-b"] == list(table.records())


def test_a_release_id_names_one_content(home: Path) -> None:
    """A second issue for the same id with another release_sha256 is refused, naming the fix."""
    table = _table(home)
    table.issue("rel-a", SHA_A, NOW)
    with pytest.raises(KeyStoreError, match="already has a key at rest for other content"):
        table.issue("rel-a", SHA_B, NOW)


def test_note_copy_counts_copies(home: Path) -> None:
    """Each stored copy is counted with its file count and plaintext bytes."""
    table = _table(home)
    table.issue("rel-a", SHA_A, NOW)
    table.note_copy("rel-a", 3, 100)
    record = table.note_copy("rel-a", 3, 100)
    assert (2, 3, 100) == (record.copies, record.files, record.bytes)
    assert record == _table(home).record("rel-a")


def test_destroy_removes_the_key_and_a_second_destroy_reports_the_first(home: Path) -> None:
    """After destroy no key is given out, the id is never reused, and destroy again says when it happened."""
    table = _table(home)
    _, public = table.issue("rel-a", SHA_A, NOW)
    table.issue("rel-b", SHA_B, NOW)
    done = table.destroy("rel-a", LATER)
    assert (False, KeyState.DESTROYED, "2026-12-01T09:30:00+00:00") == (
        done.already,
        done.record.state,
        done.record.destroyed_at,
    )
    _, payload = _table(home)._sealed.load()  # the table's plaintext: the key is not in it any more
    assert payload is not None
    assert ["rel-b"] == [r for r, e in json.loads(payload)["releases"].items() if "secret_key" in e]
    again = _table(home).destroy("rel-a", dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
    assert (True, done.record) == (again.already, again.record)
    with pytest.raises(KeyStoreError) as info:
        _table(home).secret_key("rel-a")
    assert "rel-a: its key was destroyed on 2026-12-01" in str(info.value)
    with pytest.raises(KeyStoreError, match="destroyed on 2026-12-01"):
        table.issue("rel-a", SHA_A, LATER)
    assert public.fingerprint == table.record("rel-a").fingerprint
    assert KeyState.LIVE == table.record("rel-b").state  # the other release is untouched
    _table(home).secret_key("rel-b")


def test_destroying_an_unknown_release_is_refused(home: Path) -> None:
    """Nothing to destroy is not the same as destroyed: an unknown id raises and changes nothing."""
    with pytest.raises(KeyStoreError, match="has no key at rest in this keystore; nothing was destroyed"):
        _table(home).destroy("rel-never", NOW)
    assert not _table(home).exists()


def test_the_table_is_sealed_private_and_resealed_under_a_fresh_data_key(home: Path) -> None:
    """Mode 0600, no key byte in clear, a new wrapped data key on every write, no sibling left behind."""
    table = _table(home)
    table.issue("rel-a", SHA_A, NOW)
    secret = table.secret_key("rel-a").raw()
    data = table.path.read_bytes()
    assert 0o600 == stat.S_IMODE(table.path.stat().st_mode)
    assert [] == [form for form in (secret, secret.hex().encode(), base64.b64encode(secret)) if form in data]
    before = _wrapped_key(table.path)
    table.destroy("rel-a", LATER)
    assert before != _wrapped_key(table.path)
    assert ["keys.bin", "keys.lock"] == sorted(p.name for p in table.directory.iterdir())


def test_a_backup_taken_before_the_destroy_still_holds_the_key(home: Path, tmp_path: Path) -> None:
    """The stated limit, shown: a copy of the table from before the destroy, with the lab key, opens the key."""
    table = _table(home)
    _, public = table.issue("rel-a", SHA_A, NOW)
    backup = tmp_path / "keys.bin.backup"
    shutil.copy2(table.path, backup)
    table.destroy("rel-a", LATER)
    shutil.copy2(backup, table.path)  # restoring the old backup brings the sealed key back
    assert public == _table(home).secret_key("rel-a").public_key()


def test_a_tampered_table_is_refused(home: Path) -> None:
    """A flipped byte fails authentication; the message names the file, not a key."""
    table = _table(home)
    table.issue("rel-a", SHA_A, NOW)
    data = bytearray(table.path.read_bytes())
    data[-3] ^= 1
    table.path.write_bytes(bytes(data))
    with pytest.raises(KeyStoreError, match="does not authenticate"):
        table.records()


def test_a_file_of_another_kind_is_refused(home: Path) -> None:
    """A file that is not a sealed table is refused as such."""
    table = _table(home)
    table.directory.mkdir(mode=0o700)
    table.path.write_bytes(b"not a table\n")
    with pytest.raises(KeyFormatError, match="not a genegate release key table"):
        table.records()


@pytest.mark.parametrize("bad", ["", "../escape", ".hidden", "a/b", "x" * 129])
def test_release_ids_that_cannot_name_a_directory_are_refused(home: Path, bad: str) -> None:
    """A release id is also a directory name: path-like or overlong ids are refused."""
    with pytest.raises(KeyStoreError, match="a release id is 1-128 letters"):
        _table(home).issue(bad, SHA_A, NOW)


def _issue_many(home: str, prefix: str) -> None:
    table = _table(Path(home))
    for n in range(4):
        table.issue(f"{prefix}-{n}", SHA_A, NOW)


def test_concurrent_writers_all_land(home: Path) -> None:
    """Two processes issuing keys at once: every key is in the table afterwards."""
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_issue_many, args=(str(home), p)) for p in ("p", "q")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [0, 0] == [w.exitcode for w in workers]
    assert sorted(f"{p}-{n}" for p in ("p", "q") for n in range(4)) == list(_table(home).records())
