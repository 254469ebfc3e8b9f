"""Releases at rest, crypto-shredded on demand: `genegate release store | open | destroy`.

A stored copy is the release directory with every file (release.json included) encrypted as an
ordinary Crypt4GH file `<name>.c4gh`, streamed, never a plaintext copy on disk. Every file of a
release is encrypted for one X25519 key pair made for that release alone (keys/release_keys.py);
its secret half lives only in the keystore's sealed release-key table. `destroy` removes it from
the table, and from then on no stored copy, wherever it was copied or backed up, can be opened.

Why a key per release, not the lab's key (the design problem of issue #9): a header sealed for the
lab's long-lived key could only be shredded by destroying the lab key, which loses every release,
or by finding every copy of every header, which no one can prove for backups. EGA's archive keeps
headers apart from payloads (in its database), so a header can be re-keyed or dropped without the
payload; but a copied database keeps them too. Here the header stays inside each file, so a
stored copy is plain Crypt4GH that the reference `crypt4gh` tool decrypts given the release key,
and the only thing that opens any header is 32 bytes in one table, which we can destroy:
- the header is sealed for the release key only: not for the lab key, not for any recipient;
- the writer key of each header is a throwaway (encrypt_file's default), because the writer's
  secret opens a header as well as the reader's;
- every stored copy of a release reuses the release's key, so one destroy covers all of them;
- genegate never writes the release key anywhere else (no export command), and the table is
  re-sealed under a fresh data key on every write (see keys/release_keys.py).

Limits, stated to the operator by `genegate release destroy`:
- a keystore backup taken before the destroy still holds the release key, sealed under the lab key
  (or AWS KMS): shredding is complete once those backups expire. Keep keystore backups no longer
  than BACKUP_RETENTION_DAYS (30: the window California's SB 41 gives to destroy a sample once
  consent is revoked, research/legal.md). Freed blocks of the old table on the keystore's own disk
  (journal, snapshots, SSD remapping) are the same case: sealed, and as lasting as the medium;
- a process that opened the key holds it in memory until it exits (Python cannot wipe bytes);
- a party that was ever sent the release, or a header re-keyed from a stored copy, holds the data
  key or the plaintext: shredding covers the lab's stored copies, not what was lawfully delivered.

Checks on open: release.json must name this release and the release_sha256 its key was made for;
every stored file must be listed in release.json and decrypt to the SHA-256 listed there, and
every listed file must be stored. Nothing of a failed open is left (the output is assembled in a
hidden sibling and renamed into place when complete; on error it is removed).

Log (transfer/log.py): `release.stored`, `release.opened` and `release.destroyed`, with counts and
key fingerprints, never a key or a path. A destroy whose log entry was lost (a crash between the
two) is logged by the next destroy of the same release.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from keys import KeyDestruction, KeyStoreError, ReleaseKeyRecord, ReleaseKeys, SigningKey, check_release_id
from transfer.delivery.manifest import ENCRYPTED_SUFFIX, DeliveredFile, ReleaseFile
from transfer.envelope import EnvelopeDigest, decrypt_file, encrypt_file
from transfer.errors import EnvelopeError, IntegrityError, ReleaseUnreadable
from transfer.send import RELEASE_JSON, release_files

STORED_EVENT = "release.stored"
OPENED_EVENT = "release.opened"
DESTROYED_EVENT = "release.destroyed"
BACKUP_RETENTION_DAYS = 30
STORED_RELEASE_JSON = RELEASE_JSON + ENCRYPTED_SUFFIX
SHREDDING_LIMIT = (
    "keystore backups taken before this destroy still hold the release key (sealed under the lab key "
    "or AWS KMS): shredding is complete once they expire; keep keystore backups no longer than "
    f"{BACKUP_RETENTION_DAYS} days"
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Clock = Callable[[], dt.datetime]


class ShredLog(Protocol):
    """What store, open and destroy write to: transfer.log.TransferLog."""

    def append(self, event: Mapping[str, Any], signing_key: SigningKey) -> dict[str, Any]:
        """Append one signed entry."""
        ...

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, oldest first."""
        ...


