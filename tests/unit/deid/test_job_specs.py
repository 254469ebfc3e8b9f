"""deid.genomic job specs and deidentify's job_runner seam: jobs written lab-side for another runner,
run one at a time from (folder, index), failures named by the released file; the release sequence
is the same whichever runner runs the jobs."""

from __future__ import annotations

import datetime as dt
import os
import pickle
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pysam
import pytest

from deid import DeidError
from deid.genomic import Job, job_specs, job_totals, read_job_spec, run_job_spec, run_jobs
from deid.policy import GenomicRules, load_policy
from deid.release import deidentify
from deid.synth import CohortSpec, synthesize_cohort
from keys import Keystore, Passphrase, Vault

PASS = Passphrase("correct horse battery")
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
RULES = load_policy("cgipa").genomic


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-sample identified manifest with its joint VCF (no reads)."""
    out = tmp_path_factory.mktemp("jobs") / "cohort"
    synthesize_cohort(CohortSpec(out=out, samples=12, seed=13, reads=False))
    return out


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Vault:
    """A vault domain in a fresh keystore."""
    store = Keystore.init(tmp_path_factory.mktemp("ks") / "ks", PASS)
    return Vault(store.home, "default", store.vault_wrapper(PASS))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_specs_are_private_beside_the_work_folder_and_removed_after(tmp_path: Path) -> None:
    """The folder is 0700 beside work/ (not in it), each job one 0600 file; nothing is left after the block."""
    work = tmp_path / ".rel-1.partial-ab"
    work.mkdir()
    jobs = [Job("alignment", (tmp_path / "Jane_Doe.bam",), ("alignments/GGSA.bam",), (("Jane Doe", "GGSA"),))]
    with job_specs(jobs, work, RULES) as folder:
        seen = (folder.parent == work.parent, _mode(folder), sorted(p.name for p in folder.iterdir()))
        modes = {_mode(p) for p in folder.iterdir()}
        assert (jobs[0], work, RULES, 1) == read_job_spec(folder, 0)
    assert ((True, 0o700, ["0.json"]), {0o600}) == (seen, modes)
    assert ([work], []) == (list(tmp_path.iterdir()), list(work.iterdir()))


def test_a_failing_job_names_its_released_file_not_its_input(tmp_path: Path) -> None:
    """A corrupt BAM fails with a plain, picklable DeidError naming the output; the input's name is not in it."""
    source = tmp_path / "Jane_Doe_WGS.bam"
    source.write_bytes(b"BAM\x01 truncated")
    work = tmp_path / "work"
    work.mkdir()
    jobs = [Job("alignment", (source,), ("alignments/GGSA.bam",), (("Jane_Doe", "GGSA"),))]
    with job_specs(jobs, work, RULES) as folder, pytest.raises(DeidError) as caught:
        run_job_spec(folder, 0)
    message = str(caught.value)
    crossed = pickle.loads(pickle.dumps(caught.value))  # noqa: S301 - our own bytes, as Dask sends them
    assert (DeidError, True, False) == (
        type(caught.value),
        message.startswith("alignments/GGSA.bam (alignment job 0): the input: "),
        "Jane_Doe" in message,
    )
    assert message == str(crossed)


def test_a_spec_the_worker_cannot_see_is_a_clear_error(tmp_path: Path) -> None:
    """A worker without the flow's filesystem fails naming the fix, as a plain DeidError."""
    with pytest.raises(DeidError, match="does not share the flow's filesystem") as caught:
        run_job_spec(tmp_path / "gone", 3)
    assert DeidError is type(caught.value)
    (tmp_path / "0.json").write_text('{"format": 99}', encoding="utf-8")
    with pytest.raises(DeidError, match="not a job spec of this genegate version"):
        read_job_spec(tmp_path, 0)


def test_jobs_run_from_specs_equal_the_thread_pool_runner(cohort: Path, tmp_path: Path) -> None:
    """The joint VCF de-identified from its spec is byte-identical to run_jobs' output, with the same totals."""
    source = cohort / "genotypes" / "cohort.vcf.gz"
    with pysam.VariantFile(str(source)) as vcf:
        names = list(vcf.header.samples)[:5]
    job = Job(
        "vcf",
        (source,),
        ("genotypes/genotypes-1.vcf.gz",),
        tuple((n, f"GGS{i}") for i, n in enumerate(names)),
    )
    pooled, specced = tmp_path / "pooled", tmp_path / "specced"
    pooled.mkdir()
    specced.mkdir()
    heard: list[tuple[str, int, int]] = []
    expected = run_jobs([job], pooled, RULES, progress=lambda *args: heard.append(args))
    assert [("genomic files", 1, 1)] == heard
    with job_specs([job], specced, RULES) as folder:
        actual = job_totals([job], [run_job_spec(folder, 0)])
    out = "genotypes/genotypes-1.vcf.gz"
    assert (expected, (pooled / out).read_bytes()) == (actual, (specced / out).read_bytes())
    with pysam.VariantFile(str(specced / out)) as vcf:
        assert ["GGS0", "GGS1", "GGS2", "GGS3", "GGS4"] == list(vcf.header.samples)


def test_deidentify_runs_the_jobs_through_the_runner_it_is_given(
    cohort: Path, vault: Vault, tmp_path: Path
) -> None:
    """A custom job_runner sees the planned jobs and work folder; the release is the default runner's."""
    seen: list[tuple[list[str], str]] = []

    def recording(jobs: Sequence[Job], work: Path, rules: GenomicRules) -> dict[str, Any]:
        seen.append(([j.kind for j in jobs], work.name))
        return run_jobs(jobs, work, rules)

    policy = load_policy("cgipa")
    manifest = cohort / "manifest.csv"
    default = deidentify(manifest, policy, tmp_path / "a", vault, release_id="rel-seam", now=NOW)
    custom = deidentify(
        manifest, policy, tmp_path / "b", vault, release_id="rel-seam", now=NOW, job_runner=recording
    )
    assert [(["vcf"], True)] == [(kinds, name.startswith(".rel-seam.partial-")) for kinds, name in seen]
    assert default.record["release_sha256"] == custom.record["release_sha256"]
    assert pl.read_parquet(default.path / "samples.parquet").equals(
        pl.read_parquet(custom.path / "samples.parquet")
    )


def test_a_failing_runner_leaves_no_release_work_folder_or_ledger(
    cohort: Path, vault: Vault, tmp_path: Path
) -> None:
    """When the job runner raises, deidentify re-raises and removes the work folder; no ledger entry is kept."""

    def failing(jobs: Sequence[Job], work: Path, rules: GenomicRules) -> dict[str, Any]:
        (work / "genotypes").mkdir()
        (work / "genotypes" / "half.vcf.gz").write_bytes(b"half")
        raise DeidError("genotypes/genotypes-1.vcf.gz (vcf job 0): the input: truncated")

    ledger = tmp_path / "ledger"
    with pytest.raises(DeidError, match="vcf job 0"):
        deidentify(
            cohort / "manifest.csv", load_policy("cgipa"), tmp_path / "out", vault, release_id="rel-fail",
            now=NOW, ledger=ledger, job_runner=failing,
        )  # fmt: skip
    assert ([], False) == (os.listdir(tmp_path / "out"), ledger.exists() and any(ledger.iterdir()))
