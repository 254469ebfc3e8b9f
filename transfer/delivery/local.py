"""The `file://` destination: a local outbox per recipient, made visible by rename.

Layout under the recipient's outbox directory (the registry's `file:///abs/outbox/<rid>`):

    <outbox>/<release_id>/<name>.c4gh                                   published encrypted files
    <outbox>/<release_id>/delivery-manifest.json                        signed, written last
    <outbox>/<release_id>/.partial/<transfer_id>/files/<name>.c4gh      staged by a transfer
    <outbox>/<release_id>/.partial/<transfer_id>/receipts/<name>.json   what it staged and verified
    <outbox>/<release_id>/.partial/withdrawn-manifest.json              set aside while publishing

`deliver` encrypts straight into a temporary file inside staging (never a plaintext copy, no second
copy of the ciphertext), renames it into place when whole, reads it back to check its size and
SHA-256, and writes its receipt. Nothing changes at the published names until `publish`, which
sets the manifest aside, renames every staged file to its final name, checks every listed file's
size, and writes the new manifest last (temporary name, then rename): a reader who waits for the
manifest never sees a partial delivery as complete. A crash inside `publish` leaves the set-aside
manifest and the receipts, so the re-run reuses what was renamed already. Errors become
DeliveryRejected naming the outbox path and the OS error, never file content.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from transfer.delivery.manifest import MANIFEST_NAME, DeliveredFile, Encrypt, ObjectInfo
from transfer.errors import DeliveryMismatch, DeliveryRejected, DestinationUnusable

STAGING = ".partial"
WITHDRAWN = "withdrawn-manifest.json"
_HASH_CHUNK = 1 << 20


class LocalOutbox:
    """A `file://` destination for one release of one recipient."""

    def __init__(self, outbox: Path, release_id: str, transfer_id: str) -> None:
        if not outbox.is_absolute():
            raise DestinationUnusable(
                str(outbox), "a file:// destination must be an absolute path (file:///abs/outbox/<rid>)"
            )
        self.root = outbox / release_id
        self.sender = self.root / STAGING
        self.staging = self.sender / transfer_id / "files"
        self.receipts = self.sender / transfer_id / "receipts"
        self.uri = self.root.as_uri()

    def existing(self) -> dict[str, ObjectInfo]:
        """The published encrypted files (not the manifest, not staging), with size and SHA-256."""
        found: dict[str, ObjectInfo] = {}
        if not self.root.is_dir():
            return found
        try:
            for directory, subdirs, names in os.walk(self.root):
                here = Path(directory)
                if here == self.root:
                    subdirs[:] = [d for d in subdirs if d != STAGING]
                for entry in names:
                    if entry.startswith(".") or (here == self.root and entry == MANIFEST_NAME):
                        continue
                    path = here / entry
                    found[path.relative_to(self.root).as_posix()] = ObjectInfo(
                        path.stat().st_size, _sha256(path)
                    )
        except OSError as exc:
            raise self._rejected("list the outbox", exc) from exc
        return found

    def manifest(self) -> bytes | None:
        """The published manifest's bytes, or None."""
        return self._read(self.root / MANIFEST_NAME)

    def withdrawn(self) -> bytes | None:
        """The manifest an interrupted publish set aside, or None."""
        return self._read(self.sender / WITHDRAWN)

    def pending(self) -> dict[str, DeliveredFile]:
        """Files this transfer staged and verified (or an interrupted publish renamed) that still match."""
        found: dict[str, DeliveredFile] = {}
        if not self.receipts.is_dir():
            return found
        try:
            for path in self.receipts.rglob("*.json"):
                try:
                    entry = DeliveredFile.from_json(json.loads(path.read_bytes()))
                except (ValueError, KeyError, TypeError):
                    continue  # not a receipt we wrote: the file is sent again
                if (self.receipts / f"{entry.name}.json") != path:
                    continue
                for copy in (self.staging / entry.name, self.root / entry.name):
                    if _info(copy) == entry.stored:
                        found[entry.name] = entry
                        break
        except OSError as exc:
            raise self._rejected("read the staging area", exc) from exc
        return found

    def withdraw(self) -> None:
        """Nothing to do before staging: published names change only in `publish`."""

    def deliver(self, name: str, write: Encrypt, size_hint: int) -> DeliveredFile:  # noqa: ARG002
        """Encrypt into staging (temporary name, then rename), read it back, write its receipt."""
        target = self.staging / name
        with self._staged(target) as handle:
            entry = write(handle)
        if entry.name != name:
            raise DeliveryMismatch(self.uri, f"{name} was staged under another name; run the transfer again")
        delivered = replace(entry, checksum=entry.ciphertext_sha256)
        if _info(target) != delivered.stored:
            raise DeliveryMismatch(
                self.uri,
                f"{name}: the staged copy's size or SHA-256 differs from what was written; "
                "run the transfer again",
            )
        receipt = self.receipts / f"{name}.json"
        with self._staged(receipt) as handle:
            handle.write(json.dumps(delivered.to_json(), sort_keys=True).encode("utf-8"))
        return delivered

    def publish(self, manifest_bytes: bytes, files: Sequence[DeliveredFile]) -> None:
        """Set the manifest aside, rename staged files into place, check sizes, write the manifest last."""
        manifest = self.root / MANIFEST_NAME
        try:
            self.sender.mkdir(mode=0o750, parents=True, exist_ok=True)
            if manifest.exists():
                os.replace(manifest, self.sender / WITHDRAWN)
            for entry in files:
                staged, final = self.staging / entry.name, self.root / entry.name
                if staged.exists():
                    final.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
                    os.replace(staged, final)
                if final.stat().st_size != entry.bytes:
                    raise DeliveryMismatch(
                        self.uri, f"{entry.name} changed size before publication; run the transfer again"
                    )
            with self._staged(manifest) as handle:
                handle.write(manifest_bytes)
                os.fsync(handle.fileno())
            shutil.rmtree(self.sender)
        except FileNotFoundError as exc:
            raise DeliveryMismatch(
                self.uri, "a file listed for publication is missing; run the transfer again"
            ) from exc
        except OSError as exc:
            raise self._rejected("publish the delivery", exc) from exc

    @contextmanager
    def _staged(self, target: Path) -> Iterator[BinaryIO]:
        """A new temporary sibling of `target` (O_EXCL, 0644), renamed over it when the block completes."""
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
        try:
            target.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise self._rejected(f"stage {target.name}", exc) from exc
        try:
            with open(fd, "wb", buffering=0) as handle:
                yield handle
            os.replace(temporary, target)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise self._rejected(f"stage {target.name}", exc) from exc
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def _read(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._rejected("read the delivery manifest", exc) from exc

    def _rejected(self, what: str, exc: OSError) -> DeliveryRejected:
        return DeliveryRejected(
            self.uri, f"cannot {what} ({exc.strerror or type(exc).__name__}); check the outbox"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _info(path: Path) -> ObjectInfo | None:
    """Size and SHA-256 of a file, or None when it is absent."""
    try:
        return ObjectInfo(path.stat().st_size, _sha256(path))
    except FileNotFoundError:
        return None
