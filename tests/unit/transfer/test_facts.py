"""Release facts from disk: release.json with its lab-side ledger, vault lookups, the transfer log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from keys import CodeKind, Keystore, KeyStoreError, Passphrase, Vault
from transfer import (
    AssessmentStatus,
    Delivery,
    LedgerUnreadable,
    ReleaseClass,
    ReleaseUnreadable,
    TransferLogUnreadable,
    list_ledgers,
    load_release_facts,
    read_deliveries,
    subject_codes,
    subject_impact,
)

PASS = Passphrase("correct horse battery")
SHA = "0f" * 32
CODE = "GGP0123456789AB"


def release_doc(**over: Any) -> dict[str, Any]:
    """A release.json as the lead's deid writes it."""
    doc = {
        "release_id": "rel-2026-01",
        "class": "pseudonymised",
        "assessment": {"status": "passed"},
        "data_use": ["DUO:0000042"],
        "files": [{"name": "samples.parquet", "sha256": SHA, "bytes": 10}],
        "release_sha256": SHA,
        "summary_only": False,
    }
    return doc | over


def ledger_doc(**over: Any) -> dict[str, Any]:
    """A ledger with one subject."""
    doc = {
        "format": 1,
        "release_id": "rel-2026-01",
        "vault_domain": "cgipa",
        "release_sha256": SHA,
        "genomic": True,
        "subjects": [
            {"subject": CODE, "residence_region": "eu-de", "consent_transfer": ["ch-zurich"],
             "minor_at_collection": False, "guardian_consent": None, "received_opt_out": False},
        ],
    }  # fmt: skip
    return doc | over


def write(tmp_path: Path, release: dict[str, Any], ledger: dict[str, Any] | None) -> tuple[Path, Path]:
    """releases/<id>/release.json and <home>/ledger/<id>.json."""
    rel = tmp_path / "releases" / "rel-2026-01"
    rel.mkdir(parents=True)
    (rel / "release.json").write_text(json.dumps(release))
    home = tmp_path / "ks"
    (home / "ledger").mkdir(parents=True)
    if ledger is not None:
        (home / "ledger" / "rel-2026-01.json").write_text(json.dumps(ledger))
    return rel, home


def test_release_and_ledger_load_into_one_value(tmp_path: Path) -> None:
    """The facts combine both files; regions are upper-cased; consent lists kept."""
    facts = load_release_facts(*write(tmp_path, release_doc(), ledger_doc()))
    assert (ReleaseClass.PSEUDONYMISED, AssessmentStatus.PASSED, ("DUO:0000042",)) == (
        facts.release_class,
        facts.assessment,
        facts.data_use,
    )
    assert ("cgipa", True) == (facts.vault_domain, facts.genomic)
    assert [(CODE, "EU-DE", ("ch-zurich",))] == [
        (s.code, s.residence_region, s.consent_transfer) for s in facts.subjects
    ]


@pytest.mark.parametrize(
    ("release", "ledger", "error", "message"),
    [
        (release_doc(), None, LedgerUnreadable, "no ledger for this release"),
        (release_doc(release_sha256="1f" * 32), ledger_doc(), LedgerUnreadable, "does not match"),
        (release_doc(**{"class": "anonymous"}), ledger_doc(), ReleaseUnreadable, '"class"'),
        (release_doc(data_use="GRU"), ledger_doc(), ReleaseUnreadable, '"data_use"'),
        (release_doc(for_recipient=["ch"]), ledger_doc(), ReleaseUnreadable, '"for_recipient"'),
        (release_doc(release_id="../x"), ledger_doc(), ReleaseUnreadable, '"release_id"'),
        (release_doc(), ledger_doc(format=2), LedgerUnreadable, "not a genegate ledger"),
        (release_doc(), ledger_doc(subjects=[{"subject": "GGS0123456789AB"}]), LedgerUnreadable,
         "subjects[1].subject is not a subject vault code"),
        (release_doc(), ledger_doc(subjects=[ledger_doc()["subjects"][0] | {"minor_at_collection": "no"}]),
         LedgerUnreadable, "subjects[1]: minor_at_collection"),
    ],
)  # fmt: skip
def test_bad_release_facts_are_named(
    tmp_path: Path,
    release: dict[str, Any],
    ledger: dict[str, Any] | None,
    error: type[Exception],
    message: str,
) -> None:
    """Missing, mismatched or malformed facts: the error names the file and the field, never a code."""
    with pytest.raises(error) as info:
        load_release_facts(*write(tmp_path, release, ledger))
    assert message in str(info.value)
    assert "GGS0123456789AB" not in str(info.value)


