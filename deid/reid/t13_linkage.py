"""T13 demographic linkage of the released samples table to the identified manifest.

The identified manifest plays the attacker's voter roll: every row (consented or not) is generalised
the way the release was (deid.release.transform with the same policy and release date; pseudonym and
scrub columns are left out, so no vault is needed), and each released row is joined to it on the
released quasi-identifiers (null is "*", as in T11).

The assessment has no vault access, so it cannot know which released row is which person. It
reports what an attacker can link uniquely: the share of released rows whose quasi-identifier
tuple matches exactly one identified row. That is an upper bound of correct linkage (a unique match
is correct when the person is in the roll, which the lab's own manifest guarantees). The matches
themselves (released row -> identified row) are written only to the private directory that the
runner destroys; the results hold the rate alone.

Also fails on any released date equal to a full date of the person-linked date columns (a date
shift or generalisation that did not happen).

Metrics: unique_link_rate (pass <= T13_linkage_rate), exact_date_matches (pass <= 0).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from deid.manifest import DATE_COLUMNS
from deid.policy import FieldAction, Policy
from deid.reid.model import AssessInputs, Comparator, Metric
from deid.reid.t11_k_anonymity import as_classes, present_quasi_identifiers
from deid.release import transform
from keys import CodeKind

TEST_ID = "T13_demographic_linkage"
TEST_VERSION = "1.0.0"
MATCHES_FILE = "t13_matches.parquet"


class _NoCodes:
    """A pseudonym source that is never asked for a code (pseudonymised columns are left out)."""

    domain = "assessment"

    def assign(self, kind: CodeKind, values: pl.Series, create: bool = True) -> pl.DataFrame:
        """Never called: no pseudonymised column reaches transform."""
        del kind, values, create
        raise AssertionError("T13 generalises without pseudonyms")

    def assign_many(
        self, requests: Mapping[CodeKind, pl.Series], create: bool = True
    ) -> dict[CodeKind, pl.DataFrame]:
        """Nothing to assign."""
        del create
        if requests:
            raise AssertionError("T13 generalises without pseudonyms")
        return {}


def generalise(identified: pl.DataFrame, policy: Policy, release_date: dt.date) -> pl.DataFrame:
    """The identified rows as the release would show them, without pseudonyms or scrubbed text."""
    skip = set(
        policy.columns_with(
            FieldAction.PSEUDONYMISE, FieldAction.SCRUB, FieldAction.DROP, FieldAction.INTERNAL
        )
    )
    kept = [c for c in identified.columns if c in policy.columns and c not in skip]
    return transform(
        identified.select(kept), policy, _NoCodes(), pl.Series([], dtype=pl.String), release_date
    )


def unique_links(released: pl.DataFrame, reference: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """(released row, reference row) where the released key tuple matches exactly one reference row. Pure."""
    left = as_classes(released, keys).with_row_index("released_row")
    right = as_classes(reference, keys).with_row_index("reference_row")
    single = (
        right.group_by(list(keys))
        .agg(pl.len().alias("n"), pl.col("reference_row").first())
        .filter(pl.col("n") == 1)
    )
    return left.join(single, on=list(keys), how="inner").select("released_row", "reference_row")


def exact_dates(released: pl.DataFrame, identified: pl.DataFrame) -> int:
    """Released cells equal to a full person-linked date of the identified manifest. Pure."""
    dates = [identified[c].cast(pl.String) for c in DATE_COLUMNS if c in identified.columns]
    if not dates:
        return 0
    known = pl.concat(dates).drop_nulls().unique()
    hits = 0
    for column, dtype in released.schema.items():
        if dtype in (pl.Date, pl.Datetime) or dtype == pl.String:
            text = released[column].cast(pl.String).str.slice(0, 10)
            hits += int(text.is_in(known.implode()).sum())
    return hits


def run(inputs: AssessInputs) -> list[Metric]:
    """Link released rows to the generalised identified manifest on the released quasi-identifiers."""
    released = inputs.released_samples
    metrics = ("unique_link_rate", "exact_date_matches")
    if released is None or released.height == 0:
        return [
            Metric.skipped(TEST_ID, TEST_VERSION, m, "summary-only release: no samples table")
            for m in metrics
        ]
    reference = generalise(inputs.identified, inputs.policy, _release_date(inputs.record))
    keys = [
        q
        for q in present_quasi_identifiers(released, inputs.policy.quasi_identifiers)
        if q in reference.columns
    ]
    if not keys:
        why = "no quasi-identifier is both released and derivable from the identified manifest"
        return [Metric.skipped(TEST_ID, TEST_VERSION, m, why) for m in metrics]
    links = unique_links(released, reference, keys)
    links.write_parquet(inputs.private / MATCHES_FILE)  # destroyed with the private directory
    n = released.height
    params: dict[str, Any] = {
        "quasi_identifiers": keys,
        "reference_rows": reference.height,
        "bound": "unique match = upper bound of correct linkage",
    }
    return [
        Metric.checked(
            TEST_ID,
            TEST_VERSION,
            "unique_link_rate",
            links.height / n,
            inputs.threshold("T13_linkage_rate", 0.05),
            Comparator.LE,
            n_records=n,
            n_subjects=reference.height,
            parameters=params,
            message="share of released rows matching exactly one identified row",
        ),
        Metric.checked(
            TEST_ID,
            TEST_VERSION,
            "exact_date_matches",
            exact_dates(released, inputs.identified),
            0,
            Comparator.LE,
            n_records=n,
            n_subjects=reference.height,
            parameters={"date_columns": [c for c in DATE_COLUMNS if c in inputs.identified.columns]},
            message="released values equal to a full person-linked date",
        ),
    ]


def _release_date(record: Mapping[str, Any]) -> dt.date:
    created = record.get("created_at")
    if isinstance(created, str):
        try:
            return dt.datetime.fromisoformat(created).date()
        except ValueError:
            pass
    return dt.datetime.now(dt.UTC).date()
