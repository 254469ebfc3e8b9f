"""deid.manifest: reading CSV, TSV and Parquet manifests by content, and refusing bad ones without quoting them."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from deid.errors import MalformedInput
from deid.manifest import BOOL_COLUMNS, DATE_COLUMNS, REQUIRED_COLUMNS, read_manifest, validate_manifest
from deid.synth import MANIFEST_COLUMNS, CohortSpec, synthesize_cohort

HEADER = "sample_id,subject_id,consent_research,date_of_birth,zip,notes"
ROWS = (
    "S-001,P-001,true,1990-02-28,03601,first",
    "S-002,P-002,No,,94110-1234,",
    'S-003,P-003,1,2012-06-30,00501,"Lives at 1 Main St, Apt 2"',
)
EXPECTED = pl.DataFrame(
    {
        "_row": pl.Series([1, 2, 3], dtype=pl.UInt32),
        "sample_id": ["S-001", "S-002", "S-003"],
        "subject_id": ["P-001", "P-002", "P-003"],
        "consent_research": [True, False, True],
        "date_of_birth": [dt.date(1990, 2, 28), None, dt.date(2012, 6, 30)],
        "zip": ["03601", "94110-1234", "00501"],
        "notes": ["first", None, "Lives at 1 Main St, Apt 2"],
    }
)


def _write(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _refusal(path: Path) -> MalformedInput:
    with pytest.raises(MalformedInput) as caught:
        read_manifest(path)
    return caught.value


def _text_frame() -> pl.DataFrame:
    lines = [HEADER, *ROWS]
    return pl.read_csv("\n".join(lines).encode(), infer_schema=False)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-sample synthetic identified cohort (manifest and secrets, no reads)."""
    out = tmp_path_factory.mktemp("manifest") / "cohort"
    synthesize_cohort(CohortSpec(out=out, samples=12, reads=False))
    return out


def test_column_sets_are_the_contract() -> None:
    """The required, date and yes/no columns are the ones SPEC.md 2.1 and the lead code against."""
    expected = (
        ("sample_id", "subject_id", "consent_research"),
        ("date_of_birth", "collection_date", "sequencing_date", "consent_revoked_at"),
        ("consent_research", "guardian_consent"),
    )
    assert expected == (REQUIRED_COLUMNS, DATE_COLUMNS, BOOL_COLUMNS)


def test_csv_is_read_as_text_with_dates_and_booleans_parsed(tmp_path: Path) -> None:
    """A CSV keeps ZIP leading zeros, parses dates and yes/no cells, turns empty cells into nulls and numbers rows."""
    actual = read_manifest(_write(tmp_path / "m.csv", HEADER, *ROWS))
    assert EXPECTED.to_dict(as_series=False) == actual.to_dict(as_series=False)
    assert EXPECTED.schema == actual.schema


def test_tsv_and_parquet_give_the_same_frame_as_csv(tmp_path: Path) -> None:
    """The same manifest saved as CSV, TSV and Parquet reads to one identical frame."""
    text = _text_frame()
    text.write_csv(tmp_path / "m.csv")
    text.write_csv(tmp_path / "m.tsv", separator="\t")
    text.write_parquet(tmp_path / "m.parquet")
    frames = [read_manifest(tmp_path / name) for name in ("m.csv", "m.tsv", "m.parquet")]
    expected = [EXPECTED.to_dict(as_series=False)] * 3
    assert expected == [f.to_dict(as_series=False) for f in frames]


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("tsv-named.csv", lambda df, p: df.write_csv(p, separator="\t")),
        ("csv-named.tsv", lambda df, p: df.write_csv(p)),
        ("parquet-named.csv", lambda df, p: df.write_parquet(p)),
        ("no-extension", lambda df, p: df.write_csv(p, separator="\t")),
    ],
)
def test_format_is_told_by_content_not_by_name(
    tmp_path: Path, name: str, write: Callable[[pl.DataFrame, Path], None]
) -> None:
    """A file whose name lies about its format (TSV called .csv, Parquet called .csv) is still read right."""
    path = tmp_path / name
    write(_text_frame(), path)
    assert EXPECTED.to_dict(as_series=False) == read_manifest(path).to_dict(as_series=False)


