"""T03 forbidden regions: no record on chrY, chrM or inside the Y-STR regions.

Y-STR profiles recover surnames (Gymrek et al. 2013: 12% of US Caucasian males); mitochondrial
haplogroups link maternal lines. Counted in every released VCF/BCF (per-contig counts from the
index, `bcftools index --stats`; `bcftools view -T BED` for the Y-STR regions), BAM/CRAM (`samtools
idxstats`; `samtools view -c -L BED`) and summary Parquet (chrom/pos columns). The Y-STR regions
ship as data: deid/reid/y_str_grch38.bed (source and version in its header).

Metrics: forbidden_records (records/reads/rows on a forbidden contig: chrY, Y, chrM, MT and the
policy's drop_contigs), ystr_records (inside the Y-STR BED), both pass <= T03_forbidden_records (0);
forbidden_header_contigs (##contig / @SQ lines naming a forbidden contig; warn).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import polars as pl

from deid.errors import MalformedInput
from deid.reid.model import AssessInputs, Comparator, Metric, Severity

TEST_ID = "T03_forbidden_regions"
TEST_VERSION = "1.0.0"
FORBIDDEN_CONTIGS = ("chrY", "Y", "chrM", "MT")
BED_NAME = "y_str_grch38.bed"


@dataclass(frozen=True, slots=True)
class Interval:
    """A BED interval (0-based, half-open)."""

    contig: str
    start: int
    end: int


def parse_bed(text: str) -> list[Interval]:
    """BED lines (comments, track and browser lines skipped). Pure."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith(("#", "track", "browser")):
            continue
        fields = line.split("\t")
        if len(fields) < 3 or not fields[1].isdigit() or not fields[2].isdigit():
            raise ValueError(f"BED line {number}: expected contig, start, end separated by tabs")
        out.append(Interval(fields[0], int(fields[1]), int(fields[2])))
    return out


def ystr_bed() -> tuple[Path, list[Interval]]:
    """The shipped Y-STR BED: its path (for htslib) and intervals."""
    ref = resources.files("deid.reid").joinpath(BED_NAME)
    return Path(str(ref)), parse_bed(ref.read_text(encoding="utf-8"))


def rows_in(frame: pl.DataFrame, forbidden: Iterable[str], intervals: list[Interval]) -> tuple[int, int]:
    """(rows on a forbidden contig, rows inside an interval) of a frame with chrom, pos (1-based). Pure."""
    on_contig = int(frame["chrom"].is_in(list(forbidden)).sum())
    inside = pl.lit(value=False)
    for iv in intervals:
        inside = inside | (
            (pl.col("chrom") == iv.contig) & (pl.col("pos") > iv.start) & (pl.col("pos") <= iv.end)
        )
    return on_contig, int(frame.select(inside.sum()).item())


def forbidden_contigs(inputs: AssessInputs) -> tuple[str, ...]:
    """The fixed forbidden contigs and the policy's drop_contigs."""
    return tuple(dict.fromkeys([*FORBIDDEN_CONTIGS, *inputs.policy.genomic.drop_contigs]))


def _vcf_counts(
    path: Path, bed: Path, forbidden: tuple[str, ...], bed_contigs: set[str]
) -> tuple[int, int, int]:
    import pysam
    import pysam.bcftools
    import pysam.samtools
    import pysam.utils

    try:
        with pysam.VariantFile(str(path)) as vcf:
            header_contigs = sum(1 for c in vcf.header.contigs if c in forbidden)
        try:
            stats = str(pysam.bcftools.index("--stats", str(path)))
            per_contig = {f[0]: int(f[2]) for f in (x.split("\t") for x in stats.splitlines()) if len(f) >= 3}
        except pysam.utils.SamtoolsError:  # no index: read the CHROM column
            chroms = pl.Series(
                str(pysam.bcftools.query("-f", "%CHROM\n", str(path))).splitlines(), dtype=pl.String
            )
            per_contig = {str(c): int(n) for c, n in chroms.value_counts().iter_rows()}
        on_contig = sum(n for c, n in per_contig.items() if c in forbidden)
        in_bed = 0
        if any(per_contig.get(c, 0) for c in bed_contigs):
            in_bed = len(
                str(pysam.bcftools.view("--no-version", "-H", "-T", str(bed), str(path))).splitlines()
            )
    except (OSError, ValueError, pysam.utils.SamtoolsError) as exc:
        raise MalformedInput(str(path), "cannot be read as VCF/BCF; re-run genegate deid") from exc
    return on_contig, in_bed, header_contigs


