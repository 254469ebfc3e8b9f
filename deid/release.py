"""Assemble a de-identified release from a manifest: `genegate deid`.

manifest -> canonical columns (policy aliases; an unnamed column is refused) -> consent filter ->
per-column actions (pseudonymise through the vault, drop, year, zip3, age top-code, scrub, keep;
internal columns never leave) -> a leak guard -> samples.parquet + release.json, written in a
hidden sibling directory and renamed into place only when complete.

The leak guard is the last line of defence: every string cell, column name and Parquet metadata
value of the release is checked (case-insensitively) against every identifier value the manifest
holds, in all rows, and the run fails closed — nothing written — if one survived.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from deid.consent import Exclusion, consent_filter
from deid.errors import DeidError, MalformedInput, OutputExists
from deid.genomic import JobRunner, plan_files, released_texts, run_jobs
from deid.guard import footer_text, guard
from deid.identifiers import identifier_columns, identifier_values, scrub_values
from deid.ledger import subject_facts, write_ledger
from deid.manifest import read_manifest
from deid.policy import FieldAction, Policy, policy_summary
from deid.retention import manifest_inputs
from deid.transforms import (
    age_top_code,
    load_restricted_zip3,
    scrub_series,
    year,
    zip3,
)
from keys import CodeKind

RELEASE_FORMAT = 1
_RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_GENOMIC_COLUMNS = ("vcf", "alignment", "fastq")


class PseudonymSource(Protocol):
    """Where codes come from (keys.vault.Vault)."""

    domain: str

    def assign(self, kind: CodeKind, values: pl.Series, create: bool = True) -> pl.DataFrame:
        """A (value, code) frame for the distinct values."""
        ...

    def assign_many(
        self, requests: Mapping[CodeKind, pl.Series], create: bool = True
    ) -> dict[CodeKind, pl.DataFrame]:
        """assign for several kinds at once."""
        ...


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    """Where the release went and its release.json."""

    release_id: str
    path: Path
    record: dict[str, Any]
    inputs: tuple[Path, ...] = ()  # the identified inputs read (lab-side, for retention; never released)


def new_release_id(now: dt.datetime) -> str:
    """rel-YYYYMMDD-<8 random hex>: dated, unique, derived from nothing about the data."""
    return f"rel-{now:%Y%m%d}-{secrets.token_hex(4)}"


def deidentify(
    manifest: Path,
    policy: Policy,
    out_root: Path,
    vault: PseudonymSource,
    *,
    release_id: str | None = None,
    now: dt.datetime | None = None,
    summary_only: bool = False,
    ledger: Path | None = None,
    revoked_subjects: Collection[str] = (),
    job_runner: JobRunner = run_jobs,
    for_recipient: str | None = None,
) -> ReleaseResult:
    """De-identify manifest under policy into out_root/<release_id>/ (atomic; refuses an existing id).

    The genomic files the included rows name are de-identified into the release too (deid.genomic);
    summary_only releases allele frequencies instead of any individual-level file. ledger is the
    lab-side directory for the release's ledger (deid.ledger); revoked_subjects are subject ids the
    lab's consent register holds as revoked, excluded like a consent_revoked_at in the manifest.
    job_runner runs the genomic jobs (deid.genomic.JobRunner; a flow passes one that runs each
    file as a task); the release sequence around them is the same whichever runs them.
    for_recipient makes the release for one partner: only subjects whose consent_transfer names it
    (or "*") are included (deid.consent rule 4), and release.json records it.
    """
    now = now or dt.datetime.now(dt.UTC)
    release_id = release_id or new_release_id(now)
    if not _RELEASE_ID.match(release_id):
        raise MalformedInput("--release-id", "use 1-64 letters, digits, dots, dashes and underscores")
    target = out_root / release_id
    if target.exists():
        raise OutputExists(str(target))
    raw = read_manifest(manifest)
    frame = raw.rename(policy.canonical_names([c for c in raw.columns if c != "_row"], str(manifest)))
    del raw
    per_column = identifier_columns(frame)
    known, scrub = identifier_values(per_column), scrub_values(per_column)
    del per_column
    facts = _manifest_facts(frame)
    inputs = manifest_inputs(frame, manifest)
    # columns the policy drops were harvested above and play no further part: do not copy them
    # into the included rows (a third of a typical manifest's bytes)
    frame = frame.drop(
        c for c in policy.columns_with(FieldAction.DROP) if c in frame.columns and c not in _KEPT
    )
    included, exclusions = consent_filter(
        _with_register(frame, revoked_subjects, now.date()), now.date(), for_recipient
    )
    del frame  # the identified frame is no longer needed: free it before the transforms
    if included.height == 0:
        reasons = ", ".join(f"{r} {n}" for r, n in exclusions.items() if n)
        raise DeidError(f"every sample was excluded by the consent filter ({reasons}); nothing was written")
    lab_side = included.select([c for c in _LAB_SIDE if c in included.columns])
    placeholder = pl.int_range(included.height, eager=True).cast(pl.String)
    plan_files(lab_side, placeholder, manifest.parent, str(manifest), summary_only=summary_only)  # fail early
    released = transform(included, policy, vault, scrub, now.date())
    del included
    out_root.mkdir(parents=True, exist_ok=True)
    record = _assemble(
        _Assembly(
            release_id, target, manifest, policy, vault, now, summary_only, ledger, job_runner, for_recipient
        ),
        released, lab_side, known, facts, exclusions,
    )  # fmt: skip
    return ReleaseResult(release_id, target, record, inputs)


@dataclass(frozen=True, slots=True)
class _Assembly:
    release_id: str
    target: Path
    manifest: Path
    policy: Policy
    vault: PseudonymSource
    now: dt.datetime
    summary_only: bool
    ledger: Path | None
    job_runner: JobRunner
    for_recipient: str | None


def _assemble(
    a: _Assembly,
    released: pl.DataFrame,
    lab_side: pl.DataFrame,
    known: pl.Series,
    facts: dict[str, Any],
    exclusions: Mapping[Exclusion, int],
) -> dict[str, Any]:
    """Write the release in a hidden sibling directory, guard it, then rename it into place."""
    work = a.target.parent / f".{a.release_id}.partial-{secrets.token_hex(4)}"
    work.mkdir(mode=0o700)
    ledger_path: Path | None = None
    try:
        codes = released["sample_id"]
        jobs = plan_files(
            lab_side,
            codes,
            a.manifest.parent,
            str(a.manifest),
            summary_only=a.summary_only,
            min_population=int(a.policy.thresholds.get("T11_k", 5)),
        )
        genomic = a.job_runner(jobs, work, a.policy.genomic)
        texts = released_texts(work)
        if not a.summary_only:
            samples = work / "samples.parquet"
            released.write_parquet(samples, compression="zstd", statistics=False)
            texts.append(footer_text(samples))
        guard(
            released, known, {"sample_id": CodeKind.SAMPLE, "subject_id": CodeKind.SUBJECT}, extra_texts=texts
        )
        record = _record(a.release_id, a.now, a.policy, a.vault, facts, released, exclusions, work)
        record["summary_only"] = a.summary_only
        if a.for_recipient is not None:
            record["for_recipient"] = a.for_recipient
        record["genomic_files"] = {"inputs": facts["genomic"], "released": genomic}
        (work / "release.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if a.ledger is not None:
            subjects = subject_facts(lab_side, released["subject_id"], a.now.date())
            individual = not a.summary_only and any(k in genomic for k in ("vcf", "alignment", "fastq"))
            ledger_path = write_ledger(
                a.ledger, a.release_id, a.vault.domain, record["release_sha256"], individual, subjects
            )
        try:
            os.rename(work, a.target)
        except OSError as exc:
            raise OutputExists(str(a.target)) from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if ledger_path is not None:
            ledger_path.unlink(missing_ok=True)
        raise
    return record


# what the lab keeps of the included rows after the transforms: file paths, consents, regions
_LAB_SIDE = (
    "_row", "sample_id", "vcf", "vcf_sample", "alignment", "fastq", "ancestry", "residence_region",
    "consent_transfer", "date_of_birth", "collection_date", "guardian_consent", "received_opt_out",
)  # fmt: skip


# what the consent filter, the register and the lab side read, whatever the policy does with them
_KEPT = frozenset({*_LAB_SIDE, "subject_id", "consent_research", "consent_revoked_at"})


def _with_register(frame: pl.DataFrame, revoked: Collection[str], today: dt.date) -> pl.DataFrame:
    """frame with consent_revoked_at set for subjects the consent register holds as revoked."""
    if not revoked:
        return frame
    current = pl.col("consent_revoked_at") if "consent_revoked_at" in frame.columns else pl.lit(None, pl.Date)
    hit = pl.col("subject_id").is_in(pl.Series(list(revoked), dtype=pl.String).implode())
    return frame.with_columns(
        pl.when(hit)
        .then(current.fill_null(pl.lit(today, pl.Date)))
        .otherwise(current)
        .alias("consent_revoked_at")
    )


def transform(
    frame: pl.DataFrame, policy: Policy, vault: PseudonymSource, scrub: pl.Series, release_date: dt.date
) -> pl.DataFrame:
    """Apply each column's action; the result holds only released columns."""
    out: list[pl.Expr] = []
    kinds = {"sample_id": CodeKind.SAMPLE, "subject_id": CodeKind.SUBJECT}
    wanted = [c for c in policy.columns_with(FieldAction.PSEUDONYMISE) if c in frame.columns]
    assigned = vault.assign_many({kinds[c]: frame[c] for c in wanted})  # one vault load for all kinds
    codes = {c: assigned[kinds[c]] for c in wanted}
    for column, action in policy.columns.items():
        if column not in frame.columns or action in (FieldAction.DROP, FieldAction.INTERNAL):
            continue
        match action:
            case FieldAction.PSEUDONYMISE:
                out.append(pl.col(column))
            case FieldAction.GENERALISE_YEAR:
                name = "birth_year" if column == "date_of_birth" else column.removesuffix("_date") + "_year"
                out.append(year(column).alias(name))
            case FieldAction.ZIP3:
                out.append(zip3(column, load_restricted_zip3()).alias("zip3"))
            case FieldAction.AGE_TOP_CODE:
                # age on the release date: a birth year that shows 90+ *now* is suppressed, even if the
                # subject was younger at collection (Safe Harbor's "indicative of such age")
                birth_year, age = age_top_code(column, "_release_date")
                out += [birth_year.alias("birth_year"), age.alias("age")]
            case FieldAction.SCRUB:
                out.append(pl.lit(scrub_series(frame[column], scrub)).alias(column))
            case FieldAction.KEEP:
                out.append(pl.col(column))
    staged = frame.with_columns(pl.lit(release_date).alias("_release_date"))
    result = staged.select(out)
    for column, mapping in codes.items():
        result = (
            result.join(mapping.rename({"value": column}), on=column, how="left", maintain_order="left")
            .drop(column)
            .rename({"code": column})
        )
    order = [c for c in _released_order(policy, frame) if c in result.columns]
    return result.select(order)


