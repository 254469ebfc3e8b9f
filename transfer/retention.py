"""Retention, lab side: the inventory of what genegate read and wrote, and its removal (local and S3).

When each class of data falls due is the policy's business (deid/retention.py, passed in as a
Schedule); this module finds the items, removes the due ones and logs each removal. Where the
items come from:

- release: every `<root>/<id>/release.json` under the releases roots given, and every release the
  inventory recorded; `created_at` starts its clock. A directory whose release.json names another
  id, or other content than was recorded, is not ours and is left alone.
- assessment: `<results>/release_id=<id>/run-*.parquet` under the results roots given and those
  the releases' assessments name; the newest run file's time starts the clock (files are written
  once and renamed into place, never rewritten).
- outbox: `transfer.delivered` entries of the transfer log, by destination URI (the release's own
  folder at the destination); the last delivery starts the clock. file:// folders are removed
  whole; under s3:// every object version is deleted by VersionId, so data really goes (a plain
  delete in a versioned bucket only hides it) — except a version under Object Lock: a retention
  date in the future or a legal hold. That version is never deleted and never bypassed (no
  BypassGovernanceRetention): it is reported as held (until its date) and tried again next run.
- staging: the sealed inventory `<home>/retention/inventory.bin` (keys.sealed.SealedFile under the
  vault's wrapper, since input paths can name samples), written when `genegate deid` made a
  release: the manifest and every file it names (with their indexes), each with its size and
  modification time. A file is removed only while it still has both, so a new batch staged under
  the same names is not taken for the old one; a file several releases read belongs to the newest
  of them and goes when that release's period ends. `purge_certified` removes a release's inputs
  as soon as its assessment passed, when the release was recorded "purge on certification"
  (`genegate deid --purge-inputs`), and logs `inputs.purged`.

Removal logs one `retention.removed` entry per item: the class, release id, counts of files and
bytes (and held objects), where as a scheme and root, never an input path. A dry run removes and
writes nothing. An item that fails is reported with our error's message and the others go on.
Ledgers (`<home>/ledger/`) are kept: they hold codes, not identities, and a revocation must still
find every release a recipient may hold.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from keys import Keystore, KeyWrapper, SealedFile, SigningKey
from transfer.delivery.s3_client import S3Client, S3Settings
from transfer.errors import DeliveryError, TransferError
from transfer.facts import DELIVERED_EVENTS, TRANSFER_LOG, load_release_facts
from transfer.gate import certified
from transfer.log import TransferLog

INVENTORY_FORMAT = 1
INVENTORY_FILE = "retention/inventory.bin"  # under the keystore directory
_PURPOSE = "retention-inventory"
_INDEX_SUFFIXES = (".tbi", ".csi", ".bai", ".crai")
_RUN_FILE = re.compile(r"^run-[A-Za-z0-9-]+\.parquet$")


class RetentionFailed(TransferError):
    """Retention could not read its records or remove an item (where, detail; never a path it holds)."""

    def __init__(self, where: str, detail: str) -> None:
        super().__init__(f"{where}: {detail}")
        self.where = where
        self.detail = detail


class Holding(enum.StrEnum):
    """The classes of data retention removes (the transfer log is kept: deid/retention.py)."""

    STAGING = "staging"
    RELEASE = "release"
    OUTBOX = "outbox"
    ASSESSMENT = "assessment"


class Schedule(Protocol):
    """When a class of data falls due: deid.retention.RetentionPolicy."""

    def due_at(self, holding: str, written_at: dt.datetime) -> dt.datetime | None:
        """When an item written then falls due; None: never."""
        ...


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
            "held_until": _iso(self.held_until),
            "written_at": _iso(i.written_at),
            "due_at": _iso(self.due_at),
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


# --- the sealed inventory ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InputFile:
    """An identified input as deid found it: path, size and modification time (ns)."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class ReleaseRecord:
    """What the lab must remember to remove what one release left behind."""

    release_id: str
    release_dir: str
    release_sha256: str
    created_at: str  # ISO 8601, from release.json
    inputs: tuple[InputFile, ...] = ()
    purge_on_certification: bool = False

    @property
    def created(self) -> dt.datetime:
        """created_at as a time."""
        return _when(self.created_at, "a retention record's created_at")


