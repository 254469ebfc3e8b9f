"""Retention: how long the lab keeps what genegate read and wrote (the policy's `[retention]`). Pure.

Five classes of data, each with a period in the policy file:

    staging_days     the staging copies of the identified inputs a `genegate deid` run read (the
                     manifest and the genomic files it names, with their indexes), counted from
                     the release's creation
    release_days     release directories (releases/<id>/), from release.json `created_at`
    outbox_days      the encrypted copies delivered to a recipient's destination (a file:// outbox
                     or an s3:// prefix), from the last `transfer.delivered` log entry for it
    assessment_days  a release's partition of the `genegate assess` results dataset
                     (results/release_id=<id>/), from its newest run file
    log_days         entries of the signed transfer log

A period is a whole number of days N >= 0 or "never". An item is due N days after it was written:
0 means at the first `genegate retention apply` after it was written, "never" that it is never
removed. A missing key takes its default; an unknown key or a negative number is refused.

Defaults, and why:

- staging_days = "never": genegate cannot tell a staging copy from the lab's only copy of its
  sequencing data, and deleting that by default could not be undone. A lab that promises subjects
  "deleted after processing" sets a number (e.g. 30: time to re-run deid or assess) or passes
  `genegate deid --purge-inputs`, which removes the inputs once the release is certified.
- release_days = 365: a pseudonymised release is still personal (genetic) data, kept no longer than
  its purpose needs (GDPR Art 5(1)(e)); a year covers re-sending to partners and their questions,
  after which a release can be made again from the inputs.
- outbox_days = 90: the outbox copy only waits for the recipient to collect it; a quarter covers a
  partner's collection cycle. The log keeps the delivery, so partner-sync does not send it again.
- assessment_days = 2190 (six years): the results hold aggregates only and are the evidence a
  certification rests on; six years is HIPAA's retention for such documentation (45 CFR
  164.316(b)(2)(i)).
- log_days = "never", and no other value is accepted: the log is a hash chain, each entry signed
  and a signed head over the last, so dropping its oldest entries breaks verification of every
  later one; re-anchoring on a signed checkpoint would let whoever holds the signing key erase
  the record of what was shared, and the log is the very record that makes retention checkable
  (each removal is an entry). Its entries hold no identity (an allow-list of fields), so keeping
  them keeps no personal data.

Where the days count from is found by the inventory (transfer/inventory.py); this module only
says when a class of data falls due and what a `genegate deid` run read (input_paths).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deid.errors import DeidError, MalformedInput

if TYPE_CHECKING:
    import polars as pl

NEVER = "never"
MAX_DAYS = 36_500
KEYS = ("staging_days", "release_days", "outbox_days", "assessment_days", "log_days")
INPUT_COLUMNS = ("vcf", "alignment", "fastq")
_LOG_REFUSAL = (
    'retention.log_days: the transfer log is kept for ever ("never"): it is a signed hash chain, so '
    "removing entries breaks verification of every later one, and it records each removal; remove "
    'the key or write log_days = "never"'
)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days each class of data is kept; None means "never" (see the module doc for the defaults)."""

    staging_days: int | None = None
    release_days: int | None = 365
    outbox_days: int | None = 90
    assessment_days: int | None = 2190
    log_days: int | None = None  # always None: parse_retention refuses anything else

    def days(self, holding: str) -> int | None:
        """The period of a class of data ("staging", "release", "outbox", "assessment", "log")."""
        key = f"{holding}_days"
        if key not in KEYS:
            raise DeidError(f"retention: {holding} is not a class of data ({', '.join(classes())})")
        value: int | None = getattr(self, key)
        return value

    def due_at(self, holding: str, written_at: dt.datetime) -> dt.datetime | None:
        """When an item of holding written at written_at falls due; None when it is kept for ever."""
        days = self.days(holding)
        return None if days is None else written_at + dt.timedelta(days=days)

    def as_dict(self) -> dict[str, int | str]:
        """The section as the policy file writes it ("never" for None)."""
        return {key: NEVER if getattr(self, key) is None else getattr(self, key) for key in KEYS}


def classes() -> tuple[str, ...]:
    """The classes of data, in the order of KEYS."""
    return tuple(k.removesuffix("_days") for k in KEYS)


def parse_retention(raw: Mapping[str, Any], source: str) -> RetentionPolicy:
    """The [retention] table of a policy file; MalformedInput names the key and the fix."""
    values: dict[str, int | None] = {}
    for key, value in raw.items():
        if key not in KEYS:
            raise MalformedInput(
                source, f"retention.{_shown(key)} is not a retention key; use {', '.join(KEYS)}"
            )
        values[key] = _period(key, value, source)
    if values.get("log_days") is not None:
        raise MalformedInput(source, _LOG_REFUSAL)
    return RetentionPolicy(**values)


def _period(key: str, value: Any, source: str) -> int | None:
    if value == NEVER:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedInput(
            source, f'retention.{key}: give whole days (0 = at the next retention run) or "never"'
        )
    if value < 0:
        raise MalformedInput(
            source, f'retention.{key} is negative; give whole days (0 = at the next retention run) or "never"'
        )
    if value > MAX_DAYS:
        raise MalformedInput(source, f'retention.{key} is over {MAX_DAYS} days (a century); write "never"')
    return value


def _shown(key: str) -> str:
    """A key as it may be echoed: policy keys are not protected values, but keep the line short."""
    return key if key.isidentifier() and len(key) <= 40 else "(a key)"


def manifest_inputs(frame: pl.DataFrame, manifest: Path) -> tuple[Path, ...]:
    """The identified inputs of a deid run: the manifest and every file any of its rows names
    (consented or not), from the frame deid already read; each distinct cell is parsed once."""
    base = manifest.parent.absolute()
    cells = [
        {column: cell}
        for column in INPUT_COLUMNS
        if column in frame.columns
        for cell in frame.get_column(column).drop_nulls().unique().to_list()
    ]
    return (manifest.absolute(), *input_paths(cells, base))


def input_paths(rows: Iterable[Mapping[str, object]], base: Path) -> tuple[Path, ...]:
    """The genomic files the manifest rows name (columns vcf, alignment, fastq; fastq cells hold
    ";"-separated paths), relative ones read from base as `genegate deid` reads them; sorted, once
    each. Pure: no file is opened or checked here."""
    found: set[Path] = set()
    for row in rows:
        for column in INPUT_COLUMNS:
            cell = row.get(column)
            if cell is None:
                continue
            parts = str(cell).split(";") if column == "fastq" else [str(cell)]
            for part in (p.strip() for p in parts):
                if part:
                    path = Path(part)
                    found.add(Path(os.path.normpath(path if path.is_absolute() else base / path)))
    return tuple(sorted(found))
