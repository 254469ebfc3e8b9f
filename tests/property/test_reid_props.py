"""Invariants of the demographic risk metrics (T11, T14) over random tables."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from deid.reid.t11_k_anonymity import class_sizes, prosecutor_risk
from deid.reid.t14_diversity import class_counts, diversity

rows = st.lists(
    st.tuples(st.sampled_from(["a", "b", None]), st.integers(0, 3), st.sampled_from(["x", "y", "z"])),
    min_size=1,
    max_size=60,
)


def _frame(data: list[tuple[str | None, int, str]]) -> pl.DataFrame:
    return pl.DataFrame(data, schema={"q1": pl.String, "q2": pl.Int64, "s": pl.String}, orient="row")


@settings(max_examples=60, deadline=None)
@given(rows)
def test_risk_bounds(data: list[tuple[str | None, int, str]]) -> None:
    """Every row is in one class; 1/n <= average <= highest = 1/k <= 1; records at risk within [0, 1]."""
    frame = _frame(data)
    risk = prosecutor_risk(class_sizes(frame, ["q1", "q2"]))
    assert frame.height == risk.n
    assert 1 / risk.n <= risk.average <= risk.highest == 1 / risk.k <= 1
    assert 0 <= risk.records_at_risk <= 1
    assert risk.sample_uniqueness <= risk.average


@settings(max_examples=60, deadline=None)
@given(rows)
def test_coarsening_never_lowers_k(data: list[tuple[str | None, int, str]]) -> None:
    """Dropping a quasi-identifier merges classes: k and every class size can only grow."""
    frame = _frame(data)
    fine = prosecutor_risk(class_sizes(frame, ["q1", "q2"]))
    coarse = prosecutor_risk(class_sizes(frame, ["q1"]))
    assert fine.k <= coarse.k
    assert coarse.average <= fine.average


@settings(max_examples=60, deadline=None)
@given(rows)
def test_diversity_bounds(data: list[tuple[str | None, int, str]]) -> None:
    """1 <= entropy l <= distinct l <= 3 values; 0 <= t <= 1; one class gives t = 0."""
    frame = _frame(data)
    d = diversity(class_counts(frame, ["q1", "q2"], "s"), 2, numeric=False)
    assert 1 - 1e-9 <= d.entropy_l <= d.distinct_l + 1e-9 <= 3 + 1e-9
    assert -1e-12 <= d.t_closeness <= 1 + 1e-12
    assert abs(diversity(class_counts(frame, [], "s"), 2, numeric=False).t_closeness) < 1e-12
