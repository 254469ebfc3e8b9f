"""The consent filter: which samples may enter a new release, and why the others may not.

Pure: it takes a validated manifest (deid.manifest.validate_manifest: dates as pl.Date, yes/no
columns as pl.Boolean) and the release date, and decides in three rules, in this order:

1. revoked: consent_revoked_at is set. A revocation dated after the release date excludes the
   sample too: a date in the future is a data error or a revocation already announced, and
   either way the conservative reading is that the subject has withdrawn.
2. no research consent: consent_research is not true (an empty cell counts as no).
3. minor without guardian consent: under MINOR_AGE at collection (at the release date when the
   collection date is empty) and guardian_consent not true. An unknown age (no date of birth)
   counts as a minor: without the date, nothing shows that a guardian's consent is not needed.

4. no transfer consent (only when the release is made for one recipient, `genegate deid --for ID`):
   consent_transfer names neither that recipient nor "*". A release for one partner then holds only
   subjects who agreed to that partner, which the gate's consent.named_recipient rule requires of a
   pseudonymised release (CGIPA's named-party consent; SPEC.md 6.1).

A sample that breaks several rules is counted under the first. Columns the manifest lacks are
read as empty, so a manifest without consent_revoked_at has no revocations.
"""

from __future__ import annotations

import datetime as dt
import enum

import polars as pl

from deid.transforms import age_at

MINOR_AGE = 16
_REASON = "_exclusion"


class Exclusion(enum.StrEnum):
    """Why a sample is left out of a release (counted in release.json)."""

    REVOKED = "consent_revoked"
    NO_RESEARCH_CONSENT = "no_research_consent"
    MINOR_WITHOUT_GUARDIAN = "minor_without_guardian_consent"
    NO_TRANSFER_CONSENT = "no_transfer_consent_for_recipient"


def consent_filter(
    df: pl.DataFrame, release_date: dt.date, recipient: str | None = None
) -> tuple[pl.DataFrame, dict[Exclusion, int]]:
    """The rows that may be released, and how many were excluded for each reason (zeros included;
    the transfer-consent reason only when recipient is given)."""
    revoked = _column(df, "consent_revoked_at", pl.Date).is_not_null()
    research = _column(df, "consent_research", pl.Boolean).fill_null(value=False)
    at = _column(df, "collection_date", pl.Date).fill_null(pl.lit(release_date, dtype=pl.Date))
    known_dob = "date_of_birth" in df.columns
    age = age_at("date_of_birth", at) if known_dob else pl.lit(None, dtype=pl.Int32)
    minor = (age < MINOR_AGE).fill_null(value=True)
    guardian = _column(df, "guardian_consent", pl.Boolean).fill_null(value=False)
    reason = (
        pl.when(revoked)
        .then(pl.lit(Exclusion.REVOKED.value))
        .when(~research)
        .then(pl.lit(Exclusion.NO_RESEARCH_CONSENT.value))
        .when(minor & ~guardian)
        .then(pl.lit(Exclusion.MINOR_WITHOUT_GUARDIAN.value))
        .when(pl.lit(recipient is not None) & ~_consents_to(df, recipient or ""))
        .then(pl.lit(Exclusion.NO_TRANSFER_CONSENT.value))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias(_REASON)
    )
    decided = df.with_columns(reason)
    found = dict(
        decided.get_column(_REASON).drop_nulls().value_counts().iter_rows()  # (reason, count) pairs
    )
    reasons = [e for e in Exclusion if recipient is not None or e is not Exclusion.NO_TRANSFER_CONSENT]
    counts = {e: int(found.get(e.value, 0)) for e in reasons}
    included = decided.filter(pl.col(_REASON).is_null()).drop(_REASON)
    return included, counts


def _consents_to(df: pl.DataFrame, recipient: str) -> pl.Expr:
    """consent_transfer (a ;-separated list of recipient ids, or "*") names recipient."""
    named = (
        _column(df, "consent_transfer", pl.String)
        .fill_null("")
        .str.split(";")
        .list.eval(pl.element().str.strip_chars())
    )
    return named.list.contains("*") | named.list.contains(recipient)


def _column(df: pl.DataFrame, name: str, dtype: type[pl.DataType]) -> pl.Expr:
    """The column, or an all-null one of the same type when the manifest does not have it."""
    return pl.col(name) if name in df.columns else pl.lit(None, dtype=dtype)
