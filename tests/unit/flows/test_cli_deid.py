"""`genegate policy` and `genegate deid` from the command line, as a lab operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from deid.synth import CohortSpec, synthesize_cohort
from flows.cli import run


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-sample synthetic manifest."""
    out = tmp_path_factory.mktemp("cli-deid") / "cohort"
    synthesize_cohort(CohortSpec(out=out, samples=12, seed=4, reads=False))
    return out / "manifest.csv"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An initialised keystore; passphrase from the environment."""
    monkeypatch.setenv("GENEGATE_PASSPHRASE", "correct horse battery")
    monkeypatch.setenv("GENEGATE_HOME", str(tmp_path / "ks"))
    assert 0 == run(["keys", "init"])
    return tmp_path / "ks"


def test_policy_show_prints_a_policy_check_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`policy show cgipa > p.toml` then `policy check p.toml` succeeds with the same digest."""
    assert 0 == run(["policy", "show", "cgipa"])
    (tmp_path / "p.toml").write_text(capsys.readouterr().out)
    assert 0 == run(["--json", "policy", "check", str(tmp_path / "p.toml")])
    checked = json.loads(capsys.readouterr().out)
    assert ("cgipa", "cgipa") == (checked["name"], checked["profile"])


def test_policy_check_names_the_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid policy exits 2 with one line naming file and key."""
    (tmp_path / "bad.toml").write_text('[policy]\nname = "x"\nprofile = "cgipa"\n\n[columns]\nssn = "keep"\n')
    assert 2 == run(["policy", "check", str(tmp_path / "bad.toml")])
    err = capsys.readouterr().err
    assert (
        f"genegate: error: {tmp_path / 'bad.toml'}: columns.ssn = keep is below the cgipa profile's floor; use drop or internal\n"
        == err
    )


def test_deid_writes_a_release(
    home: Path, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """deid prints the release directory; --json prints release.json; the manifest is untouched."""
    before = manifest.read_bytes()
    assert 0 == run(
        [
            "deid",
            "--manifest",
            str(manifest),
            "--policy",
            "cgipa",
            "--out",
            str(tmp_path / "rel"),
            "--release-id",
            "r1",
        ]
    )
    assert f"{tmp_path / 'rel' / 'r1'}\n" == capsys.readouterr().out
    assert 0 == run(
        [
            "--json",
            "deid",
            "--manifest",
            str(manifest),
            "--policy",
            "safe-harbor",
            "--out",
            str(tmp_path / "rel"),
        ]
    )
    record = json.loads(capsys.readouterr().out)
    assert ("safe-harbor", 9) == (record["policy"]["name"], record["counts"]["included_samples"])
    assert before == manifest.read_bytes()
    first = pl.read_parquet(tmp_path / "rel" / "r1" / "samples.parquet")["sample_id"].sort().to_list()
    second = (
        pl.read_parquet(tmp_path / "rel" / record["release_id"] / "samples.parquet")["sample_id"]
        .sort()
        .to_list()
    )
    assert first == second


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: pl.concat([f, f.head(1)]), "row 13: sample_id duplicates row 1"),
        (lambda f: f.drop("subject_id"), "missing required column subject_id"),
        (lambda f: f.with_columns(pl.when(pl.int_range(pl.len()) == 4).then(pl.lit("31/02/1990")).otherwise(pl.col("date_of_birth")).alias("date_of_birth")), "row 5 column date_of_birth: not an ISO date"),
        (lambda f: f.head(0), "has a header but no data rows; add one row per sample"),
    ],
)  # fmt: skip
def test_bad_manifest_exit_2_nothing_written(
    home: Path, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: object, message: str
) -> None:
    """Duplicate ids, a missing column, a bad date or an empty manifest: one line naming it, exit 2, no release."""
    frame = pl.read_csv(manifest, infer_schema=False)
    bad = edit(frame)  # type: ignore[operator]
    bad.write_csv(tmp_path / "bad.csv")
    assert 2 == run(
        ["deid", "--manifest", str(tmp_path / "bad.csv"), "--policy", "cgipa", "--out", str(tmp_path / "rel")]
    )
    err = capsys.readouterr().err
    assert 1 == len(err.strip().splitlines())
    assert message in err
    assert "31/02/1990" not in err
    assert not (tmp_path / "rel").exists()


def test_deid_needs_a_keystore(manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a keystore (the vault lives there) deid says to run keys init."""
    assert 2 == run(
        [
            "--home",
            str(tmp_path / "none"),
            "deid",
            "--manifest",
            str(manifest),
            "--policy",
            "cgipa",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert "run `genegate keys init`" in capsys.readouterr().err


def test_summary_only_writes_frequencies_only(
    home: Path, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--summary-only releases summary/allele_frequencies.parquet and release.json, nothing else."""
    args = ["--json", "deid", "--manifest", str(manifest), "--policy", "cgipa", "--out", str(tmp_path / "r")]
    assert 0 == run([*args, "--summary-only", "--release-id", "rel-s"])
    record = json.loads(capsys.readouterr().out)
    assert (True, ["summary/allele_frequencies.parquet"]) == (
        record["summary_only"],
        [f["name"] for f in record["files"]],
    )
    assert (home / "ledger" / "rel-s.json").is_file()


def test_a_revocation_in_the_register_excludes_the_subject(
    home: Path, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A subject revoked with `consent revoke` is left out of the next release, counted as revoked."""
    rows = pl.read_csv(manifest, infer_schema=False)
    consenting = rows.filter((pl.col("consent_research") == "true") & pl.col("consent_revoked_at").is_null())[
        "subject_id"
    ][0]
    args = ["--json", "deid", "--manifest", str(manifest), "--policy", "cgipa", "--out", str(tmp_path / "r")]
    assert 0 == run(args)
    before = json.loads(capsys.readouterr().out)
    assert 0 == run(["consent", "revoke", consenting, "--date", "2026-11-01"])
    capsys.readouterr()
    assert 0 == run(args)
    after = json.loads(capsys.readouterr().out)
    assert (before["excluded"]["consent_revoked"] + 1, before["counts"]["included_samples"] - 1) == (
        after["excluded"]["consent_revoked"],
        after["counts"]["included_samples"],
    )


def test_a_release_for_one_partner_holds_only_subjects_who_named_it(
    home: Path, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """deid --for ID: every released subject's consent_transfer names ID or "*"; the others are
    counted under no_transfer_consent_for_recipient and release.json records the recipient."""
    partner = "jp-tokyo-medgen"
    assert 0 == run(
        ["--json", "deid", "--manifest", str(manifest), "--policy", "cgipa", "--out", str(tmp_path / "r"),
         "--release-id", "rel-jp", "--for", partner]
    )  # fmt: skip
    record = json.loads(capsys.readouterr().out)
    rows = pl.read_csv(manifest, infer_schema=False)
    named = rows["consent_transfer"].fill_null("").str.split(";").list.eval(pl.element().str.strip_chars())
    consented = int((named.list.contains("*") | named.list.contains(partner)).sum())
    excluded = record["excluded"]
    assert (partner, rows.height) == (
        record["for_recipient"],
        record["counts"]["included_samples"] + sum(excluded.values()),
    )
    assert 0 < excluded["no_transfer_consent_for_recipient"] <= rows.height - consented
    ledger = json.loads((home / "ledger" / "rel-jp.json").read_text(encoding="utf-8"))
    assert [] == [s for s in ledger["subjects"] if not ({"*", partner} & set(s["consent_transfer"]))]
