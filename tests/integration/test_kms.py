"""Wrapping the vault key with AWS KMS, against moto's KMS over HTTP on loopback."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import boto3
import pytest

from keys import DataKey, Keystore, KmsConfig, KmsError, Passphrase, WrapMode

PASS = Passphrase("correct horse battery")
REGION = "eu-central-1"


@pytest.fixture
def kms_key(moto_endpoint: str, aws_test_credentials: None) -> str:
    """A fresh customer-managed KMS key's ARN."""
    client = boto3.client("kms", region_name=REGION, endpoint_url=moto_endpoint)
    arn: str = client.create_key(Description="genegate vault")["KeyMetadata"]["Arn"]
    return arn


def test_kms_wrapping_round_trips_without_passphrase(
    tmp_path: Path, moto_endpoint: str, kms_key: str
) -> None:
    """A KMS-configured keystore wraps and unwraps the vault key through kms:Encrypt/Decrypt."""
    store = Keystore.init(tmp_path / "ks", PASS, kms=KmsConfig(kms_key, REGION, moto_endpoint))
    assert WrapMode.KMS == store.config().wrap_mode
    key = DataKey.generate()
    wrapped = store.vault_wrapper(None).wrap(key, "vault:default")
    assert (kms_key, "aws-kms") == (wrapped.unwrapper, wrapped.scheme)
    assert key.reveal() not in wrapped.ciphertext
    assert key == store.vault_wrapper(None).unwrap(wrapped)


def test_kms_binds_the_purpose(tmp_path: Path, moto_endpoint: str, kms_key: str) -> None:
    """A wrapped key presented for another purpose is refused (KMS encryption context)."""
    store = Keystore.init(tmp_path / "ks", PASS, kms=KmsConfig(kms_key, REGION, moto_endpoint))
    wrapped = store.vault_wrapper(None).wrap(DataKey.generate(), "vault:a")
    with pytest.raises(KmsError, match="InvalidCiphertextException"):
        store.vault_wrapper(None).unwrap(dataclasses.replace(wrapped, purpose="vault:b"))


def test_unknown_kms_key_is_a_clear_error(
    tmp_path: Path, moto_endpoint: str, aws_test_credentials: None
) -> None:
    """A key id KMS does not know fails with one message naming the key and KMS's error code."""
    missing = "arn:aws:kms:eu-central-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    store = Keystore.init(tmp_path / "ks", PASS, kms=KmsConfig(missing, REGION, moto_endpoint))
    with pytest.raises(KmsError, match=f"AWS KMS Encrypt with key {missing} failed: NotFoundException"):
        store.vault_wrapper(None).wrap(DataKey.generate(), "vault")
