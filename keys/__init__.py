"""Key management: lab keys, recipient registry, pseudonym vault, KMS adapter.

The public surface is __all__ below; other packages import only these names.
"""

from __future__ import annotations

from keys.consent_register import ConsentRegister
from keys.errors import (
    KeyFormatError,
    KeyStoreError,
    KeyStoreExists,
    KeyStoreMissing,
    KmsError,
    RecipientUnusable,
    RegistryTampered,
    UnknownRecipient,
    WrongPassphrase,
)
from keys.keyfiles import PublicKey, SecretKey, decode_secret_key, encode_secret_key, parse_public_key
from keys.recipients import Basis, BasisType, Recipient, RecipientId, Registry, new_recipient
from keys.secret import DataKey, Passphrase
from keys.signing import SigningKey, VerifyKey
from keys.store import DEFAULT_JURISDICTION, KeyStatus, Keystore, KeystoreConfig, KmsConfig, LabKey, WrapMode
from keys.vault import CodeKind, Vault
from keys.wrap import KeyWrapper, KmsKeyWrapper, LabKeyWrapper, WrappedKey

__all__ = [
    "DEFAULT_JURISDICTION",
    "Basis",
    "BasisType",
    "CodeKind",
    "ConsentRegister",
    "DataKey",
    "KeyFormatError",
    "KeyStatus",
    "KeyStoreError",
    "KeyStoreExists",
    "KeyStoreMissing",
    "KeyWrapper",
    "Keystore",
    "KeystoreConfig",
    "KmsConfig",
    "KmsError",
    "KmsKeyWrapper",
    "LabKey",
    "LabKeyWrapper",
    "Passphrase",
    "PublicKey",
    "Recipient",
    "RecipientId",
    "RecipientUnusable",
    "Registry",
    "RegistryTampered",
    "SecretKey",
    "SigningKey",
    "UnknownRecipient",
    "Vault",
    "VerifyKey",
    "WrapMode",
    "WrappedKey",
    "WrongPassphrase",
    "decode_secret_key",
    "encode_secret_key",
    "new_recipient",
    "parse_public_key",
]