@dataclass(frozen=True, slots=True)
class StoredRelease:
    """A stored copy just written: where, under which key, and each file's digests."""

    release_id: str
    release_sha256: str
    directory: Path
    key_fingerprint: str
    copies: int  # stored copies made with this key so far, this one included
    files: tuple[DeliveredFile, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON summary for the CLI."""
        return {
            "release_id": self.release_id,
            "release_sha256": self.release_sha256,
            "directory": str(self.directory),
            "key_fingerprint": self.key_fingerprint,
            "copies": self.copies,
            "files": [f.to_json() for f in self.files],
        }


@dataclass(frozen=True, slots=True)
class OpenedRelease:
    """A release restored from a stored copy, every file checked against release.json."""

    release_id: str
    release_sha256: str
    directory: Path
    files: tuple[ReleaseFile, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON summary for the CLI."""
        return {
            "release_id": self.release_id,
            "release_sha256": self.release_sha256,
            "directory": str(self.directory),
            "files": len(self.files),
            "bytes": sum(f.plaintext_bytes for f in self.files),
        }


def store_release(
    release: Path,
    root: Path,
    keys: ReleaseKeys,
    *,
    log: ShredLog,
    signer: SigningKey,
    now: Clock | None = None,
) -> StoredRelease:
    """Encrypt release.json and every file it lists into root/<release_id>/ for the release's own key."""
    clock = now or _utc_now
    files = release_files(release)
    release_id, release_sha256 = _identity(release / RELEASE_JSON, files[0].plaintext_sha256)
    target = _fresh(root / release_id)
    record, public = keys.issue(release_id, release_sha256, clock())
    stored: list[DeliveredFile] = []
    with _assembling(target) as work:
        for item in files:
            encrypted = work / item.delivered_name
            _make_parent(encrypted, work)
            digest = encrypt_file(release / item.name, encrypted, [public])
            if digest.plaintext_sha256 != item.plaintext_sha256:
                raise ReleaseUnreadable(
                    str(release / item.name),
                    "its SHA-256 differs from release.json: the release changed after `genegate deid` "
                    "wrote it; write the release again",
                )
            stored.append(
                DeliveredFile(
                    item.delivered_name,
                    item.plaintext_sha256,
                    digest.ciphertext_sha256,
                    digest.ciphertext_bytes,
                    digest.plaintext_bytes,
                )
            )
    record = keys.note_copy(release_id, len(stored), sum(f.plaintext_bytes for f in stored))
    log.append(
        {
            **_event_base(STORED_EVENT, record, signer),
            "files": [f.log_json() for f in stored],
            "counts": {"files": record.files, "bytes": record.bytes, "stored_copies": record.copies},
            "message": f"stored at rest for its own key; `genegate release destroy {release_id}` "
            "makes every stored copy unreadable",
        },
        signer,
    )
    return StoredRelease(release_id, release_sha256, target, record.fingerprint, record.copies, tuple(stored))


def open_release(
    release_id: str,
    source: Path,
    out_root: Path,
    keys: ReleaseKeys,
    *,
    log: ShredLog,
    signer: SigningKey,
) -> OpenedRelease:
    """Decrypt the stored copy of release_id found in source into out_root/<release_id>/, checked."""
    check_release_id(release_id)
    secret = keys.secret_key(release_id)  # refused first if the key was destroyed
    record = keys.record(release_id)
    stored = locate_stored(source, release_id)
    names = _stored_names(stored)
    target = _fresh(out_root / release_id)
    with _assembling(target) as work:
        digests = {RELEASE_JSON: decrypt_file(stored / STORED_RELEASE_JSON, work / RELEASE_JSON, [secret])}
        raw = (work / RELEASE_JSON).read_bytes()
        if _identity_of(raw, str(stored / STORED_RELEASE_JSON)) != (release_id, record.release_sha256):
            raise IntegrityError(
                str(stored / STORED_RELEASE_JSON),
                f"its release.json is not release {release_id} with the content its key was made for; "
                "give the stored copy of this release",
            )
        for name in names:
            plain = name.removesuffix(ENCRYPTED_SUFFIX)
            if plain != RELEASE_JSON:
                _make_parent(work / plain, work)
                digests[plain] = decrypt_file(stored / name, work / plain, [secret])
        listed = _check_listed(work, stored, digests)
    log.append(
        {
            **_event_base(OPENED_EVENT, record, signer),
            "counts": {"files": len(listed), "bytes": sum(f.plaintext_bytes for f in listed)},
            "message": "a plaintext copy was restored from a stored copy",
        },
        signer,
    )
    return OpenedRelease(release_id, record.release_sha256, target, listed)


def destroy_release(
    release_id: str,
    keys: ReleaseKeys,
    *,
    log: ShredLog,
    signer: SigningKey,
    now: Clock | None = None,
) -> KeyDestruction:
    """Destroy the release's key (crypto-shredding) and log `release.destroyed` once."""
    result = keys.destroy(release_id, (now or _utc_now)())
    if not result.already or not _destroy_logged(log, release_id):
        record = result.record
        log.append(
            {
                **_event_base(DESTROYED_EVENT, record, signer),
                "counts": {"stored_copies": record.copies, "files": record.files, "bytes": record.bytes},
                "receipt": {"destroyed_at": record.destroyed_at, "key_created_at": record.created_at},
                "message": "release key destroyed: every stored copy is unreadable; " + SHREDDING_LIMIT,
            },
            signer,
        )
    return result


def locate_stored(source: Path, release_id: str) -> Path:
    """The stored copy of release_id: source/<release_id>/ (the --to of store), or source itself."""
    for candidate in (source / release_id, source):
        if (candidate / STORED_RELEASE_JSON).is_file():
            return candidate
    raise EnvelopeError(
        str(source),
        f"no stored copy of release {release_id} here (expected {release_id}/{STORED_RELEASE_JSON}); "
        "give the directory `genegate release store --to` wrote into",
    )


# --- parts ---------------------------------------------------------------------------------


def _identity(path: Path, sha256: str) -> tuple[str, str]:
    """release_id and release_sha256 of the release.json whose SHA-256 release_files read."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReleaseUnreadable(str(path), f"cannot read it ({exc.strerror}); check the path") from exc
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise ReleaseUnreadable(str(path), "it changed while it was read; run the command again")
    release_id, digest = _identity_of(raw, str(path))
    try:
        check_release_id(release_id)
    except KeyStoreError as exc:
        raise ReleaseUnreadable(str(path), f'"release_id" is not usable: {exc}') from None
    return release_id, digest


def _identity_of(raw: bytes, source: str) -> tuple[str, str]:
    """The (release_id, release_sha256) a release.json declares."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ReleaseUnreadable(source, "not JSON; give the release.json `genegate deid` wrote") from exc
    release_id = doc.get("release_id") if isinstance(doc, dict) else None
    digest = doc.get("release_sha256") if isinstance(doc, dict) else None
    if not isinstance(release_id, str) or not isinstance(digest, str) or not _SHA256.match(digest):
        raise ReleaseUnreadable(
            source, 'needs "release_id" and a hex "release_sha256", as `genegate deid` writes'
        )
    return release_id, digest


def _check_listed(work: Path, stored: Path, digests: Mapping[str, EnvelopeDigest]) -> tuple[ReleaseFile, ...]:
    """The files release.json lists, each one stored and decrypted to its listed SHA-256."""
    try:
        listed = release_files(work)
    except ReleaseUnreadable as exc:
        raise IntegrityError(
            str(stored), f"the stored copy is incomplete or altered ({exc.detail}); open another copy"
        ) from None
    extra = sorted(set(digests) - {f.name for f in listed})
    if extra:
        raise IntegrityError(
            str(stored / (extra[0] + ENCRYPTED_SUFFIX)),
            "release.json does not list this file; the stored copy was altered, open another copy",
        )
    for item in listed:
        if digests[item.name].plaintext_sha256 != item.plaintext_sha256:
            raise IntegrityError(
                str(stored / item.delivered_name),
                "it decrypts to content whose SHA-256 differs from release.json; open another copy",
            )
    return listed


def _stored_names(stored: Path) -> list[str]:
    """The stored copy's files, relative and sorted; a stored copy holds only regular .c4gh files."""
    names = []
    for folder, dirs, files in os.walk(stored):
        for entry in [*dirs, *files]:
            path = Path(folder) / entry
            if path.is_symlink() or (entry in files and not entry.endswith(ENCRYPTED_SUFFIX)):
                raise IntegrityError(
                    str(path), "a stored copy holds only .c4gh files; remove this one or open another copy"
                )
        names += [(Path(folder) / f).relative_to(stored).as_posix() for f in files]
    return sorted(names)


def _fresh(target: Path) -> Path:
    if target.exists():
        raise EnvelopeError(str(target), "already exists and is never replaced; choose another directory")
    return target


def _make_parent(path: Path, work: Path) -> None:
    """Create the folders between work and path (mode 0700)."""
    for parent in reversed(path.relative_to(work).parents[:-1]):
        (work / parent).mkdir(mode=0o700, exist_ok=True)


@contextlib.contextmanager
def _assembling(target: Path) -> Iterator[Path]:
    """A hidden sibling of target (mode 0700) renamed to target when the block completes, else removed."""
    work = target.with_name(f".{target.name}.{secrets.token_hex(6)}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(work, 0o700)
    except OSError as exc:
        raise EnvelopeError(str(target), f"cannot create it ({exc.strerror}); check the folder") from exc
    try:
        yield work
        os.rename(work, target)
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise EnvelopeError(
            str(target), f"writing failed ({exc.strerror}); check space and permissions"
        ) from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _event_base(event: str, record: ReleaseKeyRecord, signer: SigningKey) -> dict[str, Any]:
    return {
        "event": event,
        "release_id": record.release_id,
        "release_sha256": record.release_sha256,
        "key_fingerprints": {"release_key": record.fingerprint, "signing": signer.verify_key().fingerprint},
    }


def _destroy_logged(log: ShredLog, release_id: str) -> bool:
    return any(e.get("event") == DESTROYED_EVENT and e.get("release_id") == release_id for e in log.entries())


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
