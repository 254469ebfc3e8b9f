"""Prefect flows on Dask (prefect-dask): the deidentify flow's per-file tasks on a LocalCluster of two
worker processes release the same files as the local runner, one task per genomic file, with no
identifier in any task run; a failing file fails the release and leaves nothing behind.

The cluster is started once for the module by flows.runners, as `genegate run --runner dask` starts
it; the Prefect test server is the session's (tests/integration/conftest.py).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import polars as pl
import pysam
import pytest
from distributed import Client
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun, State, StateType, TaskRun
from prefect_dask.task_runners import DaskTaskRunner

from deid import DeidError
from deid.synth import CohortSpec, synthesize_cohort
from flows.cli import run
from flows.demo import DEMO_PASSPHRASE, _keys_stage
from flows.pipeline import deidentify, deidentify_file
from flows.runners import Runner, dask_runner, task_runner

RELEASE_ID = "rel-dask-1"
CH = "ch-zurich-genomics"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny synthetic cohort with VCF, BAM and FASTQ files, and the demo's keystore and partners."""
    root = tmp_path_factory.mktemp("dask-lab")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENEGATE_PASSPHRASE", DEMO_PASSPHRASE)
        synthesize_cohort(CohortSpec(out=root / "cohort", samples=12, seed=11, reads=True, coverage=2.0))
        _keys_stage(root)
        yield root


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    """The scheduler of a LocalCluster of two worker processes, started as `--runner dask` starts it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REF_PATH", ":")  # the workers' environment is this one, at their start
        with task_runner(Runner.DASK) as runner:
            assert isinstance(runner, DaskTaskRunner)
            yield str(runner.address)


def _deidentify(
    lab: Path, runner: str | None, out: str, release_id: str, manifest: Path | None = None
) -> State:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENEGATE_PASSPHRASE", DEMO_PASSPHRASE)
        flow = deidentify if runner is None else deidentify.with_options(task_runner=dask_runner(runner))
        state: State = flow(
            str(manifest or lab / "cohort" / "manifest.csv"),
            "cgipa",
            str(lab / out),
            str(lab / "keystore"),
            release_id=release_id,
            return_state=True,
        )
    return state


@dataclass(frozen=True, slots=True)
class Runs:
    """The two flow runs of one release, and what they left in Prefect's result storage."""

    states: dict[str, State]
    stored: list[str]


