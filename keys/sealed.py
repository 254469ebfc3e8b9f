"""Sealed files: lab-side data encrypted at rest under a data key that the lab key or AWS KMS wraps.

The pseudonym vault (keys/vault.py) and the consent register (keys/consent_register.py) hold
identifiers, so both are stored the same way:

    <name>          one JSON line (the header fields below, the wrapped data key, the nonce), a
                    newline, then the payload sealed with ChaCha20-Poly1305 (associated data
                    binds format and purpose, so one sealed file cannot stand in for another)
    <name>.lock     the lock that serialises read-modify-write across processes

Every write replaces the file atomically (keys.signed_json.write_atomic, mode 0600). A file that
is not a sealed file, belongs to another purpose or does not authenticate raises, naming the file
and the fix, never its content.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from keys.errors import KeyFormatError, KeyStoreError
from keys.secret import DataKey
from keys.signed_json import write_atomic
from keys.wrap import KeyWrapper, WrappedKey


class SealedFile:
    """One sealed file: load and store its payload under its lock."""

    def __init__(
        self,
        path: Path,
        *,
        purpose: str,
        aad: bytes,
        header: Mapping[str, Any],
        wrapper: KeyWrapper,
        what: str,
        mismatch: str,
    ) -> None:
        """header: the fields every file of this kind carries and must match (format, domain...);
        what: the kind's name in messages ("vault file"); mismatch: the message for a file of the
        right form whose header or purpose is another's."""
        self.path = path
        self._purpose = purpose
        self._aad = aad
        self._header = dict(header)
        self._wrapper = wrapper
        self._what = what
        self._mismatch = mismatch
        self._wrapped: WrappedKey | None = None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the file's lock (exclusive, across processes) for a read-modify-write."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.stem + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def load(self) -> tuple[DataKey, bytes | None]:
        """The data key and the payload; a fresh key and None when the file does not exist yet."""
        if not self.path.exists():
            key = DataKey.generate()
            self._wrapped = self._wrapper.wrap(key, self._purpose)
            return key, None
        try:
            head, _, sealed = self.path.read_bytes().partition(b"\n")
            body = json.loads(head)
            wrapped = WrappedKey.from_json(body["wrapped_key"])
            nonce = base64.b64decode(body["nonce"])
            fields = {k: body[k] for k in self._header}
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyFormatError(
                str(self.path), f"not a genegate {self._what}; restore it from a backup"
            ) from exc
        if fields != self._header or wrapped.purpose != self._purpose:
            raise KeyStoreError(f"{self.path} {self._mismatch}; restore the right file")
        key = self._wrapper.unwrap(wrapped)
        try:
            plain = ChaCha20Poly1305(key.reveal()).decrypt(nonce, sealed, self._aad)
        except InvalidTag as exc:
            raise KeyStoreError(
                f"{self.path} does not authenticate: it was altered; restore it from a backup"
            ) from exc
        self._wrapped = wrapped
        return key, plain

    def store(self, key: DataKey, payload: bytes) -> None:
        """Seal payload under key (whose wrapping load() read or made) and replace the file."""
        if self._wrapped is None:
            raise KeyStoreError(f"{self.path}: load before store (the data key's wrapping is not known)")
        nonce = os.urandom(12)
        sealed = ChaCha20Poly1305(key.reveal()).encrypt(nonce, payload, self._aad)
        head = {
            **self._header,
            "wrapped_key": self._wrapped.to_json(),
            "nonce": base64.b64encode(nonce).decode("ascii"),
        }
        write_atomic(self.path, json.dumps(head).encode("utf-8") + b"\n" + sealed, mode=0o600)