def _released_order(policy: Policy, frame: pl.DataFrame) -> list[str]:
    names = []
    for column, action in policy.columns.items():
        if column not in frame.columns:
            continue
        match action:
            case FieldAction.AGE_TOP_CODE:
                names += ["birth_year", "age"]
            case FieldAction.GENERALISE_YEAR:
                names.append(
                    "birth_year" if column == "date_of_birth" else column.removesuffix("_date") + "_year"
                )
            case FieldAction.ZIP3:
                names.append("zip3")
            case FieldAction.DROP | FieldAction.INTERNAL:
                pass
            case _:
                names.append(column)
    return names


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _record(
    release_id: str,
    now: dt.datetime,
    policy: Policy,
    vault: PseudonymSource,
    facts: dict[str, Any],
    released: pl.DataFrame,
    exclusions: Mapping[Exclusion, int],
    work: Path,
) -> dict[str, Any]:
    files = [
        {"name": p.relative_to(work).as_posix(), "sha256": _sha256(p), "bytes": p.stat().st_size}
        for p in sorted(work.rglob("*"))
        if p.is_file()
    ]
    return {
        "format": RELEASE_FORMAT,
        "release_id": release_id,
        "created_at": now.isoformat(timespec="seconds"),
        "policy": policy_summary(policy),
        "class": "pseudonymised",
        "assessment": {"status": "not assessed", "note": "run `genegate assess` to certify a class"},
        "counts": {
            "manifest_rows": facts["rows"],
            "included_samples": released.height,
            "included_subjects": int(released["subject_id"].n_unique())
            if "subject_id" in released.columns
            else None,
            "excluded_samples": sum(exclusions.values()),
            "columns_released": released.columns,
        },
        "excluded": {str(reason): count for reason, count in exclusions.items()},
        "origin_regions": _region_counts(released),
        "files": files,
        "release_sha256": release_digest(files),
        "data_use": list(policy.data_use),
        "vault_domain": vault.domain,
        "zip_list_version": load_restricted_zip3().version,
        "tools": {name: version(name) for name in ("genegate", "polars", "pyarrow")},
    }


def release_digest(files: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 of the release's file list (names, digests, sizes) as canonical JSON: names its content."""
    canonical = json.dumps(list(files), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _manifest_facts(frame: pl.DataFrame) -> dict[str, Any]:
    """Counts release.json needs from the identified frame (no values)."""
    genomic = {c: int(frame[c].drop_nulls().len()) for c in _GENOMIC_COLUMNS if c in frame.columns}
    return {"rows": frame.height, "genomic": genomic}


def _region_counts(released: pl.DataFrame) -> dict[str, int]:
    if "residence_region" not in released.columns:
        return {}
    counts = released["residence_region"].fill_null("unknown").value_counts(sort=True)
    return {str(r): int(n) for r, n in counts.iter_rows()}
