"""T01 leak scan: identifier values, absolute paths and person-linked dates in any released byte.

Every released file is read decoded: file names, release.json (without the `assessment` block that
assess itself writes), VCF/BCF headers and the ID and INFO columns of every record (`bcftools
query`), BAM/CRAM headers, FASTQ read names, and every Parquet file's string cells and footer.
These texts are searched for every identifier value of the identified manifest (all rows, values of
4 or more characters, case-insensitively), for absolute paths in header values (`/dir`, `file:/`,
`C:\\`), and for the full dates of the manifest's person-linked date columns (ISO and YYYYMMDD).

Matching (pure, `find_hits`):
- values with letters or punctuation are found as substrings with one Aho-Corasick pass
  (polars `str.extract_many`) after `narrow_patterns` keeps only values that could occur;
- all-digit values (a ZIP, a compact date, a bare MRN) are compared with whole digit runs of the
  text, so a ZIP is not "found" inside a contig length or a read counter;
- record-level texts (VCF records, read names) are searched for values with a letter only: their
  numbers are positions and counters.
Vault codes are removed from the texts first: a random code may spell a short name by chance.

Metrics: identifier_hits, date_hits, absolute_path_hits (distinct values found, by field kind and by
kind of source in parameters; never a value). Pass: each <= T01_leak_hits (0).
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from deid.errors import MalformedInput
from deid.identifiers import identifier_columns
from deid.manifest import DATE_COLUMNS
from deid.reid.model import AssessInputs, Comparator, Metric
from deid.transforms import narrow_patterns
from keys import CodeKind

TEST_ID = "T01_header_leak_scan"
TEST_VERSION = "1.0.0"
MIN_VALUE_CHARS = 4
READ_NAME_LIMIT = 2_000_000  # per file: read names beyond this many are not scanned (said in parameters)
ABSOLUTE_PATH = r"""(?:^|[\s=:,"'<(\[])(?:/[A-Za-z0-9._~+-]|[A-Za-z]:\\)"""
_CODE = "|".join(k.pattern.strip("^$") for k in CodeKind)
_EXTRA_IDENTIFIERS = ("vcf_sample",)  # the sample's column name in the lab's VCF


@dataclass(frozen=True, slots=True)
class Texts:
    """Decoded text of one kind of released content; header texts get every check, records fewer."""

    source: str  # "file_name", "release_json", "vcf_header", "vcf_records", "alignment_header", ...
    lines: pl.Series
    record: bool = False  # record-level text: only values with a letter are searched, no path check


def identifier_table(identified: pl.DataFrame) -> pl.DataFrame:
    """(value, kind, digits, lettered): every identifier value of 4+ characters, lower-cased, by column.

    Dates of the person-linked date columns appear as ISO and as YYYYMMDD (VCF ##fileDate form).
    """
    frames = []
    per_column = identifier_columns(identified)
    for column in _EXTRA_IDENTIFIERS:
        if column in identified.columns:
            values = identified[column].drop_nulls().cast(pl.String).str.strip_chars().unique()
            per_column[column] = values.rename("value")
    for column, values in per_column.items():
        frames.append(
            pl.DataFrame({"value": values, "kind": column}, schema={"value": pl.String, "kind": pl.String})
        )
        if column in DATE_COLUMNS:
            compact = values.str.replace_all("-", "", literal=True)
            frames.append(pl.DataFrame({"value": compact, "kind": column}))
    if not frames:
        return pl.DataFrame(
            schema={"value": pl.String, "kind": pl.String, "digits": pl.Boolean, "lettered": pl.Boolean}
        )
    value = pl.col("value").str.to_lowercase()
    return (
        pl.concat(frames)
        .select(value.alias("value"), "kind")
        .filter(pl.col("value").str.len_chars() >= MIN_VALUE_CHARS)
        .unique(maintain_order=True)
        .with_columns(
            pl.col("value").str.contains(r"^[0-9]+$").alias("digits"),
            pl.col("value").str.contains(r"[^\W\d_]").alias("lettered"),
        )
    )


def find_hits(texts: list[Texts], values: pl.DataFrame) -> pl.DataFrame:
    """Distinct (kind, source, value) of every identifier value found in texts. Pure."""
    found = []
    for group in texts:
        lines = (
            group.lines.cast(pl.String).drop_nulls().str.to_lowercase().str.replace_all(f"(?i:{_CODE})", "\n")
        )
        lines = lines.unique()
        if lines.is_empty() or values.is_empty():
            continue
        wanted = values.filter(pl.col("lettered") & ~pl.col("digits")) if group.record else values
        found.append(_substrings(lines, wanted.filter(~pl.col("digits")), group.source))
        if not group.record:
            found.append(_digit_runs(lines, wanted.filter(pl.col("digits")), group.source))
    schema = {"kind": pl.String, "source": pl.String, "value": pl.String}
    if not found:
        return pl.DataFrame(schema=schema)
    return pl.concat(found).select(list(schema)).unique()


def _substrings(lines: pl.Series, values: pl.DataFrame, source: str) -> pl.DataFrame:
    patterns = narrow_patterns(values["value"], lines).unique().sort()
    if patterns.is_empty():
        return pl.DataFrame(schema={"kind": pl.String, "source": pl.String, "value": pl.String})
    matched = (
        lines.to_frame("t")
        .select(pl.col("t").str.extract_many(pl.lit(patterns.implode()), overlapping=True).alias("value"))
        .explode("value")
        .drop_nulls()
        .unique()
    )
    return matched.join(values.select("value", "kind"), on="value").with_columns(
        pl.lit(source).alias("source")
    )


def _digit_runs(lines: pl.Series, values: pl.DataFrame, source: str) -> pl.DataFrame:
    runs = lines.str.extract_all(r"[0-9]+").explode().drop_nulls().unique().rename("value").to_frame()
    return runs.join(values.select("value", "kind"), on="value").with_columns(pl.lit(source).alias("source"))


def absolute_paths(texts: list[Texts]) -> dict[str, int]:
    """Header lines holding an absolute path in a value, by source. Pure."""
    counts: dict[str, int] = {}
    for group in texts:
        if group.record:
            continue
        hits = int(group.lines.cast(pl.String).drop_nulls().str.contains(ABSOLUTE_PATH).sum())
        if hits:
            counts[group.source] = counts.get(group.source, 0) + hits
    return counts


# ---- adapters: decoded text of the released files -------------------------------------------------


def release_texts(release: Path, record: dict[str, Any]) -> Iterator[Texts]:
    """The decoded texts of every released file (see the module docstring)."""
    files = sorted(p for p in release.rglob("*") if p.is_file())
    yield Texts("file_name", pl.Series([p.relative_to(release).as_posix() for p in files], dtype=pl.String))
    rest = {k: v for k, v in record.items() if k != "assessment"}
    yield Texts("release_json", pl.Series(json.dumps(rest, indent=1).splitlines(), dtype=pl.String))
    for path in files:
        name = path.name
        if name.endswith((".vcf.gz", ".vcf", ".bcf")):
            yield from _vcf_texts(path)
        elif name.endswith((".bam", ".cram")):
            yield Texts("alignment_header", pl.Series(_alignment_header(path).splitlines(), dtype=pl.String))
        elif name.endswith((".fastq.gz", ".fq.gz", ".fastq", ".fq")):
            for chunk in fastq_names(path, READ_NAME_LIMIT):
                yield Texts("fastq_names", chunk, record=True)
        elif name.endswith(".parquet"):
            yield from _parquet_texts(path)


def _vcf_texts(path: Path) -> Iterator[Texts]:
    import pysam
    import pysam.bcftools
    import pysam.samtools
    import pysam.utils

    try:
        with pysam.VariantFile(str(path)) as vcf:
            header = str(vcf.header)
        body = str(pysam.bcftools.query("-f", "%ID\t%INFO\n", str(path)))
    except (OSError, ValueError, pysam.utils.SamtoolsError) as exc:
        raise MalformedInput(str(path), "cannot be read as VCF/BCF; re-run genegate deid") from exc
    yield Texts("vcf_header", pl.Series(header.splitlines(), dtype=pl.String))
    yield Texts("vcf_records", pl.Series(body.splitlines(), dtype=pl.String).unique(), record=True)


def _alignment_header(path: Path) -> str:
    import pysam
    import pysam.bcftools
    import pysam.samtools
    import pysam.utils

    try:
        with pysam.AlignmentFile(str(path), check_sq=False) as aln:
            return str(aln.header)
    except (OSError, ValueError) as exc:
        raise MalformedInput(str(path), "cannot be read as BAM/CRAM; re-run genegate deid") from exc


def _parquet_texts(path: Path) -> Iterator[Texts]:
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
        frame = pl.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise MalformedInput(str(path), "cannot be read as Parquet; re-run genegate deid") from exc
    footer = [str(meta.schema)] + [
        f"{k.decode(errors='replace')}={v.decode(errors='replace')}"
        for k, v in (meta.metadata or {}).items()
        if k != b"ARROW:schema"  # base64 of the schema already listed: its "/" are not paths
    ]
    yield Texts("parquet_footer", pl.Series("\n".join(footer).splitlines(), dtype=pl.String))
    cells = [frame[c].drop_nulls().unique() for c in frame.columns if frame[c].dtype == pl.String]
    cells.append(pl.Series(frame.columns, dtype=pl.String))
    yield Texts("parquet_cells", pl.concat(cells))


def fastq_names(path: Path, limit: int, chunk_lines: int = 400_000) -> Iterator[pl.Series]:
    """The read-name lines of a FASTQ (gzip/BGZF or plain), in chunks, at most `limit` names in all."""
    opener = gzip.open if _gzipped(path) else open
    seen = 0
    try:
        with opener(path, "rb") as raw:
            reader = io.BufferedReader(raw, buffer_size=1 << 20)
            while seen < limit:
                lines = reader.readlines(chunk_lines * 64)
                if not lines:
                    return
                names = lines[0::4]  # chunks hold whole records: readlines size hint * 4-line records
                if len(lines) % 4:
                    tail = [reader.readline() for _ in range(4 - len(lines) % 4)]
                    del tail  # complete the record so the next chunk starts on a name line
                names = names[: limit - seen]
                seen += len(names)
                yield pl.Series(names, dtype=pl.Binary).cast(pl.String, strict=False).str.strip_chars_end()
    except (OSError, EOFError) as exc:
        raise MalformedInput(str(path), "cannot be read as FASTQ; re-run genegate deid") from exc


def _gzipped(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def run(inputs: AssessInputs) -> list[Metric]:
    """Scan every released file for identifiers, absolute paths and person-linked dates."""
    values = identifier_table(inputs.identified)
    texts = list(release_texts(inputs.release, dict(inputs.record)))
    hits = find_hits(texts, values)
    paths = absolute_paths(texts)
    threshold = inputs.threshold("T01_leak_hits", 0)
    dates = hits.filter(pl.col("kind").is_in(DATE_COLUMNS))
    others = hits.filter(~pl.col("kind").is_in(DATE_COLUMNS))
    n_records = sum(t.lines.len() for t in texts)
    n_subjects = inputs.identified.height
    common = {
        "values_searched": values.height,
        "min_value_chars": MIN_VALUE_CHARS,
        "read_name_limit_per_file": READ_NAME_LIMIT,
    }
    return [
        Metric.checked(
            TEST_ID,
            TEST_VERSION,
            "identifier_hits",
            _distinct(others),
            threshold,
            Comparator.LE,
            n_records=n_records,
            n_subjects=n_subjects,
            parameters={**common, "by_kind": _counts(others, "kind"), "by_source": _counts(others, "source")},
            message="distinct identifier values of the identified manifest found in released bytes",
        ),
        Metric.checked(
            TEST_ID,
            TEST_VERSION,
            "date_hits",
            _distinct(dates),
            threshold,
            Comparator.LE,
            n_records=n_records,
            n_subjects=n_subjects,
            parameters={"by_kind": _counts(dates, "kind"), "by_source": _counts(dates, "source")},
            message="distinct person-linked full dates found in released bytes",
        ),
        Metric.checked(
            TEST_ID,
            TEST_VERSION,
            "absolute_path_hits",
            sum(paths.values()),
            threshold,
            Comparator.LE,
            n_records=n_records,
            n_subjects=n_subjects,
            parameters={"by_source": paths},
            message="header lines holding an absolute path",
        ),
    ]


def _distinct(hits: pl.DataFrame) -> int:
    return hits.select("kind", "value").unique().height


def _counts(hits: pl.DataFrame, by: str) -> dict[str, int]:
    distinct = hits.select(by, "value").unique()
    return {str(k): int(n) for k, n in distinct.group_by(by).len().sort(by).iter_rows()}
