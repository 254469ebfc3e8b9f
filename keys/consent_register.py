"""The consent register: which subjects have revoked consent, and since when.

CGIPA § 56.181 and GDPR Art 7(3) let a subject withdraw consent at any time; the lab must then
exclude the subject from every new release (deid reads `revocations()`) and stop any later
transfer of an older release that holds the subject (the transfer gate receives the revoked
subjects' vault codes as a fact). Subject ids are identifiers, so the register is encrypted at
rest like the pseudonym vault (keys/vault.py):

    consent/register.bin    one JSON line (format, the data key wrapped by the lab key or AWS
                            KMS, nonce), a newline, then the register sealed with
                            ChaCha20-Poly1305 (associated data: format and purpose)
    consent/register.lock   the lock that serialises read-revoke-write across processes

Every write replaces the file atomically; two concurrent revocations both land. A revocation is
never removed; revoking again keeps the earliest date (the conservative reading). Nothing here
logs or raises with a subject id in its message.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from keys.errors import KeyFormatError, KeyStoreError
from keys.secret import DataKey
from keys.signed_json import write_atomic
from keys.wrap import KeyWrapper, WrappedKey

REGISTER_FORMAT = 1
_PURPOSE = "consent-register"
_MAX_ID = 256


class ConsentRegister:
    """The lab's register of consent revocations, in a keystore directory."""

    def __init__(self, home: Path, wrapper: KeyWrapper) -> None:
        self.directory = home / "consent"
        self.path = self.directory / "register.bin"
        self._wrapper = wrapper
        self._wrapped: WrappedKey | None = None

    @property
    def _aad(self) -> bytes:
        return f"genegate-consent|{REGISTER_FORMAT}|{_PURPOSE}".encode()

    def exists(self) -> bool:
        """True once a revocation has been recorded."""
        return self.path.is_file()

    def revoke(self, subject_id: str, date: dt.date) -> dt.date:
        """Record that the subject revoked consent on date; return the date the register now holds."""
        subject = _check_subject(subject_id)
        with self._locked():
            key, entries = self._load()
            held = entries.get(subject)
            if held is not None and held <= date:
                return held
            entries[subject] = date
            self._store(key, entries)
        return date

    def revocations(self) -> dict[str, dt.date]:
        """Every recorded revocation: subject id -> date (empty when nothing was revoked)."""
        if not self.exists():
            return {}
        with self._locked():
            _, entries = self._load()
        return entries

    def revoked_on(self, subject_id: str) -> dt.date | None:
        """The date the subject revoked consent, or None."""
        return self.revocations().get(_check_subject(subject_id))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.directory / "register.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _load(self) -> tuple[DataKey, dict[str, dt.date]]:
        if not self.path.exists():
            key = DataKey.generate()
            self._wrapped = self._wrapper.wrap(key, _PURPOSE)
            return key, {}
        try:
            head, _, sealed = self.path.read_bytes().partition(b"\n")
            body = json.loads(head)
            wrapped = WrappedKey.from_json(body["wrapped_key"])
            nonce = base64.b64decode(body["nonce"])
            fmt = body["format"]
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyFormatError(
                str(self.path), "not a genegate consent register; restore it from a backup"
            ) from exc
        if fmt != REGISTER_FORMAT or wrapped.purpose != _PURPOSE:
            raise KeyStoreError(
                f"{self.path} is not a consent register of this genegate; restore the right file"
            )
        key = self._wrapper.unwrap(wrapped)
        try:
            plain = ChaCha20Poly1305(key.reveal()).decrypt(nonce, sealed, self._aad)
        except InvalidTag as exc:
            raise KeyStoreError(
                f"{self.path} does not authenticate: it was altered; restore it from a backup"
            ) from exc
        self._wrapped = wrapped
        try:
            doc = json.loads(plain)
            entries = {str(k): dt.date.fromisoformat(v) for k, v in doc["revocations"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyFormatError(str(self.path), "the consent register's content is malformed") from exc
        return key, entries

    def _store(self, key: DataKey, entries: dict[str, dt.date]) -> None:
        assert self._wrapped is not None  # _load always ran first, under the same lock
        doc = {"revocations": {k: entries[k].isoformat() for k in sorted(entries)}}
        nonce = os.urandom(12)
        sealed = ChaCha20Poly1305(key.reveal()).encrypt(nonce, json.dumps(doc).encode("utf-8"), self._aad)
        head = {
            "format": REGISTER_FORMAT,
            "wrapped_key": self._wrapped.to_json(),
            "nonce": base64.b64encode(nonce).decode("ascii"),
        }
        write_atomic(self.path, json.dumps(head).encode("utf-8") + b"\n" + sealed, mode=0o600)


def _check_subject(subject_id: str) -> str:
    """The subject id as stored (surrounding blanks removed); refuse empty, overlong or control text."""
    text = subject_id.strip()
    if not text or len(text) > _MAX_ID or not text.isprintable():
        raise KeyStoreError(
            f"a subject id must be 1-{_MAX_ID} printable characters, as in the manifest's subject_id column"
        )
    return text
