"""The keystore: creation with tight permissions, passphrases, rotation, tamper detection."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from keys import (
    DataKey,
    KeyStatus,
    Keystore,
    KeyStoreError,
    KeyStoreExists,
    KeyStoreMissing,
    Passphrase,
    RegistryTampered,
    WrapMode,
    WrongPassphrase,
)
from keys.keyfiles import parse_public_key

PASS = Passphrase("correct horse battery")


@pytest.fixture
def store(tmp_path: Path) -> Keystore:
    """A fresh keystore."""
    return Keystore.init(tmp_path / "ks", PASS)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_private_files_and_public_lab_key(store: Keystore) -> None:
    """Every key file is 0600 in a 0700 directory; lab.pub is the Crypt4GH public key, readable by all."""
    assert 0o700 == _mode(store.home)
    secrets = [store.home / "signing.key", *sorted((store.home / "lab").glob("*.sec"))]
    assert [0o600] * len(secrets) == [_mode(p) for p in secrets]
    assert 2 == len(secrets)
    assert 0o644 == _mode(store.lab_pub_path)
    lab = parse_public_key(store.lab_pub_path.read_text(), "lab.pub")
    assert store.config().current.fingerprint == lab.fingerprint
    assert store.lab_pub_path.read_text().startswith("-----BEGIN CRYPT4GH PUBLIC KEY-----")


def test_private_keys_are_encrypted_at_rest(store: Keystore) -> None:
    """Key files are passphrase-encrypted: the Crypt4GH key uses the ENCRYPTED label, scrypt inside."""
    sec = next((store.home / "lab").glob("*.sec")).read_text()
    assert sec.startswith("-----BEGIN CRYPT4GH ENCRYPTED PRIVATE KEY-----")
    assert (store.home / "signing.key").read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")


def test_init_refuses_existing_keystore_and_short_passphrase(store: Keystore, tmp_path: Path) -> None:
    """A second init never overwrites keys; a short passphrase is refused before anything is written."""
    before = sorted(p.name for p in store.home.iterdir())
    with pytest.raises(KeyStoreExists):
        Keystore.init(store.home, PASS)
    assert before == sorted(p.name for p in store.home.iterdir())
    with pytest.raises(KeyStoreError, match="fewer than 10 characters"):
        Keystore.init(tmp_path / "other", Passphrase("short"))
    assert not (tmp_path / "other").exists()


def test_init_refuses_a_world_readable_directory(tmp_path: Path) -> None:
    """An existing home others can read is refused, with the chmod that fixes it."""
    home = tmp_path / "open"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    with pytest.raises(KeyStoreError, match="chmod 700"):
        Keystore.init(home, PASS)


def test_wrong_passphrase_is_named(store: Keystore) -> None:
    """A wrong passphrase fails with WrongPassphrase, and its message holds no secret."""
    with pytest.raises(WrongPassphrase) as info:
        store.lab_secret_keys(Passphrase("not the passphrase"))
    assert "not the passphrase" not in str(info.value)
    with pytest.raises(WrongPassphrase):
        store.signing_key(Passphrase("not the passphrase"))


def test_missing_keystore_says_how_to_make_one(tmp_path: Path) -> None:
    """Commands on a home without a keystore point to `genegate keys init`."""
    with pytest.raises(KeyStoreMissing, match="genegate keys init"):
        Keystore(tmp_path / "none").config()


def test_rotate_keeps_old_keys_for_decryption(store: Keystore) -> None:
    """After rotation the new key is current, the old one retired, and both open with the passphrase."""
    first = store.config().current
    new = store.rotate(PASS)
    cfg = store.config()
    assert [(first.fingerprint, KeyStatus.RETIRED), (new.fingerprint, KeyStatus.CURRENT)] == [
        (k.fingerprint, k.status) for k in cfg.lab_keys
    ]
    keys = store.lab_secret_keys(PASS)
    assert [new.fingerprint, first.fingerprint] == [k.public_key().fingerprint for k in keys]
    assert new.fingerprint == store.lab_public_key().fingerprint


def test_edited_keystore_json_is_detected(store: Keystore) -> None:
    """Changing keystore.json outside genegate (here: retiring nothing, flipping a status) fails verification."""
    body = json.loads(store.config_path.read_text())
    body["document"]["vault_key_wrapping"]["mode"] = "aws-kms"
    store.config_path.write_text(json.dumps(body))
    with pytest.raises(RegistryTampered, match="changed outside genegate"):
        store.config()


def test_swapped_signing_public_key_is_caught_at_unlock(store: Keystore, tmp_path: Path) -> None:
    """Replacing signing.pub (to re-sign a forged registry) is detected when the passphrase unlocks keys."""
    other = Keystore.init(tmp_path / "attacker", PASS)
    (store.home / "signing.pub").write_text((other.home / "signing.pub").read_text())
    with pytest.raises(RegistryTampered):
        store.config()


def test_vault_wrapper_defaults_to_lab_key(store: Keystore) -> None:
    """Without KMS the vault key is sealed to the lab key and opens with the passphrase, after rotation too."""
    assert WrapMode.LAB_KEY == store.config().wrap_mode
    key = DataKey.generate()
    wrapped = store.vault_wrapper(None).wrap(key, "vault:default")
    store.rotate(PASS)
    assert key == store.vault_wrapper(PASS).unwrap(wrapped)


def test_lab_jurisdiction_defaults_and_is_signed(tmp_path: Path) -> None:
    """The lab's jurisdiction defaults to US-CA, is normalised, and lives in the signed keystore.json."""
    from keys import DEFAULT_JURISDICTION

    assert DEFAULT_JURISDICTION == Keystore.init(tmp_path / "a", PASS).config().jurisdiction
    assert "EU-DE" == Keystore.init(tmp_path / "b", PASS, jurisdiction=" eu-de ").config().jurisdiction
    with pytest.raises(KeyStoreError, match="--jurisdiction"):
        Keystore.init(tmp_path / "c", PASS, jurisdiction="Germany")
    assert not (tmp_path / "c").exists()