def _stored(prefect_home: Path) -> set[str]:
    return {p.name for p in (prefect_home / "storage").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def runs(prefect_home: Path, lab: Path, dask_address: str) -> Runs:
    """The same release (same id, same vault) made by the local runner and by the Dask runner."""
    before = _stored(prefect_home)
    states = {
        "local": _deidentify(lab, None, "local", RELEASE_ID),
        "dask": _deidentify(lab, dask_address, "dask", RELEASE_ID),
    }
    return Runs(states, sorted(_stored(prefect_home) - before))


def _digests(release: Path) -> dict[str, str]:
    """SHA-256 of every file of a release, read from disk."""
    return {
        p.relative_to(release).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(release.rglob("*"))
        if p.is_file()
    }


def _run_id(state: State) -> UUID:
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    return run_id


def _task_runs(state: State) -> list[TaskRun]:
    ids = FlowRunFilter(id=FlowRunFilterId(any_=[_run_id(state)]))
    with get_client(sync_client=True) as client:
        return list(client.read_task_runs(flow_run_filter=ids))


def test_dask_and_local_runners_release_the_same_files(runs: Runs, lab: Path) -> None:
    """Every released file, and the release's digest, is the same whether threads or Dask workers ran the files."""
    summaries = {name: state.result() for name, state in runs.states.items()}
    local, dask = (_digests(lab / name / RELEASE_ID) for name in ("local", "dask"))
    record = json.loads((lab / "dask" / RELEASE_ID / "release.json").read_text(encoding="utf-8"))
    listed = {f["name"]: f["sha256"] for f in record["files"]}
    assert (summaries["local"]["release_sha256"], True) == (summaries["dask"]["release_sha256"], True)
    assert {k: v for k, v in local.items() if k != "release.json"} == {
        k: v for k, v in dask.items() if k != "release.json"
    }
    assert listed == {k: v for k, v in dask.items() if k != "release.json"}
    kinds = Counter(name.split(".", 1)[1] for name in listed)
    n = record["counts"]["included_samples"]
    assert (1, n, 2 * n, 1) == (kinds["vcf.gz"], kinds["bam"], kinds["fastq.gz"], kinds["parquet"])


def test_the_files_the_dask_workers_wrote_are_valid_for_htslib(runs: Runs, lab: Path) -> None:
    """samtools quickcheck passes every BAM, bcftools reads the VCF, and each FASTQ pair has equal reads."""
    release = lab / "dask" / RELEASE_ID
    n = runs.states["dask"].result()["included"]
    bams = sorted(str(p) for p in (release / "alignments").glob("*.bam"))
    assert ("", n) == (pysam.samtools.quickcheck(*bams), len(bams))
    [vcf] = (release / "genotypes").glob("*.vcf.gz")
    with pysam.VariantFile(str(vcf)) as variants:
        assert (n, True) == (len(variants.header.samples), sum(1 for _ in variants) > 0)
    pairs = []
    for r1 in sorted((release / "reads").glob("*_R1.fastq.gz")):
        r2 = r1.with_name(r1.name.replace("_R1", "_R2"))
        pairs.append(tuple(sum(1 for _ in pysam.FastxFile(str(p))) for p in (r1, r2)))
    assert [] == [p for p in pairs if p[0] != p[1] or p[0] == 0]


def test_one_task_per_genomic_file_ran_on_the_workers(runs: Runs, lab: Path, dask_address: str) -> None:
    """Each run has one deidentify-file task per released VCF, BAM and FASTQ pair; Dask's scheduler ran them."""
    release = lab / "dask" / RELEASE_ID
    expected = {
        "deidentify-vcf": len(list((release / "genotypes").glob("*.vcf.gz"))),
        "deidentify-alignment": len(list((release / "alignments").glob("*.bam"))),
        "deidentify-fastq": len(list((release / "reads").glob("*_R1.fastq.gz"))),
    }
    for state in runs.states.values():
        files = [r for r in _task_runs(state) if not r.name.startswith("deidentify-release")]
        indexes = sorted(int(r.name.rsplit("-", 1)[1]) for r in files)
        completed = {r.state_type for r in files}
        assert (expected, list(range(len(files))), {StateType.COMPLETED}) == (
            dict(Counter(r.name.rsplit("-", 1)[0] for r in files)),
            indexes,
            completed,
        )
    assert _worker_seconds(dask_address) > 0


def _worker_seconds(address: str, task: str = "deidentify_file") -> float:
    """Seconds Dask's workers spent computing a task (by function name) so far (the scheduler's tally)."""

    def tally(dask_scheduler: Any) -> float:
        prefix = dask_scheduler.task_prefixes.get(task)
        return 0.0 if prefix is None else float(prefix.all_durations["compute"])

    with Client(address, set_as_default=False) as client:  # type: ignore[no-untyped-call]
        seconds: float = client.run_on_scheduler(tally)
    return seconds


def _secrets(cohort: Path) -> set[str]:
    """The planted values, but not bare numbers (a ZIP occurs by chance in a run's timings and ids)."""
    with (cohort / "secrets.tsv").open(encoding="utf-8") as fh:
        values = [row["value"].lower() for row in csv.DictReader(fh, delimiter="\t")]
    return {v for v in values if len(v) >= 5 and not v.isdigit()}


def test_task_runs_and_logs_hold_no_identifier_value(runs: Runs, lab: Path) -> None:
    """No planted identifier (sample names, paths, names, barcodes) is in a task run, a flow run or a log line."""
    ids = [_run_id(state) for state in runs.states.values()]
    with get_client(sync_client=True) as client:
        flow_runs: list[FlowRun] = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
        )
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
    task_runs = [r for state in runs.states.values() for r in _task_runs(state)]
    texts = [r.model_dump_json().lower() for r in [*flow_runs, *task_runs]] + [
        log.message.lower() for log in logs
    ]
    secrets = _secrets(lab / "cohort")
    assert (2, True) == (len(flow_runs), len(task_runs) > 30)
    assert "gg17-00001" in secrets  # the sample names the job specs hold are among the planted values
    assert [] == sorted(s for s in secrets if any(s in t for t in texts))


def test_per_file_tasks_neither_cache_nor_persist_and_leave_no_job_specs(runs: Runs, lab: Path) -> None:
    """deidentify-file declares NO_CACHE and no persisted result; no job spec or work folder is left beside a release."""
    declared = (type(deidentify_file.cache_policy) is type(NO_CACHE), deidentify_file.persist_result)
    left = {name: sorted(p.name for p in (lab / name).iterdir()) for name in runs.states}
    assert ((True, False), {"local": [RELEASE_ID], "dask": [RELEASE_ID]}, []) == (declared, left, runs.stored)


