"""Each package's public surface is curated: a change to __all__ is a deliberate change here too."""

from __future__ import annotations

import importlib

import pytest

SURFACES = {
    "deid": [
        "BUILTIN",
        "DeidError",
        "Exclusion",
        "FieldAction",
        "GenomicRules",
        "MalformedInput",
        "OutputExists",
        "Policy",
        "Profile",
        "ReleaseResult",
        "builtin_text",
        "deidentify",
        "load_policy",
        "parse_policy",
        "policy_summary",
        "read_manifest",
    ],
    "deid.synth": [
        "IDENTIFIER_COLUMNS",
        "MANIFEST_COLUMNS",
        "MIN_SAMPLES",
        "CohortSpec",
        "CohortSummary",
        "Progress",
        "no_progress",
        "synthesize_cohort",
    ],
    "transfer": [
        "EnvelopeDigest",
        "EnvelopeError",
        "IntegrityError",
        "NoKeyForFile",
        "NotCrypt4GH",
        "SEGMENT_SIZE",
        "TransferError",
        "UnsupportedEnvelope",
        "decrypt_file",
        "decrypt_stream",
        "encrypt_file",
        "encrypt_stream",
        "header_recipients_count",
        "reencrypt_file",
    ],
    "keys": [
        "Basis",
        "BasisType",
        "CodeKind",
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
    ],
    "flows": [],
}


@pytest.mark.parametrize(("module", "names"), sorted(SURFACES.items()))
def test_public_surface_is_pinned(module: str, names: list[str]) -> None:
    """__all__ lists exactly the pinned names, and every one of them exists."""
    mod = importlib.import_module(module)
    assert sorted(names) == sorted(mod.__all__)
    assert [n for n in names if not hasattr(mod, n)] == []
