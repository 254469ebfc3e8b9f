"""A real Prefect server: the partner-sync deployment served, scheduled from its cron, triggered, delivered.

`prefect server start` runs on loopback with a SQLite database and a PREFECT_HOME of its own; a
second process, `genegate schedule serve`, serves the deployment partner-sync/<recipient> that
`genegate schedule add` wrote into prefect.yaml (entrypoint, parameters, cron, concurrency limit),
with GENEGATE_PASSPHRASE in its environment as a worker would have it. One test triggers a run
through the REST API, polls it to completion and checks the outbox, the signed transfer log and
the run's artifacts; the other checks that the server's scheduler turns the cron into SCHEDULED
runs ahead of time (what a cron deployment lives on; SQLAlchemy 2.1 broke it, hence the pin in
pyproject.toml). Each process leads its own process group, killed at the end even on failure.
Nothing is skipped: the server comes with the installed package.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml  # type: ignore[import-untyped]

from flows.artifacts import REPORT_KEY, artifact_key, report_path
from flows.cli import run
from keys import Keystore, Passphrase
from tests.support.releases import RELEASE_NAME, assessed_summary_release, register_partner
from transfer import TRANSFER_LOG, TransferLog

PASS = Passphrase("correct horse battery")
CH = "ch-zurich"
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
T = TypeVar("T")


class Processes:
    """Subprocesses that each lead a process group, with their output in files for failure messages."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path = REPO) -> None:
        log = self.root / f"{name}.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                argv, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.started.append((proc, log))

    def stop(self) -> None:
        """SIGTERM every group (flow-run children included), SIGKILL what is left after 20 s."""
        for proc, _ in reversed(self.started):
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
            _signal_group(proc, signal.SIGKILL)  # children that outlived their leader

    def tails(self) -> str:
        parts = [f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for _, log in self.started]
        return "\n".join(parts)

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float) -> T:
        """Poll probe every half second until it returns a value; fail with the processes' output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc, log in self.started:
                assert proc.poll() is None, (
                    f"{log.stem} exited ({proc.returncode}) before {what}\n{self.tails()}"
                )
            found = probe()
            if found is not None:
                return found
            time.sleep(0.5)
        raise AssertionError(f"no {what} after {timeout:.0f} s\n{self.tails()}")


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(proc.pid, sig)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _call(url: str, body: dict[str, Any] | None = None) -> Any:
    """GET url, or POST body as JSON; the decoded answer. A 503 (SQLite busy: Prefect's own client
    retries it) is retried for 30 s; any other HTTP error raises, naming its answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})  # noqa: S310 - loopback http
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback http
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() > deadline:
                raise AssertionError(f"{url}: HTTP {exc.code} {exc.read()[:500]!r}") from None
        time.sleep(0.5)


def _probe(url: str) -> Any:
    """GET url; None while nothing answers there yet (no server, or 404 for what is not there yet)."""
    try:
        return _call(url)
    except (urllib.error.URLError, ConnectionError, TimeoutError, AssertionError):
        return None


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """The subprocesses of one test, stopped at its end whatever happened."""
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.stop()


