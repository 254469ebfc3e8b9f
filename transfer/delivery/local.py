"""The `file://` destination: a local outbox per recipient, made visible by rename.

Layout under the recipient's outbox directory (the registry's `file:///abs/outbox/<rid>`):

    <outbox>/<release_id>/<name>.c4gh                      published encrypted files
    <outbox>/<release_id>/delivery-manifest.json           signed, written last
    <outbox>/<release_id>/.partial/<transfer_id>/...       staging of a transfer in progress

`put` copies into a temporary sibling inside staging and renames it into place, so a staged
file is always whole. `publish` removes the previous manifest, renames every staged file to its
final name and writes the new manifest last (temporary name, then rename): a reader who waits for
the manifest never sees a partial delivery as complete. Errors become DeliveryRejected naming the
outbox path and the OS error, never file content.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from pathlib import Path

from transfer.delivery.manifest import MANIFEST_NAME, ObjectInfo
from transfer.errors import DeliveryMismatch, DeliveryRejected, DestinationUnusable

STAGING = ".partial"
_HASH_CHUNK = 1 << 20


class LocalOutbox:
    """A `file://` destination for one release of one recipient."""

    def __init__(self, outbox: Path, release_id: str, transfer_id: str) -> None:
        if not outbox.is_absolute():
            raise DestinationUnusable(
                str(outbox), "a file:// destination must be an absolute path (file:///abs/outbox/<rid>)"
            )
        self.root = outbox / release_id
        self.staging = self.root / STAGING / transfer_id
        self.uri = self.root.as_uri()

    def existing(self) -> dict[str, ObjectInfo]:
        """The published encrypted files (not the manifest, not staging), with size and SHA-256."""
        return self._scan(self.root, skip_staging=True)

    def staged(self) -> dict[str, ObjectInfo]:
        """The files this transfer staged earlier (each renamed into place whole)."""
        return self._scan(self.staging, skip_staging=False)

    def manifest(self) -> bytes | None:
        """The published manifest's bytes, or None."""
        try:
            return (self.root / MANIFEST_NAME).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._rejected("read the delivery manifest", exc) from exc

    def put(self, name: str, path: Path, sha256: str, size: int) -> None:  # noqa: ARG002 - verify() checks it
        """Copy the encrypted file at `path` into staging as `name` (temporary name, then rename)."""
        target = self.staging / name
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
        try:
            target.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            shutil.copyfile(path, temporary)
            if temporary.stat().st_size != size:
                raise DeliveryMismatch(
                    self.uri, f"{name} changed size while it was staged; run the transfer again"
                )
            os.replace(temporary, target)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise self._rejected(f"stage {name}", exc) from exc
        except DeliveryMismatch:
            temporary.unlink(missing_ok=True)
            raise

    def verify(self, name: str, sha256: str, size: int) -> None:
        """Check the staged copy's size and SHA-256 against what was sent."""
        _check(self.staging / name, sha256, size, self.uri, name)

    def publish(self, manifest_bytes: bytes) -> None:
        """Move every staged file to its final name, then write the manifest last."""
        manifest = self.root / MANIFEST_NAME
        try:
            manifest.unlink(missing_ok=True)
            for name in sorted(self.staged()):
                final = self.root / name
                final.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
                os.replace(self.staging / name, final)
            temporary = self.root / f".{MANIFEST_NAME}.{secrets.token_hex(6)}.part"
            with open(temporary, "xb") as handle:
                handle.write(manifest_bytes)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, manifest)
            shutil.rmtree(self.staging)
            with_parent = self.staging.parent
            if not any(with_parent.iterdir()):
                with_parent.rmdir()
        except OSError as exc:
            raise self._rejected("publish the delivery", exc) from exc

    def _scan(self, top: Path, *, skip_staging: bool) -> dict[str, ObjectInfo]:
        found: dict[str, ObjectInfo] = {}
        if not top.is_dir():
            return found
        try:
            for directory, subdirs, names in os.walk(top):
                here = Path(directory)
                if skip_staging and here == top:
                    subdirs[:] = [d for d in subdirs if d != STAGING]
                for entry in names:
                    if entry.startswith(".") or (here == top and entry == MANIFEST_NAME):
                        continue
                    path = here / entry
                    found[path.relative_to(top).as_posix()] = ObjectInfo(path.stat().st_size, _sha256(path))
        except OSError as exc:
            raise self._rejected("list the outbox", exc) from exc
        return found

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


def _check(path: Path, sha256: str, size: int, uri: str, name: str) -> None:
    try:
        actual_size = path.stat().st_size
        actual = _sha256(path) if actual_size == size else ""
    except FileNotFoundError:
        raise DeliveryMismatch(
            uri, f"{name} is missing after it was staged; run the transfer again"
        ) from None
    except OSError as exc:
        raise DeliveryRejected(uri, f"cannot read back {name} ({exc.strerror}); check the outbox") from exc
    if actual_size != size or actual != sha256:
        raise DeliveryMismatch(
            uri,
            f"{name} holds {actual_size} bytes with another SHA-256 than the {size} bytes sent; "
            "run the transfer again",
        )
