"""Prefect flows: release_and_share end to end against a real (test-harness) Prefect API.

One Prefect test server for the session (prefect_home, tests/integration/conftest.py): the flow runs
once on a synthetic cohort with the demo's keystore and partners, and the tests read its outcome, its flow
run parameters and its artifacts back through the Prefect client.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.flows import load_flow_from_entrypoint
from prefect.states import Failed

from deid.synth import CohortSpec, synthesize_cohort
from flows import delivery_tasks
from flows.artifacts import artifact_key, delivery_rows, gate_rows
from flows.cli import run
from flows.cli_run import exit_code
from flows.console import today
from flows.delivery_tasks import DELIVERY_RETRIES, _transient, deliver_task, finish_task, plan_task
from flows.demo import DEMO_PASSPHRASE, _keys_stage
from flows.pipeline import (
    assess,
    assess_release,
    deidentify,
    deidentify_release,
    partner_sync,
    release_and_share,
    transfer,
)
from flows.schedule import ENTRYPOINT, FLOW_NAME, check_cron, deployment_entry
from keys import Keystore, Passphrase
from transfer import TRANSFER_LOG, DeliveryRejected, DestinationUnusable, TransferLog, plan_transfer, sending
from transfer.delivery.local import STAGING

REPO = Path(__file__).resolve().parents[2]
CH, JP, CN = "ch-zurich-genomics", "jp-tokyo-medgen", "cn-shanghai-seq"
IDENTIFYING = (
    "sample_id", "subject_id", "full_name", "email", "phone", "street_address", "ssn", "mrn",
    "health_plan_id", "device_id", "ip_address", "url", "date_of_birth",
)  # fmt: skip


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A synthetic identified cohort (no reads) and the demo's keystore with its three partners."""
    out = tmp_path_factory.mktemp("lab")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENEGATE_PASSPHRASE", DEMO_PASSPHRASE)
        synthesize_cohort(CohortSpec(out=out / "cohort", samples=12, seed=7, reads=False))
        _keys_stage(out)
        yield out


@pytest.fixture(scope="module")
def shared(prefect_home: Path, lab: Path) -> dict[str, Any]:
    """One release_and_share run: a summary-only release offered to all three partners."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENEGATE_PASSPHRASE", DEMO_PASSPHRASE)
        summary: dict[str, Any] = release_and_share(
            str(lab / "cohort" / "manifest.csv"),
            "cgipa",
            [CH, JP, CN],
            str(lab / "releases"),
            str(lab / "results"),
            str(lab / "keystore"),
            summary_only=True,
            seed=7,
        )
    return summary


@pytest.fixture
def passphrase_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo keystore's passphrase in $GENEGATE_PASSPHRASE, as a flow run reads it."""
    monkeypatch.setenv("GENEGATE_PASSPHRASE", DEMO_PASSPHRASE)


def _identifier_values(manifest: Path) -> set[str]:
    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {row[c].strip().lower() for row in rows for c in IDENTIFYING if len(row[c].strip()) >= 5}


def test_summary_release_goes_only_to_the_partners_with_every_basis(
    shared: dict[str, Any], lab: Path
) -> None:
    """As in the demo: the summary release is deidentified; Zurich and Tokyo, which hold a basis for every
    origin regime of the cohort, receive it; Shanghai is denied with its reasons."""
    outcomes = {s["recipient_id"]: s["outcome"] for s in shared["sends"]}
    assert ("passed", "deidentified") == (shared["status"], shared["class"])
    assert {CH: "delivered", JP: "delivered", CN: "denied"} == outcomes
    denied = {s["recipient_id"]: bool(s["reasons"]) for s in shared["sends"] if s["outcome"] == "denied"}
    assert {CN: True} == denied
    delivered = lab / "outbox" / CH / shared["release_id"]
    assert {"delivery-manifest.json", "release.json.c4gh", "summary"} == {p.name for p in delivered.iterdir()}
    store = Keystore(lab / "keystore")
    log = TransferLog(store.home / TRANSFER_LOG)
    assert True is log.verify(store.verify_key()).ok
    events = [e["event"] for e in log.entries() if e.get("release_id") == shared["release_id"]]
    assert ["assessment.destroyed", "transfer.delivered", "transfer.delivered", "transfer.denied"] == sorted(
        events
    )


