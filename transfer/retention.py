"""Retention, lab side: remove what genegate read and wrote once it falls due, and log each removal.

When each class of data falls due is the policy's business (deid/retention.py, passed in as a
Schedule); this module finds the items (transfer/holdings.py: releases, assessments, outboxes and
the staged inputs recorded in the sealed inventory, transfer/inventory.py), removes the due ones and
logs each removal. file:// folders are removed whole; under s3:// every object version is deleted
by VersionId, except a version under Object Lock, which is reported as held (until its date) and
tried again next run (transfer/retention_s3.py). A staged input is removed only while it still is
as recorded. `purge_certified` removes a release's inputs as soon as its assessment passed, when
the release was recorded "purge on certification" (`genegate deid --purge-inputs`), and logs
`inputs.purged`.

Removal logs one `retention.removed` entry per item: the class, release id, counts of files and
bytes (and held objects), where as a scheme and root, never an input path. A dry run removes and
writes nothing. An item that fails is reported with our error's message and the others go on.
Ledgers (`<home>/ledger/`) are kept: they hold codes, not identities, and a revocation must still
find every release a recipient may hold.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from keys import Keystore, KeyWrapper, SigningKey
from transfer.errors import DeliveryError, TransferError
from transfer.facts import TRANSFER_LOG, load_release_facts
from transfer.gate import certified
from transfer.holdings import (
    Holding,
    Item,
    Part,
    assessment_items,
    list_parts,
    outbox_items,
    release_items,
    staging_items,
)
from transfer.inventory import Inventory, RetentionFailed, format_time, read_release_json
from transfer.log import TransferLog
from transfer.retention_s3 import S3Versions, is_held


class Schedule(Protocol):
    """When a class of data falls due: deid.retention.RetentionPolicy."""

    def due_at(self, holding: str, written_at: dt.datetime) -> dt.datetime | None:
        """When an item written then falls due; None: never."""
        ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened (or, in a dry run, would happen) to one due item."""

    item: Item
    due_at: dt.datetime
    status: str  # "due" (dry run), "removed", "held", "failed"
    files: int
    bytes: int
    held: int = 0
    held_until: dt.datetime | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Class, release, where, counts and dates only."""
        i = self.item
        return {
            "class": str(i.holding),
            "release_id": i.release_id,
            "where": i.where,
            "status": self.status,
            "files": self.files,
            "bytes": self.bytes,
            "held": self.held,
            "held_until": format_time(self.held_until),
            "written_at": format_time(i.written_at),
            "due_at": format_time(self.due_at),
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """The due items and their outcomes; `waiting` counts the items not yet due."""

    outcomes: tuple[Outcome, ...]
    waiting: int
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        """For `genegate --json retention apply` and the flow."""
        return {
            "dry_run": self.dry_run,
            "due": [o.to_json() for o in self.outcomes],
            "waiting": self.waiting,
        }


# --- applying ------------------------------------------------------------------------------


def apply_retention(
    store: Keystore,
    schedule: Schedule,
    wrapper: KeyWrapper,
    *,
    now: dt.datetime,
    releases: Sequence[Path] = (),
    results: Sequence[Path] = (),
    signer: SigningKey | None = None,
    environ: Mapping[str, str] | None = None,
) -> RetentionReport:
    """Find every item, remove the due ones and log each removal; without signer, a dry run that
    removes and writes nothing."""
    log = TransferLog(store.home / TRANSFER_LOG)
    s3 = S3Versions(os.environ if environ is None else environ)
    records = Inventory(store.home, wrapper).records()
    found, named_results = release_items(records, releases)
    items = (
        *staging_items(records),
        *found,
        *assessment_items([*results, *named_results]),
        *outbox_items(log.entries()),
    )
    outcomes, waiting = [], 0
    for found_item in items:
        due_at = schedule.due_at(str(found_item.holding), found_item.written_at)
        if due_at is None or due_at > now:
            waiting += 1
            continue
        try:
            item = s3.listed(found_item, now)
        except DeliveryError as exc:  # an unreachable bucket: reported, the other items go on
            outcomes.append(_outcome(found_item, due_at, "failed", [], [], str(exc)))
            continue
        if not item.parts:
            continue
        if signer is None:
            held = [p for p in item.parts if is_held(p, now)]
            outcomes.append(_outcome(item, due_at, "due", [p for p in item.parts if p not in held], held))
        else:
            outcomes.append(_remove(item, due_at, now, s3, log, signer))
    return RetentionReport(tuple(outcomes), waiting, signer is None)


def purge_certified(
    store: Keystore, wrapper: KeyWrapper, release_dir: Path, signer: SigningKey, *, now: dt.datetime
) -> Outcome | None:
    """Remove the inputs of a release recorded "purge on certification" once its assessment (as
    release.json records it) certifies it (transfer.gate.certified: passed, or pseudonymised and
    free of leaks); log `inputs.purged`. None when there is nothing to do."""
    doc = read_release_json(release_dir) or {}
    records = Inventory(store.home, wrapper).records()
    mine = next((r for r in records if r.release_id == doc.get("release_id")), None)
    if mine is None or not mine.purge_on_certification or mine.release_sha256 != doc.get("release_sha256"):
        return None
    try:
        facts = load_release_facts(release_dir, store.home)
    except TransferError:
        return None  # no readable record or ledger: nothing shows the release was certified
    if not certified(facts):  # the gate's own test: passed, or pseudonymised without a leak
        return None
    item = next((i for i in staging_items(records) if i.release_id == mine.release_id), None)
    if item is None:
        return None
    log = TransferLog(store.home / TRANSFER_LOG)
    return _remove(item, now, now, S3Versions({}), log, signer, event="inputs.purged")


def _remove(
    item: Item,
    due_at: dt.datetime,
    now: dt.datetime,
    s3: S3Versions,
    log: TransferLog,
    signer: SigningKey,
    event: str = "retention.removed",
) -> Outcome:
    removed: list[Part] = []
    held = [p for p in item.parts if is_held(p, now)]
    error: str | None = None
    try:
        if item.holding is Holding.OUTBOX and item.target.startswith("s3://"):
            s3.delete(item, [p for p in item.parts if p not in held], removed)
        else:
            _remove_local(item, removed)
    except (RetentionFailed, DeliveryError) as exc:
        error = str(exc)
    status = "failed" if error else ("held" if held else "removed")
    outcome = _outcome(item, due_at, status, removed, held, error)
    if removed:
        log.append(_event(outcome, event), signer)
    return outcome


def _outcome(item: Item, due: dt.datetime, status: str, parts: Sequence[Part], held: Sequence[Part],
             error: str | None = None) -> Outcome:  # fmt: skip
    until = max((p.held_until for p in held if p.held_until is not None), default=None)
    return Outcome(item, due, status, len(parts), sum(p.bytes for p in parts), len(held), until, error)


def _event(o: Outcome, event: str) -> dict[str, Any]:
    """The log entry of one removal: class, release, counts and dates; never a path it removed."""
    item, days = o.item, (o.due_at - o.item.written_at).days
    what = f"{item.holding} removed, {days} days after it was written (retention.{item.holding}_days)"
    if event == "inputs.purged":
        what = "identified inputs removed on certification (--purge-inputs)"
    body: dict[str, Any] = {
        "event": event,
        "release_id": item.release_id,
        "counts": {"files": o.files, "bytes": o.bytes, "held": o.held},
        "message": what + (f"; stopped: {o.error}" if o.error else ""),
        "receipt": {
            "class": str(item.holding),
            "where": item.where,
            "written_at": format_time(item.written_at),
            "due_at": format_time(o.due_at),
        },
    }
    if item.release_sha256 and re.fullmatch("[0-9a-f]{64}", item.release_sha256):
        body["release_sha256"] = item.release_sha256
    if item.holding is Holding.OUTBOX:
        uri = item.target if item.target.startswith("s3://") else Path(item.target).as_uri()
        body |= {"destination": {"uri": uri}, "recipient_id": item.recipient_id}
    return body


def _remove_local(item: Item, removed: list[Part]) -> None:
    """Unlink the item's files (a staging file only while it is as recorded), then its empty folders."""
    if item.holding is Holding.RELEASE and (read_release_json(Path(item.target)) or {}).get("release_id") != (
        item.release_id
    ):
        raise RetentionFailed(item.where, f"release {item.release_id} changed since it was listed; run again")
    try:
        if item.holding in (Holding.RELEASE, Holding.OUTBOX):
            parts = list(list_parts(Path(item.target)))  # what is there now, as removed
        else:
            parts = list(item.parts)
        for part in parts:
            os.unlink(part.key)
            removed.append(part)
        for directory, _, _ in sorted(os.walk(item.target), key=lambda w: -len(w[0])) if item.target else ():
            with contextlib.suppress(OSError):  # a folder someone writes to again stays; its files went
                os.rmdir(directory)
    except OSError as exc:
        raise RetentionFailed(
            item.where,
            f"cannot remove {item.holding} of {item.release_id} ({exc.strerror}); check permissions",
        ) from exc
