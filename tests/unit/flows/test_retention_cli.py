"""`genegate retention apply`, `deid --purge-inputs` and the [retention] policy section, as an operator
runs them. The staging batch is named the way labs name them, after a person and a sample: no such
name, no input path and no sample id may reach stdout, stderr, an error or the transfer log."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from deid.synth import CohortSpec, synthesize_cohort
from flows.cli import run
from transfer.facts import TRANSFER_LOG

REPO = Path(__file__).resolve().parents[3]
PERSON = "Ada Lovelace-Byron"  # the staging folder is named after her
ZERO = "[retention]\nstaging_days = 0\nrelease_days = 0\noutbox_days = 0\nassessment_days = 0\n"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-sample synthetic identified cohort (manifest + joint VCF)."""
    out = tmp_path_factory.mktemp("retention-cli") / "cohort"
    synthesize_cohort(CohortSpec(out=out, samples=12, seed=3, reads=False))
    return out


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An initialised keystore; passphrase from the environment; cwd in tmp_path."""
    monkeypatch.setenv("GENEGATE_PASSPHRASE", "correct horse battery")
    monkeypatch.setenv("GENEGATE_HOME", str(tmp_path / "ks"))
    monkeypatch.chdir(tmp_path)
    assert 0 == run(["keys", "init"])
    return tmp_path / "ks"


def _stage(cohort: Path, tmp_path: Path, batch: str) -> tuple[Path, list[Path], set[str]]:
    """Copy the cohort into staging/<PERSON>-<batch>/ with the VCF named after the first sample; the
    manifest, its inputs and every protected text (sample ids, names, paths)."""
    folder = tmp_path / "staging" / f"{PERSON}-{batch}"
    shutil.copytree(cohort, folder)
    with (folder / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    first = rows[0]["sample_id"]
    vcf = folder / "genotypes" / f"{first}.vcf.gz"
    (folder / "genotypes" / "cohort.vcf.gz").rename(vcf)
    (folder / "genotypes" / "cohort.vcf.gz.tbi").rename(vcf.with_name(vcf.name + ".tbi"))
    for row in rows:
        row["vcf"] = f"genotypes/{first}.vcf.gz"
    with (folder / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    protected = {PERSON, str(folder), first, *(r["sample_id"] for r in rows), *(r["full_name"] for r in rows)}
    return (
        folder / "manifest.csv",
        [folder / "manifest.csv", vcf, vcf.with_name(vcf.name + ".tbi")],
        protected,
    )


def _deid(manifest: Path, release_id: str, *extra: str) -> None:
    args = ["deid", "--manifest", str(manifest), "--policy", "cgipa", "--out", "releases"]
    assert 0 == run([*args, "--release-id", release_id, *extra])


def _leaks(texts: list[str], protected: set[str]) -> list[str]:
    return sorted(p for p in protected for t in texts if p in t)


def test_policy_show_prints_the_retention_section_and_check_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`policy show` prints [retention]; `policy check --json` reports the periods it read."""
    assert 0 == run(["policy", "show", "safe-harbor"])
    text = capsys.readouterr().out
    assert "[retention]" in text
    (tmp_path / "p.toml").write_text(text.replace("outbox_days = 90", "outbox_days = 7"))
    assert 0 == run(["--json", "policy", "check", str(tmp_path / "p.toml")])
    checked = json.loads(capsys.readouterr().out)
    assert {"staging_days": "never", "release_days": 365, "outbox_days": 7, "assessment_days": 2190,
            "log_days": "never"} == checked["retention"]  # fmt: skip


@pytest.mark.parametrize(
    ("section", "detail"),
    [
        ("colour_days = 3", "retention.colour_days is not a retention key; use staging_days, release_days, "
         "outbox_days, assessment_days, log_days"),
        ("release_days = -5", 'retention.release_days is negative; give whole days (0 = at the next retention '
         'run) or "never"'),
    ],
)  # fmt: skip
def test_policy_check_refuses_a_bad_retention_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, detail: str
) -> None:
    """An unknown key or a negative number: exit 2, one line naming the file, the key and the fix."""
    run(["policy", "show", "cgipa"])
    text = capsys.readouterr().out.split("[retention]")[0] + f"[retention]\n{section}\n"
    (tmp_path / "p.toml").write_text(text)
    assert 2 == run(["policy", "check", str(tmp_path / "p.toml")])
    assert f"genegate: error: {tmp_path / 'p.toml'}: {detail}\n" == capsys.readouterr().err


