"""deid.vcf on a synthetic identified cohort (deid.synth): no planted identifier survives, htslib agrees."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pyarrow.parquet as pq
import pysam
import pysam.bcftools
import pytest

from deid.policy import load_policy
from deid.synth import CohortSpec, synthesize_cohort
from deid.vcf import allele_frequencies, deidentify_vcf

pytestmark = pytest.mark.slow
CGIPA = load_policy("cgipa").genomic


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vcf-cohort") / "cohort"
    synthesize_cohort(CohortSpec(out=out, samples=16, seed=3, reads=False))
    return out


def _secrets(cohort: Path) -> list[str]:
    with (cohort / "secrets.tsv").open(encoding="utf-8") as fh:
        return sorted({row["value"] for row in csv.DictReader(fh, delimiter="\t") if len(row["value"]) >= 5})


def _manifest(cohort: Path) -> list[dict[str, str]]:
    with (cohort / "manifest.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_cohort_release_has_no_identifier_and_reads_back(cohort: Path, tmp_path: Path) -> None:
    """A cgipa release of 14 of 16 samples: no secret in any byte; chrY/chrM gone; htslib reads it."""
    rows = _manifest(cohort)[:14]
    rename = [(r["vcf_sample"] or r["sample_id"], f"GG-PSN-{i:04d}") for i, r in enumerate(rows)]
    dst = tmp_path / "release.vcf.gz"
    stats = deidentify_vcf(cohort / "genotypes" / "cohort.vcf.gz", dst, rename, CGIPA)
    raw = dst.read_bytes() + (tmp_path / "release.vcf.gz.tbi").read_bytes()
    plain = gzip.decompress(dst.read_bytes())
    assert [] == [s for s in _secrets(cohort) if s.encode() in raw or s.encode() in plain]
    with pysam.VariantFile(str(dst)) as vcf:
        assert [p for _, p in rename] == list(vcf.header.samples)
        records = list(vcf)
    assert set() == {r.chrom for r in records} & {"chrY", "chrM"}
    assert stats.sites_out == len(records)
    assert all(
        min(r.info["AC"][0], r.info["AN"] - r.info["AC"][0]) >= 3 for r in records if len(r.alts or ()) == 1
    )
    assert stats.sites_in == stats.sites_out + stats.dropped_contig + stats.dropped_rare
    assert stats.sites_out == len(str(pysam.bcftools.view("-H", str(dst))).splitlines())


def test_cohort_summary_by_ancestry(cohort: Path, tmp_path: Path) -> None:
    """The allele-frequency summary groups by ancestry label and holds no identifier."""
    rows = _manifest(cohort)
    rename = [(r["vcf_sample"] or r["sample_id"], f"GG-PSN-{i:04d}") for i, r in enumerate(rows)]
    labels = {f"GG-PSN-{i:04d}": (r["ancestry"] or "unknown").split()[0] for i, r in enumerate(rows)}
    dst = tmp_path / "af.parquet"
    stats = allele_frequencies(cohort / "genotypes" / "cohort.vcf.gz", dst, rename, labels, CGIPA)
    table = pq.read_table(dst)
    assert stats.sites_out <= table.num_rows
    for label in set(labels.values()):
        assert f"AF_{label}" in table.column_names
    raw = dst.read_bytes()
    assert [] == [s for s in _secrets(cohort) if s.encode() in raw]
