"""`genegate transfer --dry-run`, `law show` and `consent revoke | impact` from the command line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from flows.cli import run
from keys import CodeKind, Keystore, Passphrase, SecretKey, Vault
from transfer import RuleId

PASS = "correct horse battery"
SHA = hashlib.sha256(b"release content").hexdigest()


def _add(tmp_path: Path, rid: str, country: str, region: str, *extra: str) -> None:
    key = tmp_path / f"{rid}.pub"
    key.write_text(SecretKey.generate().public_key().to_pem())
    argv = ["keys", "add-recipient", rid, "--name", f"{rid} Institute", "--country", country,
            "--public-key", str(key), "--destination", f"s3://{rid}-inbox/in", "--region", region, *extra]  # fmt: skip
    assert 0 == run(argv)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """A keystore with two recipients and an assessed pseudonymised release of three EU subjects."""
    monkeypatch.setenv("GENEGATE_PASSPHRASE", PASS)
    monkeypatch.setenv("GENEGATE_HOME", str(tmp_path / "ks"))
    assert 0 == run(["keys", "init"])
    _add(tmp_path, "ch-zurich", "CH", "eu-central-2", "--purpose", "DUO:0000042")
    _add(tmp_path, "us-boston", "US", "us-east-1", "--purpose", "DUO:0000042")
    home = tmp_path / "ks"
    vault = Vault(home, "cgipa", Keystore(home).vault_wrapper(Passphrase(PASS)))
    codes = vault.pseudonyms(CodeKind.SUBJECT, ["SUBJ-1", "SUBJ-2", "SUBJ-3"])
    release = tmp_path / "releases" / "rel-1"
    release.mkdir(parents=True)
    doc = {"release_id": "rel-1", "class": "pseudonymised", "assessment": {"status": "passed"},
           "data_use": ["DUO:0000042"], "files": [], "release_sha256": SHA, "summary_only": False}  # fmt: skip
    (release / "release.json").write_text(json.dumps(doc))
    subjects = [
        {"subject": codes[s], "residence_region": "EU-DE", "consent_transfer": ["*"],
         "minor_at_collection": False, "guardian_consent": None, "received_opt_out": False}
        for s in ("SUBJ-1", "SUBJ-2", "SUBJ-3")
    ]  # fmt: skip
    ledger = {"format": 1, "release_id": "rel-1", "vault_domain": "cgipa", "release_sha256": SHA,
              "genomic": True, "subjects": subjects}  # fmt: skip
    (home / "ledger").mkdir()
    (home / "ledger" / "rel-1.json").write_text(json.dumps(ledger))
    capsys.readouterr()
    return home


def _dry_run(tmp_path: Path, to: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = run(["transfer", str(tmp_path / "releases" / "rel-1"), "--to", to, "--dry-run", "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_allowed_dry_run_prints_every_rule_as_json(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """EU data to an adequate CH recipient: exit 0; the JSON lists every rule with id, result, reason, evidence."""
    code, doc = _dry_run(tmp_path, "ch-zurich", capsys)
    assert (0, True, [], "allowed") == (code, doc["allowed"], doc["failed_rules"], doc["decision"])
    assert [r.value for r in RuleId] == [r["id"] for r in doc["rules"]]
    assert [{"id", "passed", "applies", "reason", "evidence"}] == list({frozenset(r) for r in doc["rules"]})
    assert ["eu_eea", "us_ca"] == doc["origin_regimes"]
    assert doc["tables"]["digest"].startswith("sha256:")


def test_denied_dry_run_exits_3_and_names_the_rule(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """EU data to a US recipient with no DPF and no SCC: exit 3, origin.eu_eea fails; the table says FAIL."""
    code, doc = _dry_run(tmp_path, "us-boston", capsys)
    assert (3, ["origin.eu_eea"]) == (code, doc["failed_rules"])
    assert 3 == run(["transfer", str(tmp_path / "releases" / "rel-1"), "--to", "us-boston", "--dry-run"])
    text = capsys.readouterr().out
    assert text.startswith("DENIED: release rel-1")
    assert "origin.eu_eea" in text
    assert "FAIL" in text


def test_unknown_recipient_is_denied(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An id not in the registry is a gate denial (recipient.registered), exit 3."""
    code, doc = _dry_run(tmp_path, "nobody", capsys)
    assert 3 == code
    assert "recipient.registered" in doc["failed_rules"]


