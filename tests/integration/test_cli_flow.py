"""`genegate deid | assess | transfer` run as Prefect flows (--flow, or $PREFECT_API_URL set).

Each command runs once plainly and once as its flow against the session's test Prefect API
(tests/integration/conftest.py) on the same inputs: the outputs, exit codes and error lines must be
the same, and the flow run must be in the API. A transfer run also writes the HTML audit report
beside the transfer log and links it from the run (a file:// link artifact).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

from flows import delivery_tasks, pipeline
from flows.artifacts import REPORT_KEY, report_path
from flows.cli import run
from flows.console import flow_requested
from keys import Keystore, Passphrase
from tests.support.releases import RELEASE_NAME, assessed_summary_release, register_partner
from transfer import TRANSFER_LOG, TransferLog

PASS = Passphrase("correct horse battery")
CH, US, BLOCKED = "ch-zurich", "us-boston", "ch-blocked"
RUN_LINE = re.compile(r"^flow run ([0-9a-f-]{36}): (\w+)", re.MULTILINE)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An assessed summary release, a Swiss partner it may go to and a US partner the gate refuses."""
    root = tmp_path_factory.mktemp("cli-flow")
    store = assessed_summary_release(root, PASS)
    register_partner(store, PASS, CH, "CH", "eu-central-2", (root / "outbox" / CH).as_uri())
    register_partner(store, PASS, US, "US", "us-east-1", (root / "outbox" / US).as_uri(), bases=False)
    return root


