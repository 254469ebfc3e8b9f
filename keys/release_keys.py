"""Release keys: the one secret that opens a release stored at rest, kept only here and destroyable.

A release stored at rest (transfer/at_rest.py) is Crypt4GH-encrypted for a key pair of its own,
made for that release and for nothing else. Its secret half exists in one place: this sealed
table in the keystore. Destroying it (crypto-shredding) makes every stored copy of the release
unreadable at once, wherever the copies are, backups of the storage included.

    release-keys/keys.bin    sealed (keys/sealed.py): the table as JSON under a data key that the
                             lab key or AWS KMS wraps; associated data binds format and purpose
    release-keys/keys.lock   the lock that serialises read-modify-write across processes

Each release id has one record: its key's public fingerprint, the release_sha256 it was made
for, when, how many stored copies were written, and, while it lives, the 32 secret bytes. A
destroyed record keeps only the facts (fingerprint, dates, counts), so a second destroy can say
when the first happened and a destroyed id is never given a new key.

Every write re-seals the whole table under a fresh data key (a new sibling, renamed over the old
file, the directory fsynced so the rename survives a power cut). A data key that leaks later
therefore opens no copy of the table written before, which is where a destroyed key still lies.
What this cannot reach, and transfer/at_rest.py states for the operator: a keystore backup taken
before a destroy still holds the key, sealed; shredding is complete when such backups expire.
Messages name the release id (not a protected value) and never a key.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from keys.errors import KeyFormatError, KeyStoreError
from keys.keyfiles import PublicKey, SecretKey
from keys.sealed import SealedFile
from keys.wrap import KeyWrapper

RELEASE_KEYS_FORMAT = 1
_PURPOSE = "release-keys"
_RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class KeyState(enum.StrEnum):
    """A release key lives (its stored copies open) or was destroyed (they never will again)."""

    LIVE = "live"
    DESTROYED = "destroyed"


@dataclass(frozen=True, slots=True)
class ReleaseKeyRecord:
    """What the table says about one release's key; no key material."""

    release_id: str
    fingerprint: str  # of the release key's public half
    release_sha256: str
    created_at: str
    state: KeyState
    copies: int = 0  # stored copies written with this key
    files: int = 0  # files in the last stored copy (release.json included)
    bytes: int = 0  # their plaintext bytes
    destroyed_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form (for `genegate release list --json`)."""
        return {
            "release_id": self.release_id,
            "state": self.state.value,
            "key_fingerprint": self.fingerprint,
            "release_sha256": self.release_sha256,
            "created_at": self.created_at,
            "copies": self.copies,
            "files": self.files,
            "bytes": self.bytes,
            "destroyed_at": self.destroyed_at,
        }


@dataclass(frozen=True, slots=True)
class KeyDestruction:
    """The outcome of a destroy: the record as it now stands; `already` when an earlier run did it."""

    record: ReleaseKeyRecord
    already: bool


class ReleaseKeys:
    """The keystore's table of release keys (see the module docstring)."""

    def __init__(self, home: Path, wrapper: KeyWrapper) -> None:
        self.directory = home / "release-keys"
        self.path = self.directory / "keys.bin"
        self._wrapper = wrapper
        self._sealed = self._sealed_file(self.path)

    def exists(self) -> bool:
        """True once a release was stored at rest with this keystore."""
        return self.path.is_file()

    def issue(
        self, release_id: str, release_sha256: str, now: dt.datetime
    ) -> tuple[ReleaseKeyRecord, PublicKey]:
        """The live key of the release (made on first use), for encrypting another stored copy.

        Every copy of one release shares one key, so one destroy covers them all. A destroyed
        release id gets no new key, and an id already keyed for other content is refused.
        """
        check_release_id(release_id)
        if not _SHA256.match(release_sha256):
            raise KeyStoreError(f"release {release_id}: release_sha256 must be a lowercase hex SHA-256")
        with self._sealed.locked():
            table, secrets = self._load()
            record = table.get(release_id)
            if record is not None:
                _refuse_destroyed(record)
                if record.release_sha256 != release_sha256:
                    raise KeyStoreError(
                        f"release {release_id} already has a key at rest for other content "
                        "(release_sha256 differs); a release id names one content, write it under a new id"
                    )
                return record, secrets[release_id].public_key()
            key = SecretKey.generate()
            record = ReleaseKeyRecord(
                release_id, key.public_key().fingerprint, release_sha256, _stamp(now), KeyState.LIVE
            )
            table[release_id], secrets[release_id] = record, key
            self._store(table, secrets)
        return record, key.public_key()

    def note_copy(self, release_id: str, files: int, plaintext_bytes: int) -> ReleaseKeyRecord:
        """Count one more stored copy (files, bytes) made with the release's live key."""
        with self._sealed.locked():
            table, secrets = self._load()
            record = _live(table, release_id)
            record = replace(record, copies=record.copies + 1, files=files, bytes=plaintext_bytes)
            table[release_id] = record
            self._store(table, secrets)
        return record

    def secret_key(self, release_id: str) -> SecretKey:
        """The release's secret key, to open a stored copy; refused once destroyed."""
        if not self.exists():
            raise KeyStoreError(_unknown(check_release_id(release_id)))
        with self._sealed.locked():
            table, secrets = self._load()
        _live(table, release_id)
        return secrets[release_id]

    def record(self, release_id: str) -> ReleaseKeyRecord:
        """The record of one release (live or destroyed)."""
        check_release_id(release_id)
        found = self.records().get(release_id)
        if found is None:
            raise KeyStoreError(_unknown(release_id))
        return found

    def records(self) -> dict[str, ReleaseKeyRecord]:
        """Every release with a key at rest, live or destroyed, by id."""
        if not self.exists():
            return {}
        with self._sealed.locked():
            table, _ = self._load()
        return dict(sorted(table.items()))

    def destroy(self, release_id: str, now: dt.datetime) -> KeyDestruction:
        """Remove the release's secret key for good: the table is re-sealed without it.

        Idempotent: a destroyed release returns its record with `already` set. An unknown id is
        refused (nothing to destroy is not the same as destroyed).
        """
        check_release_id(release_id)
        if not self.exists():
            raise KeyStoreError(_unknown(release_id, "; nothing was destroyed"))
        with self._sealed.locked():
            table, secrets = self._load()
            record = table.get(release_id)
            if record is None:
                raise KeyStoreError(_unknown(release_id, "; nothing was destroyed"))
            if record.state is KeyState.DESTROYED:
                return KeyDestruction(record, already=True)
            record = replace(record, state=KeyState.DESTROYED, destroyed_at=_stamp(now))
            table[release_id] = record
            del secrets[release_id]
            self._store(table, secrets)
        return KeyDestruction(record, already=False)

    # --- storage ---------------------------------------------------------------------------

    def _sealed_file(self, path: Path) -> SealedFile:
        return SealedFile(
            path,
            purpose=_PURPOSE,
            aad=f"genegate-release-keys|{RELEASE_KEYS_FORMAT}|{_PURPOSE}".encode(),
            header={"format": RELEASE_KEYS_FORMAT},
            wrapper=self._wrapper,
            what="release key table",
            mismatch="is not a release key table of this genegate",
        )

    def _load(self) -> tuple[dict[str, ReleaseKeyRecord], dict[str, SecretKey]]:
        _, plain = self._sealed.load()
        if plain is None:
            return {}, {}
        try:
            doc = json.loads(plain)
            table: dict[str, ReleaseKeyRecord] = {}
            secrets: dict[str, SecretKey] = {}
            for release_id, entry in doc["releases"].items():
                table[release_id] = _parse_record(release_id, entry)
                if table[release_id].state is KeyState.LIVE:
                    secrets[release_id] = SecretKey(base64.b64decode(entry["secret_key"], validate=True))
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise KeyFormatError(str(self.path), "the release key table's content is malformed") from exc
        return table, secrets

    def _store(self, table: dict[str, ReleaseKeyRecord], secrets: dict[str, SecretKey]) -> None:
        """Seal the table under a fresh data key into a sibling, then rename it over the file."""
        releases: dict[str, dict[str, Any]] = {}
        for release_id in sorted(table):
            entry = table[release_id].to_json()
            if release_id in secrets:
                entry["secret_key"] = base64.b64encode(secrets[release_id].raw()).decode("ascii")
            releases[release_id] = entry
        doc = {"format": RELEASE_KEYS_FORMAT, "releases": releases}
        fresh_path = self.path.with_name(self.path.name + ".next")
        fresh_path.unlink(missing_ok=True)  # a leftover of a crash: load() must find nothing there
        fresh = self._sealed_file(fresh_path)
        key, _ = fresh.load()  # no file yet: a new data key, wrapped anew
        try:
            fresh.store(key, json.dumps(doc, sort_keys=True).encode("utf-8"))
            os.replace(fresh_path, self.path)
        finally:
            fresh_path.unlink(missing_ok=True)
        _sync_directory(self.directory)


