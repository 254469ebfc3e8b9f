"""The delivery manifest and the delivery plan: pure values, no I/O.

A delivery manifest travels with the encrypted files and is the last object written: its presence
is what tells a recipient the delivery is complete. It lists every delivered file with the SHA-256
of its plaintext and of its Crypt4GH ciphertext and their sizes, the release id and digest, the
recipient and its key fingerprint, and is signed with the lab's Ed25519 key. Crypt4GH v1 alone
cannot detect a file cut at a segment boundary or reordered segments; the signed digests can.

The signed form is `{"document": {...}, "signature": {"algorithm", "key", "value"}}` over the
canonical JSON of the document (sorted keys, no spaces, UTF-8), as keys/signed_json.py writes.

`plan_delivery` decides, per release file, whether the copy at the destination can stay (the last
published manifest records the same plaintext SHA-256 for the same recipient key, and the object
there still has the recorded size and ciphertext SHA-256), whether a verified staged copy of an
interrupted run can be reused, or whether it must be encrypted and sent. Crypt4GH output is
randomised, so the plaintext digest is the only stable identity of a delivered file.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keys import SigningKey, VerifyKey
from transfer.errors import DeliveryMismatch

MANIFEST_FORMAT = 1
MANIFEST_KIND = "genegate.delivery-manifest"
MANIFEST_NAME = "delivery-manifest.json"
ENCRYPTED_SUFFIX = ".c4gh"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An object at a destination: its size in bytes and the SHA-256 (hex) of its bytes."""

    size: int
    sha256: str


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

    def to_json(self) -> dict[str, Any]:
        """Manifest form."""
        return {
            "name": self.name,
            "plaintext_sha256": self.plaintext_sha256,
            "ciphertext_sha256": self.ciphertext_sha256,
            "bytes": self.bytes,
            "plaintext_bytes": self.plaintext_bytes,
        }

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
        files = tuple(
            DeliveredFile(
                str(f["name"]),
                _sha(f["plaintext_sha256"]),
                _sha(f["ciphertext_sha256"]),
                int(f["bytes"]),
                int(f["plaintext_bytes"]),
            )
            for f in document["files"]
        )
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


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    """Per release file: kept in place, reused from staging, or to send."""

    kept: tuple[DeliveredFile, ...]
    reused: tuple[DeliveredFile, ...]
    to_send: tuple[ReleaseFile, ...]

    @property
    def unchanged(self) -> bool:
        """Everything is already published as recorded: nothing to send, nothing to publish."""
        return not self.reused and not self.to_send


def plan_delivery(
    files: Sequence[ReleaseFile],
    previous: DeliveryManifest | None,
    recipient_key: str,
    existing: Mapping[str, ObjectInfo],
    staged: Mapping[str, ObjectInfo],
) -> DeliveryPlan:
    """What a delivery must do, by plaintext digest (ciphertexts differ on every encryption).

    `existing` are the published objects, `staged` the verified objects an interrupted run left
    in this transfer's staging area (which is keyed by content, so they encrypt these files).
    """
    usable = previous if previous is not None and previous.recipient_key == recipient_key else None
    kept: list[DeliveredFile] = []
    reused: list[DeliveredFile] = []
    to_send: list[ReleaseFile] = []
    for item in files:
        name = item.delivered_name
        entry = usable.file(name) if usable is not None else None
        there = existing.get(name)
        if (
            entry is not None
            and entry.plaintext_sha256 == item.plaintext_sha256
            and there == ObjectInfo(entry.bytes, entry.ciphertext_sha256)
        ):
            kept.append(entry)
        elif (held := staged.get(name)) is not None:
            reused.append(
                DeliveredFile(name, item.plaintext_sha256, held.sha256, held.size, item.plaintext_bytes)
            )
        else:
            to_send.append(item)
    return DeliveryPlan(tuple(kept), tuple(reused), tuple(to_send))
