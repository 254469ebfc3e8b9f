"""T14 sensitive attributes: l-diversity and t-closeness within each quasi-identifier class.

For each sensitive attribute of the policy present in samples.parquet (null is its own value "*"),
within each equivalence class of the released quasi-identifiers (as T11), with q_s the class's
share of value s, p_s the whole table's share and r_1 >= r_2 >= ... the class's value counts:

- distinct l = min over classes of the number of distinct values;
- entropy l = min over classes of exp(-sum_s q_s ln q_s), exact (pycanon truncates it to an int);
- recursive (c, l), textbook: the smallest integer c with r_1 < c (r_l + ... + r_m) in every class,
  l = T14_l_diversity (infinite when a class has fewer than l values; pycanon sorts the other way);
- t-closeness = max over classes of the earth mover's distance between q and p: equal distance
  (1/2) sum_s |q_s - p_s| for a categorical attribute; ordered distance
  (1/(m-1)) sum_i |sum_{j<=i} (q_j - p_j)| over the m sorted distinct values of a numeric one.

Pass: distinct l and entropy l >= T14_l_diversity; t <= T14_t_closeness (per attribute).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from deid.reid.model import AssessInputs, Comparator, Metric
from deid.reid.t11_k_anonymity import SUPPRESSED, as_classes, present_quasi_identifiers

TEST_ID = "T14_sensitive_attribute"
TEST_VERSION = "1.0.0"
_CHUNK = 20_000  # classes per block of the ordered distance


@dataclass(frozen=True, slots=True)
class Diversity:
    """The diversity of one sensitive attribute over the classes of the quasi-identifiers."""

    distinct_l: int
    entropy_l: float
    recursive_c: float  # inf when some class has fewer than l distinct values
    t_closeness: float
    classes: int


def class_counts(frame: pl.DataFrame, quasi_identifiers: Sequence[str], attribute: str) -> pl.DataFrame:
    """(class, value, count) with an integer class id per quasi-identifier tuple. Pure."""
    keyed = (
        as_classes(frame, quasi_identifiers)
        if quasi_identifiers
        else pl.DataFrame({"_all": [0] * frame.height})
    )
    keys = list(keyed.columns)
    value = frame[attribute]
    if value.dtype.is_float():
        value = value.fill_nan(None)
    keyed = keyed.with_columns(value.alias("_value"))
    ids = keyed.select(keys).unique(maintain_order=True).with_row_index("_class")
    return (
        keyed.join(ids, on=keys, how="left", nulls_equal=True)
        .group_by("_class", "_value")
        .len("_count")
        .rename({"_class": "class", "_value": "value", "_count": "count"})
    )


def diversity(counts: pl.DataFrame, l_target: int, *, numeric: bool) -> Diversity:
    """Distinct/entropy l, recursive c and t from (class, value, count) rows. Pure."""
    counts = counts.with_columns(pl.col("count").cast(pl.Float64))
    total = pl.col("count").sum().over("class")
    share = pl.col("count") / total
    rank = pl.col("count").rank("ordinal", descending=True).over("class")
    per_class = (
        counts.with_columns(share.alias("q"), rank.alias("rank"))
        .group_by("class")
        .agg(
            pl.len().alias("distinct"),
            (-(pl.col("q") * pl.col("q").log()).sum()).exp().alias("entropy_l"),
            pl.col("count").max().alias("r1"),
            pl.col("count").filter(pl.col("rank") >= l_target).sum().alias("tail"),
        )
    )
    distinct_l = int(per_class["distinct"].min())  # type: ignore[arg-type]
    entropy_l = float(per_class["entropy_l"].min())  # type: ignore[arg-type]
    c_needed = per_class.select(
        pl.when(pl.col("tail") > 0).then((pl.col("r1") / pl.col("tail")).floor() + 1).otherwise(math.inf)
    ).to_series()
    t = _ordered_t(counts) if numeric else _equal_t(counts)
    return Diversity(distinct_l, entropy_l, float(c_needed.max()), t, per_class.height)  # type: ignore[arg-type]


def _overall(counts: pl.DataFrame) -> pl.DataFrame:
    p = counts.group_by("value").agg(pl.col("count").sum())
    return p.with_columns((pl.col("count") / pl.col("count").sum()).alias("p")).select("value", "p")


def _equal_t(counts: pl.DataFrame) -> float:
    """max over classes of (1/2) sum |q - p| over all values (values absent from a class count p)."""
    joined = counts.join(_overall(counts), on="value", how="left", nulls_equal=True).with_columns(
        (pl.col("count") / pl.col("count").sum().over("class")).alias("q")
    )
    per_class = joined.group_by("class").agg(
        ((pl.col("q") - pl.col("p")).abs().sum() + (1 - pl.col("p").sum())).alias("twice")
    )
    return float(per_class["twice"].max()) / 2  # type: ignore[arg-type]


def _ordered_t(counts: pl.DataFrame) -> float:
    """max over classes of the ordered EMD over the sorted distinct values (nulls last)."""
    overall = _overall(counts).sort("value", nulls_last=True).with_row_index("rank")
    m = overall.height
    if m < 2:
        return 0.0
    p = overall["p"].to_numpy()
    ranked = counts.join(overall.select("value", "rank"), on="value", nulls_equal=True)
    classes = ranked["class"].to_numpy()
    order = np.argsort(classes, kind="stable")
    classes, ranks = classes[order], ranked["rank"].to_numpy()[order]
    weights = ranked["count"].to_numpy().astype(np.float64)[order]
    ids, starts = np.unique(classes, return_index=True)
    bounds = [*starts.tolist(), classes.size]
    worst = 0.0
    for first in range(0, ids.size, _CHUNK):
        last = min(first + _CHUNK, ids.size)
        lo, hi = bounds[first], bounds[last]
        local = np.repeat(np.arange(last - first), np.diff(bounds[first : last + 1]))
        q = np.zeros((last - first, m))
        np.add.at(q, (local, ranks[lo:hi]), weights[lo:hi])
        q /= q.sum(axis=1, keepdims=True)
        emd = np.abs(np.cumsum(q - p, axis=1)).sum(axis=1) / (m - 1)
        worst = max(worst, float(emd.max()))
    return worst


def run(inputs: AssessInputs) -> list[Metric]:
    """l-diversity and t-closeness of each sensitive attribute in samples.parquet."""
    released = inputs.released_samples
    attributes = [
        a for a in inputs.policy.sensitive_attributes if released is not None and a in released.columns
    ]
    if released is None or not attributes or released.height == 0:
        why = "no samples table, or it holds none of the policy's sensitive attributes"
        return [Metric.skipped(TEST_ID, TEST_VERSION, m, why) for m in ("distinct_l", "t_closeness")]
    qis = present_quasi_identifiers(released, inputs.policy.quasi_identifiers)
    l_target = int(inputs.threshold("T14_l_diversity", 2))
    t_max = inputs.threshold("T14_t_closeness", 0.2)
    n = released.height
    rows = []
    for attribute in attributes:
        numeric = released.schema[attribute].is_numeric()
        d = diversity(class_counts(released, qis, attribute), l_target, numeric=numeric)
        params = {
            "attribute": attribute,
            "quasi_identifiers": qis,
            "classes": d.classes,
            "l": l_target,
            "distance": "ordered" if numeric else "equal",
            "suppressed_value": SUPPRESSED,
        }
        rows += [
            Metric.checked(
                TEST_ID,
                TEST_VERSION,
                f"distinct_l:{attribute}",
                d.distinct_l,
                l_target,
                Comparator.GE,
                n_records=n,
                n_subjects=n,
                parameters=params,
            ),
            Metric.checked(
                TEST_ID,
                TEST_VERSION,
                f"entropy_l:{attribute}",
                d.entropy_l,
                l_target,
                Comparator.GE,
                n_records=n,
                n_subjects=n,
                parameters=params,
            ),
            Metric.info(
                TEST_ID,
                TEST_VERSION,
                f"recursive_c:{attribute}",
                d.recursive_c,
                n_records=n,
                n_subjects=n,
                parameters=params,
            ),
            Metric.checked(
                TEST_ID,
                TEST_VERSION,
                f"t_closeness:{attribute}",
                d.t_closeness,
                t_max,
                Comparator.LE,
                n_records=n,
                n_subjects=n,
                parameters=params,
            ),
        ]
    return rows