def check_release_id(release_id: str) -> str:
    """A release id as `genegate deid` makes them (it also names a directory), or KeyStoreError."""
    if not _RELEASE_ID.match(release_id) or ".." in release_id:
        raise KeyStoreError(
            "a release id is 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(the release_id of release.json)"
        )
    return release_id


def _parse_record(release_id: str, entry: dict[str, Any]) -> ReleaseKeyRecord:
    return ReleaseKeyRecord(
        release_id=release_id,
        fingerprint=str(entry["key_fingerprint"]),
        release_sha256=str(entry["release_sha256"]),
        created_at=str(entry["created_at"]),
        state=KeyState(entry["state"]),
        copies=int(entry["copies"]),
        files=int(entry["files"]),
        bytes=int(entry["bytes"]),
        destroyed_at=entry.get("destroyed_at"),
    )


def _live(table: dict[str, ReleaseKeyRecord], release_id: str) -> ReleaseKeyRecord:
    check_release_id(release_id)
    record = table.get(release_id)
    if record is None:
        raise KeyStoreError(_unknown(release_id))
    _refuse_destroyed(record)
    return record


def _refuse_destroyed(record: ReleaseKeyRecord) -> None:
    if record.state is KeyState.DESTROYED:
        raise KeyStoreError(
            f"release {record.release_id}: its key was destroyed on {(record.destroyed_at or '')[:10]} "
            "(`genegate release destroy`): its stored copies can no longer be opened (crypto-shredded) "
            "and the id is not reused"
        )


def _unknown(release_id: str, outcome: str = "") -> str:
    return (
        f"release {release_id} has no key at rest in this keystore{outcome} "
        "(`genegate release list` shows those that do; check --home)"
    )


def _sync_directory(directory: Path) -> None:
    """fsync a directory, so a rename in it (the removal of a key) survives a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).isoformat(timespec="seconds")
