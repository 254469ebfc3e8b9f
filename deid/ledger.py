"""The release ledger: what the lab must remember about a release and may never send with it.

`genegate deid` writes `<keystore>/ledger/<release_id>.json` beside the keystore, never into the
release. It holds, per included subject, the vault code (not the identity), the residence region,
the recipients the subject expressly consented to (consent_transfer), whether the subject was a
minor at collection and whether a guardian consented. The transfer gate reads it to decide
whether a pseudonymised release may go to a recipient (SPEC.md 6.1) and to find the releases
that hold a revoked subject; it never leaves the lab.

Contract with transfer/facts.py (format 1):

    {"format": 1, "release_id", "vault_domain", "release_sha256", "genomic": bool,
     "subjects": [{"subject", "residence_region", "consent_transfer": [..] | ["*"] | [],
                   "minor_at_collection": bool, "guardian_consent": bool | null,
                   "received_opt_out": bool}]}
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from pathlib import Path
from typing import Any

import polars as pl

from deid.consent import MINOR_AGE
from deid.transforms import age_at

LEDGER_FORMAT = 1


def subject_facts(
    included: pl.DataFrame, subject_codes: pl.Series, release_date: dt.date
) -> list[dict[str, Any]]:
    """One entry per subject code (first row of each subject wins for region; consents must agree).

    A subject with several samples is one subject: consent_transfer is the intersection of its
    rows' lists (the narrowest consent counts), minor if any row was a minor at collection,
    guardian consent only if every such row has it.
    """
    frame = included.with_columns(subject_codes.alias("_subject"))
    at = _col(frame, "collection_date", pl.Date).fill_null(pl.lit(release_date, dtype=pl.Date))
    age = age_at("date_of_birth", at) if "date_of_birth" in frame.columns else pl.lit(None, dtype=pl.Int32)
    rows = frame.select(
        pl.col("_subject"),
        _col(frame, "residence_region", pl.String).alias("region"),
        _col(frame, "consent_transfer", pl.String).alias("consent"),
        (age < MINOR_AGE).fill_null(value=True).alias("minor"),
        _col(frame, "guardian_consent", pl.Boolean).alias("guardian"),
        _col(frame, "received_opt_out", pl.Boolean).fill_null(value=False).alias("opt_out"),
    ).to_dicts()
    subjects: dict[str, dict[str, Any]] = {}
    for row in rows:
        consent = _consent_list(row["consent"])
        entry = subjects.get(row["_subject"])
        if entry is None:
            subjects[row["_subject"]] = {
                "subject": row["_subject"],
                "residence_region": row["region"] or None,
                "consent_transfer": consent,
                "minor_at_collection": bool(row["minor"]),
                "guardian_consent": row["guardian"],
                "received_opt_out": bool(row["opt_out"]),
            }
            continue
        entry["consent_transfer"] = _narrowest(entry["consent_transfer"], consent)
        entry["minor_at_collection"] = entry["minor_at_collection"] or bool(row["minor"])
        if row["minor"]:
            entry["guardian_consent"] = bool(entry["guardian_consent"]) and bool(row["guardian"])
        entry["received_opt_out"] = entry["received_opt_out"] or bool(row["opt_out"])
    return list(subjects.values())


def write_ledger(
    directory: Path,
    release_id: str,
    vault_domain: str,
    release_sha256: str,
    genomic: bool,
    subjects: list[dict[str, Any]],
) -> Path:
    """Write the ledger file atomically, readable by the lab's user only; returns its path."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{release_id}.json"
    body = {
        "format": LEDGER_FORMAT,
        "release_id": release_id,
        "vault_domain": vault_domain,
        "release_sha256": release_sha256,
        "genomic": genomic,
        "subjects": subjects,
    }
    temporary = directory / f".{release_id}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(body, fh, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _col(frame: pl.DataFrame, name: str, dtype: type[pl.DataType]) -> pl.Expr:
    return pl.col(name) if name in frame.columns else pl.lit(None, dtype=dtype)


def _consent_list(cell: str | None) -> list[str]:
    parts = {part.strip() for part in (cell or "").split(";") if part.strip()}
    return ["*"] if "*" in parts else sorted(parts)


def _narrowest(first: list[str], second: list[str]) -> list[str]:
    if first == ["*"]:
        return second
    if second == ["*"]:
        return first
    return sorted(set(first) & set(second))
