"""The `s3://bucket/prefix` destination: streamed to the final keys, verified, the manifest last.

Layout, for one release of one recipient:

    <prefix>/<release_id>/<name>.c4gh                          the encrypted files
    <prefix>/<release_id>/delivery-manifest.json               signed, written last
    <prefix>/<release_id>/.partial/<transfer_id>/<name>.json   receipts of an unfinished transfer
    <prefix>/<release_id>/.partial/withdrawn-manifest.json     the manifest an unfinished run withdrew

The delivery manifest is the completion marker. Objects are uploaded straight to their final keys
(no staging copy: S3 has no rename, and the server-side copy from a staging prefix that an earlier
version made at publish wrote every byte twice, which with the extra read for checksums kept the
transfer at 1.4-1.7x a plain upload), so while a transfer runs a bucket listing may show objects
that no manifest vouches for yet. No object is ever seen half-written: a PUT, and a multipart
upload once completed, appear whole or not at all. A
recipient takes as delivered exactly the files the signed manifest lists, with the size and
checksum it records; with no manifest there is no delivery. To keep that true across re-runs, a
run that will replace or add anything first withdraws the published manifest (`withdraw`: it is
moved under `.partial/` before the first upload), so a stale manifest never vouches for a
half-replaced set; the new one is written by `publish` after every file it lists has been checked
again with HeadObject.

Checksums are compared and recorded in their bare base64 form: S3 shows a multipart upload's
composite checksum with a `-<parts>` suffix (and moto's HeadObject without it), which is dropped.

Each file is encrypted straight into the upload (s3_upload.ObjectUpload: per-part SHA-256 checksums,
parts four at a time, aborted on any error); after it completes, HeadObject with
ChecksumMode=ENABLED must report the size and the checksum computed here from the bytes sent, and
only then is its receipt written: the sender's record (its DeliveredFile) that lets a re-run of the
same transfer reuse the file instead of sending it again (`pending`, which first aborts any
multipart upload a crash left under the release). `publish` removes `.partial/` once the manifest
is written. Before any upload, GetBucketLocation must equal the recipient's declared region.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace

from transfer.delivery.manifest import MANIFEST_NAME, DeliveredFile, Encrypt, ObjectInfo
from transfer.delivery.s3_client import S3Client, S3Settings
from transfer.delivery.s3_upload import ObjectUpload, b64, part_size_for
from transfer.errors import DeliveryMismatch

STAGING = ".partial"
WITHDRAWN = "withdrawn-manifest.json"
RECEIPT_SUFFIX = ".json"


class S3Destination:
    """An `s3://bucket/prefix` destination for one release of one recipient."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        release_id: str,
        transfer_id: str,
        *,
        region: str,
        settings: S3Settings,
    ) -> None:
        base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.root = f"{base}{release_id}/"
        self.sender = f"{self.root}{STAGING}/"
        self.receipts = f"{self.sender}{transfer_id}/"
        self.uri = f"s3://{bucket}/{self.root}"
        self.s3 = S3Client(bucket, settings.region or region, settings)

    def check_region(self, declared: str) -> None:
        """Refuse (before any upload) a bucket whose region is not the recipient's declared one."""
        self.s3.check_region(declared)

    def existing(self) -> dict[str, ObjectInfo]:
        """The objects at delivered names (not the manifest, not `.partial/`): size and S3 checksum."""
        found: dict[str, ObjectInfo] = {}
        for key in self.s3.keys(self.root):
            name = key[len(self.root) :]
            if name != MANIFEST_NAME and not key.startswith(self.sender):
                info = self._stored(key)
                if info is not None:
                    found[name] = info
        return found

    def manifest(self) -> bytes | None:
        """The published manifest's bytes, or None."""
        return self.s3.get(self.root + MANIFEST_NAME)

    def withdrawn(self) -> bytes | None:
        """The manifest an unfinished run withdrew (and so still vouches for what is unchanged), or None."""
        return self.s3.get(self.sender + WITHDRAWN)

    def pending(self) -> dict[str, DeliveredFile]:
        """Files an interrupted run of this transfer delivered and verified, whose objects still match.

        Multipart uploads left unfinished under the release (a crash, a failed abort) are aborted first.
        """
        self.s3.abort_unfinished(self.root)
        found: dict[str, DeliveredFile] = {}
        for key in self.s3.keys(self.receipts):
            data = self.s3.get(key)
            try:
                entry = DeliveredFile.from_json(json.loads(data or b""))
            except (ValueError, KeyError, TypeError):
                continue  # not a receipt we wrote: send the file again
            named = entry.name + RECEIPT_SUFFIX == key[len(self.receipts) :]
            if named and entry.checksum and self._stored(self.root + entry.name) == entry.stored:
                found[entry.name] = entry
        return found

    def withdraw(self) -> None:
        """Before anything is replaced: move the published manifest under `.partial/` (kept for re-runs)."""
        key = self.root + MANIFEST_NAME
        data = self.s3.get(key)
        if data is None:
            return
        self._put_small(self.sender + WITHDRAWN, data, "application/json")
        self.s3.call("DeleteObject", key, Key=key)

    def deliver(self, name: str, write: Encrypt, size_hint: int) -> DeliveredFile:
        """Stream `write`'s output to `name`, verify it with HeadObject, write its receipt."""
        key = self.root + name
        part_size = part_size_for(size_hint, self.s3.settings.part_size)
        with ObjectUpload(self.s3, key, part_size) as upload:
            entry = write(upload)
            checksum = upload.finish()
        if (entry.name, entry.bytes) != (name, upload.bytes):
            raise DeliveryMismatch(
                self.uri,
                f"{name}: the encryption counted other bytes than were sent; run the transfer again",
            )
        delivered = replace(entry, checksum=_bare(checksum))
        self.verify(delivered)
        receipt = json.dumps(delivered.to_json(), sort_keys=True).encode("utf-8")
        self._put_small(self.receipts + name + RECEIPT_SUFFIX, receipt, "application/json")
        return delivered

    def verify(self, entry: DeliveredFile) -> None:
        """HeadObject: the object must have the entry's size and S3 checksum, else DeliveryMismatch."""
        stored = self._stored(self.root + entry.name)
        if stored is None:
            raise DeliveryMismatch(self.uri, f"{entry.name} is missing after upload; run the transfer again")
        if stored != entry.stored:
            raise DeliveryMismatch(
                self.uri,
                f"{entry.name}: the stored object's size or SHA-256 checksum differs from what was sent; "
                "run the transfer again",
            )

    def publish(self, manifest_bytes: bytes, files: Sequence[DeliveredFile]) -> None:
        """Check every listed object again, write the manifest last, then remove `.partial/`."""
        for entry in files:
            self.verify(entry)
        self._put_small(self.root + MANIFEST_NAME, manifest_bytes, "application/json")
        for key in self.s3.keys(self.sender):
            self.s3.call("DeleteObject", key, Key=key)

    def _stored(self, key: str) -> ObjectInfo | None:
        head = self.s3.head(key)
        if head is None:
            return None
        return ObjectInfo(int(head.get("ContentLength", -1)), _bare(str(head.get("ChecksumSHA256") or "")))

    def _put_small(self, key: str, data: bytes, content_type: str) -> None:
        self.s3.call(
            "PutObject",
            key,
            Key=key,
            Body=data,
            ContentType=content_type,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=b64(hashlib.sha256(data).digest()),
            **self.s3.settings.sse(),
        )


def _bare(checksum: str) -> str:
    """A checksum without the `-<parts>` suffix S3 adds to a composite value (moto's HEAD omits it)."""
    return checksum.split("-", maxsplit=1)[0]
