"""Errors of the transfer package.

    TransferError                root: every failure transfer reports to its caller
    ├── EnvelopeError            a Crypt4GH file cannot be read or written (path, detail)
    │   ├── NotCrypt4GH          the file does not start with a Crypt4GH v1 header
    │   ├── NoKeyForFile         none of the lab's keys opens the header (names their fingerprints)
    │   ├── IntegrityError       a segment failed authentication (tampered), or the file is truncated
    │   └── UnsupportedEnvelope  a packet or method genegate refuses (fail closed)
    ├── LawTableError            a legal table in transfer/law/ is malformed (source, detail)
    └── FactsError               the facts of a release cannot be read (path, detail)
        ├── ReleaseUnreadable    release.json missing or malformed
        ├── LedgerUnreadable     the lab-side ledger missing, malformed or for other content
        └── TransferLogUnreadable  transfer-log.jsonl holds a line that is not a JSON object

Messages name the file, what is wrong and the fix, never a key, plaintext, subject id or code.
A gate denial is not an error: transfer.gate returns a Decision that lists every rule.
"""

from __future__ import annotations


class TransferError(Exception):
    """Root of the transfer package's errors."""


class EnvelopeError(TransferError):
    """A Crypt4GH envelope cannot be processed."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.detail = detail


class NotCrypt4GH(EnvelopeError):
    """Not a Crypt4GH v1 file."""


class NoKeyForFile(EnvelopeError):
    """No key we hold decrypts a data-key packet of the header."""


class IntegrityError(EnvelopeError):
    """Authentication of a segment failed, or the ciphertext is truncated."""


class UnsupportedEnvelope(EnvelopeError):
    """A header packet or method that genegate does not accept."""


class LawTableError(TransferError):
    """A legal table shipped in transfer/law/ is malformed (source, detail)."""

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(f"{source}: {detail}")
        self.source = source
        self.detail = detail


class FactsError(TransferError):
    """The facts of a release cannot be read (path, detail): release.json, its ledger, the log."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.detail = detail


class ReleaseUnreadable(FactsError):
    """release.json is missing or malformed."""


class LedgerUnreadable(FactsError):
    """The lab-side ledger of a release is missing, malformed or belongs to other content."""


class TransferLogUnreadable(FactsError):
    """transfer-log.jsonl exists but a line is not a JSON object."""
