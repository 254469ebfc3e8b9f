"""deid.transforms: ZIP3 with the restricted list, years, top-coded ages, free-text scrubbing, column drops."""

from __future__ import annotations

import csv
import datetime as dt
from importlib import resources
from pathlib import Path

import polars as pl
import pytest

from deid.manifest import read_manifest
from deid.synth import CohortSpec, synthesize_cohort
from deid.transforms import (
    REDACTED,
    ZipTable,
    age_at,
    age_top_code,
    drop_columns,
    known_value_patterns,
    load_restricted_zip3,
    scrub_text,
    year,
    zip3,
)

HHS_2000_CENSUS = {
    "036", "059", "063", "102", "203", "556", "692", "790", "821",
    "823", "830", "831", "878", "879", "884", "890", "893",
}  # fmt: skip
R = REDACTED


def _zip3(values: list[str | None], table: ZipTable | None = None) -> list[str | None]:
    frame = pl.DataFrame({"zip": values}, schema={"zip": pl.String})
    return frame.select(zip3("zip", table or load_restricted_zip3())).to_series().to_list()


def _scrub(texts: list[str | None], known: list[str]) -> list[str | None]:
    frame = pl.DataFrame({"notes": texts}, schema={"notes": pl.String})
    return frame.select(scrub_text("notes", known)).to_series().to_list()


def _dates(dob: list[dt.date | None], at: list[dt.date | None]) -> pl.DataFrame:
    return pl.DataFrame({"dob": dob, "at": at}, schema={"dob": pl.Date, "at": pl.Date})


def test_restricted_zip3_table_is_the_hhs_list() -> None:
    """The shipped table holds exactly the 17 HHS prefixes, with its version, source and effective date."""
    table = load_restricted_zip3()
    actual = (table.prefixes, table.version, "67 FR 53182 at 53233-34" in table.source, table.effective)
    assert (frozenset(HHS_2000_CENSUS), "hhs-2002-census-2000", True, dt.date(2002, 10, 15)) == actual


def test_restricted_zip3_table_ships_as_package_data() -> None:
    """The TOML sits inside the deid package (hatchling puts it in the wheel), found via importlib.resources."""
    data = resources.files("deid").joinpath("data/restricted_zip3.toml")
    assert (True, True) == (
        data.is_file(),
        'version = "hhs-2002-census-2000"' in data.read_text(encoding="utf-8"),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("03601", "000"),
        ("94110-1234", "941"),
        (" 03601 ", "000"),
        ("94110", "941"),
        ("00501", "005"),
        ("82301", "000"),
        ("89301-0001", "000"),
        (None, None),
        ("", None),
        ("941", None),
        ("000", None),
        ("9411", None),
        ("941101", None),
        ("94110-12", None),
        ("94110 1234", None),
        ("K1A 0B6", None),
        ("SW1A 1AA", None),
        ("８３００１", None),
    ],
)
def test_zip3(value: str | None, expected: str | None) -> None:
    """zip3 keeps three digits of a US ZIP or ZIP+4, "000" for restricted prefixes, null for anything else."""
    assert [expected] == _zip3([value])


def test_every_restricted_prefix_becomes_000() -> None:
    """Each of the 17 restricted prefixes, as a ZIP and a ZIP+4, becomes "000"."""
    values = [p + "01" for p in sorted(HHS_2000_CENSUS)] + [p + "99-1234" for p in sorted(HHS_2000_CENSUS)]
    assert ["000"] * 34 == _zip3(values)


def test_zip3_uses_the_table_it_is_given() -> None:
    """A newer table (another version) decides which prefixes become "000"."""
    table = ZipTable(prefixes=frozenset({"941"}), version="test", source="test")
    assert ["000", "036"] == _zip3(["94110", "03601"], table)


def test_year_keeps_the_year_only() -> None:
    """year turns a Date into its Int32 year; null stays null."""
    frame = pl.DataFrame({"d": [dt.date(1931, 12, 31), None, dt.date(2024, 1, 1)]})
    actual = frame.select(year("d")).to_series()
    assert ([1931, None, 2024], pl.Int32) == (actual.to_list(), actual.dtype)