def test_a_file_that_fails_on_a_worker_fails_the_release_and_leaves_nothing(
    prefect_home: Path, lab: Path, dask_address: str
) -> None:
    """A corrupt BAM fails its task on a worker; the run fails with deid's message and no release, work folder,
    job spec or ledger entry is left."""
    cohort = lab / "cohort"
    broken = lab / "broken"
    broken.mkdir()
    (broken / "corrupt.bam").write_bytes(b"BAM\x01 not a BAM file at all")
    rows = pl.read_csv(cohort / "manifest.csv", infer_schema=False)
    rows = rows.with_columns(
        pl.lit(str(cohort / "genotypes" / "cohort.vcf.gz")).alias("vcf"),
        pl.lit(str(broken / "corrupt.bam")).alias("alignment"),
        pl.lit(None, pl.String).alias("fastq"),
    )
    rows.write_csv(broken / "manifest.csv")
    before = _stored(prefect_home)
    state = _deidentify(lab, dask_address, "broken-out", "rel-dask-broken", broken / "manifest.csv")
    # Prefect keeps a failed flow run's exception in its result storage whatever persist_result says
    records = [
        base64.b64decode((prefect_home / "storage" / n).read_bytes()) for n in _stored(prefect_home) - before
    ]
    error = state.result(raise_on_failure=False)
    failed = [r.name for r in _task_runs(state) if r.state_type == StateType.FAILED]
    assert (True, True) == (state.is_failed(), isinstance(error, DeidError))
    message = str(error)
    assert (True, True, False) == (
        any(n.startswith("deidentify-alignment-") for n in failed),
        "(alignment job " in message and "the input: not a BAM or CRAM file" in message,
        "corrupt.bam" in message,  # an input's name may hold a sample name: the message names the output
    )
    assert (1, False) == (len(records), any(b"corrupt.bam" in r for r in records))
    assert [] == list((lab / "broken-out").iterdir())
    assert False is (lab / "keystore" / "ledger" / "rel-dask-broken.json").exists()


def test_cli_runs_release_and_share_on_a_dask_scheduler(
    runs: Runs,
    lab: Path,
    dask_address: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`run release-and-share --runner dask --dask-address` sends the summary task and each file's
    delivery to Dask's workers; the delivery is as before."""
    monkeypatch.setenv("GENEGATE_PASSPHRASE", DEMO_PASSPHRASE)
    before = _worker_seconds(dask_address), _worker_seconds(dask_address, "deliver_task")
    argv = ["--home", str(lab / "keystore"), "--json", "run", "release-and-share", "--manifest",
            str(lab / "cohort" / "manifest.csv"), "--policy", "cgipa", "--to", CH, "--summary-only",
            "--out", str(lab / "cli"), "--results", str(lab / "results"), "--runner", "dask",
            "--dask-address", dask_address]  # fmt: skip
    assert 0 == run(argv)
    summary = json.loads(capsys.readouterr().out)
    assert ("passed", [(CH, "delivered")]) == (
        summary["status"],
        [(s["recipient_id"], s["outcome"]) for s in summary["sends"]],
    )
    after = _worker_seconds(dask_address), _worker_seconds(dask_address, "deliver_task")
    assert (True, True) == (after[0] > before[0], after[1] > before[1])  # both ran on the workers


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_cli_refuses_a_dask_address_that_does_not_answer(
    lab: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An address with no scheduler is bad input: one line naming the address and the fix, exit 2, no flow run."""
    monkeypatch.setenv("GENEGATE_PASSPHRASE", DEMO_PASSPHRASE)
    address = f"tcp://127.0.0.1:{_closed_port()}"
    base = ["--home", str(lab / "keystore"), "run", "release-and-share", "--manifest",
            str(lab / "cohort" / "manifest.csv"), "--policy", "cgipa", "--to", CH, "--out", str(lab / "never")]  # fmt: skip
    assert 2 == run([*base, "--runner", "dask", "--dask-address", address])
    lines = capsys.readouterr().err.strip().splitlines()
    assert (1, True) == (len(lines), f"--dask-address {address}: no Dask scheduler answered" in lines[0])
    assert 2 == run([*base, "--runner", "dask", "--dask-address", "http://127.0.0.1:1"])
    assert "no Dask scheduler answered" in capsys.readouterr().err
    assert 2 == run([*base, "--dask-address", address])
    assert "--dask-address needs --runner dask" in capsys.readouterr().err
    assert False is (lab / "never").exists()
