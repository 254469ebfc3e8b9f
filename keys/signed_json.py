"""JSON documents signed with the lab's Ed25519 key, written atomically.

A signed file is `{"document": {...}, "signature": {"algorithm", "key", "value"}}`; the signature
covers the canonical JSON of the document (sorted keys, no spaces, UTF-8). One file, replaced by
rename, so a crash never leaves a document without its signature. Any edit made outside
genegate, however small, fails verification.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path
from typing import Any

from keys.errors import KeyFormatError, RegistryTampered
from keys.signing import SigningKey, VerifyKey


def canonical(document: dict[str, Any]) -> bytes:
    """The exact bytes a signature covers."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def write_signed(path: Path, document: dict[str, Any], signer: SigningKey, mode: int = 0o600) -> None:
    """Sign document and replace path with it atomically (temporary sibling, then rename)."""
    body = {
        "document": document,
        "signature": {
            "algorithm": "ed25519",
            "key": signer.verify_key().fingerprint,
            "value": base64.b64encode(signer.sign(canonical(document))).decode("ascii"),
        },
    }
    write_atomic(path, (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), mode)


def read_signed(path: Path, verify_key: VerifyKey, what: str) -> dict[str, Any]:
    """The verified document; RegistryTampered if the signature does not hold."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        document = body["document"]
        signature = body["signature"]
        value = base64.b64decode(signature["value"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryTampered(
            f"{path}: the {what} is not a signed genegate document; restore it from a backup"
        ) from exc
    if signature.get("key") != verify_key.fingerprint or not verify_key.verify(canonical(document), value):
        raise RegistryTampered(
            f"{path}: the {what} was changed outside genegate (its signature does not verify with the "
            f"lab signing key {verify_key.fingerprint}); restore it from a backup"
        )
    if not isinstance(document, dict):
        raise KeyFormatError(str(path), f"the {what} document is not an object")
    return document


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write data to a new sibling created with `mode`, fsync it, and rename it over path."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_secret_file(path: Path, data: bytes) -> None:
    """Create a new file with mode 0600 from the start (O_EXCL: never overwrite a key)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
