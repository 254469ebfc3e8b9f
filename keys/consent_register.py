"""The consent register: revocations and deletion requests, with their dates and their 30 days.

CGIPA § 56.181 and GDPR Art 7(3) let a subject withdraw consent at any time; GDPR Art 17 and
CGIPA let a subject ask for their data to be deleted. The lab must then exclude the subject from
every new release (deid reads `revocations()`, which holds deletion requests too: a subject who
asked for deletion has withdrawn consent), stop any later transfer of an older release that holds
the subject (the transfer gate receives the subjects' vault codes as a fact) and destroy the
biological sample within REQUEST_DAYS (30) days. Subject ids are identifiers, so the register is
encrypted at rest like the pseudonym vault (keys/vault.py):

    consent/register.bin    one JSON line (format, the data key wrapped by the lab key or AWS
                            KMS, nonce), a newline, then the register sealed with
                            ChaCha20-Poly1305 (associated data: format and purpose)
    consent/register.lock   the lock that serialises read-modify-write across processes

The sealed content is JSON. Version 1 held `{"revocations": {id: date}}`; version 2 holds
`{"version": 2, "revocations": {id: {"on", "closed_on"}}, "deletions": {id: {"on", "closed_on",
"sample", "releases"}}}`. Version 1 is read as it is and rewritten as version 2 on the next write.
A deletion records the releases that held the subject when it was made (release ids, vault
domains and recipients: never a code), so the lab can follow up the recipients after the vault
no longer knows the subject.

Every write replaces the file atomically; two concurrent writers both land. An entry is never
removed; recording again keeps the earliest date (the conservative reading), and `close` marks
the sample destroyed (the request leaves `pending`). `erase_subject` is the whole deletion: the
request recorded first (later releases exclude the subject at once), then the subject forgotten
in every vault domain. Nothing here logs or raises with a subject id in its message.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keys.errors import KeyFormatError, KeyStoreError
from keys.sealed import SealedFile
from keys.secret import DataKey
from keys.vault import Forgotten, Vault, vault_domains
from keys.wrap import KeyWrapper

REGISTER_FORMAT = 1
CONTENT_VERSION = 2
REQUEST_DAYS = 30  # CGIPA: honour a revocation or deletion (destroy the sample) within 30 days
SAMPLE_FLAGGED = "flagged for destruction"
_PURPOSE = "consent-register"
_MAX_ID = 256


class RequestKind(enum.StrEnum):
    """What a subject asked for."""

    REVOCATION = "revocation"
    DELETION = "deletion"


@dataclass(frozen=True, slots=True)
class ReleaseImpact:
    """A release that holds a subject, and the recipients it was delivered to."""

    release_id: str
    vault_domain: str
    recipients: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """Register and CLI form."""
        return {
            "release_id": self.release_id,
            "vault_domain": self.vault_domain,
            "recipients": list(self.recipients),
        }


@dataclass(frozen=True, slots=True)
class ConsentRequest:
    """One revocation or deletion request (lab-side: it names the subject)."""

    subject_id: str
    kind: RequestKind
    received_on: dt.date
    closed_on: dt.date | None = None
    releases: tuple[ReleaseImpact, ...] = ()

    @property
    def due_on(self) -> dt.date:
        """The day by which the sample must be destroyed."""
        return self.received_on + dt.timedelta(days=REQUEST_DAYS)

    def days_left(self, today: dt.date) -> int:
        """Days until due_on (negative: overdue)."""
        return (self.due_on - today).days


def pending(requests: Iterable[ConsentRequest]) -> list[ConsentRequest]:
    """The requests not yet closed, by deadline (then kind and subject, for a stable order)."""
    return sorted(
        (r for r in requests if r.closed_on is None), key=lambda r: (r.due_on, r.kind, r.subject_id)
    )


@dataclass(frozen=True, slots=True)
class Erasure:
    """What `erase_subject` did: the deletion as the register holds it and each domain's removals."""

    request: ConsentRequest
    forgotten: tuple[Forgotten, ...]
    already: bool  # deleted before, and no vault domain held anything of the subject any more

    @property
    def subject_codes(self) -> int:
        """Subject codes removed (one per vault domain that knew the subject)."""
        return sum(f.subject_codes for f in self.forgotten)

    @property
    def sample_codes(self) -> int:
        """Sample codes removed."""
        return sum(f.sample_codes for f in self.forgotten)


