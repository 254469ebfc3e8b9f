"""Synthetic identified cohorts for tests, benchmarks and the demo (`genegate synth`)."""

from __future__ import annotations

from deid.synth.cohort import (
    IDENTIFIER_COLUMNS,
    MANIFEST_COLUMNS,
    CohortSpec,
    CohortSummary,
    Progress,
    no_progress,
    synthesize_cohort,
)
from deid.synth.people import MIN_SAMPLES

__all__ = [
    "IDENTIFIER_COLUMNS",
    "MANIFEST_COLUMNS",
    "MIN_SAMPLES",
    "CohortSpec",
    "CohortSummary",
    "Progress",
    "no_progress",
    "synthesize_cohort",
]
