"""deid.consent.consent_filter: revoked, no research consent and minors without a guardian's consent are excluded."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from deid.consent import MINOR_AGE, Exclusion, consent_filter
from deid.manifest import read_manifest
from deid.synth import CohortSpec, synthesize_cohort

RELEASE = dt.date(2026, 3, 1)
NONE_EXCLUDED = {e: 0 for e in Exclusion if e is not Exclusion.NO_TRANSFER_CONSENT}


def _manifest(*rows: dict[str, object]) -> pl.DataFrame:
    """A validated-manifest-shaped frame: defaults for an adult with research consent, overridden per row."""
    base: dict[str, object] = {
        "sample_id": None,
        "subject_id": "P",
        "consent_research": True,
        "date_of_birth": dt.date(1980, 1, 1),
        "collection_date": dt.date(2025, 1, 1),
        "consent_revoked_at": None,
        "guardian_consent": None,
        "consent_transfer": "*",
    }
    schema = {
        "sample_id": pl.String,
        "subject_id": pl.String,
        "consent_research": pl.Boolean,
        "date_of_birth": pl.Date,
        "collection_date": pl.Date,
        "consent_revoked_at": pl.Date,
        "guardian_consent": pl.Boolean,
        "consent_transfer": pl.String,
    }
    return pl.DataFrame([base | row for row in rows], schema=schema)


def _kept(df: pl.DataFrame) -> tuple[list[str], dict[Exclusion, int]]:
    included, counts = consent_filter(df, RELEASE)
    return included.get_column("sample_id").to_list(), counts


def test_exclusion_reasons_and_minor_age_are_the_contract() -> None:
    """The reason codes written to release.json and the age of majority for consent are fixed."""
    expected = (
        [
            "consent_revoked",
            "no_research_consent",
            "minor_without_guardian_consent",
            "no_transfer_consent_for_recipient",
        ],
        16,
    )
    assert expected == ([e.value for e in Exclusion], MINOR_AGE)


def test_adult_with_research_consent_is_included() -> None:
    """A consenting adult passes, with every column kept and counts of zero for every reason."""
    df = _manifest({"sample_id": "adult"})
    included, counts = consent_filter(df, RELEASE)
    assert (df.to_dict(as_series=False), NONE_EXCLUDED) == (included.to_dict(as_series=False), counts)


def test_revoked_subject_is_excluded() -> None:
    """A revoked subject is excluded, including a revocation dated after the release (conservative)."""
    df = _manifest(
        {"sample_id": "revoked", "consent_revoked_at": dt.date(2025, 6, 1)},
        {"sample_id": "revoked-later", "consent_revoked_at": dt.date(2027, 1, 1)},
        {"sample_id": "kept"},
    )
    assert (["kept"], NONE_EXCLUDED | {Exclusion.REVOKED: 2}) == _kept(df)


def test_missing_research_consent_is_excluded() -> None:
    """consent_research false or empty (null) excludes the sample."""
    df = _manifest(
        {"sample_id": "no", "consent_research": False},
        {"sample_id": "blank", "consent_research": None},
        {"sample_id": "yes"},
    )
    assert (["yes"], NONE_EXCLUDED | {Exclusion.NO_RESEARCH_CONSENT: 2}) == _kept(df)


def test_minor_needs_guardian_consent() -> None:
    """A subject born 2012 and collected 2026 is excluded without guardian consent and included with it."""
    df = _manifest(
        {
            "sample_id": "no-guardian",
            "date_of_birth": dt.date(2012, 5, 1),
            "collection_date": dt.date(2026, 1, 10),
        },
        {
            "sample_id": "guardian",
            "date_of_birth": dt.date(2012, 5, 1),
            "collection_date": dt.date(2026, 1, 10),
            "guardian_consent": True,
        },
        {
            "sample_id": "guardian-refused",
            "date_of_birth": dt.date(2012, 5, 1),
            "collection_date": dt.date(2026, 1, 10),
            "guardian_consent": False,
        },
    )
    assert (["guardian"], NONE_EXCLUDED | {Exclusion.MINOR_WITHOUT_GUARDIAN: 2}) == _kept(df)


def test_age_is_taken_at_collection_birthday_exact() -> None:
    """Sixteen on the collection day is an adult; the day before is a minor; adulthood since then does not count."""
    df = _manifest(
        {
            "sample_id": "sixteen-today",
            "date_of_birth": dt.date(2009, 1, 1),
            "collection_date": dt.date(2025, 1, 1),
        },
        {
            "sample_id": "one-day-short",
            "date_of_birth": dt.date(2009, 1, 2),
            "collection_date": dt.date(2025, 1, 1),
        },
        {
            "sample_id": "minor-then",
            "date_of_birth": dt.date(1990, 1, 1),
            "collection_date": dt.date(2000, 1, 1),
        },
    )
    assert (["sixteen-today"], NONE_EXCLUDED | {Exclusion.MINOR_WITHOUT_GUARDIAN: 2}) == _kept(df)


def test_missing_collection_date_uses_the_release_date() -> None:
    """Without a collection date the age is taken at the release date."""
    df = _manifest(
        {"sample_id": "adult-by-release", "date_of_birth": dt.date(2010, 2, 28), "collection_date": None},
        {"sample_id": "minor-at-release", "date_of_birth": dt.date(2010, 3, 2), "collection_date": None},
    )
    assert (["adult-by-release"], NONE_EXCLUDED | {Exclusion.MINOR_WITHOUT_GUARDIAN: 1}) == _kept(df)


def test_unknown_age_counts_as_a_minor() -> None:
    """With no date of birth the sample needs guardian consent to pass (fail closed)."""
    df = _manifest(
        {"sample_id": "unknown", "date_of_birth": None},
        {"sample_id": "unknown-guardian", "date_of_birth": None, "guardian_consent": True},
    )
    assert (["unknown-guardian"], NONE_EXCLUDED | {Exclusion.MINOR_WITHOUT_GUARDIAN: 1}) == _kept(df)


def test_a_sample_with_several_reasons_counts_under_the_first() -> None:
    """Revoked beats no research consent, which beats minor without guardian consent."""
    minor = {"date_of_birth": dt.date(2015, 1, 1)}
    df = _manifest(
        {
            "sample_id": "all-three",
            "consent_revoked_at": dt.date(2025, 2, 1),
            "consent_research": False,
            **minor,
        },
        {"sample_id": "two", "consent_research": None, **minor},
        {"sample_id": "one", **minor},
    )
    expected = {Exclusion.REVOKED: 1, Exclusion.NO_RESEARCH_CONSENT: 1, Exclusion.MINOR_WITHOUT_GUARDIAN: 1}
    assert ([], expected) == _kept(df)


def test_optional_consent_columns_may_be_absent() -> None:
    """A manifest without consent_revoked_at, guardian_consent and collection_date is filtered on what it has."""
    df = _manifest({"sample_id": "adult"}, {"sample_id": "child", "date_of_birth": dt.date(2015, 1, 1)}).drop(
        "consent_revoked_at", "guardian_consent", "collection_date"
    )
    included, counts = consent_filter(df, RELEASE)
    expected = (["adult"], df.columns, NONE_EXCLUDED | {Exclusion.MINOR_WITHOUT_GUARDIAN: 1})
    assert expected == (included.get_column("sample_id").to_list(), included.columns, counts)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-sample synthetic identified cohort (manifest and secrets, no reads)."""
    out = tmp_path_factory.mktemp("consent") / "cohort"
    synthesize_cohort(CohortSpec(out=out, samples=12, reads=False))
    return out


