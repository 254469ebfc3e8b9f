"""The delivery manifest and the values it lists: pure, no I/O.

A delivery manifest travels with the encrypted files and is the last object written: its presence
is what tells a recipient the delivery is complete. It lists every delivered file with the SHA-256
of its plaintext and of its Crypt4GH ciphertext and their sizes, the release id and digest, the
recipient and its key fingerprint, and is signed with the lab's Ed25519 key. Crypt4GH v1 alone
cannot detect a file cut at a segment boundary or reordered segments; the signed digests can.

The signed form is `{"document": {...}, "signature": {"algorithm", "key", "value"}}` over the
canonical JSON of the document (sorted keys, no spaces, UTF-8), as keys/signed_json.py writes.

Each entry also records the destination's own checksum of the stored object (`checksum`): the
ciphertext SHA-256 in hex for `file://`; for `s3://`, S3's ChecksumSHA256 in base64 — of the
bytes for a single PUT, of the concatenated part SHA-256s for a multipart upload (S3 shows that
one with a `-<parts>` suffix, which is not recorded). A re-run, and a recipient, can then check an
object against a signed value with a HeadObject instead of reading it. Manifests written before
that field existed read with it empty (an S3 delivery is then sent once more).

The same entries serve as receipts: a destination records each file it delivered and verified,
so that a re-run of an interrupted transfer can reuse it (`pending` in the destination protocol).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from keys import SigningKey, VerifyKey
from transfer.errors import DeliveryMismatch
from transfer.segments import Writable

MANIFEST_FORMAT = 1
MANIFEST_KIND = "genegate.delivery-manifest"
MANIFEST_NAME = "delivery-manifest.json"
ENCRYPTED_SUFFIX = ".c4gh"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An object at a destination: its size in bytes and the destination's checksum of its bytes
    (`file://`: the SHA-256 in hex; `s3://`: the server's ChecksumSHA256)."""

    size: int
    checksum: str


@dataclass(frozen=True, slots=True)
class ReleaseFile:
    """One file of a release to deliver: release-relative name, plaintext digest and size."""

    name: str
    plaintext_sha256: str
    plaintext_bytes: int

    @property
    def delivered_name(self) -> str:
        """The name of its encrypted copy at the destination."""
        return self.name + ENCRYPTED_SUFFIX


@dataclass(frozen=True, slots=True)
class DeliveredFile:
    """One encrypted file of a delivery, as the manifest and the transfer log record it."""

    name: str
    plaintext_sha256: str
    ciphertext_sha256: str
    bytes: int
    plaintext_bytes: int
    checksum: str = ""  # the destination's checksum of the stored object ("" in older manifests)

    @property
    def stored(self) -> ObjectInfo:
        """What the destination should report for this file."""
        return ObjectInfo(self.bytes, self.checksum or self.ciphertext_sha256)

    def to_json(self) -> dict[str, Any]:
        """Manifest (and receipt) form; `checksum` only when a destination reported one."""
        doc: dict[str, Any] = {
            "name": self.name,
            "plaintext_sha256": self.plaintext_sha256,
            "ciphertext_sha256": self.ciphertext_sha256,
            "bytes": self.bytes,
            "plaintext_bytes": self.plaintext_bytes,
        }
        if self.checksum:
            doc["checksum"] = self.checksum
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> DeliveredFile:
        """Parse the manifest form; KeyError, TypeError or ValueError when a field is missing or bad."""
        checksum = doc.get("checksum", "")
        if not isinstance(checksum, str):
            raise TypeError("checksum")
        return cls(
            str(doc["name"]),
            _sha(doc["plaintext_sha256"]),
            _sha(doc["ciphertext_sha256"]),
            int(doc["bytes"]),
            int(doc["plaintext_bytes"]),
            checksum,
        )

    def log_json(self) -> dict[str, Any]:
        """The transfer log's form (SPEC.md 7: name, plaintext and ciphertext sha256, bytes)."""
        return {
            "name": self.name,
            "plaintext_sha256": self.plaintext_sha256,
            "ciphertext_sha256": self.ciphertext_sha256,
            "bytes": self.bytes,
        }


@dataclass(frozen=True, slots=True)
class DeliveryManifest:
    """What a delivery holds; signed by the lab and published last."""

    release_id: str
    release_sha256: str
    recipient_id: str
    recipient_key: str
    transfer_id: str
    created_at: str
    files: tuple[DeliveredFile, ...]

    def to_json(self) -> dict[str, Any]:
        """The signed document."""
        return {
            "format": MANIFEST_FORMAT,
            "kind": MANIFEST_KIND,
            "encryption": "crypt4gh-v1",
            "release_id": self.release_id,
            "release_sha256": self.release_sha256,
            "recipient_id": self.recipient_id,
            "recipient_key": self.recipient_key,
            "transfer_id": self.transfer_id,
            "created_at": self.created_at,
            "files": [f.to_json() for f in sorted(self.files, key=lambda f: f.name)],
        }

    def file(self, name: str) -> DeliveredFile | None:
        """The entry for a delivered name, if listed."""
        return next((f for f in self.files if f.name == name), None)


Encrypt = Callable[[Writable], DeliveredFile]
"""What a destination calls to produce one file: encrypt into the stream, return its entry."""


def canonical(document: Mapping[str, Any]) -> bytes:
    """The exact bytes a signature covers."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_manifest(manifest: DeliveryManifest, signer: SigningKey) -> bytes:
    """The signed manifest file's bytes."""
    document = manifest.to_json()
    body = {
        "document": document,
        "signature": {
            "algorithm": "ed25519",
            "key": signer.verify_key().fingerprint,
            "value": base64.b64encode(signer.sign(canonical(document))).decode("ascii"),
        },
    }
    return (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def read_manifest(data: bytes, verify_key: VerifyKey, source: str) -> DeliveryManifest:
    """Parse and verify a signed manifest; DeliveryMismatch when it is not one the lab signed."""
    try:
        body = json.loads(data.decode("utf-8"))
        document, signature = body["document"], body["signature"]
        value = base64.b64decode(signature["value"], validate=True)
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise DeliveryMismatch(source, "the delivery manifest is not a signed genegate document") from exc
    if signature.get("key") != verify_key.fingerprint or not verify_key.verify(canonical(document), value):
        raise DeliveryMismatch(
            source, "the delivery manifest's signature does not verify with the lab signing key"
        )
    try:
        if document["format"] != MANIFEST_FORMAT or document["kind"] != MANIFEST_KIND:
            raise ValueError("format")
        files = tuple(DeliveredFile.from_json(f) for f in document["files"])
        return DeliveryManifest(
            release_id=str(document["release_id"]),
            release_sha256=_sha(document["release_sha256"]),
            recipient_id=str(document["recipient_id"]),
            recipient_key=str(document["recipient_key"]),
            transfer_id=str(document["transfer_id"]),
            created_at=str(document["created_at"]),
            files=files,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DeliveryMismatch(source, "the delivery manifest lacks a field genegate writes") from exc


def _sha(value: object) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise ValueError("sha256")
    return value
