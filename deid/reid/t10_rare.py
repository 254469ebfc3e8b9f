"""T10 rare-variant exposure: released sites whose minor alleles are carried by too few people.

Rare alleles identify fastest (Lin 2004; Homer 2008, reid.md 3.1-3.2). A site's minor-allele count
here is what `genegate deid` filters on (deid/vcf.py): the called alleles among released samples that
are not the site's most frequent allele (bcftools' "nonmajor"; for a biallelic site the minor allele's
count), with frequency count/AN. A site exposes a rare allele when 0 < count < the policy's
`genomic.min_minor_allele_count`, or 0 < frequency < `genomic.min_minor_allele_frequency`; a site
monomorphic among the released samples exposes no one.

Read from each released VCF/BCF (INFO/AC and INFO/AN, which `bcftools view -s` keeps up to date for
the released samples; `bcftools query`) or from the summary Parquet (AC/AN per alternate allele).
Metrics: sites_below_floor (pass <= T10_sites_below_floor, 0), min_maf (info: the smallest nonzero
minor-allele frequency), sites (info).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from deid.errors import MalformedInput
from deid.reid.model import AssessInputs, Comparator, Metric

TEST_ID = "T10_rare_variant_exposure"
TEST_VERSION = "1.0.0"


def site_counts(sites: pl.DataFrame) -> pl.DataFrame:
    """(nonmajor, an) per site from a frame with `an` (Int64) and `ac` (list[Int64], one per ALT). Pure."""
    ref = pl.col("an") - pl.col("ac").list.sum()
    major = pl.max_horizontal(ref, pl.col("ac").list.max().fill_null(0))
    return sites.select((pl.col("an") - major).alias("nonmajor"), pl.col("an"))


def exposure(counts: pl.DataFrame, min_count: int, min_frequency: float) -> tuple[int, float]:
    """(sites below the floor, smallest nonzero minor-allele frequency or NaN). Pure."""
    polymorphic = counts.filter((pl.col("nonmajor") > 0) & (pl.col("an") > 0))
    freq = pl.col("nonmajor") / pl.col("an")
    below = polymorphic.filter((pl.col("nonmajor") < min_count) | (freq < min_frequency)).height
    smallest = polymorphic.select(freq.min()).item()
    return below, float("nan") if smallest is None else float(smallest)


def _vcf_sites(path: Path) -> pl.DataFrame:
    import pysam
    import pysam.bcftools
    import pysam.samtools
    import pysam.utils

    try:
        with pysam.VariantFile(str(path)) as vcf:
            declared = set(vcf.header.info)
        if not {"AC", "AN"} <= declared:
            raise MalformedInput(
                str(path), "declares no INFO/AC and INFO/AN; keep AC and AN in the policy's genomic.info_keep"
            )
        text = str(pysam.bcftools.query("-f", "%AN\t%AC\n", str(path)))
    except (OSError, ValueError, pysam.utils.SamtoolsError) as exc:
        raise MalformedInput(str(path), "cannot be read as VCF/BCF; re-run genegate deid") from exc
    lines = pl.Series(text.splitlines(), dtype=pl.String).str.split_exact("\t", 1).struct.unnest()
    if lines.is_empty():
        return pl.DataFrame(schema={"an": pl.Int64, "ac": pl.List(pl.Int64)})
    return lines.select(
        pl.col("field_0").cast(pl.Int64, strict=False).fill_null(0).alias("an"),
        pl.col("field_1").str.split(",").cast(pl.List(pl.Int64), strict=False).alias("ac"),
    )


def _summary_sites(path: Path) -> pl.DataFrame | None:
    frame = pl.read_parquet(path)
    if not {"chrom", "pos", "ref", "AC", "AN"} <= set(frame.columns):
        return None
    return frame.group_by("chrom", "pos", "ref", maintain_order=True).agg(
        pl.col("AN").first().cast(pl.Int64).alias("an"), pl.col("AC").cast(pl.Int64).alias("ac")
    )


def run(inputs: AssessInputs) -> list[Metric]:
    """Count released sites below the policy's minor-allele count/frequency floor."""
    frames = []
    for pattern in ("**/*.vcf.gz", "**/*.bcf"):
        frames += [_vcf_sites(p) for p in inputs.released_files(pattern)]
    for path in inputs.released_files("**/*.parquet"):
        sites = _summary_sites(path)
        if sites is not None:
            frames.append(sites.select("an", "ac"))
    if not frames:
        why = "the release holds no site-level data (VCF/BCF or summary allele frequencies)"
        return [Metric.skipped(TEST_ID, TEST_VERSION, m, why) for m in ("sites_below_floor", "min_maf")]
    rules = inputs.policy.genomic
    counts = site_counts(pl.concat(frames))
    below, smallest = exposure(counts, max(1, rules.min_minor_allele_count), rules.min_minor_allele_frequency)
    params = {
        "min_minor_allele_count": rules.min_minor_allele_count,
        "min_minor_allele_frequency": rules.min_minor_allele_frequency,
        "count": "nonmajor",
    }
    n = inputs.identified.height
    return [
        Metric.checked(
            TEST_ID,
            TEST_VERSION,
            "sites_below_floor",
            below,
            inputs.threshold("T10_sites_below_floor", 0),
            Comparator.LE,
            n_records=counts.height,
            n_subjects=n,
            parameters=params,
            message="released sites whose minor alleles fall below the policy floor",
        ),
        Metric.info(
            TEST_ID,
            TEST_VERSION,
            "min_maf",
            smallest,
            n_records=counts.height,
            n_subjects=n,
            parameters=params,
        ),
        Metric.info(TEST_ID, TEST_VERSION, "sites", counts.height, n_records=counts.height, n_subjects=n),
    ]
