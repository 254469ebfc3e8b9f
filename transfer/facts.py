"""The facts a transfer decision rests on, read from disk: release.json, the lab's ledger, the log.

A release directory holds `release.json` (delivered with the release): its id, class, assessment
status, DUO data-use terms, files and content digest. The lab keeps, never delivered,
`<keystore>/ledger/<release_id>.json`: the vault domain and, per included subject, the subject's
vault code (no identity), residence region and consent facts. `load_release_facts` checks that
the two belong to the same content and returns one ReleaseFacts value for the pure gate.

`subject_codes` maps subject ids to their codes in a vault domain without creating codes, so
revocations in the consent register can be matched against a ledger; `revoked_codes` adds the
codes of deleted subjects (withdrawn in the vault, no longer linked to anyone), which is what the
gate's consent.not_revoked rule must be given. `locate_subject` finds a subject's codes in every
vault domain and the releases (and recipients) that hold them, before a deletion removes the
codes. `read_deliveries` reads the transfer log if it exists. Errors name the file and the fix,
never a subject id or code.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keys import CodeKind, KeyWrapper, ReleaseImpact, Vault, vault_domains
from transfer.errors import LedgerUnreadable, ReleaseUnreadable, TransferLogUnreadable

LEDGER_FORMAT = 1
ANY_RECIPIENT = "*"
DELIVERED_EVENTS = frozenset({"delivered", "transfer.delivered"})
TRANSFER_LOG = "transfer-log.jsonl"
_RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SUBJECT_CODE = re.compile(CodeKind.SUBJECT.pattern)


class ReleaseClass(enum.StrEnum):
    """What the assessment certified (SPEC.md 4)."""

    PSEUDONYMISED = "pseudonymised"
    DEIDENTIFIED = "deidentified"


class AssessmentStatus(enum.StrEnum):
    """release.json assessment.status."""

    NOT_ASSESSED = "not assessed"
    PASSED = "passed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class SubjectFacts:
    """One included subject, by vault code, with the facts the gate needs (no identity)."""

    code: str
    residence_region: str | None
    consent_transfer: tuple[str, ...]
    minor_at_collection: bool
    guardian_consent: bool | None
    received_opt_out: bool

    def consents_to(self, recipient_id: str) -> bool:
        """The subject's express consent covers this recipient (named, or "*")."""
        return recipient_id in self.consent_transfer or ANY_RECIPIENT in self.consent_transfer

    def names(self, recipient_id: str) -> bool:
        """The subject named this recipient explicitly (a blanket "*" does not count)."""
        return recipient_id in self.consent_transfer


@dataclass(frozen=True, slots=True)
class Ledger:
    """The lab-side record of who is in a release."""

    release_id: str
    vault_domain: str
    release_sha256: str
    genomic: bool
    subjects: tuple[SubjectFacts, ...]

    @property
    def codes(self) -> frozenset[str]:
        """The subject codes the release holds."""
        return frozenset(s.code for s in self.subjects)


@dataclass(frozen=True, slots=True)
class ReleaseFacts:
    """release.json and its ledger, checked against each other."""

    release_id: str
    release_class: ReleaseClass
    assessment: AssessmentStatus
    data_use: tuple[str, ...]
    release_sha256: str
    summary_only: bool
    genomic: bool
    vault_domain: str
    subjects: tuple[SubjectFacts, ...]
    blocking_failed: tuple[str, ...] = ()  # test ids of a failed assessment (release.json)
    for_recipient: str | None = None  # `deid --for`: the partner the release was made for


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery the transfer log records."""

    release_id: str
    recipient_id: str
    at: str | None


@dataclass(frozen=True, slots=True)
class SubjectLocation:
    """Where a subject is, lab-side: their code in each vault domain, the releases that hold them."""

    codes: Mapping[str, str]  # vault domain -> the subject's code there (never printed or logged)
    releases: tuple[ReleaseImpact, ...]
    ledgers_checked: int
    log_present: bool


def load_release_facts(release_dir: Path, home: Path) -> ReleaseFacts:
    """Read release_dir/release.json and home/ledger/<release_id>.json into one checked value."""
    source = release_dir / "release.json"
    try:
        doc = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReleaseUnreadable(
            str(source), "no release.json; give the directory `genegate deid` wrote"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReleaseUnreadable(str(source), f"cannot read it as JSON ({type(exc).__name__})") from exc
    release_id = _release_id(doc, str(source))
    ledger = read_ledger(ledger_path(home, release_id))
    return parse_release_facts(doc, ledger, str(source))


def ledger_path(home: Path, release_id: str) -> Path:
    """Where the lab keeps a release's ledger."""
    return home / "ledger" / f"{release_id}.json"