def test_each_file_is_delivered_by_its_own_task(shared: dict[str, Any]) -> None:
    """The transfer sub-flow plans and finishes once per recipient and runs one deliver task per file sent."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
        flow_ids = {r.flow_id for r in runs if client.read_flow(r.flow_id).name == "transfer"}
    ours = [r for r in runs if r.flow_id in flow_ids and r.parameters.get("release") == shared["release"]]
    tasks = _task_runs(ours[0].id)
    sent = sum(len(s["files"]) for s in shared["sends"] if s["outcome"] == "delivered")
    kinds = [name if not name.startswith("deliver-") else "deliver" for name, _, _ in tasks]
    assert (1, True) == (len(ours), sent >= 4)
    assert {"plan-transfer": 3, "deliver": sent, "finish-transfer": 3} == {
        k: kinds.count(k) for k in set(kinds)
    }
    assert {(1, "COMPLETED")} == {(count, final) for _, count, final in tasks}


def test_artifacts_cover_results_decisions_and_delivery(shared: dict[str, Any]) -> None:
    """The run publishes the release, re-identification, per-recipient gate and delivery artifacts."""
    release_id = shared["release_id"]
    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_artifacts() if a.key and release_id.lower() in a.key}
    expected = {artifact_key(*parts) for parts in [("release", release_id), ("reid", release_id),
                ("delivery", release_id)] + [("gate", release_id, rid) for rid in (CH, JP, CN)]}  # fmt: skip
    assert expected == set(artifacts)
    delivery = json.loads(str(artifacts[artifact_key("delivery", release_id)].data))
    sent = {(r["recipient"], r["outcome"], r["destination"].startswith("file://")) for r in delivery}
    assert {(CH, "delivered", True), (JP, "delivered", True), (CN, "denied", False)} == sent
    assert all(len(r["ciphertext_sha256"]) == 64 for r in delivery if r["recipient"] in (CH, JP))
    gate_cn = json.loads(str(artifacts[artifact_key("gate", release_id, CN)].data))
    assert any(r["result"] == "FAIL" and r["reason"] for r in gate_cn)
    reid = json.loads(str(artifacts[artifact_key("reid", release_id)].data))
    assert {"test", "metric", "value", "threshold", "comparator", "passed", "severity", "status"} == set(
        reid[0]
    )


def test_artifacts_and_parameters_hold_no_identifier_value(shared: dict[str, Any], lab: Path) -> None:
    """No identifier of the manifest, nor the passphrase, is in an artifact, a run parameter or a log."""
    secrets = _identifier_values(lab / "cohort" / "manifest.csv") | {DEMO_PASSPHRASE.lower()}
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
        runs = client.read_flow_runs()
        names = {client.read_flow(r.flow_id).name for r in runs}
        logs = [log.message.lower() for log in client.read_logs()]
    texts = [f"{a.key} {a.description} {a.data}".lower() for a in artifacts] + logs
    params = [json.dumps(r.parameters, default=str).lower() for r in runs]
    assert shared["release_id"] in " ".join(texts)  # the artifacts were read back
    assert {"release-and-share", "deidentify", "assess", "transfer"} <= names
    assert [] == [s for s in secrets if any(s in t for t in texts + params)]


def test_identified_data_tasks_neither_cache_nor_persist(shared: dict[str, Any], prefect_home: Path) -> None:
    """Every task declares NO_CACHE and no persisted result; only delivery retries; nothing was stored."""
    declared = [
        (t.name, type(t.cache_policy) is type(NO_CACHE), t.persist_result, t.retries)
        for t in (deidentify_release, assess_release, plan_task, deliver_task, finish_task)
    ]
    assert [
        ("deidentify-release", True, False, 0),
        ("assess-release", True, False, 0),
        ("plan-transfer", True, False, DELIVERY_RETRIES),
        ("deliver-file", True, False, DELIVERY_RETRIES),
        ("finish-transfer", True, False, DELIVERY_RETRIES),
    ] == declared
    stored = [p for p in (prefect_home / "storage").rglob("*") if p.is_file()]
    assert ([], True) == (stored, bool(shared["release_id"]))


def test_only_a_delivery_error_that_may_pass_is_retried() -> None:
    """A rejected upload is retried; an unusable destination or any other failure is not."""
    outcomes = [
        _transient(deliver_task, None, Failed(data=exc))  # type: ignore[arg-type]
        for exc in (
            DeliveryRejected("s3://b", "upload refused"),
            DestinationUnusable("s3://b", "no such bucket"),
            ValueError(),
        )
    ]
    assert [True, False, False] == outcomes


def test_cli_run_exits_3_when_every_recipient_is_denied(
    shared: dict[str, Any], lab: Path, passphrase_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """An individual-level (pseudonymised) release is denied for every partner: exit 3, reasons printed."""
    argv = ["--home", str(lab / "keystore"), "run", "release-and-share", "--manifest",
            str(lab / "cohort" / "manifest.csv"), "--policy", "cgipa", "--to", CH, "--to", JP,
            "--out", str(lab / "releases"), "--results", str(lab / "results")]  # fmt: skip
    assert 3 == run(argv)
    captured = capsys.readouterr()
    release = Path(captured.out.strip().splitlines()[-1])
    assert (True, shared["release_id"] != release.name) == ((release / "release.json").is_file(), True)
    assert f"{CH}: denied (" in captured.err
    assert f"{JP}: denied (" in captured.err


def test_cli_run_without_passphrase_is_bad_input(lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Flows never prompt: without $GENEGATE_PASSPHRASE the command exits 2 before any flow starts."""
    argv = ["run", "release-and-share", "--manifest", str(lab / "cohort" / "manifest.csv"),
            "--policy", "cgipa", "--to", CH]  # fmt: skip
    assert 2 == run(argv)
    assert "set $GENEGATE_PASSPHRASE" in capsys.readouterr().err


