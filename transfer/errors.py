"""Errors of the transfer package.

    TransferError                root: every failure transfer reports to its caller
    └── EnvelopeError            a Crypt4GH file cannot be read or written (path, detail)
        ├── NotCrypt4GH          the file does not start with a Crypt4GH v1 header
        ├── NoKeyForFile         none of the lab's keys opens the header (names their fingerprints)
        ├── IntegrityError       a segment failed authentication (tampered), or the file is truncated
        └── UnsupportedEnvelope  a packet or method genegate refuses (fail closed)

Messages name the file, what is wrong and the fix, never a key or plaintext.
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
