"""deid.genomic.plan_files: which input becomes which released file, named by counter or pseudonym only."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from deid import MalformedInput
from deid.genomic import SUMMARY_FILE, Job, plan_files


def _rows(tmp_path: Path, **columns: list[str | None]) -> pl.DataFrame:
    for cells in (columns.get("vcf", []), columns.get("alignment", []), columns.get("fastq", [])):
        for cell in cells:
            for name in (cell or "").split(";"):
                if name:
                    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
                    (tmp_path / name).write_bytes(b"CRAM" if name.endswith(".cram") else b"BAM\x01")
    n = len(next(iter(columns.values())))
    return pl.DataFrame({"_row": list(range(1, n + 1)), **columns}, schema_overrides={"_row": pl.UInt32})


def test_files_are_named_by_counter_and_pseudonym(tmp_path: Path) -> None:
    """A joint VCF becomes genotypes-1; alignments and reads take the sample's code, never the input name."""
    rows = _rows(
        tmp_path,
        sample_id=["Jane-Doe-1", "John-Roe-2"],
        vcf=["calls/jane+john.vcf.gz", "calls/jane+john.vcf.gz"],
        vcf_sample=["JD", None],
        alignment=["bams/Jane-Doe.bam", "bams/John-Roe.cram"],
        fastq=["r/JD_1.fq.gz;r/JD_2.fq.gz", "r/JR.fq.gz"],
    )
    jobs = plan_files(rows, pl.Series(["GGSA", "GGSB"]), tmp_path, "m.csv")
    assert [
        Job("vcf", (tmp_path / "calls/jane+john.vcf.gz",), ("genotypes/genotypes-1.vcf.gz",),
            (("JD", "GGSA"), ("John-Roe-2", "GGSB"))),
        Job("alignment", (tmp_path / "bams/Jane-Doe.bam",), ("alignments/GGSA.bam",),
            (("JD", "GGSA"), ("Jane-Doe-1", "GGSA"))),
        Job("fastq", (tmp_path / "r/JD_1.fq.gz", tmp_path / "r/JD_2.fq.gz"),
            ("reads/GGSA_R1.fastq.gz", "reads/GGSA_R2.fastq.gz")),
        Job("alignment", (tmp_path / "bams/John-Roe.cram",), ("alignments/GGSB.cram",), (("John-Roe-2", "GGSB"),)),
        Job("fastq", (tmp_path / "r/JR.fq.gz",), ("reads/GGSB.fastq.gz",)),
    ] == jobs  # fmt: skip


def test_lane_pairs_and_an_odd_fastq_list(tmp_path: Path) -> None:
    """Four files are two lane pairs; three files are refused, naming the row and the fix."""
    lanes = _rows(tmp_path, sample_id=["S1"], fastq=["a1.fq;a2.fq;b1.fq;b2.fq"])
    outputs = [j.outputs for j in plan_files(lanes, pl.Series(["GGSA"]), tmp_path, "m.csv")]
    assert [
        ("reads/GGSA_L1_R1.fastq.gz", "reads/GGSA_L1_R2.fastq.gz"),
        ("reads/GGSA_L2_R1.fastq.gz", "reads/GGSA_L2_R2.fastq.gz"),
    ] == outputs
    odd = _rows(tmp_path, sample_id=["S1"], fastq=["a1.fq;a2.fq;b1.fq"])
    with pytest.raises(
        MalformedInput, match="row 1: column fastq lists 3 files; give one file or R1;R2 pairs"
    ):
        plan_files(odd, pl.Series(["GGSA"]), tmp_path, "m.csv")


def test_summary_breaks_down_only_populations_large_enough(tmp_path: Path) -> None:
    """Population labels are cleaned; a group under min_population counts in the overall figures only."""
    ancestry = ["East Asian"] * 5 + ["European"] * 2
    rows = _rows(tmp_path, sample_id=[f"S{i}" for i in range(7)], vcf=["j.vcf.gz"] * 7, ancestry=ancestry)
    codes = pl.Series([f"GGS{i}" for i in range(7)])
    [job] = plan_files(rows, codes, tmp_path, "m.csv", summary_only=True, min_population=5)
    assert (SUMMARY_FILE, 7) == (job.outputs[0], len(job.rename))
    assert [(f"GGS{i}", "East_Asian") for i in range(5)] == list(job.populations)


def test_summary_needs_one_joint_vcf(tmp_path: Path) -> None:
    """Samples spread over two VCFs cannot make one frequency table: refused with the fix."""
    rows = _rows(tmp_path, sample_id=["S1", "S2"], vcf=["a.vcf.gz", "b.vcf.gz"])
    with pytest.raises(MalformedInput, match="one joint VCF"):
        plan_files(rows, pl.Series(["GGSA", "GGSB"]), tmp_path, "m.csv", summary_only=True)


def test_two_rows_on_one_vcf_column_are_refused(tmp_path: Path) -> None:
    """Two samples cannot both be the same column of a VCF."""
    rows = _rows(tmp_path, sample_id=["S1", "S2"], vcf=["a.vcf.gz"] * 2, vcf_sample=["X", "X"])
    with pytest.raises(MalformedInput, match="same vcf_sample"):
        plan_files(rows, pl.Series(["GGSA", "GGSB"]), tmp_path, "m.csv")