def test_exit_code_follows_the_outcomes() -> None:
    """0 when all not denied were delivered or unchanged, 3 when all were denied, 1 otherwise."""
    cases = [["delivered", "denied"], ["unchanged"], ["denied", "denied"], ["delivered", "failed"]]
    assert [0, 0, 3, 1] == [exit_code([{"outcome": o} for o in case]) for case in cases]


def test_delivery_rows_keep_denied_recipients_and_gate_rows_mark_failures() -> None:
    """A denied recipient has one file-less row; a gate rule that failed reads FAIL, one not applying n/a."""
    sends: list[dict[str, Any]] = [
        {"release_id": "r", "recipient_id": "a", "outcome": "denied", "destination": None, "files": []},
        {
            "release_id": "r",
            "recipient_id": "b",
            "outcome": "delivered",
            "destination": "file:///x",
            "files": [{"name": "f", "bytes": 3, "plaintext_sha256": "p", "ciphertext_sha256": "c"}],
        },
    ]
    assert [("a", "-", 0), ("b", "f", 3)] == [
        (r["recipient"], r["file"], r["bytes"]) for r in delivery_rows(sends)
    ]
    rules = [
        {"id": "r1", "passed": False, "applies": True, "reason": "x"},
        {"id": "r2", "passed": True, "applies": False, "reason": "y"},
        {"id": "r3", "passed": True, "applies": True, "reason": "z"},
    ]
    assert ["FAIL", "n/a", "pass"] == [r["result"] for r in gate_rows({"rules": rules})]
    assert "gate-rel-1-ch-zurich" == artifact_key("gate", "Rel_1", "ch.zurich")


