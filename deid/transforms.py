"""Column transforms of the de-identification: pure, vectorised polars expressions.

Each function builds a polars expression (or takes and returns a DataFrame); none reads a file,
the clock or randomness, and none runs Python per row. The one table of law they need, the HHS
list of restricted three-digit ZIP prefixes, ships as the versioned data file
`deid/data/restricted_zip3.toml` and is read by `load_restricted_zip3`.

Safe Harbor rules applied here (45 CFR 164.514(b)(2)(i)):

- dates tied to a person keep their year only (`year`);
- a ZIP keeps its first three digits, or "000" where those three digits cover 20,000 people or
  fewer (`zip3`);
- ages over 89, and a birth year that would reveal one, collapse into "90+" (`age_top_code`);
- free text loses every known identifier value and anything shaped like one (`scrub_text`).
"""

from __future__ import annotations

import datetime as dt
import functools
import tomllib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import polars as pl

REDACTED = "[REDACTED]"
TOP_AGE = 90  # Safe Harbor: ages over 89 fall into a single "90 or older" category
TOP_AGE_LABEL = "90+"
MIN_KNOWN_VALUE_CHARS = 3
MIN_KNOWN_VALUE_CHARS_NON_ASCII = 2  # CJK names are often two characters (王芳)

_ZIP = r"^[0-9]{5}(?:-[0-9]{4})?$"  # ASCII digits only: a full-width ８３０ must not slip past "000"
_MONTH = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november|december"
    r"|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\.?"
)
_B = r"(?-u:\b)"  # ASCII word boundary: keeps the regex on its fast DFA for non-ASCII text
# Shapes of identifiers in free text, tried left to right at each position. Over-redaction is the
# accepted cost: a decimal such as 3.1415926 or a run of six digits is removed as well.
SCRUB_PATTERNS: tuple[tuple[str, str], ...] = (
    ("url", rf"(?i:{_B}(?:https?|ftp)://[^\s<>\"']+|{_B}www\.[^\s<>\"']+)"),
    ("email", r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)+"),
    ("ipv4", rf"{_B}(?:\d{{1,3}}\.){{3}}\d{{1,3}}{_B}"),
    ("ssn", rf"{_B}\d{{3}}-\d{{2}}-\d{{4}}{_B}"),
    ("iso_date", rf"{_B}\d{{4}}[-/.]\d{{1,2}}[-/.]\d{{1,2}}{_B}"),
    ("dmy_date", rf"{_B}\d{{1,2}}[-/.]\d{{1,2}}[-/.]\d{{2,4}}{_B}"),
    (
        "text_date",
        rf"(?i:{_B}\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH},?\s+\d{{2,4}}{_B}"
        rf"|{_B}{_MONTH}\s+(?:\d{{1,2}}(?:st|nd|rd|th)?,?\s+)?\d{{4}}{_B})",
    ),
    # +41 34 177 76 31, (0306) 999 0141, 744.744.5812x066, +1-258-588-6159x82502, 070-5707-8798
    ("phone", r"\+?\(?\d[\d\s().\-]{5,}\d(?:\s*(?i:x|ext\.?|#)\s*\d+)?"),
    ("digit_run", r"\d{6,}"),  # MRNs, account and device numbers, unformatted phone numbers
)
_SCRUB_REGEX = "|".join(f"(?:{pattern})" for _, pattern in SCRUB_PATTERNS)


@dataclass(frozen=True, slots=True)
class ZipTable:
    """The three-digit ZIP prefixes that must become "000", and which list they come from."""

    prefixes: frozenset[str]
    version: str
    source: str
    effective: dt.date | None = None


