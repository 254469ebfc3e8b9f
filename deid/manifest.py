"""The sample manifest: reading a CSV, TSV or Parquet sample sheet and refusing a bad one.

`read_manifest` is the adapter: it opens the file, tells the format from its content (Parquet by
its magic bytes, TSV or CSV by the separator in the header line, whatever the file is called)
and reads every column as text, so that no type inference turns the ZIP "03601" into 3601 or a
sample id into a number. `validate_manifest` holds the checks and parses the date and yes/no
columns; it touches no file.

Errors are MalformedInput(path, detail) with a single-line detail naming the row (the 1-based
data row: the header is not a row) and the column, and the fix. A message never repeats a cell's
value: the cells of a manifest are identifiers.
"""

from __future__ import annotations

import codecs
import csv
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from deid.errors import MalformedInput

REQUIRED_COLUMNS: tuple[str, ...] = ("sample_id", "subject_id", "consent_research")
DATE_COLUMNS: tuple[str, ...] = ("date_of_birth", "collection_date", "sequencing_date", "consent_revoked_at")
BOOL_COLUMNS: tuple[str, ...] = ("consent_research", "guardian_consent")
ID_COLUMNS: tuple[str, ...] = ("sample_id", "subject_id")
ROW = "_row"

PARQUET_MAGIC = b"PAR1"
HEAD_BYTES = 1 << 16
CHUNK_BYTES = 1 << 20
TRUE_WORDS = ("true", "yes", "1")
FALSE_WORDS = ("false", "no", "0")
_ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_PARSED = "\x00parsed:"  # prefix of the working columns that hold parsed values
_FILLED = "\x00filled"  # name of the check that no row is wholly empty
_FIX_FORMAT = "export the sample sheet as UTF-8 CSV, TSV or Parquet with a header line"
_NESTED = (pl.List, pl.Array, pl.Struct, pl.Object)