def test_partner_sync_sends_each_certified_release_once(
    prefect_home: Path, lab: Path, passphrase_env: None
) -> None:
    """partner-sync sends an assessed release not yet delivered, skips an unassessed one, then sends nothing."""
    manifest, home, releases = str(lab / "cohort" / "manifest.csv"), str(lab / "keystore"), lab / "sync"
    certified = deidentify(manifest, "cgipa", str(releases), home, summary_only=True, release_id="rel-sync-1")
    outcome = assess(certified["path"], manifest, str(lab / "results"), home, seed=7)
    deidentify(manifest, "cgipa", str(releases), home, summary_only=True, release_id="rel-sync-2")
    first = partner_sync(CH, str(releases), home)
    again = partner_sync(CH, str(releases), home)
    assert ("passed", [("rel-sync-1", CH, "delivered")], []) == (
        outcome["status"],
        [(s["release_id"], s["recipient_id"], s["outcome"]) for s in first],
        again,
    )
    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts()}
    expected = {"release-rel-sync-1", "release-rel-sync-2", "reid-rel-sync-1", "gate-rel-sync-1-" + CH}
    assert (set(), True) == (expected - keys, artifact_key("delivery", "sync", CH) in keys)


def test_schedule_add_writes_one_partner_sync_deployment(lab: Path, tmp_path: Path) -> None:
    """schedule add writes partner-sync/RECIPIENT with its cron; a second add replaces it, keeping others."""
    file = tmp_path / "prefect.yaml"
    file.write_text("name: lab\ndeployments:\n- name: other\n  entrypoint: x.py:y\n", encoding="utf-8")
    home = ["--home", str(lab / "keystore")]
    for cron in ("0 2 * * 1", "30 1 * * *"):
        assert 0 == run(
            [*home, "schedule", "add", CH, "--cron", cron, "--file", str(file), "--releases", "r"]
        )
    doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    assert ["other", CH] == [d["name"] for d in doc["deployments"]]
    entry = doc["deployments"][1]
    assert (FLOW_NAME, ENTRYPOINT, [{"cron": "30 1 * * *", "timezone": "UTC", "active": True}]) == (
        entry["flow_name"],
        entry["entrypoint"],
        entry["schedules"],
    )
    assert {"recipient": CH, "releases": str(Path("r").resolve()), "home": str(lab / "keystore")} == entry[
        "parameters"
    ]
    assert 2 == run([*home, "schedule", "add", "no-such-partner", "--cron", "0 2 * * 1", "--file", str(file)])
    assert 2 == run([*home, "schedule", "add", CH, "--cron", "0 2 * *", "--file", str(file)])


def test_committed_prefect_yaml_runs_partner_sync_on_a_cron() -> None:
    """The repository's prefect.yaml names the partner-sync flow by a loadable entrypoint and a valid cron
    (its other deployments, such as retention/daily, are checked by their own tests)."""
    doc = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    synced = [e for e in doc["deployments"] if e["flow_name"] == FLOW_NAME]
    assert synced, "prefect.yaml declares no partner-sync deployment"
    for entry in synced:
        path, function = entry["entrypoint"].split(":")
        loaded: Any = load_flow_from_entrypoint(f"{REPO / path}:{function}")
        schedule = check_cron(entry["schedules"][0]["cron"], entry["schedules"][0]["timezone"])
        shape = deployment_entry(entry["name"], schedule, Path("releases"), Path(".genegate"))
        assert (FLOW_NAME, entry["flow_name"], entry["name"], set(shape)) == (
            loaded.name,
            FLOW_NAME,
            entry["parameters"]["recipient"],
            set(entry),
        )


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The delivery tasks with their retries but no delay between them."""
    for name in ("plan_task", "deliver_task", "finish_task"):
        fast = getattr(delivery_tasks, name).with_options(retry_delay_seconds=0)
        monkeypatch.setattr(delivery_tasks, name, fast)


def _certified(lab: Path, release_id: str) -> str:
    """A summary-only release of the lab's cohort, assessed (so certified); its path."""
    manifest, home = str(lab / "cohort" / "manifest.csv"), str(lab / "keystore")
    release = deidentify(
        manifest, "cgipa", str(lab / "retry"), home, summary_only=True, release_id=release_id
    )
    assess(release["path"], manifest, str(lab / "results"), home, seed=7)
    return str(release["path"])


