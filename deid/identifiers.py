"""What a manifest says must never be released: its identifying values, gathered once per run.

deid.release gives these to the free-text scrub (literal matches) and to the leak guard (every
released byte is checked against them); the re-identification test T01 uses them too. All rows
count, consented or not: a sibling excluded from the release can still be named in a note.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from deid.policy import DIRECT_IDENTIFIERS

_IDENTIFYING = frozenset(
    {*DIRECT_IDENTIFIERS, "sample_id", "subject_id", "zip", "date_of_birth", "collection_date",
     "sequencing_date", "consent_revoked_at"}
)  # fmt: skip


# kinds whose every value the scrub regex already removes (e-mail, phone, digit runs, dates):
# passing them to the literal matcher too only slows it down
_REGEX_COVERED = frozenset(
    {"email", "phone", "ssn", "mrn", "health_plan_id", "date_of_birth", "collection_date", "sequencing_date",
     "consent_revoked_at", "ip_address", "url"}
)  # fmt: skip


def identifier_columns(frame: pl.DataFrame) -> dict[str, pl.Series]:
    """The distinct non-empty values of each identifying column, all rows (consented or not), as text."""
    out = {}
    for column in (c for c in frame.columns if c in _IDENTIFYING):
        distinct = column == "sample_id"  # read_manifest refuses a repeated sample_id
        values = frame[column].drop_nulls()
        values = values if distinct else values.unique()  # before the cast: a date column is 1M dates
        text = values.cast(pl.String)
        stripped = text.str.strip_chars()
        if not distinct and (stripped != text).any():  # padding made two values one
            stripped = stripped.unique()
        out[column] = stripped.filter(stripped.str.len_chars() > 0).rename("value")
    return out


def identifier_values(per_column: Mapping[str, pl.Series]) -> pl.Series:
    """Every identifying value the manifest holds (distinct within a column; a value in two columns
    may appear twice, which costs the matchers nothing)."""
    if not per_column:
        return pl.Series("value", [], dtype=pl.String)
    return pl.concat(list(per_column.values()))


def scrub_values(per_column: Mapping[str, pl.Series]) -> pl.Series:
    """What free text is scrubbed of by literal match: identifier values the scrub regex does not
    cover, plus each part of each name (notes say "Pt Webster" as often as the full name)."""
    literal = [v for c, v in per_column.items() if c not in _REGEX_COVERED]
    if "full_name" in per_column:
        parts = per_column["full_name"].str.split(" ").explode().str.strip_chars(" ,")
        literal.append(parts.filter(parts.str.len_chars() >= 3))
    if not literal:
        return pl.Series("value", [], dtype=pl.String)
    return pl.concat(literal).unique()
