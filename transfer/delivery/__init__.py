"""Destinations a release is delivered to: a local outbox (`file://`) or S3 (`s3://bucket/prefix`).

Every destination follows one protocol. Files are staged under `.partial/<transfer_id>/`, each
verified after upload, and made visible only by `publish`, which moves the staged files to their
final names and writes the signed delivery manifest last. `open_destination` picks the adapter
from the recipient's destination URI and, for S3, checks the bucket's region before anything is
sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from keys import Recipient
from transfer.delivery.local import LocalOutbox
from transfer.delivery.manifest import (
    MANIFEST_NAME,
    DeliveredFile,
    DeliveryManifest,
    DeliveryPlan,
    ObjectInfo,
    ReleaseFile,
    plan_delivery,
    read_manifest,
    sign_manifest,
)
from transfer.delivery.s3 import S3Destination, S3Settings
from transfer.errors import DestinationUnusable

__all__ = [
    "MANIFEST_NAME",
    "DeliveredFile",
    "DeliveryManifest",
    "DeliveryPlan",
    "Destination",
    "LocalOutbox",
    "ObjectInfo",
    "ReleaseFile",
    "S3Destination",
    "S3Settings",
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
        """The published encrypted files, by delivered name."""
        ...

    def staged(self) -> dict[str, ObjectInfo]:
        """Verified files an interrupted run of this transfer left in staging."""
        ...

    def manifest(self) -> bytes | None:
        """The published delivery manifest, if any."""
        ...

    def put(self, name: str, path: Path, sha256: str, size: int) -> None:
        """Stage the encrypted file at `path` as `name`."""
        ...

    def verify(self, name: str, sha256: str, size: int) -> None:
        """Raise DeliveryMismatch unless the staged `name` has this size and SHA-256."""
        ...

    def publish(self, manifest_bytes: bytes) -> None:
        """Make the staged files visible, then write the manifest last."""
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
