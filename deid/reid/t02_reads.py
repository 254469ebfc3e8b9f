"""T02 read-name and aux-tag scan of released BAM/CRAM and FASTQ files.

Illumina read names (`<instrument>:<run>:<flowcell>:<lane>:<tile>:<x>:<y>`, or the older
`<instrument>:<lane>:<tile>:<x>:<y>`) and MGI/BGI names (`<flowcell>L<lane>C<col>R<row>`) reveal the
instrument serial, run and flowcell: they link a file to the lab's run sheets. Read names and tag
values may also carry an identifier from the manifest (a sample or subject id, a name).

Reads scanned: every read, up to READ_LIMIT per file; a BAM/CRAM with more reads is subsampled
with `samtools view --subsample` to about READ_LIMIT reads (seeded), a FASTQ is read from its start
up to READ_LIMIT names. The parameters say which (`sampled_files`).

`samtools view` writes the (sub)sampled reads as SAM to the assessment's private directory; polars
reads QNAME and the aux tags from it, so no Python runs per read.

Metrics: read_names_leaking (count of names matching an instrument pattern or holding an identifier
value; pass <= T02_leak_hits), read_name_leak_fraction (info), tag_values_leaking (RG/BC/CB/UB/...
values holding an identifier value; pass <= T02_leak_hits), barcode_tags (reads carrying BC, CB,
UB, MI or QT/OX; warn: the policy drops these tags).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from deid.errors import MalformedInput
from deid.reid.model import AssessInputs, Comparator, Metric, Severity
from deid.reid.t01_leaks import Texts, fastq_names, find_hits, identifier_table

TEST_ID = "T02_read_name_tag_scan"
TEST_VERSION = "1.0.0"
READ_LIMIT = 1_000_000
INSTRUMENT_NAME = (
    r"^@?[A-Za-z0-9_-]+:[0-9]+:[A-Za-z0-9_-]+:[0-9]+:[0-9]+:[0-9]+:[0-9]+"  # Illumina Casava 1.8+
    r"|^@?[A-Za-z0-9_-]+:[0-9]+:[0-9]+:[0-9]+:[0-9]+(?:[#/ ]|$)"  # Illumina before Casava 1.8
    r"|^@?[A-Z0-9]{6,}L[0-9]C[0-9]{3}R[0-9]{3}"  # MGI / BGI
)
BARCODE_TAGS = ("BC", "CB", "CR", "UB", "UR", "MI", "QT", "OX", "BX")


def instrument_names(names: pl.Series) -> int:
    """How many read names match an instrument/flowcell pattern. Pure."""
    return int(names.str.contains(INSTRUMENT_NAME).sum())


def read_sam_fields(sam: Path) -> tuple[pl.Series, pl.DataFrame]:
    """(QNAMEs, tags) of a SAM text file without header: tags as (tag, value) rows, all reads."""
    lines = (
        pl.scan_csv(
            sam,
            has_header=False,
            separator="\x1f",
            quote_char=None,
            new_columns=["line"],
            schema={"line": pl.String},
            comment_prefix="@",
        )
        .select(
            pl.col("line").str.extract(r"^([^\t]*)").alias("qname"),
            pl.col("line").str.extract_all(r"\t[A-Za-z][A-Za-z0-9]:[AcCsSiIfZHB]:[^\t]*").alias("tags"),
        )
        .collect()
    )
    tags = (
        lines.select(pl.col("tags").explode().str.strip_chars_start("\t"))
        .drop_nulls()
        .select(pl.col("tags").str.slice(0, 2).alias("tag"), pl.col("tags").str.slice(5).alias("value"))
    )
    return lines["qname"].drop_nulls(), tags


def _reads_of(path: Path, work: Path, seed: int) -> tuple[Path, bool]:
    """The reads of a BAM/CRAM as SAM text in work/ (subsampled when larger than READ_LIMIT)."""
    import pysam
    import pysam.bcftools
    import pysam.samtools
    import pysam.utils

    out = work / f"{path.name}.sam"
    try:
        total = _read_count(path)
        args = ["-@", "2", "--no-PG", "-o", str(out)]
        sampled = total > 2 * READ_LIMIT
        if sampled:
            args += ["--subsample", f"{READ_LIMIT / total:.6f}", "--subsample-seed", str(seed)]
        pysam.samtools.view(*args, str(path), catch_stdout=False)
    except (OSError, ValueError, pysam.utils.SamtoolsError) as exc:
        raise MalformedInput(str(path), "cannot be read as BAM/CRAM; re-run genegate deid") from exc
    return out, sampled


def _read_count(path: Path) -> int:
    import pysam
    import pysam.bcftools
    import pysam.samtools
    import pysam.utils

    try:
        stats = str(pysam.samtools.idxstats(str(path)))
        return sum(
            int(f[2]) + int(f[3]) for f in (line.split("\t") for line in stats.splitlines()) if len(f) == 4
        )
    except pysam.utils.SamtoolsError:  # no index: count
        return int(str(pysam.samtools.view("-c", "-@", "2", str(path))).strip() or 0)


def run(inputs: AssessInputs) -> list[Metric]:
    """Scan read names and aux tags of every released alignment and FASTQ."""
    alignments = inputs.released_files("**/*.bam") + inputs.released_files("**/*.cram")
    fastqs = [
        p for p in inputs.released_files("**/*") if p.name.endswith((".fastq.gz", ".fq.gz", ".fastq", ".fq"))
    ]
    if not alignments and not fastqs:
        why = "the release holds no reads (no BAM/CRAM or FASTQ)"
        return [
            Metric.skipped(TEST_ID, TEST_VERSION, m, why)
            for m in ("read_names_leaking", "tag_values_leaking", "read_name_leak_fraction", "barcode_tags")
        ]
    values = identifier_table(inputs.identified)
    reads = leaking = tag_leaks = barcodes = 0
    sampled: list[str] = []
    for path in alignments:
        sam, was_sampled = _reads_of(path, inputs.private, inputs.seed)
        names, tags = read_sam_fields(sam)
        sam.unlink()
        if was_sampled:
            sampled.append(path.relative_to(inputs.release).as_posix())
        reads += names.len()
        leaking += _leaking_names(names, values)
        barcodes += int(tags["tag"].is_in(BARCODE_TAGS).sum())
        tag_leaks += _hits(tags["value"], values, record=False)
    for path in fastqs:
        count = 0
        for chunk in fastq_names(path, READ_LIMIT):
            count += chunk.len()
            reads += chunk.len()
            leaking += _leaking_names(chunk, values)
        if count >= READ_LIMIT:
            sampled.append(path.relative_to(inputs.release).as_posix())
    threshold = inputs.threshold("T02_leak_hits", 0)
    params = {
        "read_limit_per_file": READ_LIMIT,
        "sampled_files": sampled,
        "alignments": len(alignments),
        "fastq_files": len(fastqs),
    }
    n = inputs.identified.height
    return [
        Metric.checked(
            TEST_ID,
            TEST_VERSION,
            "read_names_leaking",
            leaking,
            threshold,
            Comparator.LE,
            n_records=reads,
            n_subjects=n,
            parameters=params,
            message="read names matching an instrument pattern or holding an identifier value",
        ),
        Metric.info(
            TEST_ID,
            TEST_VERSION,
            "read_name_leak_fraction",
            leaking / reads if reads else 0.0,
            n_records=reads,
            n_subjects=n,
            parameters=params,
        ),
        Metric.checked(
            TEST_ID,
            TEST_VERSION,
            "tag_values_leaking",
            tag_leaks,
            threshold,
            Comparator.LE,
            n_records=reads,
            n_subjects=n,
            parameters=params,
            message="distinct identifier values found in aux tag values (RG, BC, CB, UB, ...)",
        ),
        Metric.checked(
            TEST_ID,
            TEST_VERSION,
            "barcode_tags",
            barcodes,
            0,
            Comparator.LE,
            severity=Severity.WARN,
            n_records=reads,
            n_subjects=n,
            parameters={**params, "tags": list(BARCODE_TAGS)},
            message="reads carrying a barcode/UMI tag the policy drops",
        ),
    ]


def _leaking_names(names: pl.Series, values: pl.DataFrame) -> int:
    """Names matching an instrument pattern or containing an identifier value (each name counted once)."""
    lowered = names.str.to_lowercase()
    instrument = names.str.contains(INSTRUMENT_NAME)
    found = find_hits([Texts("read_names", lowered.filter(~instrument), record=True)], values)
    if found.is_empty():
        return int(instrument.sum())
    patterns = found["value"].unique()
    holding = lowered.filter(~instrument).str.contains_any(patterns.to_list())
    return int(instrument.sum()) + int(holding.sum())


def _hits(texts: pl.Series, values: pl.DataFrame, *, record: bool) -> int:
    found = find_hits([Texts("aux_tags", texts, record=record)], values)
    return found.select("kind", "value").unique().height