class ConsentRegister:
    """The lab's register of consent revocations and deletion requests, in a keystore directory."""

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
        """True once a request has been recorded."""
        return self.path.is_file()

    def revoke(self, subject_id: str, date: dt.date) -> dt.date:
        """Record that the subject revoked consent on date; return the date the register now holds."""
        return self._record(subject_id, RequestKind.REVOCATION, date, ()).received_on

    def record_deletion(
        self, subject_id: str, date: dt.date, releases: Iterable[ReleaseImpact] = ()
    ) -> ConsentRequest:
        """Record a deletion request (sample flagged for destruction) and the releases that hold the
        subject; an earlier date already held is kept, and the releases are added to those held."""
        return self._record(subject_id, RequestKind.DELETION, date, tuple(releases))

    def close(self, subject_id: str, date: dt.date) -> tuple[RequestKind, ...]:
        """Record that the subject's sample was destroyed on date: their open requests are closed."""
        subject = _check_subject(subject_id)
        with self._sealed.locked():
            key, entries = self._load()
            open_kinds = tuple(
                kind
                for kind in RequestKind
                if (r := entries[kind].get(subject)) is not None and r.closed_on is None
            )
            if not open_kinds:
                raise KeyStoreError(
                    "no open revocation or deletion request for this subject; nothing to close"
                )
            for kind in open_kinds:
                held = entries[kind][subject]
                if date < held.received_on:
                    raise KeyStoreError(
                        f"--date {date} is before the request was received ({held.received_on})"
                    )
                entries[kind][subject] = _replace_closed(held, date)
            self._store(key, entries)
        return open_kinds

    def requests(self) -> tuple[ConsentRequest, ...]:
        """Every recorded request (both kinds), by subject id then kind."""
        if not self.exists():
            return ()
        with self._sealed.locked():
            _, entries = self._load()
        found = [r for kind in RequestKind for r in entries[kind].values()]
        return tuple(sorted(found, key=lambda r: (r.subject_id, r.kind)))

    def revocations(self) -> dict[str, dt.date]:
        """Every subject whose consent is withdrawn (a revocation or a deletion request) -> the earliest
        date; deid excludes them all (empty when nothing was recorded)."""
        held: dict[str, dt.date] = {}
        for r in self.requests():
            held[r.subject_id] = min(held.get(r.subject_id, r.received_on), r.received_on)
        return held

    def revoked_on(self, subject_id: str) -> dt.date | None:
        """The date the subject withdrew consent (revocation or deletion), or None."""
        return self.revocations().get(_check_subject(subject_id))

    def deletion(self, subject_id: str) -> ConsentRequest | None:
        """The subject's deletion request, or None."""
        subject = _check_subject(subject_id)
        return next(
            (r for r in self.requests() if r.subject_id == subject and r.kind is RequestKind.DELETION), None
        )

    def _record(
        self, subject_id: str, kind: RequestKind, date: dt.date, releases: tuple[ReleaseImpact, ...]
    ) -> ConsentRequest:
        subject = _check_subject(subject_id)
        with self._sealed.locked():
            key, entries = self._load()
            held = entries[kind].get(subject)
            merged = _merge(held, ConsentRequest(subject, kind, date, None, releases))
            if merged != held:
                entries[kind][subject] = merged
                self._store(key, entries)
        return merged

    def _load(self) -> tuple[DataKey, dict[RequestKind, dict[str, ConsentRequest]]]:
        key, plain = self._sealed.load()
        entries: dict[RequestKind, dict[str, ConsentRequest]] = {kind: {} for kind in RequestKind}
        if plain is None:
            return key, entries
        try:
            doc = json.loads(plain)
            for kind, section in (
                (RequestKind.REVOCATION, "revocations"),
                (RequestKind.DELETION, "deletions"),
            ):
                for subject, value in doc.get(section, {}).items():
                    entries[kind][str(subject)] = _parse_entry(str(subject), kind, value)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyFormatError(str(self.path), "the consent register's content is malformed") from exc
        return key, entries

    def _store(self, key: DataKey, entries: Mapping[RequestKind, Mapping[str, ConsentRequest]]) -> None:
        doc = {
            "version": CONTENT_VERSION,
            "revocations": {k: _entry_json(v) for k, v in sorted(entries[RequestKind.REVOCATION].items())},
            "deletions": {k: _entry_json(v) for k, v in sorted(entries[RequestKind.DELETION].items())},
        }
        self._sealed.store(key, json.dumps(doc).encode("utf-8"))