def read_manifest(path: Path) -> pl.DataFrame:
    """Read and validate a manifest; see validate_manifest for what comes back."""
    source = str(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as exc:
        raise MalformedInput(source, f"cannot be read ({exc.strerror or type(exc).__name__})") from exc
    parquet = head.startswith(PARQUET_MAGIC)
    frame = _read_parquet(path, source) if parquet else _read_text(path, source, head)
    return validate_manifest(frame, source)


def validate_manifest(df: pl.DataFrame, source: str) -> pl.DataFrame:
    """Check a manifest read as text; return it with dates and yes/no columns parsed and a _row column.

    Columns in DATE_COLUMNS become pl.Date (ISO YYYY-MM-DD), columns in BOOL_COLUMNS pl.Boolean
    (true/false, yes/no, 1/0 in any case; empty is null), every other column stays String. The
    first column is _row (UInt32), the 1-based data row that error messages cite. Raises
    MalformedInput for a missing required column, no rows, an empty or duplicate sample_id, an
    empty subject_id, a malformed date or yes/no value, or a date of birth after the collection date.
    """
    if ROW in df.columns:
        raise MalformedInput(source, f"column {ROW} is reserved for genegate; rename or remove it")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if len(missing) == 1:
        raise MalformedInput(source, f"missing required column {missing[0]}; add it (see SPEC.md 2.1)")
    if missing:
        raise MalformedInput(
            source, f"missing required columns {', '.join(missing)}; add them (see SPEC.md 2.1)"
        )
    if df.height == 0:
        raise MalformedInput(source, "has a header but no data rows; add one row per sample")
    for column, dtype in df.schema.items():
        if dtype != pl.String and not _parsed_already(column, dtype):
            raise MalformedInput(
                source, f"column {column} holds {dtype} values; genegate reads manifest columns as text"
            )
    df = df.select(pl.int_range(1, pl.len() + 1, dtype=pl.UInt32).alias(ROW), pl.all())
    parsed = {c: _parse_date(df, c) for c in DATE_COLUMNS if c in df.columns} | {
        c: _parse_bool(df, c) for c in BOOL_COLUMNS if c in df.columns
    }
    work = df.with_columns(expr.alias(_PARSED + c) for c, expr in parsed.items())
    id_checks = [_empty_id(c) for c in ID_COLUMNS]
    value_checks = [_bad_value(df, c) for c in parsed]
    if "date_of_birth" in parsed and "collection_date" in parsed:
        born_later = pl.col(_PARSED + "date_of_birth") > pl.col(_PARSED + "collection_date")
        value_checks.append(
            _Check("date_of_birth", "after collection_date", "correct one of the two dates", born_later)
        )
    checks = id_checks + value_checks
    flags = work.select(c.bad.fill_null(value=False).alias(str(i)) for i, c in enumerate(checks))
    for i, check in enumerate(checks):
        if i == len(id_checks):
            _refuse_duplicate_ids(df, source)
        rows = df.get_column(ROW).filter(flags.get_column(str(i)))
        if rows.len():
            more = rows.len() - 1
            also = f" ({more} more {'row' if more == 1 else 'rows'} like it)" if more else ""
            detail = f"row {int(rows[0])} column {check.column}: {check.problem}; {check.fix}{also}"
            raise MalformedInput(source, detail)
    return work.with_columns(pl.col(_PARSED + c).alias(c) for c in parsed).drop(_PARSED + c for c in parsed)


@dataclass(frozen=True, slots=True)
class _Check:
    """One cell-level rule: the column it reports, the problem, the fix, and where it fails."""

    column: str
    problem: str
    fix: str
    bad: pl.Expr


def _empty_id(column: str) -> _Check:
    return _Check(column, "empty", f"every sample needs a {column}", _text(column).is_null())


def _bad_value(df: pl.DataFrame, column: str) -> _Check:
    """Where a date or yes/no cell has text that did not parse (never true for a pre-parsed column)."""
    failed = pl.col(_PARSED + column).is_null() & _text(column).is_not_null()
    if df.schema[column] != pl.String:
        failed = pl.lit(value=False)
    if column in DATE_COLUMNS:
        return _Check(column, "not an ISO date (YYYY-MM-DD)", "correct it or leave it empty", failed)
    return _Check(column, "not a yes/no value", "use true/false, yes/no or 1/0", failed)


def _text(column: str) -> pl.Expr:
    """The cell stripped of surrounding white space; null when nothing is left."""
    return _empty_as_null(pl.col(column).str.strip_chars())


def _parsed_already(column: str, dtype: pl.DataType) -> bool:
    return (column in DATE_COLUMNS and dtype == pl.Date) or (column in BOOL_COLUMNS and dtype == pl.Boolean)


def _refuse_duplicate_ids(df: pl.DataFrame, source: str) -> None:
    first = pl.col(ROW).min().over("sample_id")
    repeats = df.select(pl.col(ROW), first.alias("first")).filter(pl.col(ROW) > pl.col("first"))
    if repeats.height:
        row, first_row = repeats.row(0)
        raise MalformedInput(
            source, f"row {row}: sample_id duplicates row {first_row}; every sample needs its own sample_id"
        )


def _parse_date(df: pl.DataFrame, column: str) -> pl.Expr:
    """ISO dates only: 2024-3-1 and 2024-02-30 become null (and _bad_value reports them)."""
    if df.schema[column] == pl.Date:
        return pl.col(column)
    text = _text(column)
    iso = text.str.contains(_ISO_DATE)
    return pl.when(iso).then(text.str.to_date("%Y-%m-%d", strict=False)).otherwise(None)


def _parse_bool(df: pl.DataFrame, column: str) -> pl.Expr:
    if df.schema[column] == pl.Boolean:
        return pl.col(column)
    words = dict.fromkeys(TRUE_WORDS, True) | dict.fromkeys(FALSE_WORDS, False)
    return _text(column).str.to_lowercase().replace_strict(words, default=None, return_dtype=pl.Boolean)


def _check_header(names: list[str], source: str) -> None:
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if not name.strip():
            raise MalformedInput(source, f"header column {position} has no name; name it or remove it")
        if name in seen:
            raise MalformedInput(
                source,
                f"column {name} appears twice in the header (columns {seen[name]} and {position}); keep one",
            )
        seen[name] = position


def _read_parquet(path: Path, source: str) -> pl.DataFrame:
    try:
        _check_header(pq.read_schema(path).names, source)
        frame = pl.read_parquet(path, glob=False)
    except (pa.ArrowException, pl.exceptions.PolarsError, OSError) as exc:
        raise MalformedInput(source, f"is not a readable Parquet file (truncated?); {_FIX_FORMAT}") from exc
    for column, dtype in frame.schema.items():
        if isinstance(dtype, _NESTED):
            raise MalformedInput(source, f"column {column} holds nested values; give each cell one value")
        try:
            frame = frame.with_columns(_as_text(frame, column).alias(column))
        except pl.exceptions.PolarsError as exc:  # e.g. a binary column that is not UTF-8
            raise MalformedInput(
                source, f"column {column} cannot be read as text; store it as UTF-8 strings"
            ) from exc
    return frame


def _as_text(frame: pl.DataFrame, column: str) -> pl.Expr:
    """A Parquet column as text; a date stored as a midnight timestamp (pandas' habit) as its date."""
    col = pl.col(column)
    if column in DATE_COLUMNS and isinstance(frame.schema[column], pl.Datetime):
        at_midnight = frame.select((col.dt.time() == pl.time(0)).all()).item()
        if at_midnight:
            return _empty_as_null(col.dt.date().cast(pl.String))
    return _empty_as_null(col.cast(pl.String))


def _empty_as_null(text: pl.Expr) -> pl.Expr:
    return pl.when(text.str.len_bytes() == 0).then(None).otherwise(text)


def _read_text(path: Path, source: str, head: bytes) -> pl.DataFrame:
    head = head.removeprefix(codecs.BOM_UTF8)
    if not head.strip():
        raise MalformedInput(source, "is empty; a manifest needs a header line and one row per sample")
    line, newline, _ = head.partition(b"\n")
    header_too_long = not newline and len(head) >= HEAD_BYTES - len(codecs.BOM_UTF8)
    if b"\x00" in head or header_too_long:
        raise MalformedInput(source, f"is not a CSV, TSV or Parquet manifest (binary content); {_FIX_FORMAT}")
    try:
        header = line.rstrip(b"\r").decode("utf-8")
    except UnicodeDecodeError as exc:
        detail = f"is not a CSV, TSV or Parquet manifest (not UTF-8); {_FIX_FORMAT}"
        raise MalformedInput(source, detail) from exc
    sep = "\t" if "\t" in header else ","
    names = next(csv.reader([header], delimiter=sep))
    _check_header(names, source)
    # the cell-count check (pyarrow) and the read (polars) are independent passes over the file, and
    # both release the GIL: run them side by side; the check's verdict decides before the frame is used
    with ThreadPoolExecutor(max_workers=1) as pool:
        counted = pool.submit(_check_cell_counts, path, source, sep, names)
        try:
            lazy = pl.scan_csv(path, separator=sep, infer_schema=False, glob=False)
            frame = lazy.collect(engine="streaming")
        except (pl.exceptions.PolarsError, OSError) as exc:  # the message quotes cells: never pass it on
            counted.result()  # a ragged row is the better diagnosis when there is one
            raise MalformedInput(source, _diagnose(path, sep, names)) from exc
        counted.result()
    if frame.columns != names:
        raise MalformedInput(source, f"has a header that cannot be read consistently; {_FIX_FORMAT}")
    # A quoted empty cell ("") reads as "": make it null like an unquoted empty cell. polars reads a
    # blank line as a row of nulls where pyarrow and Python's csv skip it: drop it too, so that the
    # row numbers of all three readers agree. Both are rare; look first, copy only if needed.
    found = frame.select(
        *[(pl.col(c).str.len_bytes() == 0).any().alias(c) for c in names],
        pl.any_horizontal(pl.all().is_not_null()).all().alias(_FILLED),
    ).row(0, named=True)
    if with_empty := [c for c in names if found[c]]:
        frame = frame.with_columns(_empty_as_null(pl.col(c)).alias(c) for c in with_empty)
    if not found[_FILLED]:
        frame = frame.filter(pl.any_horizontal(pl.all().is_not_null()))
    return frame


def _check_cell_counts(path: Path, source: str, sep: str, names: list[str]) -> None:
    """Refuse a row with too few or too many cells (polars would pad a short row with nulls).

    pyarrow's parser counts the cells of every row; converting one column only keeps this pass
    cheap. The row is then located exactly by _diagnose, on the error path only.
    """
    ragged: list[int] = []

    def on_invalid_row(row: pa_csv.InvalidRow) -> str:
        ragged.append(row.actual_columns)
        return "skip"

    try:
        pa_csv.read_csv(
            path,
            parse_options=pa_csv.ParseOptions(
                delimiter=sep, newlines_in_values=True, invalid_row_handler=on_invalid_row
            ),
            convert_options=pa_csv.ConvertOptions(
                include_columns=names[:1], column_types={names[0]: pa.string()}
            ),
        )
    except (pa.ArrowException, OSError) as exc:
        raise MalformedInput(source, _diagnose(path, sep, names)) from exc
    if ragged:
        raise MalformedInput(source, _diagnose(path, sep, names))


def _diagnose(path: Path, sep: str, names: list[str]) -> str:
    """Why a text manifest cannot be parsed, and where: slow exact readers for the error path."""
    line_no = _first_non_utf8_line(path)
    if line_no is not None:
        return f"line {line_no} is not UTF-8 text; save the manifest as UTF-8"
    ragged = _ragged_detail(path, sep, names)
    if ragged is not None:
        return ragged
    with path.open("rb") as fh:
        quotes = sum(chunk.count(b'"') for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""))
    if quotes % 2:
        row = _unmatched_quote_row(path)
        where = "the header" if row == 0 else f"row {row}"
        return (
            f"{where} opens a double quote that is never closed; quote the whole cell and double any"
            ' quote inside it ("")'
        )
    return (
        f"cannot be parsed as {_sep_name(sep)}-separated text (a stray double quote?); quote any cell"
        ' holding a quote, separator or line break, and double quotes inside it ("")'
    )


