"""Key management: lab keys, recipient registry, pseudonym vault, KMS adapter.

The public surface is __all__ below; other packages import only these names.
"""

from __future__ import annotations

from keys.consent_register import (
    REQUEST_DAYS,
    ConsentRegister,
    ConsentRequest,
    Erasure,
    ReleaseImpact,
    RequestKind,
    erase_subject,
    pending,
)
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
from keys.release_keys import KeyDestruction, KeyState, ReleaseKeyRecord, ReleaseKeys, check_release_id
from keys.sealed import SealedFile
from keys.secret import DataKey, Passphrase
from keys.signed_json import write_atomic
from keys.signing import SigningKey, VerifyKey
from keys.store import DEFAULT_JURISDICTION, KeyStatus, Keystore, KeystoreConfig, KmsConfig, LabKey, WrapMode
from keys.vault import CodeKind, Forgotten, Vault, vault_domains
from keys.wrap import KeyWrapper, KmsKeyWrapper, LabKeyWrapper, WrappedKey

__all__ = [
    "DEFAULT_JURISDICTION",
    "REQUEST_DAYS",
    "Basis",
    "BasisType",
    "CodeKind",
    "ConsentRegister",
    "ConsentRequest",
    "DataKey",
    "Erasure",
    "Forgotten",
    "KeyDestruction",
    "KeyFormatError",
    "KeyState",
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
    "ReleaseImpact",
    "ReleaseKeyRecord",
    "ReleaseKeys",
    "RequestKind",
    "SealedFile",
    "SecretKey",
    "SigningKey",
    "UnknownRecipient",
    "Vault",
    "VerifyKey",
    "WrapMode",
    "WrappedKey",
    "WrongPassphrase",
    "check_release_id",
    "decode_secret_key",
    "encode_secret_key",
    "erase_subject",
    "new_recipient",
    "parse_public_key",
    "pending",
    "vault_domains",
    "write_atomic",
]
