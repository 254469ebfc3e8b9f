"""assess on real synthetic releases: T01/T02/T03/T10 fail where the release leaks, results and release.json."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

import polars as pl
import pyarrow.dataset as ds
import pysam
import pytest

from deid.policy import builtin_text, load_policy, parse_policy
from deid.reid import (
    runner,
    t01_leaks,
    t02_reads,
    t03_regions,
    t10_rare,
    t11_k_anonymity,
    t12_uniqueness,
    t13_linkage,
    t14_diversity,
)
from deid.reid.model import AssessInputs
from deid.reid.results import SCHEMA
from deid.release import deidentify
from deid.synth import CohortSpec, synthesize_cohort
from keys import Keystore, Passphrase, Vault

PASS = Passphrase("correct horse battery")
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
TESTS: list[ModuleType] = [
    t01_leaks,
    t02_reads,
    t03_regions,
    t10_rare,
    t11_k_anonymity,
    t12_uniqueness,
    t13_linkage,
    t14_diversity,
]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-sample identified cohort with BAM and FASTQ."""
    out = tmp_path_factory.mktemp("assess") / "cohort"
    synthesize_cohort(CohortSpec(out=out, samples=12, seed=5, reads=True))
    return out


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Vault:
    """A vault domain in a fresh keystore."""
    store = Keystore.init(tmp_path_factory.mktemp("ks") / "ks", PASS)
    return Vault(store.home, "default", store.vault_wrapper(PASS))


def _release(cohort: Path, vault: Vault, out: Path, policy_text: str, release_id: str) -> Path:
    policy = parse_policy(policy_text, f"{release_id}.toml")
    return deidentify(cohort / "manifest.csv", policy, out, vault, release_id=release_id, now=NOW).path