def test_bom_crlf_and_quoted_empty_cells(tmp_path: Path) -> None:
    """A UTF-8 BOM is stripped, CRLF line ends are accepted, and a quoted empty cell is null like a bare one."""
    path = tmp_path / "excel.csv"
    path.write_bytes(
        b'\xef\xbb\xbfsample_id,subject_id,consent_research,notes\r\nS1,P1,YES,""\r\nS2,P2,0,\r\n'
    )
    actual = read_manifest(path)
    expected = {
        "_row": [1, 2],
        "sample_id": ["S1", "S2"],
        "subject_id": ["P1", "P2"],
        "consent_research": [True, False],
        "notes": [None, None],
    }
    assert expected == actual.to_dict(as_series=False)


def test_multiline_cells_and_blank_lines_keep_row_numbers(tmp_path: Path) -> None:
    """A quoted cell with line breaks stays one cell, blank lines are skipped, and _row counts data rows only."""
    path = _write(
        tmp_path / "m.csv",
        "sample_id,subject_id,consent_research,notes",
        'S1,P1,true,"line one',
        'line two, with a comma"',
        "",
        "S2,P2,false,plain",
    )
    actual = read_manifest(path).select("_row", "sample_id", "notes")
    assert [(1, "S1", "line one\nline two, with a comma"), (2, "S2", "plain")] == actual.rows()


def test_every_column_is_text_even_when_it_looks_numeric(tmp_path: Path) -> None:
    """Ids and ZIPs that look like numbers stay exact strings (no inference), other columns stay String."""
    path = _write(
        tmp_path / "m.csv",
        "sample_id,subject_id,consent_research,zip,mrn",
        "007,0012,true,03601,000123456",
        "1e5,12.50,false,00501,9",
    )
    actual = read_manifest(path)
    assert [("007", "0012", "03601", "000123456"), ("1e5", "12.50", "00501", "9")] == actual.select(
        "sample_id", "subject_id", "zip", "mrn"
    ).rows()
    assert {"sample_id": pl.String, "subject_id": pl.String, "zip": pl.String, "mrn": pl.String} == {
        c: actual.schema[c] for c in ("sample_id", "subject_id", "zip", "mrn")
    }


def test_parquet_typed_columns_are_read_as_text_then_parsed(tmp_path: Path) -> None:
    """Parquet Date, Boolean and midnight-timestamp date columns come back as pl.Date/pl.Boolean; ints as text."""
    frame = pl.DataFrame(
        {
            "sample_id": ["S1", "S2"],
            "subject_id": ["P1", "P2"],
            "consent_research": [True, None],
            "date_of_birth": [dt.date(1950, 1, 2), None],
            "collection_date": [dt.datetime(2020, 5, 6), dt.datetime(2021, 7, 8)],
            "visits": [3, 4],
        }
    )
    frame.write_parquet(tmp_path / "typed.parquet")
    actual = read_manifest(tmp_path / "typed.parquet")
    expected = {
        "_row": [1, 2],
        "sample_id": ["S1", "S2"],
        "subject_id": ["P1", "P2"],
        "consent_research": [True, None],
        "date_of_birth": [dt.date(1950, 1, 2), None],
        "collection_date": [dt.date(2020, 5, 6), dt.date(2021, 7, 8)],
        "visits": ["3", "4"],
    }
    assert expected == actual.to_dict(as_series=False)