@pytest.mark.slow
def test_synthetic_cohort_edge_cases_are_excluded(cohort: Path) -> None:
    """The synthetic cohort's revoked, no-research-consent and unguarded minor samples are the three excluded."""
    manifest = read_manifest(cohort / "manifest.csv")
    included, counts = consent_filter(manifest, RELEASE)
    expected_counts = {
        Exclusion.REVOKED: 1,
        Exclusion.NO_RESEARCH_CONSENT: 1,
        Exclusion.MINOR_WITHOUT_GUARDIAN: 1,
    }
    guardian = included.filter(pl.col("guardian_consent")).get_column("residence_region").to_list()
    assert (9, expected_counts, ["GB"]) == (included.height, counts, guardian)


def test_a_release_for_one_recipient_keeps_only_subjects_who_named_it() -> None:
    """--for ID: "*" and lists naming ID pass; another partner, an empty cell or no list are excluded."""
    df = _manifest(
        {"sample_id": "any", "consent_transfer": "*"},
        {"sample_id": "named", "consent_transfer": "ch-zurich; jp-tokyo"},
        {"sample_id": "other", "consent_transfer": "ch-zurich"},
        {"sample_id": "prefix", "consent_transfer": "jp-tokyo-2"},
        {"sample_id": "empty", "consent_transfer": None},
        {"sample_id": "revoked", "consent_transfer": "jp-tokyo", "consent_revoked_at": dt.date(2025, 6, 1)},
    )
    included, counts = consent_filter(df, RELEASE, "jp-tokyo")
    expected = (
        ["any", "named"],
        {
            Exclusion.REVOKED: 1,
            Exclusion.NO_RESEARCH_CONSENT: 0,
            Exclusion.MINOR_WITHOUT_GUARDIAN: 0,
            Exclusion.NO_TRANSFER_CONSENT: 3,
        },
    )
    assert expected == (included.get_column("sample_id").to_list(), counts)
