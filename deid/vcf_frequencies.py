"""Allele counts and frequencies of released sites, computed by htslib and tabulated with polars.

`bcftools view -S` recomputes INFO/AC and INFO/AN for a sample subset; `bcftools query` prints them
per site; polars splits multi-allelic sites into one row per ALT and divides. Python touches
neither a record nor a genotype. Two uses: the AF annotation table of deid.vcf's full path, and
the aggregate summary release (allele_frequencies.parquet), which carries no sample name: columns
are chrom, pos, ref, alt, AC, AN, AF and AC_<pop>, AN_<pop>, AF_<pop> per population label, and
the Parquet file has no key-value metadata.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import polars as pl
import pysam

from deid.errors import DeidError

Run = Callable[..., str]
_LABEL = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
_SITES = "%CHROM\t%POS\t%REF\t%ALT\t%INFO/AC\t%INFO/AN\n"
_COUNTS = "%INFO/AC\t%INFO/AN\n"


def _read(path: Path, columns: list[str]) -> pl.DataFrame:
    if path.stat().st_size == 0:
        return pl.DataFrame(schema=dict.fromkeys(columns, pl.String))
    return pl.read_csv(
        path, separator="\t", has_header=False, new_columns=columns, schema_overrides=dict.fromkeys(columns,
        pl.String), quote_char=None,
    )  # fmt: skip


def _exploded(sites: pl.DataFrame, suffix: str = "") -> pl.DataFrame:
    """One row per ALT: AC{suffix}, AN{suffix} as Int64 and AF{suffix} = AC/AN (null where AN is 0)."""
    ac, an, af = f"AC{suffix}", f"AN{suffix}", f"AF{suffix}"
    frame = sites.with_columns(pl.col(ac).str.split(",")).explode(ac)
    frame = frame.with_columns(pl.col(ac).cast(pl.Int64), pl.col(an).cast(pl.Int64))
    return frame.with_columns(
        pl.when(pl.col(an) > 0).then(pl.col(ac) / pl.col(an)).otherwise(None).cast(pl.Float64).alias(af)
    )


def af_annotation(subset: Path, work: Path, query: Run) -> Path | None:
    """A tabix'd CHROM, POS, REF, ALT, AF table for `bcftools annotate -a`, or None without sites."""
    raw = work / "sites.tsv"
    query("-f", _SITES, "-o", str(raw), str(subset), catch_stdout=False)
    sites = _read(raw, ["chrom", "pos", "ref", "alt", "AC", "AN"])
    raw.unlink()
    if sites.is_empty():
        return None
    per_alt = _exploded(sites.with_row_index("site"))
    af = per_alt.group_by("site", maintain_order=True).agg(
        pl.col("chrom", "pos", "ref", "alt").first(),
        pl.col("AF").cast(pl.String).fill_null(".").str.join(","),
    )
    table = work / "af.tsv"
    af.select("chrom", "pos", "ref", "alt", "AF").write_csv(
        table, separator="\t", include_header=False, quote_style="never"
    )
    compressed = work / "af.tsv.gz"
    pysam.tabix_compress(str(table), str(compressed), force=True)
    pysam.tabix_index(str(compressed), seq_col=0, start_col=1, end_col=1, force=True)
    table.unlink()
    return compressed


def _groups(rename: Sequence[tuple[str, str]], populations: Mapping[str, str]) -> dict[str, list[str]]:
    """Population label -> the VCF sample names of its released members, labels sorted."""
    released = {pseudonym for _, pseudonym in rename}
    if set(populations) - released:
        raise DeidError("populations names pseudonyms that are not released; pass only released ones")
    groups: dict[str, list[str]] = {}
    for name, pseudonym in rename:
        label = populations.get(pseudonym)
        if label is None:
            continue
        if not _LABEL.match(label):
            raise DeidError("a population label is not 1-40 letters, digits, '_', '.' or '-'; rename it")
        groups.setdefault(label, []).append(name)
    return dict(sorted(groups.items()))


def frequency_table(
    subset: Path,
    dst: Path,
    rename: Sequence[tuple[str, str]],
    populations: Mapping[str, str],
    work: Path,
    run: Run,
) -> int:
    """Write dst from the filtered subset BCF (written by `bcftools view`); return the number of sites."""
    import pyarrow.parquet as pq

    groups = _groups(rename, populations)
    raw = work / "sites.tsv"
    run("query", "-f", _SITES, "-o", str(raw), str(subset), catch_stdout=False)
    sites = _read(raw, ["chrom", "pos", "ref", "alt", "AC", "AN"])
    for label, names in groups.items():
        members, part, counts = work / "members.txt", work / "population.bcf", work / "population.tsv"
        members.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
        run("view", "--no-version", "-G", "-S", str(members), "-Ou", "-o", str(part), str(subset),
            catch_stdout=False)  # fmt: skip
        run("query", "-f", _COUNTS, "-o", str(counts), str(part), catch_stdout=False)
        sites = sites.hstack(_read(counts, [f"AC_{label}", f"AN_{label}"]))
    frame = sites.with_columns(pl.col("alt").str.split(","), *(pl.col(f"AC{s}").str.split(",") for s in
        ["", *(f"_{label}" for label in groups)]))  # fmt: skip
    frame = frame.explode(["alt", "AC", *(f"AC_{label}" for label in groups)])
    columns = ["chrom", pl.col("pos").cast(pl.Int64), "ref", "alt"]
    for suffix in ["", *(f"_{label}" for label in groups)]:
        ac, an = pl.col(f"AC{suffix}").cast(pl.Int64), pl.col(f"AN{suffix}").cast(pl.Int64)
        af = pl.when(an > 0).then(ac / an).otherwise(None).cast(pl.Float64)
        columns += [ac.alias(f"AC{suffix}"), an.alias(f"AN{suffix}"), af.alias(f"AF{suffix}")]
    table = frame.select(columns).to_arrow().replace_schema_metadata(None)
    partial = dst.with_name(f".{dst.name}.partial")
    pq.write_table(table, partial, compression="zstd", store_schema=False)
    partial.rename(dst)
    return sites.height