def _prefect_env() -> dict[str, str]:
    """This environment without Prefect, genegate or AWS settings, and no telemetry or UI."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "GENEGATE_", "AWS_"))}
    return {**clean, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}


@pytest.fixture
def server(processes: Processes, tmp_path: Path) -> str:
    """`prefect server start` on loopback (SQLite, its own PREFECT_HOME, a scheduler pass every 2 s
    instead of 60); its API URL. Health is not awaited here: a test builds its lab meanwhile."""
    port = _free_port()
    server_env = {
        **_prefect_env(),
        "PREFECT_HOME": str(tmp_path / "server-home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    }
    processes.start("server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], server_env)  # fmt: skip
    return f"http://127.0.0.1:{port}/api"


def _schedule_add(home: Path, releases: Path, cron: str, prefect_yaml: Path) -> None:
    """`genegate schedule add` for the partner, writing its deployment into prefect_yaml."""
    argv = ["--home", str(home), "schedule", "add", CH, "--cron", cron,
            "--releases", str(releases), "--file", str(prefect_yaml)]  # fmt: skip
    assert 0 == run(argv)


def _serve(processes: Processes, tmp_path: Path, api: str, home: Path, prefect_yaml: Path) -> Any:
    """Once the server answers, `genegate schedule serve partner-sync/<partner>` from prefect_yaml (in
    a directory that is not the repository's); the deployment as the API reads it."""
    processes.wait_for("server health", lambda: _probe(f"{api}/health"), timeout=150)
    serve_env = {
        **_prefect_env(),
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(tmp_path / "runner-home"),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "GENEGATE_HOME": str(home),
        "GENEGATE_PASSPHRASE": PASS.reveal(),
    }
    argv = [str(BIN / "genegate"), "schedule", "serve", f"partner-sync/{CH}", "--file", str(prefect_yaml)]
    processes.start("serve", argv, serve_env, cwd=tmp_path)  # not the repository: flows load by module
    return processes.wait_for(
        "deployment", lambda: _probe(f"{api}/deployments/name/partner-sync/{CH}"), timeout=90
    )


def test_a_served_partner_sync_deployment_delivers_a_run_triggered_through_the_api(
    processes: Processes, server: str, tmp_path: Path
) -> None:
    """A run of partner-sync/ch-zurich triggered through the API completes, delivering to the outbox."""
    api = server
    lab = tmp_path / "lab"  # built while the server migrates its database
    store = assessed_summary_release(lab, PASS)
    outbox = lab / "outbox" / CH
    register_partner(store, PASS, CH, "CH", "eu-central-2", outbox.as_uri())
    prefect_yaml = tmp_path / "prefect.yaml"
    _schedule_add(store.home, lab / "releases", "0 2 * * 1", prefect_yaml)

    deployment = _serve(processes, tmp_path, api, store.home, prefect_yaml)
    flow_run = _call(f"{api}/deployments/{deployment['id']}/create_flow_run", {})
    run_id = flow_run["id"]

    def final_state() -> str | None:
        found = _probe(f"{api}/flow_runs/{run_id}")
        state = found["state"]["type"] if found and found.get("state") else None
        return state if state in FINAL else None

    assert "COMPLETED" == processes.wait_for("final state", final_state, timeout=120), processes.tails()

    entry = yaml.safe_load(prefect_yaml.read_text(encoding="utf-8"))["deployments"][0]
    assert (entry["parameters"], "0 2 * * 1") == (
        deployment["parameters"],
        deployment["schedules"][0]["schedule"]["cron"],
    )
    release_id = json.loads((lab / "releases" / RELEASE_NAME / "release.json").read_text())["release_id"]
    delivered = outbox / release_id
    assert {"delivery-manifest.json", "release.json.c4gh", "summary"} == {p.name for p in delivered.iterdir()}
    log = TransferLog(store.home / TRANSFER_LOG)
    assert True is log.verify(Keystore(store.home).verify_key()).ok
    assert [("transfer.delivered", release_id, run_id)] == [
        (e["event"], e["release_id"], e["flow_run_id"]) for e in log.entries()
    ]
    artifacts = _call(f"{api}/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    keys = {a["key"]: a for a in artifacts}
    expected = {REPORT_KEY, artifact_key("delivery", "sync", CH), artifact_key("gate", release_id, CH)}
    assert expected == set(keys)
    report = report_path(store.home, run_id).resolve()
    assert (True, True) == (report.as_uri() in keys[REPORT_KEY]["data"], report.is_file())
    storage = tmp_path / "runner-home" / "storage"  # where a failed run's exception would be written
    assert 0o700 == storage.stat().st_mode & 0o777


def test_the_scheduler_gives_a_served_partner_sync_deployment_runs_ahead_from_its_cron(
    processes: Processes, server: str, tmp_path: Path
) -> None:
    """The server's scheduler turns the cron of partner-sync/ch-zurich (Mondays 02:00 UTC) into
    SCHEDULED runs ahead of time, with the deployment's parameters. With SQLAlchemy 2.1 every pass
    fails (its bulk INSERT rejects the hybrid `state` key of Prefect 3.8.8's run rows): no runs."""
    store = Keystore.init(tmp_path / "ks", PASS)
    register_partner(store, PASS, CH, "CH", "eu-central-2", (tmp_path / "outbox").as_uri(), bases=False)
    prefect_yaml = tmp_path / "prefect.yaml"
    _schedule_add(store.home, tmp_path / "releases", "0 2 * * 1", prefect_yaml)
    served_at = dt.datetime.now(dt.UTC)

    deployment = _serve(processes, tmp_path, server, store.home, prefect_yaml)
    runs_filter = {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}}
    runs = processes.wait_for(
        "scheduled runs", lambda: _call(f"{server}/flow_runs/filter", runs_filter) or None, timeout=60
    )

    starts = sorted(dt.datetime.fromisoformat(r["expected_start_time"]).astimezone(dt.UTC) for r in runs)
    first = starts[0]
    # Prefect keeps at least three runs (and an hour) ahead: three Mondays 02:00 UTC, a week apart
    assert [first + dt.timedelta(weeks=i) for i in range(3)] == starts
    assert (0, 2, 0, 0) == (first.weekday(), first.hour, first.minute, first.second)
    assert True is (served_at < first <= served_at + dt.timedelta(weeks=1, minutes=10))
    entry = yaml.safe_load(prefect_yaml.read_text(encoding="utf-8"))["deployments"][0]
    assert [("SCHEDULED", entry["parameters"], True)] * 3 == [
        (r["state"]["type"], r["parameters"], "auto-scheduled" in r["tags"]) for r in runs
    ]
