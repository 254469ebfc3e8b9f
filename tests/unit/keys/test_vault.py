"""The pseudonym vault: random codes, stable per domain, unrelated across domains, safe under concurrency."""

from __future__ import annotations

import json
import multiprocessing
import re
import stat
from pathlib import Path

import polars as pl
import pytest

from keys import CodeKind, KeyFormatError, Keystore, KeyStoreError, Passphrase, Vault, WrongPassphrase
from keys.vault import random_codes

PASS = Passphrase("correct horse battery")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keystore shared by the module's tests (each test uses its own domain)."""
    return Keystore.init(tmp_path_factory.mktemp("vault") / "ks", PASS).home


def _vault(home: Path, domain: str) -> Vault:
    return Vault(home, domain, Keystore(home).vault_wrapper(PASS))


def test_codes_are_random_and_well_formed() -> None:
    """Codes carry a kind prefix and 12 Crockford base32 characters, and 10,000 of them are distinct."""
    codes = random_codes(CodeKind.SAMPLE, 10_000)
    assert 10_000 == len(set(codes))
    assert [] == [c for c in codes if not re.fullmatch(r"GGS[0-9A-HJKMNP-TV-Z]{12}", c)]


def test_codes_are_stable_within_a_domain(home: Path) -> None:
    """A value keeps its code across runs (new Vault objects, new processes' view of the file)."""
    first = _vault(home, "stable").pseudonyms(CodeKind.SUBJECT, ["SUBJ-1", "SUBJ-2"])
    again = _vault(home, "stable").pseudonyms(CodeKind.SUBJECT, ["SUBJ-2", "SUBJ-3", "SUBJ-1"])
    assert (first["SUBJ-1"], first["SUBJ-2"]) == (again["SUBJ-1"], again["SUBJ-2"])
    assert {"subject": 3, "sample": 0} == _vault(home, "stable").size()


def test_codes_are_not_derived_from_values(home: Path) -> None:
    """The same value in two domains, or as two kinds, gets unrelated codes (no hash of the identifier)."""
    a = _vault(home, "partner-a").pseudonyms(CodeKind.SUBJECT, ["SUBJ-9"])["SUBJ-9"]
    b = _vault(home, "partner-b").pseudonyms(CodeKind.SUBJECT, ["SUBJ-9"])["SUBJ-9"]
    s = _vault(home, "partner-a").pseudonyms(CodeKind.SAMPLE, ["SUBJ-9"])["SUBJ-9"]
    assert 3 == len({a[3:], b[3:], s[3:]})


def test_assign_without_create_refuses_unknown_values(home: Path) -> None:
    """A lookup-only call names how many values lack a code, never the values."""
    with pytest.raises(KeyStoreError) as info:
        _vault(home, "lookup").assign(CodeKind.SAMPLE, pl.Series(["secret-sample-1"]), create=False)
    assert "1 sample value(s) have no code" in str(info.value)
    assert "secret-sample-1" not in str(info.value)


def test_file_is_private_and_holds_no_value_in_clear(home: Path) -> None:
    """The vault file is 0600 from creation and neither values nor codes appear in its bytes."""
    codes = _vault(home, "private").pseudonyms(CodeKind.SUBJECT, ["Jane-Roe-MRN-77"])
    path = home / "vault" / "private.vault"
    assert 0o600 == stat.S_IMODE(path.stat().st_mode)
    data = path.read_bytes()
    assert (False, False) == (b"Jane-Roe-MRN-77" in data, codes["Jane-Roe-MRN-77"].encode() in data)


def test_wrong_passphrase_and_tampering_are_refused(home: Path) -> None:
    """A wrong passphrase cannot open the vault; a flipped byte or a file moved to another domain fails."""
    _vault(home, "tamper").pseudonyms(CodeKind.SUBJECT, ["x-1"])
    with pytest.raises(WrongPassphrase):
        Vault(home, "tamper", Keystore(home).vault_wrapper(Passphrase("wrong passphrase!")))
    path = home / "vault" / "tamper.vault"
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(KeyStoreError, match="does not authenticate"):
        _vault(home, "tamper").pseudonyms(CodeKind.SUBJECT, ["x-1"])
    (home / "vault" / "moved.vault").write_bytes((home / "vault" / "stable.vault").read_bytes())
    with pytest.raises(KeyStoreError, match="another vault domain"):
        _vault(home, "moved").pseudonyms(CodeKind.SUBJECT, ["x"])
    path.write_text("not a vault")
    with pytest.raises(KeyFormatError):
        _vault(home, "tamper").size()


def _assign_in_process(args: tuple[str, list[str]]) -> dict[str, str]:
    home, values = args
    return _vault(Path(home), "concurrent").pseudonyms(CodeKind.SUBJECT, values)


def test_concurrent_runs_agree(home: Path) -> None:
    """Four processes assigning overlapping values at once hand out exactly one code per value."""
    batches = [[f"S-{i}" for i in range(start, start + 300)] for start in (0, 100, 200, 0)]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.map(_assign_in_process, [(str(home), b) for b in batches])
    merged: dict[str, set[str]] = {}
    for result in results:
        for value, code in result.items():
            merged.setdefault(value, set()).add(code)
    assert [] == [v for v, c in merged.items() if len(c) != 1]
    assert {"subject": 500, "sample": 0} == _vault(home, "concurrent").size()
    header = json.loads((home / "vault" / "concurrent.vault").read_bytes().partition(b"\n")[0])
    assert "concurrent" == header["domain"]