def _unmatched_quote_row(path: Path) -> int:
    """The data row (0 for the header) whose quote is still open at the end of the file."""
    records = 0  # records begun so far, the header included
    start = 0
    quoted = False
    with path.open("rb") as fh:
        for line in fh:
            if not quoted and line.strip():
                records += 1
                start = records - 1
            if line.count(b'"') % 2:
                quoted = not quoted
    return start


def _ragged_detail(path: Path, sep: str, names: list[str]) -> str | None:
    """Where the first row with the wrong number of cells is (Python's csv reader, one row at a time)."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        rows = csv.reader(fh, delimiter=sep)
        next(rows, None)
        number = 0
        for fields in rows:
            if not fields:
                continue
            number += 1
            if len(fields) < len(names):
                return (
                    f"row {number}: {len(fields)} cells where the header has {len(names)} columns (column"
                    f" {names[len(fields)]} onward missing); quote any cell that contains a"
                    f" {_sep_name(sep)} or a line break"
                )
            if len(fields) > len(names):
                return (
                    f"row {number}: {len(fields)} cells where the header has {len(names)} columns (cells"
                    f" beyond column {names[-1]}); quote any cell that contains a {_sep_name(sep)}"
                )
    return None


def _first_non_utf8_line(path: Path) -> int | None:
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _sep_name(sep: str) -> str:
    return "tab" if sep == "\t" else "comma"
