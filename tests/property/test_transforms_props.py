"""De-identification transform invariants: scrubbing leaves no known value, generalisation is stable and never widens."""

from __future__ import annotations

import datetime as dt
import re

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from deid.transforms import (
    MIN_KNOWN_VALUE_CHARS,
    MIN_KNOWN_VALUE_CHARS_NON_ASCII,
    REDACTED,
    TOP_AGE,
    age_top_code,
    load_restricted_zip3,
    narrow_patterns,
    scrub_series,
    scrub_text,
    year,
    zip3,
)
from tests.property.strategies import identifier_values, text_with, zip_like

FAST = settings(max_examples=60, deadline=None)
THOROUGH = settings(max_examples=300, deadline=None)  # the leak property: worth more examples
TABLE = load_restricted_zip3()
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
DATES = st.dates(min_value=dt.date(1880, 1, 1), max_value=dt.date(2100, 12, 31))


def _scrub(texts: list[str], known: list[str]) -> list[str]:
    frame = pl.DataFrame({"notes": texts}, schema={"notes": pl.String})
    return frame.select(scrub_text("notes", known)).to_series().to_list()


def _searched(value: str) -> bool:
    """Whether scrub_text searches for a known value (the documented length floor)."""
    stripped = value.strip()
    return len(stripped) >= (MIN_KNOWN_VALUE_CHARS if stripped.isascii() else MIN_KNOWN_VALUE_CHARS_NON_ASCII)


def _left_over(output: str, value: str) -> bool:
    """Whether value survives in output outside the [REDACTED] markers (ASCII case folded for ASCII values)."""
    needle = value.strip()
    for segment in output.split(REDACTED):
        if needle.isascii() and needle.translate(_ASCII_LOWER) in segment.translate(_ASCII_LOWER):
            return True
        if not needle.isascii() and needle in segment:
            return True
    return False


@st.composite
def notes_and_values(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    values = draw(st.lists(identifier_values(), min_size=1, max_size=8))
    texts = draw(st.lists(text_with(values), min_size=1, max_size=6))
    return texts, values


@THOROUGH
@given(notes_and_values())
def test_scrub_leaves_no_known_value(case: tuple[list[str], list[str]]) -> None:
    """No searched known value (ASCII: in any case) survives scrubbing outside the [REDACTED] markers."""
    texts, values = case
    outputs = _scrub(texts, values)
    leaks = [(v, o) for o in outputs for v in values if _searched(v) and _left_over(o, v)]
    assert [] == leaks


@FAST
@given(st.lists(text_with([]), min_size=1, max_size=6))
def test_pattern_scrub_is_idempotent(texts: list[str]) -> None:
    """Scrubbing patterns twice gives what scrubbing once gave: nothing identifier-shaped is left over."""
    once = _scrub(texts, [])
    assert once == _scrub(once, [])


@FAST
@given(st.lists(zip_like(sorted(TABLE.prefixes)), min_size=1, max_size=20))
def test_zip3_never_widens_and_is_stable(values: list[str | None]) -> None:
    """zip3 gives null or three ASCII digits ("000" exactly for restricted prefixes); zip3 of that is null."""
    frame = pl.DataFrame({"zip": values}, schema={"zip": pl.String})
    once = frame.select(zip3("zip", TABLE)).to_series().to_list()
    twice = pl.DataFrame({"zip": once}, schema={"zip": pl.String}).select(zip3("zip", TABLE)).to_series()
    expected = []
    for value in values:
        text = (value or "").strip()
        valid = re.fullmatch(r"[0-9]{5}(-[0-9]{4})?", text) is not None
        expected.append(("000" if text[:3] in TABLE.prefixes else text[:3]) if valid else None)
    assert (expected, [None] * len(values)) == (once, twice.to_list())


@FAST
@given(st.lists(st.one_of(st.none(), DATES), min_size=1, max_size=20))
def test_year_is_stable_under_its_own_generalisation(dates: list[dt.date | None]) -> None:
    """year(d) is d's year, and taking the year of 1 January of that year gives the same year again."""
    frame = pl.DataFrame({"d": dates}, schema={"d": pl.Date})
    years = frame.select(year("d")).to_series().to_list()
    again = [None if y is None else dt.date(y, 1, 1) for y in years]
    regeneralised = pl.DataFrame({"d": again}, schema={"d": pl.Date}).select(year("d")).to_series().to_list()
    assert ([None if d is None else d.year for d in dates], years) == (years, regeneralised)


@FAST
@given(st.lists(st.tuples(st.one_of(st.none(), DATES), st.one_of(st.none(), DATES)), min_size=1, max_size=20))
def test_age_top_code_matches_the_calendar_and_hides_ages_over_89(
    pairs: list[tuple[dt.date | None, ...]],
) -> None:
    """Age is whole calendar years, "90+" from 90 on; the birth year is released only when the age is under 90."""
    frame = pl.DataFrame(
        {"dob": [p[0] for p in pairs], "at": [p[1] for p in pairs]}, schema={"dob": pl.Date, "at": pl.Date}
    )
    actual = frame.select(*age_top_code("dob", "at")).rows()
    expected: list[tuple[int | None, str | None]] = []
    for born, then in pairs:
        if born is None:
            expected.append((None, None))
            continue
        if then is None:
            expected.append((born.year, None))
            continue
        age = then.year - born.year - ((then.month, then.day) < (born.month, born.day))
        expected.append((None, "90+") if age >= TOP_AGE else (born.year, str(age)))
    assert expected == actual


@THOROUGH
@given(notes_and_values(), st.lists(identifier_values(), max_size=6))
def test_narrowing_keeps_every_value_that_occurs(
    case: tuple[list[str], list[str]], others: list[str]
) -> None:
    """narrow_patterns may drop only values that occur in no text (ASCII case folded), never one that does."""
    texts, values = case
    candidates = values + others
    kept = set(narrow_patterns(pl.Series(candidates, dtype=pl.String), pl.Series(texts, dtype=pl.String)))
    occurring = {v for v in candidates if any(_left_over(t, v) for t in texts)}
    assert set() == occurring - kept


@THOROUGH
@given(notes_and_values(), st.lists(identifier_values(), max_size=6))
def test_scrub_series_equals_scrub_text(case: tuple[list[str], list[str]], others: list[str]) -> None:
    """Scrubbing distinct values against narrowed patterns gives what scrubbing every row gives."""
    texts, values = case
    rows = [*texts, *texts[:2], None]
    expected = pl.DataFrame({"notes": rows}, schema={"notes": pl.String}).select(
        scrub_text("notes", values + others)
    )
    assert expected.to_series().to_list() == scrub_series(pl.Series("notes", rows), values + others).to_list()
