"""The lab keystore: a directory holding the lab's Crypt4GH keys and its signing key.

Layout (every file 0600, the directory 0700, both from creation):

    keystore.json          signed: lab keys (fingerprint, file, created, current/retired),
                           signing-key fingerprint, how the vault key is wrapped (lab key or KMS)
    lab.pub                the current lab public key, Crypt4GH format, for partners
    lab/<fp16>.sec|.pub    every lab key pair ever made; retired keys still decrypt
    signing.key|.pub       Ed25519 key (PKCS#8 PEM, passphrase-encrypted) | OpenSSH public line
    recipients.json        the signed recipient registry (keys/recipients.py)
    consent/               the encrypted consent register (keys/consent_register.py)

keystore.json also records the lab's own jurisdiction (`lab_jurisdiction`, a region code such as
US-CA, EU-DE, GB, CH, JP or CN; default US-CA), which the transfer gate counts as an origin regime
of every release. A keystore made before the field existed reads as the default.

The signing public key is read without a passphrase, to verify; any operation that unlocks a
private key also checks that signing.pub matches signing.key, so swapping the public file to
re-sign a forged registry is caught at the next unlock.
"""

from __future__ import annotations

import datetime as dt
import enum
import fcntl
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from keys.errors import KeyFormatError, KeyStoreError, KeyStoreExists, KeyStoreMissing, RegistryTampered
from keys.keyfiles import PublicKey, SecretKey, decode_secret_key, encode_secret_key, parse_public_key
from keys.recipients import Recipient, Registry
from keys.secret import Passphrase
from keys.signed_json import create_secret_file, read_signed, write_atomic, write_signed
from keys.signing import SigningKey, VerifyKey
from keys.wrap import KeyWrapper, KmsKeyWrapper, LabKeyWrapper, kms_client

MIN_PASSPHRASE = 10
KEYSTORE_FORMAT = 1
DEFAULT_JURISDICTION = "US-CA"
_JURISDICTION = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")


class KeyStatus(enum.StrEnum):
    """A lab key is current (encrypts and decrypts) or retired (decrypts only)."""

    CURRENT = "current"
    RETIRED = "retired"


class WrapMode(enum.StrEnum):
    """What wraps the pseudonym vault's key."""

    LAB_KEY = "lab-key"
    KMS = "aws-kms"


@dataclass(frozen=True, slots=True)
class LabKey:
    """One lab key pair's record (no key material)."""

    fingerprint: str
    file: str
    created_at: str
    status: KeyStatus


@dataclass(frozen=True, slots=True)
class KmsConfig:
    """AWS KMS settings for wrapping the vault key."""

    key_id: str
    region: str | None = None
    endpoint_url: str | None = None


