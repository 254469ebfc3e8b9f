"""Holdings: what genegate keeps for each release, found where it was written, and dated.

Retention (transfer/retention.py) removes an item once the policy says its class is due; this
module only finds the items and the time each one's clock starts from:

- release: every `<root>/<id>/release.json` under the releases roots given, and every release the
  inventory recorded; `created_at` starts its clock. A directory whose release.json names another
  id, or other content than was recorded, is not ours and is left alone.
- assessment: `<results>/release_id=<id>/run-*.parquet` under the results roots given and those
  the releases' assessments name; the newest run file's time starts the clock (files are written
  once and renamed into place, never rewritten).
- outbox: `transfer.delivered` entries of the transfer log, by destination URI (the release's own
  folder at the destination); the last delivery starts the clock. A file:// folder is listed
  file by file; an s3:// one's object versions are listed only once it is due
  (transfer/retention_s3.py).
- staging: the inputs each release record of the sealed inventory names (transfer/inventory.py).
  A file counts only while it still has the size and modification time recorded, so a new batch
  staged under the same names is not taken for the old one; a file several releases read belongs
  to the newest of them and goes when that release's period ends.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from transfer.facts import DELIVERED_EVENTS
from transfer.inventory import InputFile, ReleaseRecord, parse_time, read_release_json

_RUN_FILE = re.compile(r"^run-[A-Za-z0-9-]+\.parquet$")


class Holding(enum.StrEnum):
    """The classes of data retention removes (the transfer log is kept: deid/retention.py)."""

    STAGING = "staging"
    RELEASE = "release"
    OUTBOX = "outbox"
    ASSESSMENT = "assessment"


@dataclass(frozen=True, slots=True)
class Part:
    """One file or S3 object version of an item; key is never shown or logged."""

    key: str
    bytes: int
    version: str | None = None
    held_until: dt.datetime | None = None  # Object Lock retention date
    legal_hold: bool = False


@dataclass(frozen=True, slots=True)
class Item:
    """Something genegate keeps for one release, removable as a whole."""

    holding: Holding
    release_id: str
    where: str  # shown: file://<root> or s3://<bucket>, "staging" for inputs
    written_at: dt.datetime
    parts: tuple[Part, ...]
    target: str = ""  # the folder or s3:// prefix removed; "" when the parts are separate files
    release_sha256: str | None = None
    recipient_id: str | None = None


def staging_items(records: Sequence[ReleaseRecord]) -> tuple[Item, ...]:
    """Each record's inputs that still are as recorded; a file several records name belongs to the
    newest of them (by creation time, then id), so it stays while any of them may still need it."""
    owner: dict[str, tuple[dt.datetime, str]] = {}
    for r in records:
        for f in r.inputs:
            owner[f.path] = max(owner.get(f.path, (r.created, r.release_id)), (r.created, r.release_id))
    items = []
    for r in records:
        mine = (r.created, r.release_id)
        parts = tuple(Part(f.path, f.size) for f in r.inputs if owner[f.path] == mine and _unchanged(f))
        items.append(Item(Holding.STAGING, r.release_id, "staging", r.created, parts, "", r.release_sha256))
    return tuple(i for i in items if i.parts)


def _unchanged(f: InputFile) -> bool:
    try:
        stat = os.stat(f.path)
    except OSError:
        return False
    return stat.st_size == f.size and stat.st_mtime_ns == f.mtime_ns


def release_items(
    records: Sequence[ReleaseRecord], roots: Sequence[Path]
) -> tuple[tuple[Item, ...], set[Path]]:
    """Each release directory found (recorded, or under a root) and the results roots its
    assessment names."""
    recorded = {r.release_id: r for r in records}
    dirs = {Path(r.release_dir) for r in records}
    for root in roots:
        if root.is_dir():
            dirs |= {p.parent.absolute() for p in root.glob("*/release.json")}
    items, results = [], set()
    for directory in sorted(dirs):
        doc = read_release_json(directory)
        if doc is None or doc.get("release_id") != directory.name:
            continue
        known = recorded.get(directory.name)
        if known is not None and known.release_sha256 != doc.get("release_sha256"):
            continue  # another release under a recorded name: not the one we wrote
        assessment = doc.get("assessment")
        named = assessment.get("results") if isinstance(assessment, dict) else None
        if isinstance(named, str):
            results.add(Path(named).absolute().parent.parent)
        made, parts = (
            parse_time(doc.get("created_at"), "release.json created_at"),
            tuple(list_parts(directory)),
        )
        where, sha = directory.parent.as_uri(), doc.get("release_sha256")
        items.append(Item(Holding.RELEASE, directory.name, where, made, parts, str(directory), sha))
    return tuple(items), results


def assessment_items(roots: Sequence[Path]) -> tuple[Item, ...]:
    """Each release's partition of each results dataset, dated by its newest run file."""
    items = []
    for root in sorted({r.absolute() for r in roots if r.is_dir()}):
        for partition in sorted(root.glob("release_id=*")):
            release_id = partition.name.removeprefix("release_id=")
            runs = [p for p in partition.iterdir() if p.is_file() and _RUN_FILE.match(p.name)]
            if not runs:
                continue
            stats = [p.stat() for p in runs]
            newest = dt.datetime.fromtimestamp(max(s.st_mtime for s in stats), dt.UTC)
            parts = tuple(Part(str(p), s.st_size) for p, s in zip(runs, stats, strict=True))
            items.append(Item(Holding.ASSESSMENT, release_id, root.as_uri(), newest, parts, str(partition)))
    return tuple(items)


def outbox_items(entries: Sequence[Mapping[str, Any]]) -> tuple[Item, ...]:
    """The release folders the log records as delivered, dated by their last delivery; an s3:// one's
    object versions are listed only once it is due (S3Versions.listed)."""
    last: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        destination = entry.get("destination")
        uri = destination.get("uri") if isinstance(destination, dict) else None
        if entry.get("event") in DELIVERED_EVENTS and isinstance(uri, str):
            last[uri] = entry
    items = []
    for uri, entry in sorted(last.items()):
        release_id, parsed = str(entry.get("release_id")), urlparse(uri)
        folder = Path(unquote(parsed.path))
        if parsed.scheme == "file" and folder.name == release_id:  # the release's own folder only
            where, target, parts = folder.parent.as_uri(), str(folder), tuple(list_parts(folder))
        elif parsed.scheme == "s3" and folder.name == release_id:
            where, target, parts = f"s3://{parsed.netloc}", uri, ()
        else:
            continue
        made = parse_time(entry.get("timestamp"), "a transfer.delivered entry's timestamp")
        sha, recipient = entry.get("release_sha256"), entry.get("recipient_id")
        items.append(Item(Holding.OUTBOX, release_id, where, made, parts, target, sha, recipient))
    return tuple(i for i in items if i.parts or i.target.startswith("s3://"))


def list_parts(folder: Path) -> Iterator[Part]:
    """Every file under `folder` (none when it is not a folder), with its size."""
    if not folder.is_dir():
        return
    for directory, _, names in os.walk(folder):
        for name in names:
            path = Path(directory) / name
            yield Part(str(path), path.lstat().st_size)
