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

import datetime as dt
import json
from pathlib import Path

from keys.errors import KeyFormatError, KeyStoreError
from keys.sealed import SealedFile
from keys.secret import DataKey
from keys.wrap import KeyWrapper

REGISTER_FORMAT = 1
_PURPOSE = "consent-register"
_MAX_ID = 256


class ConsentRegister:
    """The lab's register of consent revocations, in a keystore directory."""

    def __init__(self, home: Path, wrapper: KeyWrapper) -> None:
        self.directory = home / "consent"
        self.path = self.directory / "register.bin"
        self._sealed = SealedFile(
            self.path,
            purpose=_PURPOSE,
            aad=f"genegate-consent|{REGISTER_FORMAT}|{_PURPOSE}".encode(),
            header={"format": REGISTER_FORMAT},
            wrapper=wrapper,
            what="consent register",
            mismatch="is not a consent register of this genegate",
        )

    def exists(self) -> bool:
        """True once a revocation has been recorded."""
        return self.path.is_file()

    def revoke(self, subject_id: str, date: dt.date) -> dt.date:
        """Record that the subject revoked consent on date; return the date the register now holds."""
        subject = _check_subject(subject_id)
        with self._sealed.locked():
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
        with self._sealed.locked():
            _, entries = self._load()
        return entries

    def revoked_on(self, subject_id: str) -> dt.date | None:
        """The date the subject revoked consent, or None."""
        return self.revocations().get(_check_subject(subject_id))

    def _load(self) -> tuple[DataKey, dict[str, dt.date]]:
        key, plain = self._sealed.load()
        if plain is None:
            return key, {}
        try:
            doc = json.loads(plain)
            entries = {str(k): dt.date.fromisoformat(v) for k, v in doc["revocations"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyFormatError(str(self.path), "the consent register's content is malformed") from exc
        return key, entries

    def _store(self, key: DataKey, entries: dict[str, dt.date]) -> None:
        doc = {"revocations": {k: entries[k].isoformat() for k in sorted(entries)}}
        self._sealed.store(key, json.dumps(doc).encode("utf-8"))


def _check_subject(subject_id: str) -> str:
    """The subject id as stored (surrounding blanks removed); refuse empty, overlong or control text."""
    text = subject_id.strip()
    if not text or len(text) > _MAX_ID or not text.isprintable():
        raise KeyStoreError(
            f"a subject id must be 1-{_MAX_ID} printable characters, as in the manifest's subject_id column"
        )
    return text