def test_purge_inputs_waits_for_certification(
    home: Path, cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """deid --purge-inputs keeps the inputs until `assess` certifies the release: a passed summary
    release, and an individual-level one certified pseudonymised (it fails the statistical tests by
    nature, no leak test) both remove theirs and log inputs.purged; nothing printed or logged names
    them. (An assessment that finds a leak keeps them: tests/unit/transfer/test_retention.py.)"""
    individual_manifest, individual_inputs, protected = _stage(cohort, tmp_path, "a")
    _deid(individual_manifest, "r-ind", "--purge-inputs")
    summary_manifest, summary_inputs, more = _stage(cohort, tmp_path, "b")
    _deid(summary_manifest, "r-sum", "--purge-inputs", "--summary-only")
    assert all(p.exists() for p in [*individual_inputs, *summary_inputs])  # deid alone removes nothing
    capsys.readouterr()
    assert 0 == run(
        ["--json", "assess", "releases/r-sum", "--identified", str(summary_manifest), "--seed", "7"]
    )
    captured = capsys.readouterr()
    sizes = sum(p.stat().st_size for p in individual_inputs)  # the same bytes as the summary batch had
    assert {"files": 3, "bytes": sizes, "status": "removed", "class": "staging"} == {
        k: json.loads(captured.out)["inputs_purged"][k] for k in ("files", "bytes", "status", "class")
    }
    assert ([True] * 3, [False] * 3) == (
        [p.exists() for p in individual_inputs],
        [p.exists() for p in summary_inputs],
    )
    assert 1 == run(["assess", "releases/r-ind", "--identified", str(individual_manifest)])
    later = capsys.readouterr()
    assert [False] * 3 == [p.exists() for p in individual_inputs]
    log = (home / TRANSFER_LOG).read_text()
    purged = [json.loads(line) for line in log.splitlines() if '"inputs.purged"' in line]
    expected = [
        ("r-sum", {"files": 3, "bytes": sizes, "held": 0}),
        ("r-ind", {"files": 3, "bytes": sizes, "held": 0}),
    ]
    assert expected == [(p["release_id"], p["counts"]) for p in purged]
    assert [] == _leaks([captured.out, captured.err, later.out, later.err, log], protected | more)
    assert 0 == run(["audit", "verify"])


def test_retention_apply_dry_run_then_real_then_nothing(
    home: Path, cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under 0-day periods: --dry-run lists the staging inputs and the release and writes nothing; the
    real run removes them with one log entry each; a third run has nothing to do."""
    manifest, inputs, protected = _stage(cohort, tmp_path, "c")
    _deid(manifest, "r-1", "--summary-only")
    policy_file = tmp_path / "p.toml"
    capsys.readouterr()
    run(["policy", "show", "cgipa"])
    policy_file.write_text(capsys.readouterr().out.split("[retention]")[0] + ZERO)
    log_before = (home / TRANSFER_LOG).read_bytes() if (home / TRANSFER_LOG).exists() else b""
    assert 0 == run(["--json", "retention", "apply", "--dry-run", "--policy", str(policy_file)])
    dry = capsys.readouterr()
    listed = [(d["class"], d["release_id"], d["status"], d["files"]) for d in json.loads(dry.out)["due"]]
    assert [
        ("staging", "r-1", "due", 3),
        ("release", "r-1", "due", 2),
    ] == listed  # release.json + frequencies
    assert all(p.exists() for p in inputs)
    assert (tmp_path / "releases" / "r-1").is_dir()
    assert log_before == ((home / TRANSFER_LOG).read_bytes() if (home / TRANSFER_LOG).exists() else b"")
    assert 0 == run(["retention", "apply", "--policy", str(policy_file)])
    real = capsys.readouterr()
    assert "retention: 2 removed, 2 due, 0 held by Object Lock, 0 not yet due\n" == real.err
    assert not any(p.exists() for p in inputs)
    assert not (tmp_path / "releases" / "r-1").exists()
    log = (home / TRANSFER_LOG).read_text()
    removed = [json.loads(line) for line in log.splitlines() if '"retention.removed"' in line]
    assert [("staging", "r-1"), ("release", "r-1")] == [
        (e["receipt"]["class"], e["release_id"]) for e in removed
    ]
    assert 0 == run(["retention", "apply", "--policy", str(policy_file)])
    assert "retention: 0 removed, 0 due, 0 held by Object Lock, 0 not yet due\n" == capsys.readouterr().err
    assert [] == _leaks([dry.out, dry.err, real.out, real.err, log], protected)
    assert 0 == run(["audit", "verify"])


def test_as_of_previews_only(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--as-of without --dry-run is bad input (a removal always goes by the clock); with it, a preview."""
    assert 2 == run(["retention", "apply", "--as-of", "2030-01-01"])
    assert "--as-of previews a date and needs --dry-run" in capsys.readouterr().err
    assert 0 == run(["--json", "retention", "apply", "--dry-run", "--as-of", "2030-01-01"])
    assert {"dry_run": True, "due": [], "waiting": 0} == json.loads(capsys.readouterr().out)


def test_committed_prefect_yaml_runs_retention_daily() -> None:
    """prefect.yaml's retention/daily names the retention flow by a loadable entrypoint, daily, paths only."""
    from prefect.flows import load_flow_from_entrypoint

    from flows.schedule import check_cron

    doc = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    [entry] = [d for d in doc["deployments"] if d["flow_name"] == "retention"]
    path, function = entry["entrypoint"].split(":")
    loaded: Any = load_flow_from_entrypoint(f"{REPO / path}:{function}")
    schedule = check_cron(entry["schedules"][0]["cron"], entry["schedules"][0]["timezone"])
    assert ("daily", "retention", "30 3 * * *", {"home", "releases", "results"}) == (
        entry["name"],
        loaded.name,
        schedule.cron,
        set(entry["parameters"]),
    )
