"""T11 demographic k-anonymity and prosecutor risk of the released samples table.

Equivalence classes are the rows that share one tuple of the policy's quasi-identifiers present in
samples.parquet; a null/NaN value is the suppressed value "*" and forms its own value (pycanon drops
such rows silently, reid.md 2.2). With n rows, class sizes f_j and u classes (ARX
RiskModelSampleSummary, prosecutor model, no population table):

- k = min_j f_j; highest risk = 1/k; sample uniqueness = (#classes of size 1)/n;
- average risk (success rate) = u/n  (not pycanon's mean over classes of 1/f_j);
- records at risk = (1/n) * sum of f_j over classes with 1/f_j > tau (tau = T11_tau, default 0.2).

Pass: k >= T11_k, average <= T11_average_risk, records at risk <= T11_records_at_risk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from deid.reid.model import AssessInputs, Comparator, Metric

TEST_ID = "T11_demographic_k_risk"
TEST_VERSION = "1.0.0"
SUPPRESSED = "*"
DEFAULT_TAU = 0.2


def present_quasi_identifiers(frame: pl.DataFrame, quasi_identifiers: Sequence[str]) -> list[str]:
    """The policy's quasi-identifiers that the released table holds, in policy order."""
    return [q for q in quasi_identifiers if q in frame.columns]


def as_classes(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """The columns as text, null and NaN as "*", so that every row belongs to one class. Pure."""
    exprs = []
    for column in columns:
        value = pl.col(column)
        if frame.schema[column].is_float():
            value = pl.when(value.is_nan()).then(None).otherwise(value)
        exprs.append(value.cast(pl.String).fill_null(SUPPRESSED).alias(column))
    return frame.select(exprs)


def class_sizes(frame: pl.DataFrame, quasi_identifiers: Sequence[str]) -> pl.Series:
    """The size f_j of every equivalence class (UInt32). Pure."""
    if not quasi_identifiers:
        return pl.Series("len", [frame.height] if frame.height else [], dtype=pl.UInt32)
    return as_classes(frame, quasi_identifiers).group_by(list(quasi_identifiers)).len()["len"]


@dataclass(frozen=True, slots=True)
class ProsecutorRisk:
    """ARX's prosecutor risk summary of one table."""

    n: int
    classes: int
    k: int
    highest: float
    average: float
    records_at_risk: float
    sample_uniqueness: float


def prosecutor_risk(sizes: pl.Series, tau: float = DEFAULT_TAU) -> ProsecutorRisk:
    """k, highest/average risk, records at risk (1/f_j > tau) and sample uniqueness from class sizes. Pure."""
    n = int(sizes.sum())
    if n == 0:
        return ProsecutorRisk(0, 0, 0, 0.0, 0.0, 0.0, 0.0)
    k = int(sizes.min())  # type: ignore[arg-type]
    at_risk = int(sizes.filter(1.0 / sizes.cast(pl.Float64) > tau).sum())
    singles = int((sizes == 1).sum())
    return ProsecutorRisk(n, sizes.len(), k, 1.0 / k, sizes.len() / n, at_risk / n, singles / n)


def run(inputs: AssessInputs) -> list[Metric]:
    """k-anonymity and prosecutor risks of samples.parquet over the policy's quasi-identifiers."""
    released = inputs.released_samples
    metrics = ("k", "average_risk", "records_at_risk")
    if released is None:
        return [
            Metric.skipped(TEST_ID, TEST_VERSION, m, "summary-only release: no samples table")
            for m in metrics
        ]
    qis = present_quasi_identifiers(released, inputs.policy.quasi_identifiers)
    if not qis:
        why = "samples.parquet holds none of the policy's quasi-identifiers"
        return [Metric.skipped(TEST_ID, TEST_VERSION, m, why) for m in metrics]
    tau = inputs.threshold("T11_tau", DEFAULT_TAU)
    risk = prosecutor_risk(class_sizes(released, qis), tau)
    params = {"quasi_identifiers": qis, "tau": tau, "classes": risk.classes, "model": "prosecutor (ARX)"}
    n, subjects = risk.n, _subjects(released)
    return [
        Metric.checked(
            TEST_ID,
            TEST_VERSION,
            "k",
            risk.k,
            inputs.threshold("T11_k", 5),
            Comparator.GE,
            n_records=n,
            n_subjects=subjects,
            parameters=params,
            message="smallest equivalence class",
        ),
        Metric.info(
            TEST_ID,
            TEST_VERSION,
            "highest_risk",
            risk.highest,
            n_records=n,
            n_subjects=subjects,
            parameters=params,
        ),
        Metric.checked(
            TEST_ID,
            TEST_VERSION,
            "average_risk",
            risk.average,
            inputs.threshold("T11_average_risk", 0.05),
            Comparator.LE,
            n_records=n,
            n_subjects=subjects,
            parameters=params,
            message="classes per record (u/n)",
        ),
        Metric.checked(
            TEST_ID,
            TEST_VERSION,
            "records_at_risk",
            risk.records_at_risk,
            inputs.threshold("T11_records_at_risk", 0.05),
            Comparator.LE,
            n_records=n,
            n_subjects=subjects,
            parameters=params,
            message="share of records whose risk exceeds tau",
        ),
        Metric.info(
            TEST_ID,
            TEST_VERSION,
            "sample_uniqueness",
            risk.sample_uniqueness,
            n_records=n,
            n_subjects=subjects,
            parameters=params,
        ),
    ]


def _subjects(released: pl.DataFrame) -> int:
    return int(released["subject_id"].n_unique()) if "subject_id" in released.columns else released.height