@pytest.mark.slow
def test_synthetic_cohort_manifest_reads(cohort: Path) -> None:
    """The synthetic cohort's manifest reads whole: every column, typed dates and booleans, one row per sample."""
    actual = read_manifest(cohort / "manifest.csv")
    expected_types = {
        **dict.fromkeys(MANIFEST_COLUMNS, pl.String),
        **dict.fromkeys(DATE_COLUMNS, pl.Date),
        **dict.fromkeys(BOOL_COLUMNS, pl.Boolean),
        "_row": pl.UInt32,
    }
    assert (12, expected_types) == (actual.height, dict(actual.schema))
    assert list(range(1, 13)) == actual.get_column("_row").to_list()


# (file name, lines, expected detail, the identifier value the message must not repeat)
BAD_TEXT = [
    (
        "missing-column.csv",
        ["subject_id,consent_research", "P-77,true"],
        "missing required column sample_id; add it (see SPEC.md 2.1)",
        "P-77",
    ),
    (
        "missing-columns.csv",
        ["sample_id", "S-77"],
        "missing required columns subject_id, consent_research; add them (see SPEC.md 2.1)",
        "S-77",
    ),
    (
        "duplicate-column.csv",
        ["sample_id,subject_id,consent_research,subject_id", "S-1,P-1,true,P-9"],
        "column subject_id appears twice in the header (columns 2 and 4); keep one",
        "P-9",
    ),
    (
        "unnamed-column.csv",
        ["sample_id,subject_id,consent_research,", "S-1,P-1,true,Jane Roe"],
        "header column 4 has no name; name it or remove it",
        "Jane Roe",
    ),
    (
        "header-only.csv",
        ["sample_id,subject_id,consent_research"],
        "has a header but no data rows; add one row per sample",
        "sample_id,",
    ),
    (
        "duplicate-id.csv",
        ["sample_id,subject_id,consent_research", "GG-31,P-1,true", "GG-32,P-2,true", "GG-31,P-3,true"],
        "row 3: sample_id duplicates row 1; every sample needs its own sample_id",
        "GG-31",
    ),
    (
        "empty-sample-id.csv",
        ["sample_id,subject_id,consent_research", "S-1,P-1,true", ",P-2682,true"],
        "row 2 column sample_id: empty; every sample needs a sample_id",
        "P-2682",
    ),
    (
        "blank-subject-id.csv",
        ["sample_id,subject_id,consent_research", "S-1,P-1,true", "S-2,P-2,true", 'S-3144,"  ",true'],
        "row 3 column subject_id: empty; every sample needs a subject_id",
        "S-3144",
    ),
    (
        "bad-date.csv",
        ["sample_id,subject_id,consent_research,date_of_birth"]
        + [f"S-{i},P-{i},true,1980-01-0{i}" for i in range(1, 10)]
        + ["S-17,P-17,true,31/02/1990"],
        "row 10 column date_of_birth: not an ISO date (YYYY-MM-DD); correct it or leave it empty",
        "1990",
    ),
    (
        "impossible-date.csv",
        ["sample_id,subject_id,consent_research,collection_date", "S-1,P-1,true,2021-02-30"],
        "row 1 column collection_date: not an ISO date (YYYY-MM-DD); correct it or leave it empty",
        "2021",
    ),
    (
        "unpadded-dates.csv",
        [
            "sample_id,subject_id,consent_research,consent_revoked_at",
            "S-1,P-1,true,2022-3-4",
            "S-2,P-2,true,",
            "S-3,P-3,true,2022-3-5",
            "S-4,P-4,true,March 2022",
        ],
        "row 1 column consent_revoked_at: not an ISO date (YYYY-MM-DD); correct it or leave it empty"
        " (2 more rows like it)",
        "2022",
    ),
    (
        "bad-bool.csv",
        ["sample_id,subject_id,consent_research,guardian_consent", "S-1,P-1,true,", "S-2,P-2,true,Mother"],
        "row 2 column guardian_consent: not a yes/no value; use true/false, yes/no or 1/0",
        "Mother",
    ),
    (
        "born-after-collection.csv",
        [
            "sample_id,subject_id,consent_research,date_of_birth,collection_date",
            "S-1,P-1,true,2001-04-05,2000-01-01",
        ],
        "row 1 column date_of_birth: after collection_date; correct one of the two dates",
        "2001",
    ),
    (
        "short-row.csv",
        ["sample_id,subject_id,consent_research,notes", "S-1,P-1,true,ok", "S-2,P-2", "S-3,P-3,true,ok"],
        "row 2: 2 cells where the header has 4 columns (column consent_research onward missing);"
        " quote any cell that contains a comma or a line break",
        "P-2",
    ),
    (
        "long-row.csv",
        ["sample_id,subject_id,consent_research,notes", "S-1,P-1,true,ok", "S-2,P-2,true,Smith, John"],
        "row 2: 5 cells where the header has 4 columns (cells beyond column notes); quote any cell that"
        " contains a comma",
        "Smith",
    ),
    (
        "unclosed-quote.csv",
        [
            "sample_id,subject_id,consent_research,notes",
            "S-1,P-1,true,ok",
            'S-2,P-2,true,"Dr Who',
            "S-3,P-3,1,x",
        ],
        'row 2 opens a double quote that is never closed; quote the whole cell and double any quote inside it ("")',
        "Dr Who",
    ),
    (
        "reserved-row.csv",
        ["_row,sample_id,subject_id,consent_research", "1,S-1,P-1,true"],
        "column _row is reserved for genegate; rename or remove it",
        "S-1",
    ),
]


