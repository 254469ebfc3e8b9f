"""Destinations a release is delivered to: a local outbox (`file://`) or S3 (`s3://bucket/prefix`).

Every destination follows one protocol, and in every one the signed delivery manifest, written
last, is the completion marker: a recipient takes as delivered exactly what it lists. Each file is
encrypted straight into the destination (`deliver`: no ciphertext staged in a scratch directory,
never a plaintext copy), verified there, and recorded by a receipt so a re-run of the same
transfer reuses it (`pending`). A run that will change anything first `withdraw`s the published
manifest, so no stale manifest vouches for a half-replaced set, and `publish` writes the new one
after checking every file it lists. The `file://` outbox stages files and renames them into place
at `publish`; S3 has no rename, so files go straight to their final keys (see s3.py).
`open_destination` picks the adapter from the recipient's destination URI and, for S3, checks the
bucket's region before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from keys import Recipient
from transfer.delivery.local import LocalOutbox
from transfer.delivery.manifest import (
    MANIFEST_NAME,
    DeliveredFile,
    DeliveryManifest,
    Encrypt,
    ObjectInfo,
    ReleaseFile,
    read_manifest,
    sign_manifest,
)
from transfer.delivery.plan import DeliveryPlan, check_delivered, plan_delivery
from transfer.delivery.s3 import S3Destination
from transfer.delivery.s3_client import S3Settings
from transfer.errors import DestinationUnusable

__all__ = [
    "MANIFEST_NAME",
    "DeliveredFile",
    "DeliveryManifest",
    "DeliveryPlan",
    "Destination",
    "Encrypt",
    "LocalOutbox",
    "ObjectInfo",
    "ReleaseFile",
    "S3Destination",
    "S3Settings",
    "check_delivered",
    "open_destination",
    "plan_delivery",
    "read_manifest",
    "sign_manifest",
]


class Destination(Protocol):
    """Where one release goes for one recipient."""

    @property
    def uri(self) -> str:
        """Where the release lands (for the summary and the transfer log)."""
        ...

    def existing(self) -> dict[str, ObjectInfo]:
        """The objects at their delivered names, with size and the destination's checksum."""
        ...

    def manifest(self) -> bytes | None:
        """The published delivery manifest, if any."""
        ...

    def withdrawn(self) -> bytes | None:
        """The manifest an unfinished run took down (it still vouches for files left unchanged)."""
        ...

    def pending(self) -> dict[str, DeliveredFile]:
        """Files an interrupted run of this transfer delivered and verified that still match."""
        ...

    def withdraw(self) -> None:
        """Before anything is replaced: take the published manifest down (kept for re-runs)."""
        ...

    def deliver(self, name: str, write: Encrypt, size_hint: int) -> DeliveredFile:
        """Stream what `write` produces to `name`, verify it there, record its receipt."""
        ...

    def publish(self, manifest_bytes: bytes, files: Sequence[DeliveredFile]) -> None:
        """Check every listed file, make them visible, write the manifest last."""
        ...


def open_destination(
    recipient: Recipient,
    release_id: str,
    transfer_id: str,
    *,
    environ: Mapping[str, str] | None = None,
) -> Destination:
    """The adapter for the recipient's destination URI; S3 buckets must be in the declared region."""
    import os

    parsed = urlparse(recipient.destination)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise DestinationUnusable(
                recipient.destination, "a file:// destination must be local (file:///abs/outbox/<rid>)"
            )
        return LocalOutbox(Path(unquote(parsed.path)), release_id, transfer_id)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise DestinationUnusable(recipient.destination, "an s3:// destination needs a bucket")
        if not recipient.region:
            raise DestinationUnusable(
                recipient.destination,
                "an s3:// destination needs the recipient's declared region; set it in the registry",
            )
        settings = S3Settings.from_env(os.environ if environ is None else environ)
        destination = S3Destination(
            parsed.netloc, parsed.path, release_id, transfer_id, region=recipient.region, settings=settings
        )
        destination.check_region(recipient.region)
        return destination
    raise DestinationUnusable(
        recipient.destination, "unsupported destination scheme; use file:///abs/path or s3://bucket/prefix"
    )