class Inventory:
    """`<home>/retention/inventory.bin`: the release records, sealed (input paths can name samples)."""

    def __init__(self, home: Path, wrapper: KeyWrapper) -> None:
        self.path = home / INVENTORY_FILE
        self._sealed = SealedFile(
            self.path,
            purpose=_PURPOSE,
            aad=f"genegate-retention|{INVENTORY_FORMAT}|{_PURPOSE}".encode(),
            header={"format": INVENTORY_FORMAT},
            wrapper=wrapper,
            what="retention inventory",
            mismatch="is not a retention inventory of this genegate",
        )

    def add(self, record: ReleaseRecord) -> None:
        """Record (or replace) one release's record."""
        with self._sealed.locked():
            key, plain = self._sealed.load()
            kept = [r for r in self._parse(plain) if r.release_id != record.release_id]
            payload = {"format": INVENTORY_FORMAT, "releases": [asdict(r) for r in [*kept, record]]}
            self._sealed.store(key, json.dumps(payload).encode("utf-8"))

    def records(self) -> tuple[ReleaseRecord, ...]:
        """Every record, in the order written (none before the first release)."""
        if not self.path.is_file():
            return ()
        with self._sealed.locked():
            _, plain = self._sealed.load()
        return self._parse(plain)

    def _parse(self, plain: bytes | None) -> tuple[ReleaseRecord, ...]:
        if plain is None:
            return ()
        try:  # sealed and authenticated: only genegate wrote it
            return tuple(
                ReleaseRecord(**{**r, "inputs": tuple(InputFile(**f) for f in r["inputs"])})
                for r in json.loads(plain)["releases"]
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RetentionFailed(str(self.path), "the inventory's content is malformed; restore it") from exc


def record_release(
    home: Path, wrapper: KeyWrapper, release_dir: Path, inputs: Sequence[Path], *, purge: bool = False
) -> ReleaseRecord:
    """Record a release `genegate deid` wrote and the inputs it read (each file's indexes beside it)."""
    doc = _release_json(release_dir)
    if doc is None:
        raise RetentionFailed(
            str(release_dir), "no complete release here (release.json); nothing was recorded"
        )
    files = []
    for path in sorted({p for given in inputs for p in (given, *_indexes(given)) if p.is_file()}):
        stat = path.stat()
        files.append(InputFile(str(path.absolute()), stat.st_size, stat.st_mtime_ns))
    record = ReleaseRecord(
        str(doc["release_id"]),
        str(release_dir.absolute()),
        str(doc.get("release_sha256", "")),
        _iso(_when(doc.get("created_at"), "release.json created_at")) or "",
        tuple(files),
        purge,
    )
    Inventory(home, wrapper).add(record)
    return record


def _indexes(path: Path) -> list[Path]:
    found = [path.with_name(path.name + s) for s in _INDEX_SUFFIXES]
    return [*found, path.with_suffix(".bai")] if path.suffix == ".bam" else found


# --- finding the items ---------------------------------------------------------------------


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
        doc = _release_json(directory)
        if doc is None or doc.get("release_id") != directory.name:
            continue
        known = recorded.get(directory.name)
        if known is not None and known.release_sha256 != doc.get("release_sha256"):
            continue  # another release under a recorded name: not the one we wrote
        assessment = doc.get("assessment")
        named = assessment.get("results") if isinstance(assessment, dict) else None
        if isinstance(named, str):
            results.add(Path(named).absolute().parent.parent)
        made, parts = _when(doc.get("created_at"), "release.json created_at"), tuple(_tree(directory))
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
            where, target, parts = folder.parent.as_uri(), str(folder), tuple(_tree(folder))
        elif parsed.scheme == "s3" and folder.name == release_id:
            where, target, parts = f"s3://{parsed.netloc}", uri, ()
        else:
            continue
        made = _when(entry.get("timestamp"), "a transfer.delivered entry's timestamp")
        sha, recipient = entry.get("release_sha256"), entry.get("recipient_id")
        items.append(Item(Holding.OUTBOX, release_id, where, made, parts, target, sha, recipient))
    return tuple(i for i in items if i.parts or i.target.startswith("s3://"))


def _tree(folder: Path) -> Iterator[Part]:
    if not folder.is_dir():
        return
    for directory, _, names in os.walk(folder):
        for name in names:
            path = Path(directory) / name
            yield Part(str(path), path.lstat().st_size)


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
            held = [p for p in item.parts if _held(p, now)]
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
    doc = _release_json(release_dir) or {}
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
    held = [p for p in item.parts if _held(p, now)]
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
            "written_at": _iso(item.written_at),
            "due_at": _iso(o.due_at),
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
    if item.holding is Holding.RELEASE and (_release_json(Path(item.target)) or {}).get("release_id") != (
        item.release_id
    ):
        raise RetentionFailed(item.where, f"release {item.release_id} changed since it was listed; run again")
    try:
        if item.holding in (Holding.RELEASE, Holding.OUTBOX):
            parts = list(_tree(Path(item.target)))  # what is there now, as removed
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


# --- S3 ------------------------------------------------------------------------------------


class S3Versions:
    """Object versions at s3:// destinations, one client per bucket configured as deliveries are
    (GENEGATE_S3_*; botocore follows a bucket in another region than GENEGATE_S3_REGION)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._clients: dict[str, S3Client] = {}

    def client(self, bucket: str) -> S3Client:
        """The bucket's client (made once)."""
        if bucket not in self._clients:
            settings = S3Settings.from_env(self._environ)
            self._clients[bucket] = S3Client(bucket, settings.region or "us-east-1", settings)
        return self._clients[bucket]

    def listed(self, item: Item, now: dt.datetime) -> Item:
        """An s3:// item with every object version under its prefix and its Object Lock state
        (HeadObject per version); any other item as it is."""
        if not item.target.startswith("s3://"):
            return item
        parsed = urlparse(item.target)
        s3, prefix = self.client(parsed.netloc), parsed.path.strip("/") + "/"
        parts: list[Part] = []
        token: dict[str, str] = {}
        while True:
            page = s3.call("ListObjectVersions", prefix, Prefix=prefix, **token)
            for v in page.get("Versions", []):
                exact = {} if v["VersionId"] == "null" else {"VersionId": v["VersionId"]}  # unversioned
                head = s3.call("HeadObject", v["Key"], Key=v["Key"], **exact)
                until = head.get("ObjectLockRetainUntilDate")
                locked = until if isinstance(until, dt.datetime) and until > now else None
                hold = head.get("ObjectLockLegalHoldStatus") == "ON"
                parts.append(Part(v["Key"], int(v.get("Size", 0)), v["VersionId"], locked, hold))
            if not page.get("IsTruncated"):
                return replace(item, parts=tuple(parts))
            token = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}

    def delete(self, item: Item, parts: Sequence[Part], removed: list[Part]) -> None:
        """Delete each version by id, never with BypassGovernanceRetention. A refusal (AccessDenied:
        no s3:DeleteObjectVersion, or a lock HeadObject did not show for want of s3:GetObjectRetention)
        fails the item, naming the operation: it is not reported as held, since no lock was seen."""
        s3 = self.client(urlparse(item.target).netloc)
        for part in parts:
            s3.call("DeleteObject", part.key, Key=part.key, VersionId=part.version)
            removed.append(part)


def _held(part: Part, now: dt.datetime) -> bool:
    return part.legal_hold or (part.held_until is not None and part.held_until > now)


def _release_json(directory: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((directory / "release.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("release_id"), str) else None


def _when(text: object, what: str) -> dt.datetime:
    """An ISO 8601 time (UTC when it names no zone); RetentionFailed naming what, never the text."""
    try:
        value = dt.datetime.fromisoformat(str(text))
    except ValueError:
        raise RetentionFailed(
            what, "is not an ISO 8601 time, so the item cannot be dated; fix the record"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat(timespec="seconds")
