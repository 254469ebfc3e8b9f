"""Deleting a subject: every vault domain forgets them and their samples, the register keeps the request."""

from __future__ import annotations

import datetime as dt
import io
import json
import stat
from collections.abc import Mapping
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from pyarrow import ipc

from keys import CodeKind, Keystore, KeyStoreError, Passphrase, Vault
from keys.consent_register import (
    ConsentRegister,
    ConsentRequest,
    ReleaseImpact,
    RequestKind,
    erase_subject,
    pending,
)
from keys.sealed import SealedFile
from keys.vault import VAULT_FORMAT, random_code_series, vault_domains

PASS = Passphrase("correct horse battery")
SUBJECTS = ["SUBJ-1", "SUBJ-1", "SUBJ-2", "SUBJ-3"]
SAMPLES = ["SAMP-1a", "SAMP-1b", "SAMP-2", "SAMP-3"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh keystore per test."""
    return Keystore.init(tmp_path / "ks", PASS).home


def _vault(home: Path, domain: str) -> Vault:
    return Vault(home, domain, Keystore(home).vault_wrapper(PASS))


def _code(vault: Vault, kind: CodeKind) -> dict[str, str]:
    """Code the test table (subjects and samples as one manifest's columns); the codes of one kind."""
    frames = vault.assign_many({CodeKind.SUBJECT: pl.Series(SUBJECTS), CodeKind.SAMPLE: pl.Series(SAMPLES)})
    return dict(zip(frames[kind]["value"].to_list(), frames[kind]["code"].to_list(), strict=True))


def _header(path: Path) -> dict[str, object]:
    head: dict[str, object] = json.loads(path.read_bytes().partition(b"\n")[0])
    return head


def test_forget_removes_the_subject_and_owned_samples_in_every_domain(home: Path) -> None:
    """After erase_subject no domain resolves the subject or its two samples; others keep their codes."""
    wrapper = Keystore(home).vault_wrapper(PASS)
    before = {d: _code(_vault(home, d), CodeKind.SAMPLE) for d in ("cgipa", "partner-b")}
    _vault(home, "untouched").pseudonyms(CodeKind.SUBJECT, ["SUBJ-9"])
    assert ("cgipa", "partner-b", "untouched") == vault_domains(home)
    erasure = erase_subject(home, wrapper, "SUBJ-1", dt.date(2026, 3, 1))
    assert (2, 4, False) == (erasure.subject_codes, erasure.sample_codes, erasure.already)
    assert [True, True, False] == [f.removed for f in erasure.forgotten]
    for domain in ("cgipa", "partner-b"):
        vault = _vault(home, domain)
        assert {} == vault.lookup(CodeKind.SUBJECT, ["SUBJ-1"])
        assert {} == vault.lookup(CodeKind.SAMPLE, ["SAMP-1a", "SAMP-1b"])
        assert {"SAMP-2": before[domain]["SAMP-2"]} == vault.lookup(CodeKind.SAMPLE, ["SAMP-2"])
        assert {"subject": 2, "sample": 2} == vault.size()
        with pytest.raises(KeyStoreError, match="1 subject value"):
            vault.pseudonyms(CodeKind.SUBJECT, ["SUBJ-1"], create=False)
        assert {before[domain]["SAMP-1a"], before[domain]["SAMP-1b"]} <= vault.withdrawn()


def test_a_withdrawn_code_is_never_handed_out_again(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A random draw that hits a deleted subject's code is redrawn: the old pseudonym cannot come back."""
    vault = _vault(home, "cgipa")
    old = vault.pseudonyms(CodeKind.SUBJECT, ["SUBJ-1"])["SUBJ-1"]
    vault.forget("SUBJ-1")
    fresh = random_code_series(CodeKind.SUBJECT, 1)
    draws = iter([pl.Series("code", [old]), fresh])
    monkeypatch.setattr("keys.vault.random_code_series", lambda *_: next(draws))
    assert {"SUBJ-NEW": fresh[0]} == vault.pseudonyms(CodeKind.SUBJECT, ["SUBJ-NEW"])
    assert {old} == vault.withdrawn()


def test_forget_reseals_under_a_fresh_data_key(home: Path) -> None:
    """The wrapped data key changes, the file stays 0600 and holds no value or code in clear."""
    vault = _vault(home, "cgipa")
    codes = vault.pseudonyms(CodeKind.SUBJECT, ["Jane-Roe-77", "SUBJ-2"])
    wrapped = _header(vault.path)["wrapped_key"]
    vault.forget("Jane-Roe-77")
    data = vault.path.read_bytes()
    assert wrapped != _header(vault.path)["wrapped_key"]
    assert 0o600 == stat.S_IMODE(vault.path.stat().st_mode)
    assert (False, False) == (b"Jane-Roe-77" in data, codes["Jane-Roe-77"].encode() in data)
    assert {"SUBJ-2": codes["SUBJ-2"]} == _vault(home, "cgipa").lookup(CodeKind.SUBJECT, ["SUBJ-2"])
    assert [] == [p.name for p in vault.directory.iterdir() if p.name.startswith(".")]  # no staging left


def _legacy_vault(home: Path, domain: str) -> None:
    """A vault file as written before owners were kept: three columns, no owner."""
    schema = pa.schema([("kind", pa.string()), ("value", pa.string()), ("code", pa.string())])
    subject = random_code_series(CodeKind.SUBJECT, 1)[0]
    samples = random_code_series(CodeKind.SAMPLE, 2).to_list()
    table = pa.table(
        {"kind": ["subject", "sample", "sample"], "value": ["SUBJ-1", "SAMP-1a", "SAMP-2"],
         "code": [subject, *samples]},
        schema=schema,
    )  # fmt: skip
    sink = io.BytesIO()
    with ipc.new_stream(sink, schema) as writer:
        writer.write_table(table)
    aad = f"genegate-vault|{VAULT_FORMAT}|{domain}".encode()
    header = {"format": VAULT_FORMAT, "domain": domain}
    _seal(home, home / "vault" / f"{domain}.vault", f"vault:{domain}", aad, header, sink.getvalue())


def _seal(
    home: Path, path: Path, purpose: str, aad: bytes, header: Mapping[str, object], payload: bytes
) -> None:
    """Write a sealed file the way genegate's earlier versions did (same envelope, older content)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    sealed = SealedFile(
        path, purpose=purpose, aad=aad, header=header, wrapper=Keystore(home).vault_wrapper(PASS),
        what="sealed file", mismatch="is another's",
    )  # fmt: skip
    key, _ = sealed.load()
    sealed.store(key, payload)


def test_a_vault_without_owners_is_read_and_needs_the_samples_named(home: Path) -> None:
    """An old file opens; its samples have no owner, so forget removes them only when named."""
    _legacy_vault(home, "old")
    vault = _vault(home, "old")
    assert (2, {"subject": 1, "sample": 2}) == (vault.unowned_samples(), vault.size())
    assert (1, 0) == (vault.forget("SUBJ-1").subject_codes, vault.forget("SUBJ-1").sample_codes)
    assert 1 == vault.forget("SUBJ-1", ["SAMP-1a"]).sample_codes
    assert ({}, 1) == (vault.lookup(CodeKind.SAMPLE, ["SAMP-1a"]), vault.unowned_samples())


def test_owners_are_filled_in_for_old_entries_when_seen_with_their_subject(home: Path) -> None:
    """A later paired assign records the owner of an old sample entry; forget then finds it alone."""
    _legacy_vault(home, "old")
    vault = _vault(home, "old")
    vault.assign_many({CodeKind.SUBJECT: pl.Series(["SUBJ-1"]), CodeKind.SAMPLE: pl.Series(["SAMP-1a"])})
    assert 1 == vault.unowned_samples()
    forgotten = vault.forget("SUBJ-1")
    assert (1, 1) == (forgotten.subject_codes, forgotten.sample_codes)
    assert ({}, 1) == (
        vault.lookup(CodeKind.SAMPLE, ["SAMP-1a"]),
        len(vault.lookup(CodeKind.SAMPLE, ["SAMP-2"])),
    )


def test_erase_twice_says_already_and_the_register_excludes_the_subject(home: Path) -> None:
    """The second erase removes nothing and reports the first date; revocations() holds the subject."""
    wrapper = Keystore(home).vault_wrapper(PASS)
    _code(_vault(home, "cgipa"), CodeKind.SUBJECT)
    held = (ReleaseImpact("rel-1", "cgipa", ("ch-zurich",)),)
    first = erase_subject(home, wrapper, " SUBJ-1 ", dt.date(2026, 3, 1), held)
    again = erase_subject(home, wrapper, "SUBJ-1", dt.date(2026, 3, 9))
    assert (False, True) == (first.already, again.already)
    assert (dt.date(2026, 3, 1), held) == (again.request.received_on, again.request.releases)
    register = ConsentRegister(home, wrapper)
    assert {"SUBJ-1": dt.date(2026, 3, 1)} == register.revocations()
    assert dt.date(2026, 3, 31) == register.deletion("SUBJ-1").due_on  # type: ignore[union-attr]


def test_a_version_1_register_is_read_and_migrated_on_write(home: Path) -> None:
    """{"revocations": {id: date}} (version 1) opens; the next write stores version 2 with both kinds."""
    wrapper = Keystore(home).vault_wrapper(PASS)
    register = ConsentRegister(home, wrapper)
    aad, header = b"genegate-consent|1|consent-register", {"format": 1}
    old = json.dumps({"revocations": {"SUBJ-7": "2026-01-02"}}).encode()
    _seal(home, register.path, "consent-register", aad, header, old)
    assert {"SUBJ-7": dt.date(2026, 1, 2)} == register.revocations()
    register.record_deletion("SUBJ-8", dt.date(2026, 2, 1))
    sealed = SealedFile(register.path, purpose="consent-register", aad=aad, header=header, wrapper=wrapper,
                        what="register", mismatch="is another's")  # fmt: skip
    _, plain = sealed.load()
    doc = json.loads(plain or b"{}")
    assert (2, ["SUBJ-7"], ["SUBJ-8"]) == (doc["version"], list(doc["revocations"]), list(doc["deletions"]))
    assert "flagged for destruction" == doc["deletions"]["SUBJ-8"]["sample"]


def test_pending_sorts_by_deadline_and_close_takes_a_subject_off(home: Path) -> None:
    """Open requests by due date with days left (negative: overdue); close records the destruction."""
    register = ConsentRegister(home, Keystore(home).vault_wrapper(PASS))
    register.revoke("SUBJ-A", dt.date(2026, 3, 10))
    register.record_deletion("SUBJ-B", dt.date(2026, 2, 1))
    register.revoke("SUBJ-B", dt.date(2026, 2, 20))
    today = dt.date(2026, 3, 5)
    found = pending(register.requests())
    assert [("SUBJ-B", RequestKind.DELETION, -2), ("SUBJ-B", RequestKind.REVOCATION, 17),
            ("SUBJ-A", RequestKind.REVOCATION, 35)] == [
        (r.subject_id, r.kind, r.days_left(today)) for r in found
    ]  # fmt: skip
    assert (RequestKind.REVOCATION, RequestKind.DELETION) == register.close("SUBJ-B", dt.date(2026, 3, 5))
    assert ["SUBJ-A"] == [r.subject_id for r in pending(register.requests())]
    with pytest.raises(KeyStoreError, match="no open revocation or deletion request"):
        register.close("SUBJ-B", dt.date(2026, 3, 6))
    with pytest.raises(KeyStoreError, match="before the request was received"):
        register.close("SUBJ-A", dt.date(2026, 3, 1))


def test_a_deletion_keeps_the_earliest_date_and_every_release(home: Path) -> None:
    """Recording again merges: the earlier date wins, the releases of both are kept, sorted."""
    register = ConsentRegister(home, Keystore(home).vault_wrapper(PASS))
    register.record_deletion("SUBJ-1", dt.date(2026, 3, 5), [ReleaseImpact("rel-2", "cgipa", ())])
    merged = register.record_deletion(
        "SUBJ-1", dt.date(2026, 3, 1), [ReleaseImpact("rel-1", "cgipa", ("x",))]
    )
    assert ConsentRequest(
        "SUBJ-1", RequestKind.DELETION, dt.date(2026, 3, 1), None,
        (ReleaseImpact("rel-1", "cgipa", ("x",)), ReleaseImpact("rel-2", "cgipa", ())),
    ) == merged  # fmt: skip
    assert b"SUBJ-1" not in register.path.read_bytes()