def test_age_at_counts_whole_years_to_the_birthday() -> None:
    """age_at counts a year on the birthday itself, not the day before; 29 February turns on 1 March."""
    frame = _dates(
        [dt.date(1990, 6, 15)] * 3 + [dt.date(2000, 2, 29)] * 3 + [None, dt.date(1990, 1, 1)],
        [
            dt.date(2020, 6, 14),
            dt.date(2020, 6, 15),
            dt.date(2020, 12, 31),
            dt.date(2001, 2, 28),
            dt.date(2001, 3, 1),
            dt.date(2004, 2, 29),
            dt.date(2020, 1, 1),
            None,
        ],
    )
    actual = frame.select(age_at("dob", "at")).to_series()
    assert ([29, 30, 30, 0, 1, 4, None, None], pl.Int32) == (actual.to_list(), actual.dtype)


def test_age_top_code() -> None:
    """Ages from 90 become "90+" with the birth year suppressed; younger ages keep both; no date, no age."""
    frame = _dates(
        [
            dt.date(1929, 3, 1),  # 95 at collection
            dt.date(1931, 5, 20),  # born 1931, collected 2024: 93
            dt.date(1934, 6, 2),  # 90 on the day
            dt.date(1934, 6, 3),  # 89, one day short of 90
            dt.date(2012, 1, 1),  # no collection date
            None,
        ],
        [dt.date(2024, 6, 1), dt.date(2024, 3, 1), dt.date(2024, 6, 2), dt.date(2024, 6, 2), None, None],
    )
    birth_year, age = age_top_code("dob", "at")
    actual = frame.select(birth_year, age)
    expected = {
        "birth_year": [None, None, None, 1934, 2012, None],
        "age": ["90+", "90+", "90+", "89", None, None],
    }
    assert expected == actual.to_dict(as_series=False)
    assert {"birth_year": pl.Int32, "age": pl.String} == dict(actual.schema)


def test_age_top_code_default_at_stands_in_for_a_missing_date() -> None:
    """With default_at (e.g. the release date) a missing date is replaced, so a 1931 birth year is still suppressed."""
    frame = _dates([dt.date(1931, 1, 1), dt.date(1990, 1, 1)], [None, None])
    actual = frame.select(*age_top_code("dob", "at", default_at=dt.date(2026, 1, 1)))
    assert {"birth_year": [None, 1990], "age": ["90+", "36"]} == actual.to_dict(as_series=False)


def test_scrub_removes_known_values_case_insensitively_longest_first() -> None:
    """Known values go whatever their ASCII case, and "John Smith" is one redaction, not "John" then "Smith"."""
    actual = _scrub(
        ["Pt JOHN SMITH seen; john smith's brother John called", None, ""],
        ["John", "John Smith"],
    )
    assert [f"Pt {R} seen; {R}'s brother {R} called", None, ""] == actual


def test_scrub_ignores_values_shorter_than_three_characters_except_cjk() -> None:
    """One- and two-letter ASCII values (too generic) are ignored; a two-character CJK name is not."""
    actual = _scrub(["Al met 王芳 at the lab; A. Lee"], ["Al", "A", "王芳", " "])
    assert [f"Al met {R} at the lab; A. Lee"] == actual


def test_scrub_non_ascii_values_match_exact_and_whole_word_case_forms() -> None:
    """A non-ASCII value is found as written, in NFD, and in lower, upper and title case."""
    nfd = "Ade\u0300le Dupuis"
    texts = [
        "Adèle Dupuis",
        "ADÈLE DUPUIS",
        "adèle dupuis",
        nfd,
        "小林 真綾 様",
        "Jürgen Groß / JÜRGEN GROSS",
    ]
    actual = _scrub(texts, ["Adèle Dupuis", "小林 真綾", "Jürgen Groß"])
    assert [R, R, R, R, f"{R} 様", f"{R} / {R}"] == actual


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call +41 34 177 76 31 today", f"call {R} today"),
        ("tel 744.744.5812x066.", f"tel {R}."),
        ("(0306) 999 0141", R),
        ("(889)932-7606x71793 or +1-258-588-6159x82502", f"{R} or {R}"),
        ("070-5707-8798, 031 833 41 03, +33 6 37 87 46 97", f"{R}, {R}, {R}"),
        ("mail j.doe+lab@uni-bern.ch now", f"mail {R} now"),
        ("SSN 735-10-8374", f"SSN {R}"),
        ("MRN98896134 and acct 123456", f"MRN{R} and acct {R}"),
        ("DOB 1962-10-09, seen 9/10/62 and 09.10.1962", f"DOB {R}, seen {R} and {R}"),
        ("born 3 March 1962, visit Oct. 2019, March 4, 2020", f"born {R}, visit {R}, {R}"),
        ("see https://portal.x.com/u/371925?a=1 or www.x.org/p", f"see {R} or {R}"),
        ("from 155.134.72.21", f"from {R}"),
    ],
)
def test_scrub_removes_identifier_shapes(text: str, expected: str) -> None:
    """Phones (US and international), e-mail, SSN, digit runs, dates, URLs and IPv4 are removed without known values."""
    assert [expected] == _scrub([text], [])


