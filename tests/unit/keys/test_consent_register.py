"""The consent register: revocations encrypted at rest, earliest date kept, safe under concurrent writers."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import stat
from pathlib import Path

import pytest

from keys import ConsentRegister, Keystore, KeyStoreError, Passphrase

PASS = Passphrase("correct horse battery")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh keystore."""
    return Keystore.init(tmp_path / "ks", PASS).home


def _register(home: Path) -> ConsentRegister:
    return ConsentRegister(home, Keystore(home).vault_wrapper(PASS))


def test_revocations_round_trip_and_keep_the_earliest_date(home: Path) -> None:
    """A revocation is stored with its date; a later date never moves it, an earlier one does."""
    reg = _register(home)
    assert {} == reg.revocations()
    assert dt.date(2026, 3, 1) == reg.revoke("SUBJ-0042", dt.date(2026, 3, 1))
    assert dt.date(2026, 3, 1) == reg.revoke("SUBJ-0042", dt.date(2026, 4, 1))
    assert dt.date(2026, 2, 1) == _register(home).revoke(" SUBJ-0042 ", dt.date(2026, 2, 1))
    reg.revoke("SUBJ-0007", dt.date(2026, 3, 5))
    assert {"SUBJ-0042": dt.date(2026, 2, 1), "SUBJ-0007": dt.date(2026, 3, 5)} == _register(
        home
    ).revocations()
    assert dt.date(2026, 3, 5) == reg.revoked_on("SUBJ-0007")
    assert reg.revoked_on("SUBJ-9999") is None


def test_register_is_encrypted_and_private(home: Path) -> None:
    """The file is 0600 and holds no subject id in clear."""
    reg = _register(home)
    reg.revoke("SUBJ-PLAINTEXT-CHECK", dt.date(2026, 3, 1))
    assert 0o600 == stat.S_IMODE(reg.path.stat().st_mode)
    assert b"SUBJ-PLAINTEXT-CHECK" not in reg.path.read_bytes()


def test_tampered_register_is_refused(home: Path) -> None:
    """A flipped byte fails authentication; the message names the file, not a subject."""
    reg = _register(home)
    reg.revoke("SUBJ-1", dt.date(2026, 3, 1))
    data = bytearray(reg.path.read_bytes())
    data[-2] ^= 1
    reg.path.write_bytes(bytes(data))
    with pytest.raises(KeyStoreError) as info:
        reg.revocations()
    assert "does not authenticate" in str(info.value)
    assert "SUBJ-1" not in str(info.value)


@pytest.mark.parametrize("bad", ["", "   ", "a\nb", "x" * 300])
def test_bad_subject_ids_are_refused_without_echo(home: Path, bad: str) -> None:
    """Empty, multi-line or overlong ids are refused; nothing is written."""
    reg = _register(home)
    with pytest.raises(KeyStoreError, match="a subject id must be"):
        reg.revoke(bad, dt.date(2026, 3, 1))
    assert not reg.exists()


def _revoke_many(home: str, start: int) -> None:
    reg = ConsentRegister(Path(home), Keystore(Path(home)).vault_wrapper(PASS))
    for i in range(start, start + 5):
        reg.revoke(f"SUBJ-{i}", dt.date(2026, 3, 1))


def test_concurrent_writers_lose_nothing(home: Path) -> None:
    """Three processes revoking at once: every revocation lands."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_revoke_many, args=(str(home), s)) for s in (0, 100, 200)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [0, 0, 0] == [p.exitcode for p in procs]
    assert 15 == len(_register(home).revocations())
