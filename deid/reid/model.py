"""The values every re-identification test speaks: its inputs and its metric rows.

Each test lives in its own module under deid/reid/ and exposes

    TEST_ID: str            e.g. "T05_genotype_linkage"
    TEST_VERSION: str       semver of the test code ("1.0.0")
    def run(inputs: AssessInputs) -> list[Metric]

with the arithmetic in pure functions over numpy arrays / polars frames beside it (no I/O), so
known-answer tests call them directly. `run` is the adapter: it reads what it needs from the
release and the identified reference named in AssessInputs. A test that cannot run on this
release (e.g. T05 on a summary-only release) returns Metric rows with status SKIPPED and passed
None; a test that fails unexpectedly is reported by the runner as status ERROR. A Metric never
carries an identifier, a pseudonym-to-identity link or a per-record result: aggregates only
(SPEC.md 4). Matches that a test needs to compute (T05, T13) may be written only under
AssessInputs.private, which the runner destroys when the assessment ends.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from deid.policy import Policy


class Status(enum.StrEnum):
    """Whether a metric could be computed."""

    OK = "ok"
    SKIPPED = "skipped"
    ERROR = "error"


class Severity(enum.StrEnum):
    """Whether a failed metric blocks the deidentified class."""

    BLOCK = "block"
    WARN = "warn"


class Comparator(enum.StrEnum):
    """How value is held against threshold: value <comparator> threshold passes."""

    LE = "<="
    LT = "<"
    GE = ">="
    GT = ">"
    EQ = "=="

    def holds(self, value: float, threshold: float) -> bool:
        """Whether value passes against threshold (NaN never passes)."""
        if math.isnan(value) or math.isnan(threshold):
            return False
        match self:
            case Comparator.LE:
                return value <= threshold
            case Comparator.LT:
                return value < threshold
            case Comparator.GE:
                return value >= threshold
            case Comparator.GT:
                return value > threshold
            case Comparator.EQ:
                return value == threshold


@dataclass(frozen=True, slots=True)
class Metric:
    """One row of the results dataset (SPEC.md 4, reid.md 6); aggregates only."""

    test_id: str
    test_version: str
    metric: str
    value: float  # NaN when not computable (status says why)
    threshold: float | None
    comparator: Comparator | None
    passed: bool | None  # None when skipped, or for an informational metric without threshold
    status: Status
    severity: Severity
    n_records: int
    n_subjects: int
    parameters: Mapping[str, Any] = field(default_factory=dict)  # JSON-able: QIs, floors, eps, N, ...
    seed: int | None = None
    message: str = ""  # short, identifier-free

    @classmethod
    def checked(
        cls,
        test_id: str,
        test_version: str,
        metric: str,
        value: float,
        threshold: float,
        comparator: Comparator,
        *,
        severity: Severity = Severity.BLOCK,
        n_records: int,
        n_subjects: int,
        parameters: Mapping[str, Any] | None = None,
        seed: int | None = None,
        message: str = "",
    ) -> Metric:
        """A metric held against a threshold: passed is computed here, never by the caller."""
        return cls(
            test_id, test_version, metric, float(value), float(threshold), comparator,
            comparator.holds(float(value), float(threshold)), Status.OK, severity, n_records, n_subjects,
            dict(parameters or {}), seed, message,
        )  # fmt: skip

    @classmethod
    def info(
        cls,
        test_id: str,
        test_version: str,
        metric: str,
        value: float,
        *,
        n_records: int,
        n_subjects: int,
        parameters: Mapping[str, Any] | None = None,
        seed: int | None = None,
        message: str = "",
    ) -> Metric:
        """A metric reported without a threshold (passed None, severity warn)."""
        return cls(
            test_id, test_version, metric, float(value), None, None, None, Status.OK, Severity.WARN,
            n_records, n_subjects, dict(parameters or {}), seed, message,
        )  # fmt: skip

    @classmethod
    def skipped(
        cls,
        test_id: str,
        test_version: str,
        metric: str,
        message: str,
        *,
        severity: Severity = Severity.BLOCK,
    ) -> Metric:
        """A metric that does not apply to this release (passed None); message says why."""
        return cls(
            test_id, test_version, metric, math.nan, None, None, None, Status.SKIPPED, severity, 0, 0, {},
            None, message,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class AssessInputs:
    """What every test may read. Paths only for large data: tests stream what they need."""

    release: Path  # releases/<id>/
    record: Mapping[str, Any]  # release.json as loaded
    identified: pl.DataFrame  # the identified manifest: validated, canonical column names, all rows
    manifest_dir: Path  # relative genomic paths in `identified` are read from here
    policy: Policy
    private: Path  # 0700 temporary directory, destroyed when the assessment ends
    seed: int

    def threshold(self, name: str, default: float) -> float:
        """A policy threshold (policy [thresholds]), or the documented default."""
        return float(self.policy.thresholds.get(name, default))

    @property
    def released_samples(self) -> pl.DataFrame | None:
        """samples.parquet of the release, or None for a summary-only release."""
        path = self.release / "samples.parquet"
        return pl.read_parquet(path) if path.is_file() else None

    def released_files(self, pattern: str) -> list[Path]:
        """Released files matching a glob under the release (e.g. "genotypes/*.vcf.gz"), sorted."""
        return sorted(p for p in self.release.glob(pattern) if p.is_file())