@pytest.mark.parametrize(("name", "lines", "detail", "secret"), BAD_TEXT, ids=[c[0] for c in BAD_TEXT])
def test_bad_text_manifest_is_refused_by_row_and_column(
    tmp_path: Path, name: str, lines: list[str], detail: str, secret: str
) -> None:
    """Each bad input raises MalformedInput naming the file, row and column and the fix, never the cell value."""
    path = _write(tmp_path / name, *lines)
    error = _refusal(path)
    assert (str(path), detail) == (error.path, error.detail)
    assert secret not in str(error)


def test_tab_separated_ragged_row_names_the_tab(tmp_path: Path) -> None:
    """A ragged TSV row is reported with the tab as the separator to quote against."""
    path = _write(tmp_path / "m.tsv", "sample_id\tsubject_id\tconsent_research", "S-1\tP-1")
    expected = (
        "row 1: 2 cells where the header has 3 columns (column consent_research onward missing);"
        " quote any cell that contains a tab or a line break"
    )
    assert expected == _refusal(path).detail


def test_binary_garbage_is_not_a_manifest(tmp_path: Path) -> None:
    """Random bytes (with NULs) are refused as not a manifest, not parsed into nonsense columns."""
    path = tmp_path / "garbage.csv"
    path.write_bytes(random.Random(7).randbytes(4096) + b"\x00")
    detail = (
        "is not a CSV, TSV or Parquet manifest (binary content); export the sample sheet as UTF-8 CSV,"
        " TSV or Parquet with a header line"
    )
    assert detail == _refusal(path).detail


def test_non_utf8_header_is_not_a_manifest(tmp_path: Path) -> None:
    """A header that is not UTF-8 text (here Latin-1) is refused as not a manifest."""
    path = tmp_path / "latin1.csv"
    path.write_bytes("sample_id,subject_id,consent_research,prénom\nS1,P1,1,Zoé\n".encode("latin-1"))
    detail = (
        "is not a CSV, TSV or Parquet manifest (not UTF-8); export the sample sheet as UTF-8 CSV,"
        " TSV or Parquet with a header line"
    )
    assert detail == _refusal(path).detail


