"""`genegate assess` from the command line: exit codes, table, JSON, and nothing left behind."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from deid.synth import CohortSpec, synthesize_cohort
from flows.cli import run


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-sample synthetic cohort (VCF only)."""
    out = tmp_path_factory.mktemp("cli-assess") / "cohort"
    synthesize_cohort(CohortSpec(out=out, samples=12, seed=8, reads=False))
    return out


@pytest.fixture
def release(cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cgipa release made with `genegate deid` in a fresh keystore."""
    monkeypatch.setenv("GENEGATE_PASSPHRASE", "correct horse battery")
    monkeypatch.setenv("GENEGATE_HOME", str(tmp_path / "ks"))
    assert 0 == run(["keys", "init"])
    args = [
        "deid",
        "--manifest",
        str(cohort / "manifest.csv"),
        "--policy",
        "cgipa",
        "--out",
        str(tmp_path / "rel"),
    ]
    assert 0 == run([*args, "--release-id", "r1"])
    return tmp_path / "rel" / "r1"


def test_assess_fails_a_small_release_with_exit_1(
    release: Path,
    cohort: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """12 people are not k-anonymous: exit 1, JSON outcome names the blocking tests, release.json updated."""
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    temp_before = set(Path(tempfile.gettempdir()).glob("genegate-assess-*"))
    tree_before = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert 1 == run(["--json", "assess", str(release), "--identified", str(cohort / "manifest.csv")])
    outcome = json.loads(capsys.readouterr().out)
    assert ("failed", "pseudonymised") == (outcome["status"], outcome["class"])
    assert "T11_demographic_k_risk" in outcome["blocking_failed"]
    record = json.loads((release / "release.json").read_text())
    assert (outcome["run_id"], "pseudonymised") == (record["assessment"]["run_id"], record["class"])
    added = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()} - {
        p.relative_to(tmp_path).as_posix() for p in tree_before
    }
    assert {  # default results/ in the cwd; the destruction receipt in the keystore's transfer log
        f"results/release_id=r1/run-{outcome['run_id']}.parquet",
        "ks/transfer-log.jsonl",
        "ks/transfer-log.jsonl.head",
    } == added
    assert temp_before == set(Path(tempfile.gettempdir()).glob("genegate-assess-*"))  # private dir gone
    [entry] = [json.loads(line) for line in (tmp_path / "ks" / "transfer-log.jsonl").read_text().splitlines()]
    assert ("assessment.destroyed", "r1", outcome["destruction_receipt"]) == (
        entry["event"],
        entry["release_id"],
        entry["receipt"],
    )


def test_assess_prints_a_table(
    release: Path, cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json a table lists test, metric, value, threshold and pass."""
    capsys.readouterr()
    code = run(
        [
            "assess",
            str(release),
            "--identified",
            str(cohort / "manifest.csv"),
            "--results",
            str(tmp_path / "r"),
        ]
    )
    captured = capsys.readouterr()
    assert 1 == code
    assert all(word in captured.out for word in ("T01", "T11", "identifier_hits", "threshold", "FAIL"))
    assert "assessment failed: class pseudonymised" in captured.err


def test_assess_bad_input_exits_2(cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory that is not a release: one line, exit 2, no traceback."""
    assert 2 == run(["assess", str(tmp_path), "--identified", str(cohort / "manifest.csv")])
    err = capsys.readouterr().err
    assert (
        f"genegate: error: {tmp_path}: not a release directory (no release.json); give releases/<id>\n" == err
    )