@functools.cache
def load_restricted_zip3() -> ZipTable:
    """The restricted ZIP prefixes shipped in deid/data/restricted_zip3.toml."""
    text = resources.files("deid").joinpath("data/restricted_zip3.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    prefixes = data["prefixes"]
    if not all(isinstance(p, str) and len(p) == 3 and p.isascii() and p.isdigit() for p in prefixes):
        raise ValueError("restricted_zip3.toml: every prefix must be a three-digit string such as '036'")
    effective = data.get("effective")
    return ZipTable(
        prefixes=frozenset(prefixes),
        version=str(data["version"]),
        source=str(data["source"]),
        effective=effective if isinstance(effective, dt.date) else None,
    )


def year(col: str) -> pl.Expr:
    """The year of a Date column as Int32; null stays null."""
    return pl.col(col).dt.year().cast(pl.Int32)


def zip3(col: str, table: ZipTable) -> pl.Expr:
    """A US ZIP ("94110", "94110-1234", " 03601 ") reduced to its first three digits, "000" if restricted.

    Anything that is not five digits, optionally followed by -dddd, becomes null: a foreign
    postcode, a truncated ZIP, and a three-digit value (so zip3 of a zip3 output is null, never
    wider).
    """
    value = pl.col(col).str.strip_chars()
    prefix = value.str.slice(0, 3)
    restricted = prefix.is_in(sorted(table.prefixes))
    return (
        pl.when(value.str.contains(_ZIP))
        .then(pl.when(restricted).then(pl.lit("000")).otherwise(prefix))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias(col)
    )


def age_at(dob: str, at: str | pl.Expr) -> pl.Expr:
    """Whole years from the Date column dob to at (a Date column name or expression), as Int32.

    A birthday counts from the day itself; someone born on 29 February turns a year older on
    1 March in common years. Null if either date is null; negative if at precedes dob.
    """
    born = pl.col(dob)
    then = pl.col(at) if isinstance(at, str) else at
    before_birthday = (then.dt.month() < born.dt.month()) | (
        (then.dt.month() == born.dt.month()) & (then.dt.day() < born.dt.day())
    )
    years = then.dt.year().cast(pl.Int32) - born.dt.year().cast(pl.Int32)
    return (years - before_birthday.cast(pl.Int32)).alias("age")


def age_top_code(dob: str, at: str, *, default_at: dt.date | None = None) -> tuple[pl.Expr, pl.Expr]:
    """(birth_year, age) with ages over 89 collapsed, as Safe Harbor requires.

    age is a String: the whole years from dob to at, or "90+" from 90 on. birth_year is the
    Int32 year of dob, null when the age is 90 or more (the year would reveal the age). Where at
    is null the age is null and the birth year is kept, unless default_at (for instance the
    release date) is given: then it stands in for the missing date. The expressions are named
    "birth_year" and "age".
    """
    then = pl.col(at) if default_at is None else pl.col(at).fill_null(pl.lit(default_at, dtype=pl.Date))
    age = age_at(dob, then)
    top = age >= TOP_AGE
    age_text = pl.when(top).then(pl.lit(TOP_AGE_LABEL)).otherwise(age.cast(pl.String))
    birth_year = pl.when(top.fill_null(value=False)).then(pl.lit(None, dtype=pl.Int32)).otherwise(year(dob))
    return birth_year.alias("birth_year"), age_text.alias("age")


def known_value_patterns(known_values: Sequence[str] | pl.Series) -> list[str]:
    """The literal patterns scrub_text searches for: usable values and their case/Unicode forms.

    Values are stripped; those under MIN_KNOWN_VALUE_CHARS characters are dropped as too generic
    (they would blank out ordinary words), except two-character values with a non-ASCII
    character, since CJK names are often two characters. ASCII case is folded by the matcher; for
    a value with non-ASCII letters the lower, upper, title and casefold forms are added, each in
    NFC and NFD. Longest (in UTF-8 bytes) first, so "John Smith" wins over "John"; then in
    code point order.
    """
    return _pattern_series(known_values).to_list()


def _pattern_series(known_values: Sequence[str] | pl.Series) -> pl.Series:
    """known_value_patterns as a Series, built with polars: millions of values take a second, not minutes."""
    values = known_values if isinstance(known_values, pl.Series) else pl.Series(known_values, dtype=pl.String)
    text = pl.col("p").str.strip_chars()
    ascii_only = text.str.len_bytes() == text.str.len_chars()
    floor = pl.when(ascii_only).then(MIN_KNOWN_VALUE_CHARS).otherwise(MIN_KNOWN_VALUE_CHARS_NON_ASCII)
    usable = (
        pl.DataFrame({"p": values.cast(pl.String)})
        .lazy()
        .select(text.alias("p"), ascii_only.alias("ascii"), (text.str.len_chars() >= floor).alias("long"))
        .filter(pl.col("long"))
        .unique("p")
        .collect()
    )
    forms: set[str] = set()
    for value in usable.filter(~pl.col("ascii")).get_column("p"):
        for form in (value, value.lower(), value.upper(), value.title(), value.casefold()):
            forms.update(unicodedata.normalize(nf, form) for nf in ("NFC", "NFD"))
    patterns = pl.concat([usable.filter(pl.col("ascii")).get_column("p"), pl.Series("p", list(forms))])
    # Leftmost-first matching takes the first listed of the patterns that match at a position, so
    # longer first gives leftmost-longest. Within a length, sorted order makes the output
    # deterministic and builds the automaton about twice as fast (trie insertion in order). Two
    # stable single-key sorts: one two-key sort of millions of strings takes seconds.
    patterns = patterns.sort()
    length = patterns.str.len_bytes()
    return pl.DataFrame({"p": patterns}).sort(length, descending=True, maintain_order=True).get_column("p")


def scrub_text(col: str, known_values: Sequence[str] | pl.Series) -> pl.Expr:
    """Free text with every known identifier value and identifier-shaped string replaced by [REDACTED].

    Known values are matched literally with one Aho-Corasick automaton (str.replace_many),
    leftmost-longest, ASCII case-insensitively; see known_value_patterns for which values and
    case forms are used. Then one regular expression removes what SCRUB_PATTERNS describes:
    URLs, e-mail addresses, IPv4 addresses, SSNs, dates (ISO, d/m/y, with English month names),
    phone numbers and runs of six or more digits.

    known_values may be a polars Series, which spares building a Python list when there are
    millions. Cost grows with the number of values: building the automaton takes about a second
    per million values and matching slows as it outgrows the CPU caches, so values that the
    patterns already catch (e-mails, phone numbers, long digit runs) need not be passed.

    Limits: non-ASCII case is folded only through the added forms (ADÈLE and adèle are found for
    Adèle, aDÈle is not); a name written differently from the known value (initials, reordered,
    extra spaces, transliterated) and identifiers with no known value and no recognisable shape
    (a bare first name) stay. Scrubbing reduces risk; it does not prove free text is clean.
    """
    text = pl.col(col)
    patterns = _pattern_series(known_values)
    if patterns.len():
        literal = pl.lit(patterns.implode())
        text = text.str.replace_many(literal, [REDACTED], ascii_case_insensitive=True, leftmost=True)
    return text.str.replace_all(_SCRUB_REGEX, REDACTED).alias(col)


NARROW_GRAM = 4  # characters: the prefix of a value that must occur in some text
NARROW_MAX_CHARS = 8_000_000  # above this much text, narrowing costs more than the automaton saves


def narrow_patterns(values: pl.Series, texts: pl.Series) -> pl.Series:
    """The values that could occur in any of texts: a superset of those that do, often far smaller.

    Building an Aho-Corasick automaton costs about a second per million patterns, while the texts a
    release holds (the distinct values of a few columns) are often a few hundred strings. A value of
    NARROW_GRAM or more ASCII characters can only occur, ASCII case-insensitively as the matchers
    here search, where each of its NARROW_GRAM-character windows does; so such a value whose
    first, middle or last window (lower-cased) is none of the texts' lower-cased windows is left
    out. Shorter values and values with non-ASCII characters (whose case and Unicode forms
    scrub_text adds) are all kept. Too much text (NARROW_MAX_CHARS) and the values come back
    unchanged.
    """
    texts = texts.drop_nulls().cast(pl.String).unique()
    windows = texts.str.len_chars().clip(lower_bound=NARROW_GRAM - 1) - (NARROW_GRAM - 1)
    if values.is_empty() or int(windows.sum()) > NARROW_MAX_CHARS:
        return values
    grams = (
        pl.DataFrame({"t": texts, "i": pl.int_ranges(0, windows, eager=True)})
        .explode("i")
        .drop_nulls("i")
        .select(pl.col("t").str.slice(pl.col("i"), NARROW_GRAM).str.to_lowercase().alias("g"))
        .unique()
        .get_column("g")
    )
    value, length, found = pl.col("v"), pl.col("v").str.len_chars(), grams.implode()
    checkable = (value.str.len_bytes() == length) & (length >= NARROW_GRAM)
    # three windows (start, middle, end): ids often share a prefix ("SUBJ-") that a text may hold
    starts = (pl.lit(0), (length - NARROW_GRAM) // 2, length - NARROW_GRAM)
    present = [value.str.slice(start, NARROW_GRAM).str.to_lowercase().is_in(found) for start in starts]
    keep = ~checkable | pl.all_horizontal(present)
    return values.to_frame("v").filter(keep).get_column("v").rename(values.name)


def scrub_series(values: pl.Series, known_values: Sequence[str] | pl.Series) -> pl.Series:
    """scrub_text over a Series, computed once per distinct value against the narrowed known values.

    Equal to `values.to_frame().select(scrub_text(name, known_values))`, faster where values repeat
    (a sequencing centre has a handful of spellings in a million rows) or where few known values
    can occur in them.
    """
    known = known_values if isinstance(known_values, pl.Series) else pl.Series(known_values, dtype=pl.String)
    distinct = values.drop_nulls().unique()
    scrubbed = (
        distinct.to_frame("v").select(scrub_text("v", narrow_patterns(known, distinct))).get_column("v")
    )
    return values.replace_strict(distinct, scrubbed, default=None, return_dtype=pl.String)


def drop_columns(df: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """df without the named columns; a name df does not have is already dropped."""
    return df.drop(columns, strict=False)