@dataclass(frozen=True, slots=True)
class KeystoreConfig:
    """The verified contents of keystore.json."""

    created_at: str
    lab_keys: tuple[LabKey, ...]
    signing_fingerprint: str
    wrap_mode: WrapMode
    kms: KmsConfig | None
    jurisdiction: str = DEFAULT_JURISDICTION

    @property
    def current(self) -> LabKey:
        """The lab key that encrypts."""
        return next(k for k in self.lab_keys if k.status is KeyStatus.CURRENT)

    def to_json(self) -> dict[str, Any]:
        """The document signed into keystore.json."""
        return {
            "format": KEYSTORE_FORMAT,
            "created_at": self.created_at,
            "lab_keys": [
                {"fingerprint": k.fingerprint, "file": k.file, "created_at": k.created_at, "status": k.status}
                for k in self.lab_keys
            ],
            "signing_fingerprint": self.signing_fingerprint,
            "lab_jurisdiction": self.jurisdiction,
            "vault_key_wrapping": {
                "mode": self.wrap_mode,
                "kms_key_id": self.kms.key_id if self.kms else None,
                "kms_region": self.kms.region if self.kms else None,
                "kms_endpoint_url": self.kms.endpoint_url if self.kms else None,
            },
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], source: str) -> KeystoreConfig:
        """Parse keystore.json's verified document."""
        try:
            wrap = doc["vault_key_wrapping"]
            kms = (
                KmsConfig(wrap["kms_key_id"], wrap.get("kms_region"), wrap.get("kms_endpoint_url"))
                if wrap["mode"] == WrapMode.KMS
                else None
            )
            return cls(
                created_at=doc["created_at"],
                lab_keys=tuple(
                    LabKey(k["fingerprint"], k["file"], k["created_at"], KeyStatus(k["status"]))
                    for k in doc["lab_keys"]
                ),
                signing_fingerprint=doc["signing_fingerprint"],
                wrap_mode=WrapMode(wrap["mode"]),
                kms=kms,
                jurisdiction=check_jurisdiction(doc.get("lab_jurisdiction", DEFAULT_JURISDICTION)),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise KeyFormatError(source, "keystore.json lacks a field genegate needs") from exc


class Keystore:
    """Operations on a keystore directory; private keys are opened only with a passphrase."""

    def __init__(self, home: Path) -> None:
        self.home = home

    # paths
    @property
    def config_path(self) -> Path:
        """keystore.json."""
        return self.home / "keystore.json"

    @property
    def lab_pub_path(self) -> Path:
        """lab.pub: the current lab public key for partners."""
        return self.home / "lab.pub"

    @property
    def registry_path(self) -> Path:
        """recipients.json."""
        return self.home / "recipients.json"

    @classmethod
    def init(
        cls,
        home: Path,
        passphrase: Passphrase,
        kms: KmsConfig | None = None,
        now: dt.datetime | None = None,
        jurisdiction: str = DEFAULT_JURISDICTION,
    ) -> Keystore:
        """Create the directory, a lab key pair and a signing key; refuse an existing keystore."""
        check_passphrase(passphrase)
        jurisdiction = check_jurisdiction(jurisdiction)
        store = cls(home)
        if store.config_path.exists():
            raise KeyStoreExists(f"{home} already holds a lab key; use `genegate keys rotate` for a new one")
        _make_private_dir(home)
        (home / "lab").mkdir(mode=0o700, exist_ok=True)
        created = _stamp(now)
        signer = SigningKey.generate()
        create_secret_file(home / "signing.key", signer.to_pem(passphrase))
        create_secret_file(home / "signing.pub", signer.verify_key().to_openssh().encode("ascii"))
        lab = store._new_lab_key(passphrase, created)
        config = KeystoreConfig(
            created_at=created,
            lab_keys=(lab,),
            signing_fingerprint=signer.verify_key().fingerprint,
            wrap_mode=WrapMode.KMS if kms else WrapMode.LAB_KEY,
            kms=kms,
            jurisdiction=jurisdiction,
        )
        write_signed(store.config_path, config.to_json(), signer)
        Registry({}).save(store.registry_path, signer)
        return store

    def _new_lab_key(self, passphrase: Passphrase, created: str) -> LabKey:
        key = SecretKey.generate()
        pub = key.public_key()
        name = pub.fingerprint.removeprefix("SHA256:")[:16]
        create_secret_file(self.home / "lab" / f"{name}.sec", encode_secret_key(key, passphrase.reveal()))
        create_secret_file(self.home / "lab" / f"{name}.pub", pub.to_pem().encode("ascii"))
        write_atomic(self.lab_pub_path, pub.to_pem().encode("ascii"), mode=0o644)
        return LabKey(pub.fingerprint, f"lab/{name}", created, KeyStatus.CURRENT)

    def exists(self) -> bool:
        """True when keys init has run here."""
        return self.config_path.is_file()

    def _require(self) -> None:
        if not self.exists():
            raise KeyStoreMissing(f"no keystore at {self.home}; run `genegate keys init` (or pass --home)")

    def verify_key(self) -> VerifyKey:
        """The signing public key, as stored (trusted until the next unlock checks it)."""
        self._require()
        return VerifyKey.from_openssh(
            (self.home / "signing.pub").read_text("ascii"), str(self.home / "signing.pub")
        )

    def config(self) -> KeystoreConfig:
        """keystore.json, verified against the signing key."""
        self._require()
        doc = read_signed(self.config_path, self.verify_key(), "keystore configuration")
        return KeystoreConfig.from_json(doc, str(self.config_path))

    def lab_public_key(self) -> PublicKey:
        """The current lab public key."""
        cfg = self.config()
        path = self.home / f"{cfg.current.file}.pub"
        key = parse_public_key(path.read_text("ascii"), str(path))
        if key.fingerprint != cfg.current.fingerprint:
            raise KeyStoreError(f"{path} does not match keystore.json; the keystore was altered")
        return key

    def signing_key(self, passphrase: Passphrase) -> SigningKey:
        """The signing key, checked against signing.pub and keystore.json."""
        path = self.home / "signing.key"
        signer = SigningKey.from_pem(path.read_bytes(), passphrase, str(path))
        fingerprint = signer.verify_key().fingerprint
        if fingerprint != self.verify_key().fingerprint or fingerprint != self.config().signing_fingerprint:
            raise KeyStoreError(
                f"{self.home}/signing.pub does not match signing.key; the keystore was altered, restore it"
            )
        return signer

    def lab_secret_keys(self, passphrase: Passphrase) -> list[SecretKey]:
        """Every lab private key, current first, each checked against its recorded fingerprint."""
        cfg = self.config()
        ordered = sorted(cfg.lab_keys, key=lambda k: k.status is not KeyStatus.CURRENT)
        keys = []
        for record in ordered:
            path = self.home / f"{record.file}.sec"
            key = decode_secret_key(path.read_bytes(), passphrase.reveal(), str(path))
            if key.public_key().fingerprint != record.fingerprint:
                raise KeyStoreError(f"{path} does not match keystore.json; the keystore was altered")
            keys.append(key)
        return keys

    def rotate(self, passphrase: Passphrase, now: dt.datetime | None = None) -> LabKey:
        """Make a new current lab key; the old ones are retired and still decrypt."""
        with self.locked():
            signer = self.signing_key(passphrase)
            self.lab_secret_keys(passphrase)  # the passphrase must open every key it will keep
            cfg = self.config()
            new = self._new_lab_key(passphrase, _stamp(now))
            retired = tuple(replace(k, status=KeyStatus.RETIRED) for k in cfg.lab_keys)
            write_signed(self.config_path, replace(cfg, lab_keys=(*retired, new)).to_json(), signer)
        return new

    def registry(self) -> Registry:
        """The recipient registry, verified against the signing key."""
        self._require()
        if not self.registry_path.exists():
            raise RegistryTampered(
                f"{self.registry_path} is missing (keys init writes it); restore it from a backup"
            )
        return Registry.load(self.registry_path, self.verify_key())

    @contextmanager
    def editing_registry(self, passphrase: Passphrase) -> Iterator[Registry]:
        """Lock, load and yield the registry; sign and save it if the block completes."""
        with self.locked():
            signer = self.signing_key(passphrase)
            registry = self.registry()
            yield registry
            registry.save(self.registry_path, signer)

    def recipients_for(self, ids: list[str], today: dt.date) -> list[Recipient]:
        """The named recipients, each usable today (not revoked, key in its validity)."""
        registry = self.registry()
        chosen = [registry.get(i) for i in ids]
        for recipient in chosen:
            recipient.usable(today)
        return chosen

    def vault_wrapper(self, passphrase: Passphrase | None) -> KeyWrapper:
        """What wraps the vault key: AWS KMS if configured, else the lab key; unwrap needs a passphrase."""
        cfg = self.config()
        if cfg.kms is not None:
            return KmsKeyWrapper(kms_client(cfg.kms.region, cfg.kms.endpoint_url), cfg.kms.key_id)
        secrets = self.lab_secret_keys(passphrase) if passphrase is not None else []
        return LabKeyWrapper(self.lab_public_key(), secrets)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on the keystore for read-modify-write (two genegates at once)."""
        self._require()
        fd = os.open(self.home / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def check_passphrase(passphrase: Passphrase) -> None:
    """Refuse a passphrase too short to protect the lab's keys."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise KeyStoreError(f"the passphrase has fewer than {MIN_PASSPHRASE} characters; choose a longer one")


def check_jurisdiction(value: object) -> str:
    """A lab jurisdiction as a region code (US-CA, EU-DE, GB, CH, JP, CN), upper-cased, or KeyStoreError."""
    text = value.strip().upper() if isinstance(value, str) else ""
    if not _JURISDICTION.match(text):
        raise KeyStoreError(
            "the lab jurisdiction must be a region code such as US-CA, EU-DE, GB, CH, JP or CN "
            "(`genegate keys init --jurisdiction`)"
        )
    return text


def _make_private_dir(home: Path) -> None:
    if home.exists():
        mode = stat.S_IMODE(home.stat().st_mode)
        if mode & 0o077:
            raise KeyStoreError(
                f"{home} is readable by other users (mode {mode:o}); "
                f"`chmod 700 {home}` or choose a new --home"
            )
        return
    home.parent.mkdir(parents=True, exist_ok=True)
    os.mkdir(home, 0o700)


def _stamp(now: dt.datetime | None) -> str:
    return (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).isoformat(timespec="seconds")
