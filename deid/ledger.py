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


def subject_facts(included: pl.DataFrame, subject_codes: pl.Series, release_date: dt.date) -> pl.DataFrame:
    """One row per subject code: subject, residence_region, consent_transfer (sorted list, ["*"] for
    any), minor_at_collection, guardian_consent, received_opt_out. Vectorised: a million subjects
    take a second.

    A subject with several samples is one subject: consent_transfer is the intersection of its
    rows' lists (the narrowest consent counts), minor if any row was a minor at collection,
    guardian consent only if every such row has it, the first row's region.
    """
    frame = included.with_columns(subject_codes.alias("_subject"))
    at = _col(frame, "collection_date", pl.Date).fill_null(pl.lit(release_date, dtype=pl.Date))
    age = age_at("date_of_birth", at) if "date_of_birth" in frame.columns else pl.lit(None, dtype=pl.Int32)
    consent = _col(frame, "consent_transfer", pl.String).fill_null("").alias("_consent")
    rows = frame.select(
        pl.col("_subject").alias("subject"),
        _col(frame, "residence_region", pl.String).alias("residence_region"),
        consent,
        (age < MINOR_AGE).fill_null(value=True).alias("minor_at_collection"),
        _col(frame, "guardian_consent", pl.Boolean).alias("guardian_consent"),
        _col(frame, "received_opt_out", pl.Boolean).fill_null(value=False).alias("received_opt_out"),
    )
    # parse each distinct consent cell once (a cohort has a handful), then join the lists back
    distinct = rows.select(pl.col("_consent").unique())
    parts = (
        pl.col("_consent").str.split(";").list.eval(pl.element().str.strip_chars())
        .list.eval(pl.element().filter(pl.element() != "")).list.unique().list.sort()
    )  # fmt: skip
    parsed = distinct.with_columns(
        pl.when(parts.list.contains("*")).then(pl.lit(["*"])).otherwise(parts).alias("consent_transfer")
    )
    rows = (
        rows.join(parsed, on="_consent", how="left", maintain_order="left")
        .drop("_consent")
        .select("subject", "residence_region", "consent_transfer", "minor_at_collection",
                "guardian_consent", "received_opt_out")
    )  # fmt: skip
    repeated = rows.filter(pl.col("subject").is_duplicated())
    if repeated.is_empty():
        return rows
    merged = [_merge(group) for _, group in repeated.group_by("subject", maintain_order=True)]
    single = rows.filter(~pl.col("subject").is_duplicated())
    return pl.concat([single, pl.DataFrame(merged, schema=rows.schema)])


def _merge(group: pl.DataFrame) -> dict[str, Any]:
    """The facts of one subject with several samples (see subject_facts)."""
    entries = group.to_dicts()
    consent: list[str] = entries[0]["consent_transfer"]
    minor = False
    guardian: bool | None = entries[0]["guardian_consent"]
    for entry in entries:
        consent = _narrowest(consent, entry["consent_transfer"])
        if entry["minor_at_collection"]:
            guardian = (guardian is True or not minor) and entry["guardian_consent"] is True
            minor = True
    return {
        "subject": entries[0]["subject"],
        "residence_region": entries[0]["residence_region"],
        "consent_transfer": consent,
        "minor_at_collection": minor,
        "guardian_consent": guardian,
        "received_opt_out": any(e["received_opt_out"] for e in entries),
    }


def write_ledger(
    directory: Path,
    release_id: str,
    vault_domain: str,
    release_sha256: str,
    genomic: bool,
    subjects: pl.DataFrame,
) -> Path:
    """Write the ledger file atomically, readable by the lab's user only; returns its path."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{release_id}.json"
    head = json.dumps(
        {
            "format": LEDGER_FORMAT,
            "release_id": release_id,
            "vault_domain": vault_domain,
            "release_sha256": release_sha256,
            "genomic": genomic,
        }
    )
    # the subjects array is written by polars straight into the file (a million rows in under a
    # second, where the json module's pure-Python indenting encoder took 40 s); one JSON object
    prefix = (head[:-1] + ', "subjects": ').encode("utf-8")
    temporary = directory / f".{release_id}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(prefix)
            subjects.write_json(fh)
            fh.write(b"}\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _col(frame: pl.DataFrame, name: str, dtype: type[pl.DataType]) -> pl.Expr:
    return pl.col(name) if name in frame.columns else pl.lit(None, dtype=dtype)


def _narrowest(first: list[str], second: list[str]) -> list[str]:
    if first == ["*"]:
        return second
    if second == ["*"]:
        return first
    return sorted(set(first) & set(second))
