"""The lab's Ed25519 signing key: it signs the recipient registry and the transfer log.

The private key is stored as PKCS#8 PEM encrypted with the keystore passphrase (cryptography's
best available scheme); the public key as an OpenSSH line, so a reviewer can verify signatures
with ordinary tools. Fingerprints are SHA-256 of the raw 32-byte public key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from keys.errors import KeyFormatError, WrongPassphrase
from keys.secret import Passphrase


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """An Ed25519 public key that checks the lab's signatures."""

    raw: bytes

    @property
    def fingerprint(self) -> str:
        """SHA256:<hex> of the raw public key."""
        return "SHA256:" + hashlib.sha256(self.raw).hexdigest()

    def verify(self, data: bytes, signature: bytes) -> bool:
        """True only if signature is this key's signature of data."""
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, data)
        except InvalidSignature:
            return False
        return True

    def to_openssh(self) -> str:
        """One `ssh-ed25519 AAAA... genegate-log-signing` line."""
        key = Ed25519PublicKey.from_public_bytes(self.raw)
        line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        return line.decode("ascii") + " genegate-signing\n"

    @classmethod
    def from_openssh(cls, text: str, source: str) -> VerifyKey:
        """Parse the line to_openssh wrote."""
        try:
            key = serialization.load_ssh_public_key(" ".join(text.split()[:2]).encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise KeyFormatError(source, "not an ssh-ed25519 public key line") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFormatError(source, "the signing key must be Ed25519")
        return cls(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


class SigningKey:
    """The Ed25519 private key; its repr is redacted."""

    __slots__ = ("_key",)

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key."""
        return cls(Ed25519PrivateKey.generate())

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of data."""
        return self._key.sign(data)

    def verify_key(self) -> VerifyKey:
        """The matching public key."""
        raw = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return VerifyKey(raw)

    def to_pem(self, passphrase: Passphrase) -> bytes:
        """PKCS#8 PEM, encrypted with the passphrase."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase.reveal().encode("utf-8")),
        )

    @classmethod
    def from_pem(cls, data: bytes, passphrase: Passphrase, source: str) -> SigningKey:
        """Open the PEM to_pem wrote; a wrong passphrase raises WrongPassphrase."""
        try:
            key = serialization.load_pem_private_key(data, passphrase.reveal().encode("utf-8"))
        except ValueError as exc:
            if b"ENCRYPTED" in data:
                raise WrongPassphrase(source) from exc
            raise KeyFormatError(source, "not a PEM private key") from exc
        except TypeError as exc:
            raise KeyFormatError(source, "the signing key must be passphrase-protected") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFormatError(source, "the signing key must be Ed25519")
        return cls(key)

    def __repr__(self) -> str:
        return f"SigningKey(<redacted> fp={self.verify_key().fingerprint[:19]})"

    __str__ = __repr__
