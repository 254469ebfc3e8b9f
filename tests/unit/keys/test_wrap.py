"""Sealing data keys to the lab key: round trip, binding to purpose, tamper detection, redaction."""

from __future__ import annotations

import dataclasses

import pytest

from keys import DataKey, KeyStoreError, LabKeyWrapper, Passphrase, SecretKey, WrappedKey


def test_lab_wrap_round_trips_and_binds_purpose() -> None:
    """A sealed key opens with the lab key for its purpose, and for no other purpose."""
    lab = SecretKey.generate()
    wrapper = LabKeyWrapper(lab.public_key(), [lab])
    key = DataKey.generate()
    wrapped = wrapper.wrap(key, "vault:partner-a")
    assert key == wrapper.unwrap(WrappedKey.from_json(wrapped.to_json()))
    with pytest.raises(KeyStoreError, match="does not authenticate"):
        wrapper.unwrap(dataclasses.replace(wrapped, purpose="vault:partner-b"))


def test_lab_wrap_needs_the_matching_key() -> None:
    """A key sealed to another lab key is refused, naming the fingerprint it needs."""
    lab, other = SecretKey.generate(), SecretKey.generate()
    wrapped = LabKeyWrapper(lab.public_key()).wrap(DataKey.generate(), "vault")
    with pytest.raises(KeyStoreError, match=lab.public_key().fingerprint):
        LabKeyWrapper(other.public_key(), [other]).unwrap(wrapped)


def test_flipped_ciphertext_byte_is_rejected() -> None:
    """Any change to the sealed bytes fails authentication."""
    lab = SecretKey.generate()
    wrapper = LabKeyWrapper(lab.public_key(), [lab])
    wrapped = wrapper.wrap(DataKey.generate(), "vault")
    flipped = bytearray(wrapped.ciphertext)
    flipped[20] ^= 1
    with pytest.raises(KeyStoreError):
        wrapper.unwrap(dataclasses.replace(wrapped, ciphertext=bytes(flipped)))


def test_secret_values_never_print() -> None:
    """Passphrases, data keys and private keys have redacted reprs; the wrapped record holds no clear key."""
    key = DataKey.generate()
    lab = SecretKey.generate()
    texts = [repr(Passphrase("hunter2-horse")), str(key), repr(lab), str(lab)]
    assert ["hunter2-horse" in t or key.reveal().hex() in t or lab.raw().hex() in t for t in texts] == [
        False
    ] * 4
    record = LabKeyWrapper(lab.public_key()).wrap(key, "vault").to_json()
    assert key.reveal().hex() not in str(record)