def parse_release_facts(doc: Any, ledger: Ledger, source: str) -> ReleaseFacts:
    """Check a parsed release.json against its ledger (pure)."""
    if not isinstance(doc, dict):
        raise ReleaseUnreadable(source, "release.json is not a JSON object")
    release_id = _release_id(doc, source)
    assessment = doc.get("assessment")
    data_use = doc.get("data_use")
    digest = doc.get("release_sha256")
    try:
        release_class = ReleaseClass(str(doc.get("class")))
        status = AssessmentStatus(str(assessment.get("status") if isinstance(assessment, dict) else None))
    except ValueError:
        raise ReleaseUnreadable(
            source, 'needs "class" (pseudonymised|deidentified) and "assessment": {"status": ...}'
        ) from None
    failed_tests = assessment.get("blocking_failed", []) if isinstance(assessment, dict) else []
    if not isinstance(failed_tests, list) or not all(isinstance(t, str) for t in failed_tests):
        raise ReleaseUnreadable(source, '"assessment.blocking_failed" must be a list of test ids')
    if not isinstance(data_use, list) or not all(isinstance(t, str) for t in data_use):
        raise ReleaseUnreadable(source, '"data_use" must be a list of DUO codes such as "DUO:0000042"')
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise ReleaseUnreadable(source, '"release_sha256" must be a lowercase hex SHA-256')
    if not isinstance(doc.get("summary_only", False), bool):
        raise ReleaseUnreadable(source, '"summary_only" must be true or false')
    for_recipient = doc.get("for_recipient")
    if for_recipient is not None and not isinstance(for_recipient, str):
        raise ReleaseUnreadable(
            source, '"for_recipient" must be a recipient id (as `genegate deid --for` wrote it)'
        )
    if ledger.release_id != release_id or ledger.release_sha256 != digest:
        raise LedgerUnreadable(
            source,
            "the lab's ledger does not match this release's id and release_sha256; the release was "
            "altered after `genegate deid` wrote it, or the ledger belongs to another release",
        )
    return ReleaseFacts(
        release_id=release_id,
        release_class=release_class,
        assessment=status,
        blocking_failed=tuple(failed_tests),
        data_use=tuple(data_use),
        release_sha256=digest,
        summary_only=bool(doc.get("summary_only", False)),
        genomic=ledger.genomic,
        vault_domain=ledger.vault_domain,
        subjects=ledger.subjects,
        for_recipient=for_recipient,
    )


