"""Transfer: the legal-basis gate, Crypt4GH envelopes, delivery and the transfer log.

The public surface is __all__ below; other packages import only these names.
"""

from __future__ import annotations

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
    IntegrityError,
    NoKeyForFile,
    NotCrypt4GH,
    TransferError,
    UnsupportedEnvelope,
)

__all__ = [
    "SEGMENT_SIZE",
    "EnvelopeDigest",
    "EnvelopeError",
    "IntegrityError",
    "NoKeyForFile",
    "NotCrypt4GH",
    "TransferError",
    "UnsupportedEnvelope",
    "decrypt_file",
    "decrypt_stream",
    "encrypt_file",
    "encrypt_stream",
    "header_recipients_count",
    "reencrypt_file",
]
