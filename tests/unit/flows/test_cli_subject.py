"""`genegate subject delete | pending | close` end to end: synth -> deid -> transfer -> delete -> deid again."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from deid import load_policy
from flows.cli import run
from keys import CodeKind, Keystore, Passphrase, Vault
from tests.support.releases import assessed_summary_release, register_partner
from transfer import TransferLog
from transfer.facts import TRANSFER_LOG, read_ledger, revoked_codes

PASS = Passphrase("correct horse battery")
TODAY = dt.datetime.now(dt.UTC).date()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keystore with an assessed summary release of a synthetic cohort (built once per module)."""
    root = tmp_path_factory.mktemp("subject")
    assessed_summary_release(root, PASS)
    return root


@pytest.fixture
def lab(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy: keystore ks/, release/, cohort/; the release delivered to ch-zurich's outbox."""
    for name in ("ks", "cohort"):
        shutil.copytree(template / name, tmp_path / name)
    shutil.copytree(template / "releases" / "the-release", tmp_path / "release")
    monkeypatch.setenv("GENEGATE_HOME", str(tmp_path / "ks"))
    monkeypatch.setenv("GENEGATE_PASSPHRASE", PASS.reveal())
    store = Keystore(tmp_path / "ks")
    register_partner(
        store, PASS, "ch-zurich", "CH", "eu-central-2", (tmp_path / "outbox").as_uri(), today=TODAY
    )
    assert 0 == run(["transfer", str(tmp_path / "release"), "--to", "ch-zurich"])
    return tmp_path


def _vault(lab: Path) -> Vault:
    return Vault(lab / "ks", load_policy("cgipa").vault_domain, Keystore(lab / "ks").vault_wrapper(PASS))


def _released_subject(lab: Path) -> tuple[str, str, str, str]:
    """A subject of the release and one of its samples, with their codes (the vault knows them)."""
    manifest = pl.read_csv(lab / "cohort" / "manifest.csv", infer_schema=False)
    vault = _vault(lab)
    for subject, sample in manifest.select("subject_id", "sample_id").iter_rows():
        code = vault.lookup(CodeKind.SUBJECT, [subject])
        if code:
            return subject, code[subject], sample, vault.lookup(CodeKind.SAMPLE, [sample])[sample]
    raise AssertionError("no subject of the manifest is in the release")


def _json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def test_delete_then_deid_again_excludes_the_subject_and_impact_names_the_copy(
    lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole request: printed impact (release, recipient, contract), codes gone, a log entry with counts
    only, the next release of the same manifest without the subject, audit impact naming the copy."""
    subject, code, sample, sample_code = _released_subject(lab)
    release_id = json.loads((lab / "release" / "release.json").read_text())["release_id"]
    held = len(read_ledger(lab / "ks" / "ledger" / f"{release_id}.json").subjects)
    capsys.readouterr()

    assert 0 == run(["--json", "subject", "delete", subject, "--date", "2026-03-01"])
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert (subject in out, code in out) == (False, False)
    assert ("2026-03-01", "2026-03-31", False) == (doc["deleted_on"], doc["due_on"], doc["already"])
    assert {"domains": 1, "subject_codes": 1, "sample_codes": 1, "unowned_sample_codes": 0} == doc["vault"]
    [copy] = doc["releases"]
    [recipient] = copy["recipients"]
    assert (release_id, "ch-zurich", "CH") == (copy["release_id"], recipient["id"], recipient["country"])
    assert recipient["delete_under"].startswith("contract NRC-ch-zurich (signed ")

    vault = _vault(lab)
    assert ({}, {}) == (vault.lookup(CodeKind.SUBJECT, [subject]), vault.lookup(CodeKind.SAMPLE, [sample]))
    assert {code, sample_code} <= vault.withdrawn()
    wrapper = Keystore(lab / "ks").vault_wrapper(PASS)
    assert code in revoked_codes(lab / "ks", vault.domain, wrapper, [])
    entry = TransferLog(lab / "ks" / TRANSFER_LOG).entries()[-1]
    assert ("subject.deleted", {"vault_domains": 1, "subject_codes": 1, "sample_codes": 1, "releases": 1,
            "recipients": 1}) == (entry["event"], entry["counts"])  # fmt: skip
    log_bytes = (lab / "ks" / TRANSFER_LOG).read_bytes()
    assert (False, False) == (subject.encode() in log_bytes, code.encode() in log_bytes)

    before = json.loads((lab / "release" / "release.json").read_text())
    argv = ["--json", "deid", "--manifest", str(lab / "cohort" / "manifest.csv"), "--policy", "cgipa",
            "--out", str(lab / "again"), "--summary-only"]  # fmt: skip
    assert 0 == run(argv)
    after = _json(capsys)
    assert (before["excluded"]["consent_revoked"] + 1, before["counts"]["included_subjects"] - 1) == (
        after["excluded"]["consent_revoked"],
        after["counts"]["included_subjects"],
    )
    assert {} == _vault(lab).lookup(CodeKind.SUBJECT, [subject])  # deid gave the subject no new code
    again = read_ledger(lab / "ks" / "ledger" / f"{after['release_id']}.json")
    assert code not in again.codes

    assert 0 == run(["--json", "audit", "impact", "--recipient", "ch-zurich"])
    impact = _json(capsys)
    assert (True, [release_id], ["ch-zurich"], 1, held) == (
        impact["log"]["verified"], impact["releases"], impact["recipients"], impact["transfers"], impact["subjects"]
    )  # fmt: skip
    assert "gdpr-33" in [d["id"] for d in impact["duties"]]


def test_a_second_delete_says_when_and_still_lists_the_copies(
    lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Idempotent: the second run removes nothing, writes no log entry and prints the first date."""
    subject = _released_subject(lab)[0]
    assert 0 == run(["subject", "delete", subject, "--date", "2026-03-01"])
    first = capsys.readouterr().out
    entries = len(TransferLog(lab / "ks" / TRANSFER_LOG).entries())
    assert 0 == run(["subject", "delete", subject, "--date", "2026-03-09"])
    text = capsys.readouterr().out
    assert first.startswith(
        "deleted: removed from 1 of 1 vault domain(s) (1 subject code(s), 1 sample code(s))"
    )
    assert text.startswith("already deleted on 2026-03-01; destroy the sample by 2026-03-31")
    assert ("ch-zurich" in text, subject in text) == (True, False)
    assert entries == len(TransferLog(lab / "ks" / TRANSFER_LOG).entries())


def test_pending_lists_revocations_and_deletions_by_deadline_and_close_clears_one(
    lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pending shows each open request with its days left (overdue flagged); close takes it off."""
    subject = _released_subject(lab)[0]
    assert 0 == run(["consent", "revoke", "SUBJ-OTHER", "--date", "2026-03-10"])
    assert 0 == run(["subject", "delete", subject, "--date", "2026-02-01"])
    capsys.readouterr()
    assert 0 == run(["--json", "subject", "pending", "--today", "2026-03-05"])
    doc = _json(capsys)
    assert [
        (subject, "deletion", "2026-03-03", -2, True),
        ("SUBJ-OTHER", "revocation", "2026-04-09", 35, False),
    ] == [(r["subject_id"], r["kind"], r["due_on"], r["days_left"], r["overdue"]) for r in doc["pending"]]
    assert 0 == run(["subject", "pending", "--today", "2026-03-05"])
    assert "OVERDUE by 2" in capsys.readouterr().out
    assert 0 == run(["subject", "close", subject, "--date", "2026-03-04"])
    capsys.readouterr()
    assert 0 == run(["--json", "subject", "pending", "--today", "2026-03-05"])
    assert ["SUBJ-OTHER"] == [r["subject_id"] for r in _json(capsys)["pending"]]


def test_bad_input_is_refused_in_one_line_before_anything_changes(
    lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed date or a manifest that does not name the subject: exit 2, nothing recorded."""
    subject = _released_subject(lab)[0]
    assert 2 == run(["subject", "delete", subject, "--date", "1 March"])
    manifest = str(lab / "cohort" / "manifest.csv")
    assert 2 == run(["subject", "delete", "SUBJ-NOT-THERE", "--manifest", manifest])
    err = capsys.readouterr().err
    assert "--date '1 March' is not an ISO date" in err
    assert "no row of the --manifest file(s) has this subject_id" in err
    assert 0 == run(["--json", "subject", "pending"])
    assert [] == _json(capsys)["pending"]
    assert {} != _vault(lab).lookup(CodeKind.SUBJECT, [subject])


def test_an_older_release_holding_a_deleted_subject_is_denied(
    lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a deletion the older release may not go out again: consent.not_revoked denies it."""
    assert 0 == run(["subject", "delete", _released_subject(lab)[0]])
    capsys.readouterr()
    code = run(["--json", "transfer", str(lab / "release"), "--to", "ch-zurich", "--dry-run"])
    assert (3, ["consent.not_revoked"]) == (code, _json(capsys)["failed_rules"])
