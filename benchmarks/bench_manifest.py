"""`genegate deid` on a 1,000,000-row manifest (no genomic files): rows/s and peak memory.

The manifest repeats a synthetic cohort's rows with unique sample and subject ids, so scrub,
ZIP, dates, consent and the vault all see realistic values. The genomic-file columns are left out
(bench_vcf, bench_alignment and bench_fastq measure those). Baseline in the same run: polars
reading the same CSV and writing it to Parquet, the I/O floor any de-identification pays.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import polars as pl

from benchmarks.harness import Measurement, measure, workdir

ROWS = 1_000_000
GENEGATE = str(Path(sys.executable).parent / "genegate")


def make_manifest(work: Path) -> Path:
    """Write the 1M-row CSV once (kept in benchmarks/work/ between runs)."""
    big = work / "manifest-1m-nofiles.csv"
    if big.exists():
        return big
    from deid.synth import CohortSpec, synthesize_cohort

    seed_dir = work / "manifest-seed"
    shutil.rmtree(seed_dir, ignore_errors=True)
    synthesize_cohort(CohortSpec(out=seed_dir, samples=100, seed=11, reads=False))
    base = pl.read_csv(seed_dir / "manifest.csv", infer_schema=False)
    reps = ROWS // base.height
    frame = pl.concat([base] * reps).with_row_index("_i")
    frame = frame.with_columns(
        (pl.col("sample_id") + "-" + pl.col("_i").cast(pl.String)).alias("sample_id"),
        (pl.col("subject_id") + "-" + pl.col("_i").cast(pl.String)).alias("subject_id"),
    ).drop("_i", "vcf", "vcf_sample", "alignment", "fastq")  # the manifest alone
    frame.write_csv(big)
    return big


FLOOR = "polars read_csv -> write_parquet (I/O floor)"


def run() -> list[tuple[str, list[Measurement], str | None]]:
    """Time deid (fresh vault each run) against the polars CSV -> Parquet floor."""
    work = workdir()
    manifest = make_manifest(work)
    home = work / "deid-keystore"
    out = work / "deid-releases"
    env = {"GENEGATE_PASSPHRASE": "benchmark passphrase only", "GENEGATE_HOME": str(home)}
    os.environ.update(env)
    shutil.rmtree(home, ignore_errors=True)
    measure("keys init", [GENEGATE, "keys", "init"], runs=1)
    rows = [
        measure(
            f"genegate deid cgipa, {ROWS:,} rows (new codes)",
            [GENEGATE, "deid", "--manifest", str(manifest), "--policy", "cgipa", "--out", str(out)],
            runs=1,
            prepare=["rm", "-rf", str(out), str(home / "vault")],
        ),
        measure(
            f"genegate deid cgipa, {ROWS:,} rows (codes exist)",
            [GENEGATE, "deid", "--manifest", str(manifest), "--policy", "cgipa", "--out", str(out)],
            runs=2,
            prepare=["rm", "-rf", str(out)],
        ),
        measure(
            FLOOR,
            [sys.executable, "-c",
             f"import polars as pl; pl.read_csv({str(manifest)!r}, infer_schema=False)"
             f".write_parquet({str(work / 'floor.parquet')!r})"],
            runs=2,
        ),
    ]  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)
    return [(f"deid manifest ({ROWS:,} rows)", rows, FLOOR)]