def test_missing_release_json(tmp_path: Path) -> None:
    """A directory without release.json is refused, naming the file."""
    with pytest.raises(ReleaseUnreadable) as info:
        load_release_facts(tmp_path, tmp_path)
    assert str(tmp_path / "release.json") in str(info.value)


def test_subject_codes_never_create_codes(tmp_path: Path) -> None:
    """Known ids map to their codes, unknown ids are left out, and no vault file or code is created."""
    store = Keystore.init(tmp_path / "ks", PASS)
    wrapper = store.vault_wrapper(PASS)
    vault = Vault(store.home, "cgipa", wrapper)
    codes = vault.pseudonyms(CodeKind.SUBJECT, ["SUBJ-1", "SUBJ-2"])
    assert {"SUBJ-2": codes["SUBJ-2"]} == subject_codes(store.home, "cgipa", wrapper, ["SUBJ-2", "SUBJ-404"])
    assert {"subject": 2, "sample": 0} == vault.size()
    assert {} == subject_codes(store.home, "other-domain", wrapper, ["SUBJ-1"])
    assert not (store.home / "vault" / "other-domain.vault").exists()


def test_subject_codes_fail_closed_on_a_tampered_vault(tmp_path: Path) -> None:
    """A vault that does not authenticate raises instead of reporting "no revoked subject here"."""
    store = Keystore.init(tmp_path / "ks", PASS)
    wrapper = store.vault_wrapper(PASS)
    Vault(store.home, "cgipa", wrapper).pseudonyms(CodeKind.SUBJECT, ["SUBJ-1"])
    path = store.home / "vault" / "cgipa.vault"
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(KeyStoreError, match="does not authenticate"):
        subject_codes(store.home, "cgipa", wrapper, ["SUBJ-1"])


def test_transfer_log_deliveries(tmp_path: Path) -> None:
    """No log: None. Delivered entries (both event names) are read; other events ignored; a bad line is named."""
    log = tmp_path / "transfer-log.jsonl"
    assert read_deliveries(log) is None
    entries = [
        {"event": "transfer.delivered", "release_id": "r1", "recipient_id": "a", "timestamp": "2026-01-01T00:00:00Z"},
        {"event": "delivered", "release_id": "r1", "recipient_id": "b"},
        {"event": "transfer.denied", "release_id": "r1", "recipient_id": "c"},
    ]  # fmt: skip
    log.write_text("".join(json.dumps(e) + "\n" for e in entries) + "\n")
    assert (Delivery("r1", "a", "2026-01-01T00:00:00Z"), Delivery("r1", "b", None)) == read_deliveries(log)
    log.write_text(json.dumps(entries[0]) + "\n{torn")
    with pytest.raises(TransferLogUnreadable, match="line 2 is not a JSON object"):
        read_deliveries(log)


def test_subject_impact_matches_codes_per_domain(tmp_path: Path) -> None:
    """Only ledgers of a domain where the subject has a code and holding that code are listed, with recipients."""
    _, home = write(tmp_path, release_doc(), ledger_doc())
    other = ledger_doc(release_id="rel-2026-02", vault_domain="partner-b")
    (home / "ledger" / "rel-2026-02.json").write_text(json.dumps(other))
    ledgers = list_ledgers(home)
    assert ["rel-2026-01", "rel-2026-02"] == [led.release_id for led in ledgers]
    found = subject_impact(ledgers, {"cgipa": CODE, "partner-b": None}, [Delivery("rel-2026-01", "x", None)])
    assert [("rel-2026-01", ("x",))] == [(f.release_id, f.recipients) for f in found]
