"""The leak guard: the last check before a release becomes visible.

Every string cell, column name and extra text (Parquet footers, genomic file headers and names)
of a release is checked, case-insensitively, against every identifier value the manifest holds,
in all rows; the caller fails closed, writing nothing, if one survived. Code columns are checked
by form: every value must be a vault code of its kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from deid.errors import DeidError
from deid.transforms import REDACTED, narrow_patterns
from keys import CodeKind

_MIN_GUARD_LENGTH = 4  # shorter values (e.g. "CA", "M") are too generic to scan for


def guard(
    released: pl.DataFrame,
    known: pl.Series,
    codes: Mapping[str, CodeKind] | None = None,
    extra_texts: Sequence[str] = (),
) -> None:
    """Fail closed if any identifier value survives in a column name, a string cell or extra_texts.

    One Aho-Corasick pass (case-insensitive) over the distinct values of every string column, the
    column names and extra_texts (the Parquet footer) against every identifier value of 4+
    characters. Code columns (codes maps column -> kind) are checked by form instead: every value
    must be a vault code of that kind. A random code may contain, say, a 5-digit ZIP by chance
    (about 24 such codes in a million); that is not a leak, while a value that is not a code
    would be. The scrub's own marker is removed first, so "Reda" does not match "[REDACTED]".
    """
    codes = codes or {}
    for column, kind in codes.items():
        if column in released.columns:
            bad = released.select((~pl.col(column).str.contains(kind.pattern)).sum()).item()
            if bad:
                raise DeidError(
                    f"column {column} holds {bad} value(s) that are not vault codes; nothing was written"
                )
    patterns = known.filter(known.str.len_chars() >= _MIN_GUARD_LENGTH)
    if patterns.is_empty():
        return
    scanned = [c for c in released.columns if c not in codes and released[c].dtype == pl.String]
    texts = pl.concat(
        [released[c].drop_nulls().unique() for c in scanned]
        + [pl.Series(released.columns, dtype=pl.String), pl.Series(list(extra_texts), dtype=pl.String)]
    )
    cleaned = texts.str.replace_all(REDACTED, "\n", literal=True).unique().rename("t").to_frame()
    # sorted: the automaton builds about five times faster from sorted patterns (2M: 2.5 s vs 12.6 s)
    patterns = narrow_patterns(patterns, cleaned.get_column("t")).sort()
    if patterns.is_empty():
        return
    if not cleaned.select(_contains_any(pl.col("t"), patterns).any()).item():
        return
    for column in scanned:  # a leak: find where, to say so (slow path, runs only on failure)
        text = pl.col(column).str.replace_all(REDACTED, "\n", literal=True)
        hits = released.select(_contains_any(text, patterns).sum()).item()
        if hits:
            raise DeidError(
                f"column {column} would release {hits} value(s) containing an identifier from the manifest; "
                f"set its action to drop or scrub in the policy. Nothing was written"
            )
    raise DeidError(
        "a column name or the Parquet metadata would carry an identifier value; nothing was written"
    )


def _contains_any(text: pl.Expr, patterns: pl.Series) -> pl.Expr:
    """True where text contains any pattern, ASCII case-insensitively.

    Written as "replacing the patterns changes the text": polars' replace_many builds one
    Aho-Corasick automaton for millions of patterns in about a second, where str.contains_any
    took minutes (measured: 2M patterns, 164 s against 0.7 s).
    """
    found = text.str.replace_many(
        pl.lit(patterns.implode()), ["\x00"], ascii_case_insensitive=True, leftmost=True
    )
    return found != text


def footer_text(path: Path) -> str:
    """The Parquet footer as text: schema and key/value metadata."""
    meta = pq.read_metadata(path)
    return "\n".join([str(meta.schema)] + [f"{k!r}{v!r}" for k, v in (meta.metadata or {}).items()])
