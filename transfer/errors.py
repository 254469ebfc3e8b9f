"""Errors of the transfer package.

    TransferError                root: every failure transfer reports to its caller
    ├── EnvelopeError            a Crypt4GH file cannot be read or written (path, detail)
    │   ├── NotCrypt4GH          the file does not start with a Crypt4GH v1 header
    │   ├── NoKeyForFile         none of the lab's keys opens the header (names their fingerprints)
    │   ├── IntegrityError       a segment failed authentication (tampered), or the file is truncated
    │   └── UnsupportedEnvelope  a packet or method genegate refuses (fail closed)
    ├── LawTableError            a legal table in transfer/law/ is malformed (source, detail)
    ├── DeliveryError            a delivery to a recipient's destination failed (destination, detail)
    │   ├── DestinationUnusable  the destination URI or its configuration cannot be used (bad input)
    │   │   └── RegionMismatch   the bucket's region is not the recipient's declared region/country
    │   ├── DeliveryRejected     the destination refused an operation (an S3 error code, an OS error)
    │   └── DeliveryMismatch     a delivered object's size or SHA-256 differs from what was sent
    ├── FactsError               the facts of a release cannot be read (path, detail)
    │   ├── ReleaseUnreadable    release.json missing or malformed
    │   ├── LedgerUnreadable     the lab-side ledger missing, malformed or for other content
    │   └── TransferLogUnreadable  transfer-log.jsonl holds a line that is not a JSON object
    └── TransferLogError         the signed transfer log cannot be read or written (path, detail)
        ├── TornLogError         the last line was cut short by a crash mid-write (names the line)
        ├── LogEventRefused      an event holds a field the log does not record, or a bad value
        └── LogMirrorFailed      the Object Lock mirror refused an entry

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


class TransferLogError(TransferError):
    """The signed transfer log cannot be read or written (path, detail)."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.detail = detail


class TornLogError(TransferLogError):
    """The last line of the log was cut short (a crash mid-write); never silently dropped."""

    def __init__(self, path: str, line: int) -> None:
        super().__init__(
            path,
            f"line {line} is cut short (a crash while it was written); keep a copy of the file, then "
            f"remove that partial line and run `genegate audit verify`",
        )
        self.line = line


class LogEventRefused(TransferLogError):
    """An event holds a field the transfer log does not record, or a value of the wrong form."""


class LogMirrorFailed(TransferLogError):
    """The Object Lock mirror of the log refused or lost an entry."""


class DeliveryError(TransferError):
    """A delivery to a recipient's destination failed (destination, detail)."""

    def __init__(self, destination: str, detail: str) -> None:
        super().__init__(f"{destination}: {detail}")
        self.destination = destination
        self.detail = detail


class DestinationUnusable(DeliveryError):
    """The destination URI or its configuration cannot be used; nothing was sent."""


class RegionMismatch(DestinationUnusable):
    """The bucket's storage region is not the recipient's declared region or country."""


class DeliveryRejected(DeliveryError):
    """The destination refused an operation (an S3 error code or an OS error, named)."""


class DeliveryMismatch(DeliveryError):
    """A delivered object's size or SHA-256 differs from what was sent."""


class TransferBusy(DeliveryError):
    """Another genegate process is sending the same release to the same recipient; nothing was done."""