def test_non_utf8_row_is_located_by_line(tmp_path: Path) -> None:
    """A data line in another encoding is refused by line number, without the undecodable text."""
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        b"sample_id,subject_id,consent_research,full_name\nS1,P1,1,Ann Lee\nS2,P2,1,Zo\xe9 M\xfcller\n"
    )
    error = _refusal(path)
    assert "line 3 is not UTF-8 text; save the manifest as UTF-8" == error.detail
    assert "Zo" not in str(error)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    """A zero-byte file (or one of white space) is refused as empty."""
    path = tmp_path / "empty.csv"
    path.write_bytes(b" \n")
    assert "is empty; a manifest needs a header line and one row per sample" == _refusal(path).detail


def test_unreadable_path_is_refused(tmp_path: Path) -> None:
    """A path that is missing or a directory becomes MalformedInput, not an OSError."""
    details = [_refusal(tmp_path / "absent.csv").detail, _refusal(tmp_path).detail]
    assert ["cannot be read (No such file or directory)", "cannot be read (Is a directory)"] == details


def test_truncated_parquet_is_refused(tmp_path: Path) -> None:
    """A Parquet file cut short (magic at the start, no footer) is refused as unreadable."""
    path = tmp_path / "cut.parquet"
    _text_frame().write_parquet(path)
    path.write_bytes(path.read_bytes()[:200])
    detail = (
        "is not a readable Parquet file (truncated?); export the sample sheet as UTF-8 CSV, TSV or"
        " Parquet with a header line"
    )
    assert detail == _refusal(path).detail


def test_parquet_with_duplicate_column_names_is_refused(tmp_path: Path) -> None:
    """A Parquet schema that repeats a column name is refused naming the column and both positions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table([pa.array(["S1"]), pa.array(["P1"]), pa.array(["1"]), pa.array(["P9"])],
                     names=["sample_id", "subject_id", "consent_research", "subject_id"])  # fmt: skip
    pq.write_table(table, tmp_path / "dup.parquet")
    detail = "column subject_id appears twice in the header (columns 2 and 4); keep one"
    assert detail == _refusal(tmp_path / "dup.parquet").detail


def test_validate_accepts_parsed_columns_and_refuses_other_types() -> None:
    """validate_manifest keeps already-parsed Date/Boolean columns and refuses a numeric column."""
    parsed = pl.DataFrame(
        {
            "sample_id": ["S1"],
            "subject_id": ["P1"],
            "consent_research": [True],
            "date_of_birth": [dt.date(1970, 1, 1)],
        }
    )
    actual = validate_manifest(parsed, "frame")
    assert {"_row": [1], **parsed.to_dict(as_series=False)} == actual.to_dict(as_series=False)
    numeric = parsed.with_columns(pl.lit(94110).alias("zip"))
    with pytest.raises(MalformedInput) as caught:
        validate_manifest(numeric, "frame")
    expected = ("frame", "column zip holds Int32 values; genegate reads manifest columns as text")
    assert expected == (caught.value.path, caught.value.detail)


def test_path_with_glob_characters_is_read_literally(tmp_path: Path) -> None:
    """A file name holding * or [ ] is opened as named, never expanded as a glob pattern."""
    folder = tmp_path / "batch[2024]"
    folder.mkdir()
    path = _write(folder / "samples*.csv", HEADER, *ROWS)
    assert EXPECTED.to_dict(as_series=False) == read_manifest(path).to_dict(as_series=False)


def test_parquet_binary_column_that_is_not_text_is_refused(tmp_path: Path) -> None:
    """A Parquet binary column holding non-UTF-8 bytes is refused by column name, bytes unquoted."""
    frame = pl.DataFrame(
        {"sample_id": ["S1"], "subject_id": ["P1"], "consent_research": ["1"], "blob": [b"\xff\xfe"]}
    )
    frame.write_parquet(tmp_path / "binary.parquet")
    detail = "column blob cannot be read as text; store it as UTF-8 strings"
    assert detail == _refusal(tmp_path / "binary.parquet").detail
