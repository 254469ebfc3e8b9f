"""What the transfer gate returns: rule ids, each rule's outcome, and the decision. Pure values.

A Decision lists every rule of transfer/gate.py in a fixed order with its outcome, reason and
evidence; `allowed` is true only when all of them passed. Its JSON form is deterministic
(sorted keys, ordered rules, dates as ISO strings), so the same release facts, recipient, table
versions and day give byte-identical JSON and the same digest: a decision can be reproduced,
and the transfer log (issue #7) can record it verbatim. Evidence holds document references,
dates and counts; never a subject id or a vault code.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keys import Recipient
from transfer.facts import ReleaseFacts, SubjectFacts
from transfer.law.tables import LawTables, Regime

EvidenceValue = str | int | bool | None | tuple[str, ...]
Evidence = Mapping[str, EvidenceValue]
DECISION_FORMAT = 1
NO_RECIPIENT = "no registered recipient to check against"


class RuleId(enum.StrEnum):
    """Every rule of the gate, in the order a decision lists them."""

    RECIPIENT_REGISTERED = "recipient.registered"
    RECIPIENT_NOT_REVOKED = "recipient.not_revoked"
    RECIPIENT_KEY_VALID = "recipient.key_valid"
    RELEASE_ASSESSED = "release.assessed"
    CGIPA_CONTRACT = "cgipa.no_reidentification_contract"
    CONSENT_NAMED = "consent.named_recipient"
    CONSENT_GUARDIAN = "consent.guardian"
    CONSENT_NOT_REVOKED = "consent.not_revoked"
    ORIGIN_KNOWN = "origin.known"
    ORIGIN_EU_EEA = "origin.eu_eea"
    ORIGIN_UK = "origin.uk"
    ORIGIN_CH = "origin.ch"
    ORIGIN_JP = "origin.jp"
    ORIGIN_CN = "origin.cn"
    ORIGIN_US_CA = "origin.us_ca"
    ORIGIN_US = "origin.us"
    CN_HGR = "cn.hgr_filing"
    APPI_OPT_OUT = "appi.opt_out_onward"
    DOJ_BULK = "doj.bulk_us_genomic"
    STORAGE_REGION = "storage.region_in_country"
    DUO_PURPOSE = "duo.purpose"


ORIGIN_RULES: Mapping[Regime, RuleId] = {r: RuleId(f"origin.{r.value}") for r in Regime}


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """One rule's result: passed or not, whether it applied, why, and on what evidence."""

    rule: RuleId
    passed: bool
    applies: bool
    reason: str
    evidence: Evidence = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON form (evidence keys sorted, tuples as lists)."""
        return {
            "id": self.rule.value,
            "passed": self.passed,
            "applies": self.applies,
            "reason": self.reason,
            "evidence": {k: _plain(v) for k, v in sorted(self.evidence.items())},
        }


def passed(
    rule: RuleId, reason: str, evidence: Evidence | None = None, *, applies: bool = True
) -> RuleOutcome:
    """A rule that holds (or does not apply: applies=False)."""
    return RuleOutcome(rule, True, applies, reason, dict(evidence or {}))


def failed(rule: RuleId, reason: str, evidence: Evidence | None = None) -> RuleOutcome:
    """A rule that does not hold; the reason names what is missing and how to provide it."""
    return RuleOutcome(rule, False, True, reason, dict(evidence or {}))


@dataclass(frozen=True, slots=True)
class Case:
    """Everything one decision looks at, with the subjects grouped by origin regime."""

    facts: ReleaseFacts
    recipient: Recipient | None
    tables: LawTables
    today: dt.date
    lab_region: str
    lab_regime: Regime | None
    revoked: frozenset[str]
    prior_deliveries: int | None
    scheduled: bool
    by_regime: Mapping[Regime, tuple[SubjectFacts, ...]]
    unknown_regions: Mapping[str, int]
    us_persons: int


@dataclass(frozen=True, slots=True)
class Decision:
    """The gate's answer with every rule's outcome; `allowed` only when all passed."""

    allowed: bool
    release_id: str
    release_sha256: str
    release_class: str
    recipient_id: str | None
    destination_country: str | None
    decided_on: dt.date
    lab_jurisdiction: str
    origin_regimes: tuple[str, ...]
    rules: tuple[RuleOutcome, ...]
    tables_digest: str
    table_versions: tuple[tuple[str, str], ...]
    context: tuple[tuple[str, EvidenceValue], ...] = ()

    @property
    def failed(self) -> tuple[RuleId, ...]:
        """The ids of the rules that did not pass."""
        return tuple(r.rule for r in self.rules if not r.passed)

    @property
    def reasons(self) -> tuple[str, ...]:
        """`rule: reason` for every failing rule."""
        return tuple(f"{r.rule}: {r.reason}" for r in self.rules if not r.passed)

    def outcome(self, rule: RuleId) -> RuleOutcome:
        """The outcome of one rule."""
        return next(r for r in self.rules if r.rule is rule)

    def to_json(self) -> dict[str, Any]:
        """The deterministic JSON form: the same inputs and tables give the same document."""
        return {
            "format": DECISION_FORMAT,
            "allowed": self.allowed,
            "decision": "allowed" if self.allowed else "denied",
            "release_id": self.release_id,
            "release_sha256": self.release_sha256,
            "release_class": self.release_class,
            "recipient_id": self.recipient_id,
            "destination_country": self.destination_country,
            "decided_on": self.decided_on.isoformat(),
            "lab_jurisdiction": self.lab_jurisdiction,
            "origin_regimes": list(self.origin_regimes),
            "failed_rules": [r.value for r in self.failed],
            "rules": [r.to_json() for r in self.rules],
            "tables": {"digest": self.tables_digest, "versions": dict(self.table_versions)},
            "context": {k: _plain(v) for k, v in self.context},
        }

    def canonical(self) -> bytes:
        """Canonical JSON bytes (sorted keys, no spaces): what the digest covers."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @property
    def digest(self) -> str:
        """sha256:<hex> of the canonical JSON."""
        return "sha256:" + hashlib.sha256(self.canonical()).hexdigest()


def iso(value: dt.date | None) -> str | None:
    """ISO date or None, for evidence."""
    return value.isoformat() if value is not None else None


def _plain(value: EvidenceValue) -> Any:
    return list(value) if isinstance(value, tuple) else value
