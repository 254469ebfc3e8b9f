"""The command line: help, global options, one-line errors with exit codes, synth and demo."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

import deid.synth
from flows.cli import run

GENEGATE = str(Path(sys.executable).parent / "genegate")


def test_help_lists_every_command_group(capsys: pytest.CaptureFixture[str]) -> None:
    """`genegate --help` names the command groups of SPEC.md."""
    assert 0 == run(["--help"])
    text = capsys.readouterr().out
    listed = {line.split()[0] for line in text.split("Commands:")[1].splitlines() if line.strip()}
    expected = {"synth", "deid", "assess", "keys", "transfer", "audit", "policy", "demo"}
    assert set() == expected - listed


def test_run_without_required_options_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """`genegate run release-and-share` without --policy exits 2 with one line naming it, no output."""
    assert 2 == run(["run", "release-and-share", "--manifest", "m.csv"])
    captured = capsys.readouterr()
    assert "" == captured.out
    assert [
        "genegate: error: Missing option '--policy'. (see `genegate run release-and-share --help`)"
    ] == captured.err.strip().splitlines()


def test_unknown_option_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A usage error prints one line that names the option and points to --help."""
    assert 2 == run(["synth", "--out", "x", "--bogus"])
    err = capsys.readouterr().err.strip().splitlines()
    assert ["genegate: error: No such option: --bogus (see `genegate synth --help`)"] == [
        line.replace(" (Possible options: --out)", "") for line in err
    ]


def test_missing_required_option(capsys: pytest.CaptureFixture[str]) -> None:
    """`genegate synth` without --out names the missing option."""
    assert 2 == run(["synth"])
    assert (
        "genegate: error: Missing option '--out'. (see `genegate synth --help`)\n" == capsys.readouterr().err
    )


def test_too_few_samples_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A cohort smaller than the edge cases need is refused before anything is written."""
    assert 2 == run(["synth", "--out", str(tmp_path / "c"), "--samples", "5"])
    assert "needs at least 12" in capsys.readouterr().err
    assert [] == list(tmp_path.iterdir())


def test_existing_output_is_refused_and_untouched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """synth never writes into an existing directory: exit 2, one line, contents as they were."""
    target = tmp_path / "cohort"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    assert 2 == run(["synth", "--out", str(target), "--no-reads"])
    assert f"genegate: error: {target} already exists" in capsys.readouterr().err
    assert ["keep.txt"] == [p.name for p in target.iterdir()]
    assert "mine" == (target / "keep.txt").read_text()


def test_unexpected_error_hides_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug's message may hold an identifier: only its type is printed, exit 1, no traceback."""

    def explode(*_: object) -> None:
        raise KeyError("Jane Roe 1950-01-01")

    monkeypatch.setattr(deid.synth, "synthesize_cohort", explode)
    assert 1 == run(["synth", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert "genegate: error: unexpected KeyError; rerun with --debug for the traceback\n" == err


def test_debug_shows_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--debug adds the traceback for the developer."""

    def explode(*_: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(deid.synth, "synthesize_cohort", explode)
    assert 1 == run(["--debug", "synth", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().endswith("genegate: error: unexpected KeyError; rerun with --debug for the traceback")


def test_synth_prints_the_directory_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """synth prints the cohort directory; with --json, a summary of counts without identifier values."""
    out = tmp_path / "c1"
    assert 0 == run(["synth", "--out", str(out), "--samples", "12", "--no-reads", "--seed", "5"])
    assert f"{out}\n" == capsys.readouterr().out
    assert 0 == run(["--json", "synth", "--out", str(tmp_path / "c2"), "--samples", "12", "--no-reads"])
    summary = json.loads(capsys.readouterr().out)
    assert 12 == summary["samples"]
    with (tmp_path / "c2" / "manifest.csv").open(encoding="utf-8") as fh:
        names = [row["full_name"] for row in csv.DictReader(fh)]
    text = json.dumps(summary, ensure_ascii=False)
    assert [] == [n for n in names if n in text]


def test_demo_rebuilds_its_own_directory_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's directory is marked; prepare() rebuilds a marked one and refuses any other, which
    `genegate demo` reports as one line, exit 2, touching nothing (the whole demo runs in
    tests/integration/test_demo.py)."""
    from flows.demo import MARKER, prepare

    demo_dir = tmp_path / "demo-run"
    prepare(demo_dir)
    (demo_dir / "left-over").write_text("from an earlier run", encoding="utf-8")
    prepare(demo_dir)
    assert [MARKER] == sorted(p.name for p in demo_dir.iterdir())
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("the operator's", encoding="utf-8")
    assert 2 == run(["demo", "--out", str(other)])
    assert "is not a genegate demo directory" in capsys.readouterr().err
    assert ["keep.txt"] == [p.name for p in other.iterdir()]


def test_console_script_runs_without_traceback(tmp_path: Path) -> None:
    """The installed `genegate` script exits 2 with one stderr line on bad input, as operators see it."""
    proc = subprocess.run(
        [GENEGATE, "synth", "--out", str(tmp_path), "--no-reads"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (2, "") == (proc.returncode, proc.stdout)
    assert [f"genegate: error: {tmp_path} already exists; choose a new output path or remove it first"] == (
        proc.stderr.splitlines()
    )