def erase_subject(
    home: Path,
    wrapper: KeyWrapper,
    subject_id: str,
    date: dt.date,
    releases: Iterable[ReleaseImpact] = (),
    sample_ids: Collection[str] = (),
) -> Erasure:
    """Delete a subject: record the request (first, so later releases exclude them even if a vault
    step fails; a re-run completes it), then forget the subject and its samples in every vault domain."""
    register = ConsentRegister(home, wrapper)
    before = register.deletion(subject_id)
    request = register.record_deletion(subject_id, date, releases)
    subject = _check_subject(subject_id)
    forgotten = tuple(
        Vault(home, domain, wrapper).forget(subject, sample_ids) for domain in vault_domains(home)
    )
    already = before is not None and not any(f.removed for f in forgotten)
    return Erasure(request, forgotten, already)


def _merge(held: ConsentRequest | None, new: ConsentRequest) -> ConsentRequest:
    """The earliest date; the releases of both; a closed request stays closed."""
    if held is None:
        return new
    releases = {(r.release_id, r.vault_domain): r for r in (*held.releases, *new.releases)}
    return ConsentRequest(
        held.subject_id,
        held.kind,
        min(held.received_on, new.received_on),
        held.closed_on,
        tuple(releases[k] for k in sorted(releases)),
    )


def _replace_closed(held: ConsentRequest, date: dt.date) -> ConsentRequest:
    return ConsentRequest(held.subject_id, held.kind, held.received_on, date, held.releases)


def _parse_entry(subject: str, kind: RequestKind, value: Any) -> ConsentRequest:
    if isinstance(value, str):  # version 1: a revocation was its date
        return ConsentRequest(subject, kind, dt.date.fromisoformat(value))
    closed = value.get("closed_on")
    releases = tuple(
        ReleaseImpact(str(r["release_id"]), str(r["vault_domain"]), tuple(str(x) for x in r["recipients"]))
        for r in value.get("releases", [])
    )
    return ConsentRequest(
        subject,
        kind,
        dt.date.fromisoformat(value["on"]),
        dt.date.fromisoformat(closed) if closed else None,
        releases,
    )


def _entry_json(request: ConsentRequest) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "on": request.received_on.isoformat(),
        "closed_on": request.closed_on.isoformat() if request.closed_on else None,
    }
    if request.kind is RequestKind.DELETION:
        doc["sample"] = SAMPLE_FLAGGED
        doc["releases"] = [r.to_json() for r in request.releases]
    return doc


def _check_subject(subject_id: str) -> str:
    """The subject id as stored (surrounding blanks removed); refuse empty, overlong or control text."""
    text = subject_id.strip()
    if not text or len(text) > _MAX_ID or not text.isprintable():
        raise KeyStoreError(
            f"a subject id must be 1-{_MAX_ID} printable characters, as in the manifest's subject_id column"
        )
    return text