@pytest.fixture
def operator(prefect_home: Path, lab: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The lab's keystore in $GENEGATE_HOME and its passphrase in $GENEGATE_PASSPHRASE; the test API is up."""
    monkeypatch.setenv("GENEGATE_HOME", str(lab / "ks"))
    monkeypatch.setenv("GENEGATE_PASSPHRASE", PASS.reveal())
    return lab / "ks"


def _run_line(stderr: str) -> tuple[str, str]:
    """The flow run id and final state the CLI printed (it prints them when there is a Prefect API)."""
    found = RUN_LINE.search(stderr)
    assert found is not None, stderr
    return found.group(1), found.group(2)


def _sums(release: Path) -> dict[str, str]:
    """SHA-256 of every file of a release but release.json (which records when it was made)."""
    files = [p for p in release.rglob("*") if p.is_file() and p.name != "release.json"]
    return {str(p.relative_to(release)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not RUN_LINE.match(line)]


def test_flow_is_requested_by_the_option_or_an_api_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """--flow or $PREFECT_API_URL makes a command a flow run; neither keeps it a plain library call."""
    seen = [flow_requested(False), flow_requested(True)]
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    seen.append(flow_requested(False))
    assert [False, True, True] == seen


def test_deid_as_a_flow_writes_what_the_plain_call_writes(
    operator: Path, lab: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """deid --flow prints the same record and writes the same files as deid; the run is in the API."""
    manifest = lab / "cohort" / "manifest.csv"
    records: dict[str, dict[str, Any]] = {}
    for mode in ("plain", "flow"):
        shutil.copytree(operator, tmp_path / f"ks-{mode}")  # one ledger entry per keystore and release id
        argv = ["--home", str(tmp_path / f"ks-{mode}"), "--json", "deid", "--manifest", str(manifest),
                "--policy", "cgipa", "--out", str(tmp_path / mode), "--release-id", "rel-same"]  # fmt: skip
        assert 0 == run(argv + (["--flow"] if mode == "flow" else []))
        captured = capfd.readouterr()
        records[mode] = json.loads(captured.out)
    run_id, state = _run_line(captured.err)
    assert ([], "Completed") == (_errors(captured.err), state)
    plain, flowed = ({k: v for k, v in r.items() if k != "created_at"} for r in records.values())
    assert plain == flowed
    assert _sums(tmp_path / "plain" / "rel-same") == _sums(tmp_path / "flow" / "rel-same")
    assert 2 <= len(_sums(tmp_path / "flow" / "rel-same"))  # samples.parquet and the VCF at least
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(uuid.UUID(run_id))
        name = client.read_flow(flow_run.flow_id).name
    assert ("deidentify", str(manifest), str(tmp_path / "flow")) == (
        name,
        flow_run.parameters["manifest"],
        flow_run.parameters["out"],
    )


def test_a_bad_manifest_as_a_flow_is_the_same_one_line_and_exit_2(
    operator: Path, lab: Path, tmp_path: Path
) -> None:
    """A manifest without subject_id: exit 2 and the plain call's one error line, no traceback, also
    from the installed command in its own process (where Prefect's log lines would reach the terminal)."""
    lines = (lab / "cohort" / "manifest.csv").read_text(encoding="utf-8").splitlines()
    drop = lines[0].split(",").index("subject_id")
    bad = tmp_path / "manifest.csv"
    bad.write_text("\n".join(",".join(c for i, c in enumerate(ln.split(",")) if i != drop) for ln in lines))
    argv = [str(Path(sys.executable).with_name("genegate")), "deid", "--manifest", str(bad),
            "--policy", "cgipa", "--out", str(tmp_path / "out")]  # fmt: skip
    seen = []
    for api in ("", str(PREFECT_API_URL.value())):  # with an API URL the command runs as a flow
        env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "prefect-home")}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
        seen.append((done.returncode, done.stdout, _errors(done.stderr), done.stderr.count("\n")))
    plain, flowed = seen
    assert (2, "", 1, 1) == (plain[0], plain[1], len(plain[2]), plain[3])
    assert (plain[:3], 2) == (flowed[:3], flowed[3])  # the error line and the flow run line
    assert "subject_id" in plain[2][0]


def test_a_flow_without_the_passphrase_variable_stops_before_it_starts(
    operator: Path, lab: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Flows never prompt: without $GENEGATE_PASSPHRASE, --flow exits 2 naming the variable, runs nothing."""
    monkeypatch.delenv("GENEGATE_PASSPHRASE")
    argv = ["transfer", str(lab / "releases" / RELEASE_NAME), "--to", CH, "--flow"]
    assert 2 == run(argv)
    stderr = capfd.readouterr().err
    assert (1, True, None) == (
        len(stderr.splitlines()),
        "set $GENEGATE_PASSPHRASE" in stderr,
        RUN_LINE.search(stderr),
    )


def test_assess_as_a_flow_prints_what_the_plain_call_prints(
    operator: Path, lab: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """assess --flow on a copy of the release prints the same table and verdict and logs the receipt."""
    log = TransferLog(operator / TRANSFER_LOG)
    before = len(log.entries())
    shown = []
    for mode in ("plain", "flow"):
        release = tmp_path / mode
        shutil.copytree(lab / "releases" / RELEASE_NAME, release)
        argv = ["assess", str(release), "--identified", str(lab / "cohort" / "manifest.csv"),
                "--results", str(tmp_path / "results"), "--seed", "5"]  # fmt: skip
        code = run(argv + (["--flow"] if mode == "flow" else []))
        captured = capfd.readouterr()
        verdict = re.sub(r"run-[0-9a-f-]+\.parquet", "run.parquet", _errors(captured.err)[-1])
        shown.append((code, captured.out, verdict))
    assert shown[0] == shown[1]
    assert (0, True) == (shown[0][0], "destruction receipt logged" in shown[0][2])
    events = [e["event"] for e in log.entries()[before:]]
    assert ["assessment.destroyed", "assessment.destroyed"] == events


def test_transfer_as_a_flow_delivers_and_links_the_audit_report(
    operator: Path, lab: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """transfer --flow delivers (exit 0, SendResult JSON) and links <home>/reports/audit-<run>.html."""
    assert 0 == run(["--json", "transfer", str(lab / "releases" / RELEASE_NAME), "--to", CH, "--flow"])
    captured = capfd.readouterr()
    sent = json.loads(captured.out)
    run_id, _ = _run_line(captured.err)
    keys = {"outcome", "release_id", "recipient_id", "destination", "transfer_id", "failed_rules", "files",
            "sent", "bytes_sent"}  # fmt: skip
    delivered = lab / "outbox" / CH / sent["release_id"]
    assert ("delivered", True, keys) == (sent["outcome"], (delivered / "delivery-manifest.json").is_file(),
                                         keys & set(sent))  # fmt: skip
    with get_client(sync_client=True) as client:
        links = [a for a in client.read_artifacts() if a.key == REPORT_KEY and str(a.flow_run_id) == run_id]
    assert 1 == len(links)
    uri = re.search(r"\((file://[^)]+)\)", str(links[0].data)).group(1)  # type: ignore[union-attr]
    report = Path(url2pathname(urlparse(uri).path))
    assert report_path(operator, run_id).resolve() == report
    page = report.read_text(encoding="utf-8")
    store = Keystore(operator)
    entries = TransferLog(store.home / TRANSFER_LOG).verify(store.verify_key()).entries
    assert (True, True, 0o600) == (
        f"Chain and signatures verified: {entries} entries." in page,
        sent["release_id"] in page,
        report.stat().st_mode & 0o777,
    )


def test_a_denied_transfer_as_a_flow_exits_3_with_the_plain_line(
    operator: Path, lab: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The gate refuses the US partner: exit 3 and the same one line, plain or as a flow."""
    argv = ["transfer", str(lab / "releases" / RELEASE_NAME), "--to", US]
    seen = []
    for extra in ([], ["--flow"]):
        code = run(argv + extra)
        captured = capfd.readouterr()
        seen.append((code, captured.out, _errors(captured.err)))
    assert seen[0] == seen[1]
    assert (3, 1) == (seen[0][0], len(seen[0][2]))


def test_a_failed_delivery_as_a_flow_exits_1_with_the_plain_line(
    operator: Path,
    lab: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """An outbox that cannot take the release: exit 1 and the plain call's line, after the task's retries."""
    blocker = lab / "blocked"
    blocker.write_text("not a directory\n", encoding="utf-8")
    register_partner(Keystore(operator), PASS, BLOCKED, "CH", "eu-central-2", (blocker / "in").as_uri())
    fast = delivery_tasks.plan_task.with_options(retry_delay_seconds=0)  # the blocked outbox fails the plan
    monkeypatch.setattr(delivery_tasks, "plan_task", fast)
    argv = ["transfer", str(lab / "releases" / RELEASE_NAME), "--to", BLOCKED]
    seen = []
    # Prefect stores the exception of a failed flow run (its one-line message) as a result even
    # with persist_result=False: keep it out of the session's PREFECT_HOME, which another test checks
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "storage"}):
        for extra in ([], ["--flow"]):
            code = run(argv + extra)
            seen.append((code, _errors(capfd.readouterr().err)))
    assert seen[0] == seen[1]
    assert (1, True) == (seen[0][0], seen[0][1][0].startswith("genegate: error: transfer failed: "))


def test_an_api_url_makes_the_plain_command_a_flow(
    operator: Path,
    lab: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """With $PREFECT_API_URL set, deid without --flow is a `deidentify` flow run; --dry-run stays plain."""
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    argv = ["deid", "--manifest", str(lab / "cohort" / "manifest.csv"), "--policy", "cgipa",
            "--out", str(tmp_path), "--release-id", "rel-api", "--summary-only"]  # fmt: skip
    assert 0 == run(argv)
    captured = capfd.readouterr()
    run_id, _ = _run_line(captured.err)
    assert str(tmp_path / "rel-api") == captured.out.strip()
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(uuid.UUID(run_id))
    assert ("rel-api", True) == (flow_run.parameters["release_id"], flow_run.state is not None)
    assert 0 == run(["transfer", str(lab / "releases" / RELEASE_NAME), "--to", CH, "--dry-run"])
    assert None is RUN_LINE.search(capfd.readouterr().err)


def test_release_and_share_links_the_report_its_transfer_wrote(
    operator: Path, lab: Path, tmp_path: Path
) -> None:
    """The parent run links the same report file as its transfer sub-flow, named after the parent run."""
    state = pipeline.release_and_share(
        str(lab / "cohort" / "manifest.csv"),
        "cgipa",
        [CH],
        str(tmp_path / "releases"),
        str(tmp_path / "results"),
        str(operator),
        summary_only=True,
        seed=7,
        return_state=True,
    )
    parent = str(state.state_details.flow_run_id)
    with get_client(sync_client=True) as client:
        children = {str(r.id) for r in client.read_flow_runs() if r.parent_task_run_id is not None}
        links = [(str(a.flow_run_id), str(a.data)) for a in client.read_artifacts() if a.key == REPORT_KEY]
    report = report_path(operator, parent).resolve()
    linked_by = {run_id for run_id, data in links if f"({report.as_uri()})" in data}
    assert (True, 2) == (state.is_completed(), len(linked_by))
    assert parent in linked_by
    assert linked_by - {parent} <= children
    assert report.is_file()