@pytest.fixture(scope="module")
def releases(cohort: Path, vault: Vault, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A cgipa release, one that keeps chrY/chrM, and one that keeps instrument read names."""
    out = tmp_path_factory.mktemp("releases")
    cgipa = builtin_text("cgipa")
    keep_y = cgipa.replace('drop_contigs = ["chrY", "Y", "chrM", "MT"]', "drop_contigs = []")
    names = builtin_text("gdpr-pseudonymised").replace(
        "rewrite_read_names = true", "rewrite_read_names = false"
    )
    return {
        "cgipa": _release(cohort, vault, out, cgipa, "rel-cgipa"),
        "chrY": _release(cohort, vault, out, keep_y, "rel-chry"),
        "names": _release(cohort, vault, out, names, "rel-names"),
    }


def _copy(release: Path, tmp_path: Path) -> Path:
    target = tmp_path / release.name
    shutil.copytree(release, target)
    return target


def _values(result: runner.AssessmentResult) -> dict[tuple[str, str], float]:
    return {(m.test_id, m.metric): m.value for m in result.metrics}


def _passed(result: runner.AssessmentResult, test_id: str) -> list[bool | None]:
    return [m.passed for m in result.metrics if m.test_id == test_id and m.severity == "block"]


def test_cgipa_release_passes_the_file_tests(releases: dict[str, Path], cohort: Path, tmp_path: Path) -> None:
    """A cgipa release leaks nothing T01/T02/T03/T10 can find; the small table fails T11 (k = 1)."""
    release = _copy(releases["cgipa"], tmp_path)
    result = runner.assess(
        release, cohort / "manifest.csv", tmp_path / "results", seed=1, now=NOW, tests=TESTS
    )
    for test_id in (
        "T01_header_leak_scan",
        "T02_read_name_tag_scan",
        "T03_forbidden_regions",
        "T10_rare_variant_exposure",
    ):
        assert [True] * len(_passed(result, test_id)) == _passed(result, test_id)
    assert 1.0 == _values(result)[("T11_demographic_k_risk", "k")]
    assert ("failed", "pseudonymised") == (result.status, result.release_class)
    assert "T11_demographic_k_risk" in result.blocking_failed


def test_name_planted_in_vcf_header_fails_t01(
    releases: dict[str, Path], cohort: Path, tmp_path: Path
) -> None:
    """A subject's full name in a ##source line of the released VCF is one T01 identifier hit."""
    release = _copy(releases["cgipa"], tmp_path)
    name = pl.read_csv(cohort / "manifest.csv", infer_schema=False)["full_name"][0]
    vcf = release / "genotypes" / "genotypes-1.vcf.gz"
    text = str(pysam.bcftools.view("--no-version", str(vcf)))
    lines = text.splitlines(keepends=True)
    lines.insert(1, f"##source=pipeline run for {name}\n")
    plain = tmp_path / "planted.vcf"
    plain.write_text("".join(lines), encoding="utf-8")
    vcf.unlink()
    (release / "genotypes" / "genotypes-1.vcf.gz.tbi").unlink()
    pysam.tabix_compress(str(plain), str(vcf))
    pysam.tabix_index(str(vcf), preset="vcf")
    result = runner.assess(release, cohort / "manifest.csv", tmp_path / "results", now=NOW, tests=[t01_leaks])
    hits = next(m for m in result.metrics if m.metric == "identifier_hits")
    assert (1.0, False, {"full_name": 1}, {"vcf_header": 1}) == (
        hits.value,
        hits.passed,
        hits.parameters["by_kind"],
        hits.parameters["by_source"],
    )
    assert name not in json.dumps([m.parameters for m in result.metrics]) + str(result.as_dict())
    assert ("failed", ("T01_header_leak_scan",)) == (result.status, result.blocking_failed)


def test_release_with_chry_fails_t03(releases: dict[str, Path], cohort: Path, tmp_path: Path) -> None:
    """A release that kept chrY/chrM has records there: T03 fails; the cgipa release has none."""
    release = _copy(releases["chrY"], tmp_path)
    expected = int(
        pysam.bcftools.view(
            "-H", "-c", "0", "-r", "chrY,chrM", str(release / "genotypes" / "genotypes-1.vcf.gz")
        ).count("\n")
    )
    reads = sum(
        int(str(pysam.samtools.view("-c", str(bam), "chrY", "chrM")).strip())
        for bam in sorted(release.glob("alignments/*.bam"))
    )
    result = runner.assess(
        release, cohort / "manifest.csv", tmp_path / "results", now=NOW, tests=[t03_regions]
    )
    values = _values(result)
    assert expected > 0
    assert reads > 0
    assert float(expected + reads) == values[("T03_forbidden_regions", "forbidden_records")]
    assert ("failed", ("T03_forbidden_regions",)) == (result.status, result.blocking_failed)


def test_instrument_read_names_fail_t02(releases: dict[str, Path], cohort: Path, tmp_path: Path) -> None:
    """BAM read names kept as Illumina names (instrument:run:flowcell:...) fail T02, every read counted;
    FASTQ names are rewritten to counters by deid whatever the policy, and do not count."""
    release = _copy(releases["names"], tmp_path)
    bams = sorted(release.glob("alignments/*.bam"))
    fastqs = sorted(release.glob("reads/*.fastq.gz"))
    aligned = sum(int(str(pysam.samtools.view("-c", str(b))).strip()) for b in bams)
    unaligned = sum(sum(1 for _ in pysam.FastxFile(str(f))) for f in fastqs)
    result = runner.assess(release, cohort / "manifest.csv", tmp_path / "results", now=NOW, tests=[t02_reads])
    values = _values(result)
    assert (float(aligned), aligned / (aligned + unaligned)) == (
        values[("T02_read_name_tag_scan", "read_names_leaking")],
        values[("T02_read_name_tag_scan", "read_name_leak_fraction")],
    )
    assert "pseudonymised" == result.release_class


def test_results_dataset_and_release_json(releases: dict[str, Path], cohort: Path, tmp_path: Path) -> None:
    """Two runs append two files under release_id=...; release.json records the outcome, digest unchanged."""
    release = _copy(releases["cgipa"], tmp_path)
    before = json.loads((release / "release.json").read_text())
    results = tmp_path / "results"
    first = runner.assess(
        release, cohort / "manifest.csv", results, now=NOW, tests=[t01_leaks, t11_k_anonymity]
    )
    second = runner.assess(
        release, cohort / "manifest.csv", results, now=NOW, tests=[t01_leaks, t11_k_anonymity]
    )
    files = sorted(p.name for p in (results / "release_id=rel-cgipa").iterdir())
    assert sorted([f"run-{first.run_id}.parquet", f"run-{second.run_id}.parquet"]) == files
    frame = pl.read_parquet(results / "**/*.parquet", hive_partitioning=True)
    assert 2 * len(first.metrics) == frame.height
    assert {"rel-cgipa"} == set(frame["release_id"].to_list())
    table = ds.dataset(results, partitioning="hive").to_table()
    assert [*SCHEMA.names, "release_id"] == table.schema.names
    assert pl.Float64 == frame.schema["value"]
    record = json.loads((release / "release.json").read_text())
    assert (before["release_sha256"], before["files"], "pseudonymised") == (
        record["release_sha256"],
        record["files"],
        record["class"],
    )
    assert {"status": "failed", "run_id": second.run_id, "blocking_failed": ["T11_demographic_k_risk"]} == {
        k: record["assessment"][k] for k in ("status", "run_id", "blocking_failed")
    }
    assert second.reference_digest == record["assessment"]["reference_digest"]


class _Exploding(ModuleType):
    TEST_ID = "T99_exploding"
    TEST_VERSION = "0.0.1"

    @staticmethod
    def run(inputs: object) -> list[object]:
        assert isinstance(inputs, AssessInputs)
        (inputs.private / "matches.txt").write_text("secret match\n")
        raise RuntimeError("a message with a value: Jane Doe")


def test_failing_test_is_an_error_row_and_private_dir_is_destroyed(
    releases: dict[str, Path], cohort: Path, tmp_path: Path
) -> None:
    """A test that raises gives one error row (no message text); the private dir is gone; receipt counts it."""
    release = _copy(releases["cgipa"], tmp_path)
    before = set(Path(tempfile.gettempdir()).glob("genegate-assess-*"))
    result = runner.assess(
        release,
        cohort / "manifest.csv",
        tmp_path / "results",
        now=NOW,
        tests=[_Exploding("exploding"), t13_linkage],
    )
    error = result.metrics[0]
    assert ("error", "block", "the test raised RuntimeError") == (error.status, error.severity, error.message)
    assert ("T99_exploding", "T13_demographic_linkage") == result.blocking_failed
    assert before == set(Path(tempfile.gettempdir()).glob("genegate-assess-*"))
    rate = next(m for m in result.metrics if m.metric == "unique_link_rate")
    assert (2, round(rate.value * rate.n_records)) == (result.receipt.files, result.receipt.records)
    after = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert [f"results/release_id=rel-cgipa/run-{result.run_id}.parquet"] == [
        p for p in after if not p.startswith("rel-cgipa/")
    ]


def test_private_dir_destroyed_on_interrupt(releases: dict[str, Path], cohort: Path, tmp_path: Path) -> None:
    """KeyboardInterrupt inside a test propagates, and the private directory is destroyed anyway."""

    class Interrupting(ModuleType):
        TEST_ID = "T98_interrupt"
        TEST_VERSION = "0.0.1"

        @staticmethod
        def run(inputs: AssessInputs) -> list[object]:
            (inputs.private / "partial.parquet").write_bytes(b"x")
            raise KeyboardInterrupt

    before = set(Path(tempfile.gettempdir()).glob("genegate-assess-*"))
    with pytest.raises(KeyboardInterrupt):
        runner.assess(
            releases["cgipa"],
            cohort / "manifest.csv",
            tmp_path / "results",
            now=NOW,
            tests=[Interrupting("interrupting")],
        )
    assert before == set(Path(tempfile.gettempdir()).glob("genegate-assess-*"))
    assert not (tmp_path / "results").exists()


def test_missing_test_module_fails_closed() -> None:
    """A test module that is not installed becomes an error row, never a silent pass."""
    module = runner._module("deid.reid.t_does_not_exist")
    assert "deid.reid.t_does_not_exist" == module


def test_policy_comes_from_the_release(releases: dict[str, Path]) -> None:
    """Without --policy the release's own built-in policy is used."""
    record = json.loads((releases["cgipa"] / "release.json").read_text())
    assert load_policy("cgipa").digest == runner._release_policy(record, releases["cgipa"]).digest