def _alignment_counts(
    path: Path, bed: Path, forbidden: tuple[str, ...], bed_contigs: set[str]
) -> tuple[int, int, int]:
    import pysam
    import pysam.bcftools
    import pysam.samtools
    import pysam.utils

    try:
        with pysam.AlignmentFile(str(path), check_sq=False) as aln:
            header_contigs = sum(1 for c in aln.references if c in forbidden)
        stats = str(pysam.samtools.idxstats(str(path)))
        per_contig = {
            f[0]: int(f[2]) + int(f[3]) for f in (x.split("\t") for x in stats.splitlines()) if len(f) == 4
        }
        on_contig = sum(n for c, n in per_contig.items() if c in forbidden)
        in_bed = 0
        if any(per_contig.get(c, 0) for c in bed_contigs):
            in_bed = int(str(pysam.samtools.view("-c", "-L", str(bed), str(path))).strip() or 0)
    except (OSError, ValueError, pysam.utils.SamtoolsError) as exc:
        raise MalformedInput(
            str(path), "cannot be read as BAM/CRAM with an index; re-run genegate deid"
        ) from exc
    return on_contig, in_bed, header_contigs


def run(inputs: AssessInputs) -> list[Metric]:
    """Count released records on forbidden contigs and inside the Y-STR regions."""
    forbidden = forbidden_contigs(inputs)
    bed, intervals = ystr_bed()
    bed_contigs = {iv.contig for iv in intervals}
    on_contig: dict[str, int] = {}
    in_bed: dict[str, int] = {}
    header = 0
    files = 0
    for kind, pattern in (
        ("vcf", "**/*.vcf.gz"),
        ("vcf", "**/*.bcf"),
        ("alignment", "**/*.bam"),
        ("alignment", "**/*.cram"),
        ("summary", "**/*.parquet"),
    ):
        for path in inputs.released_files(pattern):
            if kind == "summary":
                frame = pl.read_parquet(path)
                if not {"chrom", "pos"} <= set(frame.columns):
                    continue
                counts = (*rows_in(frame, forbidden, intervals), 0)
            elif kind == "vcf":
                counts = _vcf_counts(path, bed, forbidden, bed_contigs)
            else:
                counts = _alignment_counts(path, bed, forbidden, bed_contigs)
            files += 1
            on_contig[kind] = on_contig.get(kind, 0) + counts[0]
            in_bed[kind] = in_bed.get(kind, 0) + counts[1]
            header += counts[2]
    if not files:
        why = "the release holds no genomic file (VCF, BAM/CRAM or summary Parquet)"
        return [Metric.skipped(TEST_ID, TEST_VERSION, m, why) for m in ("forbidden_records", "ystr_records")]
    threshold = inputs.threshold("T03_forbidden_records", 0)
    params = {"contigs": list(forbidden), "bed": BED_NAME, "files": files}
    n = inputs.identified.height
    return [
        Metric.checked(
            TEST_ID,
            TEST_VERSION,
            "forbidden_records",
            sum(on_contig.values()),
            threshold,
            Comparator.LE,
            n_records=files,
            n_subjects=n,
            parameters={**params, "by_kind": on_contig},
            message="records, reads or summary rows on chrY/chrM or a dropped contig",
        ),
        Metric.checked(
            TEST_ID,
            TEST_VERSION,
            "ystr_records",
            sum(in_bed.values()),
            threshold,
            Comparator.LE,
            n_records=files,
            n_subjects=n,
            parameters={**params, "by_kind": in_bed},
            message="records, reads or summary rows inside the Y-STR regions",
        ),
        Metric.checked(
            TEST_ID,
            TEST_VERSION,
            "forbidden_header_contigs",
            header,
            0,
            Comparator.LE,
            severity=Severity.WARN,
            n_records=files,
            n_subjects=n,
            parameters=params,
            message="##contig or @SQ lines that name a forbidden contig",
        ),
    ]
