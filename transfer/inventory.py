"""The retention inventory: the lab's sealed record of what each release read and wrote.

`<home>/retention/inventory.bin` is a keys.sealed.SealedFile under the vault's wrapper, since input
paths can name samples. `genegate deid` records each release it made (record_release): the
release's folder, digest and creation time (from its release.json), the manifest and every file it
names (with their indexes), each with its size and modification time, and whether the release was
made "purge on certification" (`genegate deid --purge-inputs`). Retention (transfer/retention.py)
reads the records back to find the staged inputs and the releases it removes
(transfer/holdings.py).

The records are made from release.json and its ISO 8601 times, so reading those lives here, with
the error every retention module raises (RetentionFailed): it names where and what, never a path
the inventory holds.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from keys import KeyWrapper, SealedFile
from transfer.errors import TransferError

INVENTORY_FORMAT = 1
INVENTORY_FILE = "retention/inventory.bin"  # under the keystore directory
_PURPOSE = "retention-inventory"
_INDEX_SUFFIXES = (".tbi", ".csi", ".bai", ".crai")


class RetentionFailed(TransferError):
    """Retention could not read its records or remove an item (where, detail; never a path it holds)."""

    def __init__(self, where: str, detail: str) -> None:
        super().__init__(f"{where}: {detail}")
        self.where = where
        self.detail = detail


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
        return parse_time(self.created_at, "a retention record's created_at")


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
    doc = read_release_json(release_dir)
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
        format_time(parse_time(doc.get("created_at"), "release.json created_at")) or "",
        tuple(files),
        purge,
    )
    Inventory(home, wrapper).add(record)
    return record


def _indexes(path: Path) -> list[Path]:
    found = [path.with_name(path.name + s) for s in _INDEX_SUFFIXES]
    return [*found, path.with_suffix(".bai")] if path.suffix == ".bam" else found


# --- release.json and its times ------------------------------------------------------------


def read_release_json(directory: Path) -> dict[str, Any] | None:
    """The folder's release.json when it is a complete release's (names a release_id); else None."""
    try:
        doc = json.loads((directory / "release.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("release_id"), str) else None


def parse_time(text: object, what: str) -> dt.datetime:
    """An ISO 8601 time (UTC when it names no zone); RetentionFailed naming what, never the text."""
    try:
        value = dt.datetime.fromisoformat(str(text))
    except ValueError:
        raise RetentionFailed(
            what, "is not an ISO 8601 time, so the item cannot be dated; fix the record"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def format_time(value: dt.datetime | None) -> str | None:
    """A time as ISO 8601 in UTC to the second; None stays None."""
    return None if value is None else value.astimezone(dt.UTC).isoformat(timespec="seconds")