def test_without_dry_run_a_denial_stops_after_the_gate(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Denied without --dry-run: one line naming the failed rule, exit 3 (delivery: test_cli_transfer.py)."""
    release = str(tmp_path / "releases" / "rel-1")
    assert 3 == run(["transfer", release, "--to", "us-boston"])
    err = capsys.readouterr().err.strip().splitlines()
    assert ["genegate: transfer denied by the gate (origin.eu_eea); --dry-run shows why"] == err


@pytest.mark.parametrize("what", ["no-release", "no-ledger", "bad-release"])
def test_bad_input_exits_2_in_one_line(
    home: Path, tmp_path: Path, what: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing release, a missing ledger or a malformed release.json: exit 2, one stderr line."""
    release = tmp_path / "releases" / "rel-1"
    if what == "no-release":
        release = tmp_path / "nowhere"
    elif what == "no-ledger":
        (home / "ledger" / "rel-1.json").unlink()
    else:
        (release / "release.json").write_text("{not json")
    assert 2 == run(["transfer", str(release), "--to", "ch-zurich", "--dry-run"])
    captured = capsys.readouterr()
    assert "" == captured.out
    assert 1 == len(captured.err.strip().splitlines())


def test_revocation_denies_an_older_release_and_impact_lists_it(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """consent revoke then a dry-run of the older release: denied by consent.not_revoked; impact lists the release."""
    assert 0 == run(["consent", "revoke", "SUBJ-2", "--date", "2026-03-01"])
    assert "SUBJ-2" not in capsys.readouterr().out
    code, doc = _dry_run(tmp_path, "ch-zurich", capsys)
    assert (3, ["consent.not_revoked"]) == (code, doc["failed_rules"])
    assert 0 == run(["--json", "consent", "impact", "SUBJ-2"])
    out = capsys.readouterr().out
    assert "SUBJ-2" not in out
    impact = json.loads(out)
    assert ("2026-03-01", "2026-03-31", "absent") == (
        impact["revoked_on"],
        impact["act_by"],
        impact["transfer_log"],
    )
    assert [{"release_id": "rel-1", "vault_domain": "cgipa", "recipients": []}] == impact["releases"]
    entry = {"event": "transfer.delivered", "release_id": "rel-1", "recipient_id": "ch-zurich"}
    (home / "transfer-log.jsonl").write_text(json.dumps(entry) + "\n")
    assert 0 == run(["consent", "impact", "SUBJ-2"])
    text = capsys.readouterr().out
    assert "rel-1 (vault domain cgipa): ch-zurich" in text
    assert 0 == run(["--json", "consent", "impact", "SUBJ-404"])
    assert [] == json.loads(capsys.readouterr().out)["releases"]


def test_impact_without_a_log_says_so(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before issue #7 there is no transfer log: impact says so for each release."""
    assert 0 == run(["consent", "impact", "SUBJ-1"])
    assert "rel-1 (vault domain cgipa): no transfer log yet" in capsys.readouterr().out


def test_law_show(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """law show prints the tables with versions; --json gives the six tables and the digest."""
    assert 0 == run(["law", "show", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert ["regimes", "bases", "concern", "countries", "storage_regions", "duo"] == [
        t["key"] for t in doc["tables"]
    ]
    assert 0 == run(["law", "show"])
    text = capsys.readouterr().out
    assert doc["digest"] in text
    assert "version 2025-04-08-28cfr202" in text


def test_keys_init_jurisdiction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """keys init --jurisdiction records the lab's jurisdiction; keys show lab prints it; a bad one exits 2."""
    monkeypatch.setenv("GENEGATE_PASSPHRASE", PASS)
    assert 0 == run(["--home", str(tmp_path / "ks"), "keys", "init", "--jurisdiction", "EU-DE"])
    capsys.readouterr()
    assert 0 == run(["--home", str(tmp_path / "ks"), "--json", "keys", "show", "lab"])
    assert "EU-DE" == json.loads(capsys.readouterr().out)["lab_jurisdiction"]
    assert 2 == run(["--home", str(tmp_path / "ks2"), "keys", "init", "--jurisdiction", "Deutschland"])
    assert "region code" in capsys.readouterr().err
