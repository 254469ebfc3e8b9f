"""Wrap a data key (the pseudonym vault's key) with the lab key or with AWS KMS.

Lab-key wrapping seals the data key to the lab's X25519 public key: an ephemeral X25519 key,
HKDF-SHA256 over the shared secret and both public keys, ChaCha20-Poly1305 with the purpose as
associated data. Any lab key ever made (current or retired) unwraps what was sealed to it, so
rotation never strands a vault. KMS wrapping calls kms:Encrypt/Decrypt through boto3 with the
purpose as encryption context; the key never leaves KMS, and the lab passphrase is not needed.

A WrappedKey is a JSON-ready record: scheme, who can unwrap it (fingerprint or KMS key id), the
purpose it is bound to, and the ciphertext. It holds no secret in clear.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keys.errors import KeyStoreError, KmsError
from keys.keyfiles import PublicKey, SecretKey
from keys.secret import DataKey

LAB_SCHEME = "x25519-hkdf-sha256-chacha20poly1305"
KMS_SCHEME = "aws-kms"


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key sealed for one unwrapper, bound to a purpose."""

    scheme: str
    unwrapper: str  # lab key fingerprint, or KMS key id
    purpose: str
    ciphertext: bytes
    ephemeral: bytes = b""

    def to_json(self) -> dict[str, Any]:
        """Storage form."""
        return {
            "scheme": self.scheme,
            "unwrapper": self.unwrapper,
            "purpose": self.purpose,
            "ciphertext": base64.b64encode(self.ciphertext).decode("ascii"),
            "ephemeral": base64.b64encode(self.ephemeral).decode("ascii"),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> WrappedKey:
        """Parse the storage form."""
        return cls(
            scheme=d["scheme"],
            unwrapper=d["unwrapper"],
            purpose=d["purpose"],
            ciphertext=base64.b64decode(d["ciphertext"]),
            ephemeral=base64.b64decode(d.get("ephemeral", "")),
        )


class KeyWrapper(Protocol):
    """Something that seals and opens data keys."""

    def wrap(self, key: DataKey, purpose: str) -> WrappedKey:
        """Seal key for this wrapper, bound to purpose."""
        ...

    def unwrap(self, wrapped: WrappedKey) -> DataKey:
        """Open a key this wrapper sealed."""
        ...


def _derive(shared: bytes, ephemeral: bytes, recipient: bytes, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral + recipient,
        info=b"genegate key wrap v1|" + purpose.encode("utf-8"),
    ).derive(shared)


class LabKeyWrapper:
    """Seals to the current lab public key; opens with any lab private key given."""

    def __init__(self, public_key: PublicKey, secret_keys: Sequence[SecretKey] = ()) -> None:
        self._public = public_key
        self._secrets = list(secret_keys)

    def wrap(self, key: DataKey, purpose: str) -> WrappedKey:
        """Seal key to the lab public key."""
        ephemeral = X25519PrivateKey.generate()
        eph_pub = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(self._public.raw))
        nonce = os.urandom(12)
        aead = ChaCha20Poly1305(_derive(shared, eph_pub, self._public.raw, purpose))
        sealed = nonce + aead.encrypt(nonce, key.reveal(), purpose.encode("utf-8"))
        return WrappedKey(LAB_SCHEME, self._public.fingerprint, purpose, sealed, eph_pub)

    def unwrap(self, wrapped: WrappedKey) -> DataKey:
        """Open with the lab key whose fingerprint the record names."""
        if wrapped.scheme != LAB_SCHEME:
            raise KeyStoreError(f"a key wrapped with {wrapped.scheme} cannot be opened with the lab key")
        match = [k for k in self._secrets if k.public_key().fingerprint == wrapped.unwrapper]
        if not match:
            raise KeyStoreError(
                f"the key was wrapped for lab key {wrapped.unwrapper}, which this keystore does not hold"
            )
        private = X25519PrivateKey.from_private_bytes(match[0].raw())
        shared = private.exchange(X25519PublicKey.from_public_bytes(wrapped.ephemeral))
        recipient = match[0].public_key().raw
        aead = ChaCha20Poly1305(_derive(shared, wrapped.ephemeral, recipient, wrapped.purpose))
        nonce, body = wrapped.ciphertext[:12], wrapped.ciphertext[12:]
        try:
            return DataKey(aead.decrypt(nonce, body, wrapped.purpose.encode("utf-8")))
        except InvalidTag as exc:
            raise KeyStoreError(
                f"the wrapped {wrapped.purpose} key does not authenticate; it was altered or is not ours"
            ) from exc


class KmsKeyWrapper:
    """Seals and opens through AWS KMS (kms:Encrypt / kms:Decrypt) with a boto3 client."""

    def __init__(self, client: Any, key_id: str) -> None:
        self._client = client
        self._key_id = key_id

    def wrap(self, key: DataKey, purpose: str) -> WrappedKey:
        """kms:Encrypt with the purpose as encryption context."""
        response = self._call(
            "Encrypt", KeyId=self._key_id, Plaintext=key.reveal(), EncryptionContext=_context(purpose)
        )
        return WrappedKey(KMS_SCHEME, self._key_id, purpose, bytes(response["CiphertextBlob"]))

    def unwrap(self, wrapped: WrappedKey) -> DataKey:
        """kms:Decrypt, pinned to the key id recorded at wrapping."""
        if wrapped.scheme != KMS_SCHEME:
            raise KeyStoreError(f"a key wrapped with {wrapped.scheme} cannot be opened with AWS KMS")
        response = self._call(
            "Decrypt",
            KeyId=wrapped.unwrapper,
            CiphertextBlob=wrapped.ciphertext,
            EncryptionContext=_context(wrapped.purpose),
        )
        return DataKey(bytes(response["Plaintext"]))

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        method = {"Encrypt": self._client.encrypt, "Decrypt": self._client.decrypt}[operation]
        try:
            result: dict[str, Any] = method(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise KmsError(f"AWS KMS {operation} with key {self._key_id} failed: {code}") from exc
        except BotoCoreError as exc:
            raise KmsError(
                f"AWS KMS {operation} with key {self._key_id} failed: {type(exc).__name__}"
            ) from exc
        return result


def _context(purpose: str) -> dict[str, str]:
    return {"genegate:purpose": purpose}


def kms_client(region: str | None, endpoint_url: str | None) -> Any:
    """A boto3 KMS client (credentials from the usual AWS chain; never from genegate files)."""
    import boto3

    return boto3.client("kms", region_name=region, endpoint_url=endpoint_url)