def read_ledger(path: Path) -> Ledger:
    """Read and check one ledger file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LedgerUnreadable(
            str(path),
            "no ledger for this release in the keystore; `genegate deid` writes it with the release",
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LedgerUnreadable(str(path), f"cannot read it as JSON ({type(exc).__name__})") from exc
    return parse_ledger(doc, str(path))


def parse_ledger(doc: Any, source: str) -> Ledger:
    """Check a parsed ledger (pure); LedgerUnreadable names the field, never a code."""
    if not isinstance(doc, dict) or doc.get("format") != LEDGER_FORMAT:
        raise LedgerUnreadable(source, f'not a genegate ledger ("format": {LEDGER_FORMAT} expected)')
    release_id = doc.get("release_id")
    domain = doc.get("vault_domain")
    digest = doc.get("release_sha256")
    if not isinstance(release_id, str) or not _RELEASE_ID.match(release_id):
        raise LedgerUnreadable(source, '"release_id" is missing or not a release id')
    if not isinstance(domain, str) or not domain:
        raise LedgerUnreadable(source, '"vault_domain" is missing')
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise LedgerUnreadable(source, '"release_sha256" must be a lowercase hex SHA-256')
    if not isinstance(doc.get("genomic"), bool) or not isinstance(doc.get("subjects"), list):
        raise LedgerUnreadable(source, '"genomic" (true/false) and "subjects" (a list) are required')
    subjects = tuple(_subject(s, source, n) for n, s in enumerate(doc["subjects"], start=1))
    if len({s.code for s in subjects}) != len(subjects):
        raise LedgerUnreadable(source, "a subject code appears twice in subjects; rewrite the release")
    return Ledger(release_id, domain, digest, doc["genomic"], subjects)


def list_ledgers(home: Path) -> tuple[Ledger, ...]:
    """Every ledger in the keystore, by release id."""
    directory = home / "ledger"
    if not directory.is_dir():
        return ()
    return tuple(read_ledger(p) for p in sorted(directory.glob("*.json")))


def _subject(entry: Any, source: str, n: int) -> SubjectFacts:
    where = f"subjects[{n}]"
    if not isinstance(entry, dict):
        raise LedgerUnreadable(source, f"{where} is not an object")
    code = entry.get("subject")
    region = entry.get("residence_region")
    consent = entry.get("consent_transfer")
    guardian = entry.get("guardian_consent")
    if not isinstance(code, str) or not _SUBJECT_CODE.match(code):
        raise LedgerUnreadable(
            source, f"{where}.subject is not a subject vault code ({CodeKind.SUBJECT.prefix}...)"
        )
    if region is not None and (not isinstance(region, str) or not region.strip()):
        raise LedgerUnreadable(
            source, f"{where}.residence_region must be a region code such as EU-DE, or null"
        )
    if not isinstance(consent, list) or not all(isinstance(c, str) for c in consent):
        raise LedgerUnreadable(
            source, f'{where}.consent_transfer must be a list of recipient ids, ["*"] or []'
        )
    flags = (entry.get("minor_at_collection"), entry.get("received_opt_out"))
    if not all(isinstance(f, bool) for f in flags) or not isinstance(guardian, bool | None):
        raise LedgerUnreadable(
            source,
            f"{where}: minor_at_collection and received_opt_out must be true or false, "
            "guardian_consent true, false or null",
        )
    return SubjectFacts(
        code=code,
        residence_region=region.strip().upper() if region is not None else None,
        consent_transfer=tuple(c.strip() for c in consent),
        minor_at_collection=entry["minor_at_collection"],
        guardian_consent=guardian,
        received_opt_out=entry["received_opt_out"],
    )


def _release_id(doc: dict[str, Any], source: str) -> str:
    value = doc.get("release_id")
    if not isinstance(value, str) or not _RELEASE_ID.match(value) or ".." in value:
        raise ReleaseUnreadable(
            source, '"release_id" is missing or not a release id (letters, digits, . _ -)'
        )
    return value


def subject_codes(home: Path, domain: str, wrapper: KeyWrapper, subject_ids: Iterable[str]) -> dict[str, str]:
    """The vault code of each subject id that has one in domain; ids without a code are left out.

    Never creates a code or a vault file. A vault that does not open raises (fail closed): only
    after the vault has opened is a missing id read as "this id has no code here".
    """
    return Vault(home, domain, wrapper).lookup(CodeKind.SUBJECT, set(subject_ids))


def read_deliveries(log: Path) -> tuple[Delivery, ...] | None:
    """Deliveries recorded in the transfer log, or None when there is no log yet."""
    if not log.exists():
        return None
    found: list[Delivery] = []
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TransferLogUnreadable(str(log), f"cannot read it ({type(exc).__name__})") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            raise TransferLogUnreadable(
                str(log), f"line {n} is not a JSON object; run `genegate audit verify`"
            )
        release, recipient = entry.get("release_id"), entry.get("recipient_id")
        if entry.get("event") in DELIVERED_EVENTS and isinstance(release, str) and isinstance(recipient, str):
            stamp = entry.get("timestamp", entry.get("ts_utc"))
            found.append(Delivery(release, recipient, stamp if isinstance(stamp, str) else None))
    return tuple(found)


def subject_impact(
    ledgers: Iterable[Ledger], code_in: Mapping[str, str | None], deliveries: Iterable[Delivery]
) -> tuple[ReleaseImpact, ...]:
    """Releases whose ledger holds the subject (code_in: vault domain -> the subject's code there)."""
    by_release: dict[str, set[str]] = {}
    for d in deliveries:
        by_release.setdefault(d.release_id, set()).add(d.recipient_id)
    return tuple(
        ReleaseImpact(led.release_id, led.vault_domain, tuple(sorted(by_release.get(led.release_id, ()))))
        for led in sorted(ledgers, key=lambda x: x.release_id)
        if (code := code_in.get(led.vault_domain)) is not None and code in led.codes
    )


def deliveries_to(deliveries: Iterable[Delivery] | None, recipient_id: str) -> int:
    """How many deliveries the log records for a recipient, any release (no log: none)."""
    return sum(1 for d in deliveries or () if d.recipient_id == recipient_id)


def revoked_codes(home: Path, domain: str, wrapper: KeyWrapper, subject_ids: Iterable[str]) -> frozenset[str]:
    """The codes in domain that no transfer may carry: those of subject_ids (the consent register's
    revocations) and those withdrawn by a deletion (`genegate subject delete`)."""
    vault = Vault(home, domain, wrapper)
    return frozenset(subject_codes(home, domain, wrapper, subject_ids).values()) | vault.withdrawn()


def locate_subject(home: Path, wrapper: KeyWrapper, subject_id: str) -> SubjectLocation:
    """A subject's code in every vault domain of the keystore and the releases (by ledger) that hold
    them, with the recipients the transfer log records for each. Creates nothing; lab-side only."""
    subject = subject_id.strip()
    codes: dict[str, str] = {}
    for domain in vault_domains(home):
        code = subject_codes(home, domain, wrapper, [subject]).get(subject)
        if code is not None:
            codes[domain] = code
    ledgers = list_ledgers(home)
    deliveries = read_deliveries(home / TRANSFER_LOG)
    found = subject_impact(
        ledgers, {d: codes.get(d) for d in {led.vault_domain for led in ledgers}}, deliveries or ()
    )
    return SubjectLocation(codes, found, len(ledgers), deliveries is not None)