def test_scrub_leaves_clinical_text_alone() -> None:
    """Diagnosis codes, short numbers and ordinary words survive scrubbing."""
    text = "I42.1 obstructive hypertrophic cardiomyopathy; E78.01 FH; 2 of 3 siblings, age 45, BRCA1 c.68_69delAG"
    assert [text] == _scrub([text], ["Gina Thomas"])


def test_known_value_patterns() -> None:
    """Patterns are stripped and deduplicated, longest (UTF-8 bytes) first, with non-ASCII case and NFD forms."""
    expected = ["John Smith", "E\u0301VA", "E\u0301va", "e\u0301va", "John", "ÉVA", "Éva", "éva"]
    assert expected == known_value_patterns([" John ", "John Smith", "John", "Éva", "Jo"])


def test_scrub_accepts_a_series_of_known_values() -> None:
    """Known values may come as a polars Series (no Python list of millions of strings), nulls ignored."""
    frame = pl.DataFrame({"notes": ["Pt Gina Thomas, SUBJ-324192"]})
    known = pl.Series(["Gina Thomas", None, "SUBJ-324192"], dtype=pl.String)
    assert [f"Pt {R}, {R}"] == frame.select(scrub_text("notes", known)).to_series().to_list()


def test_drop_columns_drops_named_columns_and_ignores_absent_ones() -> None:
    """drop_columns removes the named columns; a name the frame lacks is not an error."""
    frame = pl.DataFrame({"a": [1], "email": ["x"], "b": [2]})
    assert ["a", "b"] == drop_columns(frame, ["email", "ssn"]).columns


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-sample synthetic identified cohort (manifest and secrets, no reads)."""
    out = tmp_path_factory.mktemp("transforms") / "cohort"
    synthesize_cohort(CohortSpec(out=out, samples=12, reads=False))
    return out


@pytest.mark.slow
def test_scrub_removes_every_planted_secret_from_synthetic_notes(cohort: Path) -> None:
    """After scrubbing notes with all rows' identifier values, no name, e-mail, phone, MRN, SSN or DOB is left."""
    manifest = read_manifest(cohort / "manifest.csv")
    identifier_columns = ["sample_id", "subject_id", "full_name", "email", "phone", "street_address", "city",
                          "ssn", "mrn", "health_plan_id", "device_id", "ip_address", "url", "zip"]  # fmt: skip
    known = manifest.select(pl.concat_list(identifier_columns).explode().drop_nulls()).to_series().to_list()
    known += manifest.select(pl.col("date_of_birth").dt.to_string()).to_series().drop_nulls().to_list()
    notes = manifest.select(scrub_text("notes", known)).to_series().to_list()
    with (cohort / "secrets.tsv").open(encoding="utf-8", newline="") as fh:
        kinds = {"full_name", "email", "phone", "mrn", "ssn", "date_of_birth"}
        secrets = [row["value"] for row in csv.DictReader(fh, delimiter="\t") if row["kind"] in kinds]
    leaks = sorted({s for s in secrets for note in notes if s.lower() in note.lower()})
    original = manifest.get_column("notes").to_list()
    assert ([], 12) == (leaks, sum(note != before for note, before in zip(notes, original, strict=True)))
    assert any(any(ord(ch) > 0x2E80 for ch in s) for s in secrets)  # the cohort does hold CJK names
