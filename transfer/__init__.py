"""Transfer: the legal-basis gate, Crypt4GH envelopes, delivery and the transfer log.

The public surface is __all__ below; other packages import only these names.
"""

from __future__ import annotations

from transfer.check import check_transfer
from transfer.decision import Decision, RuleId, RuleOutcome
from transfer.envelope import (
    SEGMENT_SIZE,
    EnvelopeDigest,
    decrypt_file,
    decrypt_stream,
    encrypt_file,
    encrypt_stream,
    header_recipients_count,
    reencrypt_file,
)
from transfer.errors import (
    EnvelopeError,
    FactsError,
    IntegrityError,
    LawTableError,
    LedgerUnreadable,
    NoKeyForFile,
    NotCrypt4GH,
    ReleaseUnreadable,
    TransferError,
    TransferLogUnreadable,
    UnsupportedEnvelope,
)
from transfer.facts import (
    TRANSFER_LOG,
    AssessmentStatus,
    Delivery,
    Ledger,
    ReleaseClass,
    ReleaseFacts,
    ReleaseImpact,
    SubjectFacts,
    deliveries_to,
    list_ledgers,
    load_release_facts,
    read_deliveries,
    subject_codes,
    subject_impact,
)
from transfer.gate import decide_transfer
from transfer.law.tables import Adequacy, LawTables, Regime, load_law_tables

__all__ = [
    "SEGMENT_SIZE",
    "TRANSFER_LOG",
    "Adequacy",
    "AssessmentStatus",
    "Decision",
    "Delivery",
    "EnvelopeDigest",
    "EnvelopeError",
    "FactsError",
    "IntegrityError",
    "LawTableError",
    "LawTables",
    "Ledger",
    "LedgerUnreadable",
    "NoKeyForFile",
    "NotCrypt4GH",
    "Regime",
    "ReleaseClass",
    "ReleaseFacts",
    "ReleaseImpact",
    "ReleaseUnreadable",
    "RuleId",
    "RuleOutcome",
    "SubjectFacts",
    "TransferError",
    "TransferLogUnreadable",
    "UnsupportedEnvelope",
    "check_transfer",
    "decide_transfer",
    "decrypt_file",
    "decrypt_stream",
    "deliveries_to",
    "encrypt_file",
    "encrypt_stream",
    "header_recipients_count",
    "list_ledgers",
    "load_law_tables",
    "load_release_facts",
    "read_deliveries",
    "reencrypt_file",
    "subject_codes",
    "subject_impact",
]