def _task_runs(flow_run_id: Any) -> list[tuple[str, int, str]]:
    """(task, run count, final state type) of each task run of a flow run, sorted; the task is the
    run's name without Prefect's suffix (`plan-transfer-3fa` -> plan-transfer; deliver-<i> as named)."""
    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_task_runs() if r.flow_run_id == flow_run_id]
    return sorted(
        (
            r.name if r.name.startswith("deliver-") else r.name.rsplit("-", 1)[0],
            r.run_count,
            r.state_type.value if r.state_type else "",
        )
        for r in runs
    )


def test_a_failing_file_delivery_retries_then_fails_the_run_naming_it(
    prefect_home: Path, lab: Path, passphrase_env: None, fast_retries: None
) -> None:
    """Each file's deliver task runs 1 + DELIVERY_RETRIES times when the outbox refuses it; nothing is
    published, the failure is logged once, and the run fails naming release and recipient."""
    release = _certified(lab, "rel-retry-file")
    store = Keystore(lab / "keystore")
    log = TransferLog(store.home / TRANSFER_LOG)
    plan = plan_transfer(
        store, Path(release), CH, Passphrase(DEMO_PASSPHRASE), today(),
        wrapper=delivery_tasks.keystore_wrapper(store), log=log,
    )  # fmt: skip
    outbox = lab / "outbox" / CH / "rel-retry-file"
    staging = outbox / STAGING / str(plan.transfer_id) / "files"
    staging.parent.mkdir(parents=True)
    staging.write_text("not a directory\n", encoding="utf-8")  # no file can be staged
    state = transfer(release, [CH], str(store.home), return_state=True)
    runs = _task_runs(state.state_details.flow_run_id)
    delivers = [(count, final) for name, count, final in runs if name.startswith("deliver-")]
    others = [(name, count) for name, count, _ in runs if not name.startswith("deliver-")]
    assert (True, [("plan-transfer", 1)]) == (state.is_failed(), others)
    assert [(1 + DELIVERY_RETRIES, "FAILED")] * len(plan.sending) == delivers
    assert f"rel-retry-file -> {CH} (DeliveryRejected)" in str(state.message)
    entries = [
        e["event"]
        for e in log.entries()
        if e.get("release_id") == "rel-retry-file" and e["event"].startswith("transfer.")
    ]
    assert (["transfer.failed"], False) == (entries, (outbox / "delivery-manifest.json").exists())


def test_a_destination_that_fails_the_plan_is_retried_then_named(
    prefect_home: Path, lab: Path, passphrase_env: None, fast_retries: None
) -> None:
    """An outbox path taken by a file fails plan-transfer, which runs 1 + DELIVERY_RETRIES times and
    starts no delivery; the run fails naming release and recipient."""
    release = _certified(lab, "rel-retry-plan")
    blocker = lab / "outbox" / CH / "rel-retry-plan"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a directory\n", encoding="utf-8")  # the outbox cannot take the release
    state = transfer(release, [CH], str(lab / "keystore"), return_state=True)
    runs = _task_runs(state.state_details.flow_run_id)
    assert (True, [1 + DELIVERY_RETRIES]) == (state.is_failed(), [count for _, count, _ in runs])
    assert f"rel-retry-plan -> {CH} (DeliveryRejected)" in str(state.message)


def test_a_transfer_another_process_is_sending_fails_without_planning(
    prefect_home: Path, lab: Path, passphrase_env: None
) -> None:
    """While the (release, recipient) send lock is held elsewhere, the transfer flow plans nothing for
    that pair, logs nothing, and fails naming it (TransferBusy); the lock's holder is undisturbed."""
    release = _certified(lab, "rel-busy")
    store = Keystore(lab / "keystore")
    before = len(list(TransferLog(store.home / TRANSFER_LOG).entries()))
    with sending(store.home, Path(release), CH):
        state = transfer(release, [CH], str(store.home), return_state=True)
    after = len(list(TransferLog(store.home / TRANSFER_LOG).entries()))
    assert (True, [], before) == (state.is_failed(), _task_runs(state.state_details.flow_run_id), after)
    assert f"rel-busy -> {CH} (TransferBusy)" in str(state.message)
