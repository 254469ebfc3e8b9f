"""Crypt4GH key formats: public keys (PEM, ssh-ed25519), encrypted private keys, redaction."""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import pickle

import bcrypt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from keys.errors import KeyFormatError, WrongPassphrase
from keys.keyfiles import (
    SecretKey,
    decode_secret_key,
    encode_secret_key,
    parse_public_key,
)

P = 2**255 - 19


def c4gh_string(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def pem(label: str, body: bytes) -> bytes:
    return f"-----BEGIN {label}-----\n{base64.b64encode(body).decode()}\n-----END {label}-----\n".encode()


def key_file(
    kdf: bytes,
    rounds: int,
    passphrase: bytes,
    raw: bytes,
    cipher: bytes = b"chacha20_poly1305",
    tail: bytes = b"",
    stored_rounds: int | None = None,
) -> bytes:
    """A c4gh-v1 key built here, independently of keys.keyfiles, the way crypt4gh/keys/kdf.py derives."""
    salt, nonce = os.urandom(16), os.urandom(12)
    if kdf == b"bcrypt":
        derived = bcrypt.kdf(passphrase, salt, 32, rounds, ignore_few_rounds=True)
    elif kdf == b"pbkdf2_hmac_sha256":
        derived = hashlib.pbkdf2_hmac("sha256", passphrase, salt, rounds, dklen=32)
    else:
        derived = hashlib.scrypt(passphrase, salt=salt, n=2**14, r=8, p=1, dklen=32)
    blob = nonce + ChaCha20Poly1305(derived).encrypt(nonce, raw, None)
    body = (
        b"c4gh-v1"
        + c4gh_string(kdf)
        + c4gh_string((rounds if stored_rounds is None else stored_rounds).to_bytes(4, "big") + salt)
        + c4gh_string(cipher)
        + c4gh_string(blob)
        + tail
    )
    return pem("CRYPT4GH PRIVATE KEY", body)


def ssh_line(point: bytes, kind: bytes = b"ssh-ed25519") -> str:
    blob = len(kind).to_bytes(4, "big") + kind + len(point).to_bytes(4, "big") + point
    return f"{kind.decode()} {base64.b64encode(blob).decode()} someone@example.org"


def ed25519_twin(seed: bytes) -> tuple[str, bytes]:
    """An ssh-ed25519 line and the X25519 public key of the same secret (clamped SHA-512 of the seed)."""
    signer = Ed25519PrivateKey.from_private_bytes(seed)
    line = signer.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    scalar = hashlib.sha512(seed).digest()[:32]
    return line.decode() + " lab@example.org", X25519PrivateKey.from_private_bytes(
        scalar
    ).public_key().public_bytes_raw()


def test_secret_key_round_trips_through_encrypted_pem() -> None:
    """encode_secret_key writes the ENCRYPTED label and decode_secret_key returns the same key."""
    key = SecretKey.generate()
    data = encode_secret_key(key, "correct horse", comment="lab key")
    lines = data.decode().splitlines()
    assert [
        "-----BEGIN CRYPT4GH ENCRYPTED PRIVATE KEY-----",
        "-----END CRYPT4GH ENCRYPTED PRIVATE KEY-----",
    ] == [
        lines[0],
        lines[-1],
    ]
    assert key.raw() == decode_secret_key(data, "correct horse", "lab.sec").raw()


def test_encoded_secret_key_has_the_c4gh_v1_layout() -> None:
    """The body is c4gh-v1 | scrypt | rounds 0 + 16-byte salt | chacha20_poly1305 | nonce+sealed key | comment."""
    data = encode_secret_key(SecretKey.generate(), "pw", comment="lab key")
    body = base64.b64decode(b"".join(data.splitlines()[1:-1]))
    fields, rest = [], body[7:]
    while rest:
        size = int.from_bytes(rest[:2], "big")
        fields.append(rest[2 : 2 + size])
        rest = rest[2 + size :]
    assert (b"c4gh-v1", b"scrypt", 20, b"\x00\x00\x00\x00", b"chacha20_poly1305", 60, b"lab key") == (
        body[:7],
        fields[0],
        len(fields[1]),
        fields[1][:4],
        fields[2],
        len(fields[3]),
        fields[4],
    )


@pytest.mark.parametrize(
    ("kdf", "rounds"), [(b"scrypt", 0), (b"bcrypt", 100), (b"pbkdf2_hmac_sha256", 100_000)]
)
def test_every_reference_kdf_is_read(kdf: bytes, rounds: int) -> None:
    """Keys derived with scrypt, bcrypt or pbkdf2_hmac_sha256 (the reference's KDFs) open with their passphrase."""
    raw = os.urandom(32)
    assert raw == decode_secret_key(key_file(kdf, rounds, b"pass phrase", raw), "pass phrase", "k.sec").raw()


def test_unencrypted_key_is_read_without_passphrase() -> None:
    """A kdf none / cipher none key (crypt4gh-keygen --nocrypt) needs no passphrase."""
    raw = os.urandom(32)
    body = b"c4gh-v1" + c4gh_string(b"none") + c4gh_string(b"none") + c4gh_string(raw) + c4gh_string(b"note")
    assert raw == decode_secret_key(pem("CRYPT4GH PRIVATE KEY", body), None, "k.sec").raw()


def test_wrong_passphrase_is_reported_as_such() -> None:
    """A wrong passphrase raises WrongPassphrase naming the file, not the passphrase."""
    data = encode_secret_key(SecretKey.generate(), "right one")
    with pytest.raises(WrongPassphrase) as info:
        decode_secret_key(data, "wrong one", "lab/ab12.sec")
    assert "lab/ab12.sec: the passphrase does not open this private key; check $GENEGATE_PASSPHRASE" == str(
        info.value
    )


def test_encrypted_key_without_passphrase_is_wrong_passphrase() -> None:
    """No passphrase for an encrypted key is the same failure as a wrong one."""
    with pytest.raises(WrongPassphrase):
        decode_secret_key(encode_secret_key(SecretKey.generate(), "pw"), None, "k.sec")


def test_empty_passphrase_is_refused_when_encoding() -> None:
    """An empty passphrase would leave the key unencrypted, so encode_secret_key refuses it."""
    with pytest.raises(ValueError, match="empty passphrase"):
        encode_secret_key(SecretKey.generate(), "")


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"\xff\xfe", "not a Crypt4GH private key file (it is not PEM text)"),
        (b" " * 20_000, "20000 characters is too large for a Crypt4GH key file"),
        (
            b"hello",
            "not a Crypt4GH key (expected one -----BEGIN CRYPT4GH ...----- block or an ssh-ed25519 line)",
        ),
        (
            pem("OPENSSH PRIVATE KEY", b"openssh-key-v1\x00"),
            "a OPENSSH PRIVATE KEY is not a Crypt4GH private key; give the .sec key file",
        ),
        (
            pem("CRYPT4GH PRIVATE KEY", b"c4gh-v2"),
            "not a c4gh-v1 private key (OpenSSH and other formats are not read)",
        ),
        (
            pem("CRYPT4GH PRIVATE KEY", b"c4gh-v1" + c4gh_string(b"argon2")),
            "unsupported key derivation b'argon2'; re-export the key with scrypt",
        ),
        (
            pem("CRYPT4GH PRIVATE KEY", b"c4gh-v1" + c4gh_string(b"scrypt") + b"\x00\x40"),
            "the private key file is truncated; restore it from backup",
        ),
        (
            key_file(b"scrypt", 0, b"pw", bytes(32), cipher=b"aes256_gcm"),
            "unsupported key cipher b'aes256_gcm'; re-export the key with crypt4gh-keygen",
        ),
        (
            key_file(b"bcrypt", 4, b"pw", bytes(32), stored_rounds=1_000_000),
            "the bcrypt rounds (1000000) are out of range; re-export the key",
        ),
        (
            key_file(b"scrypt", 0, b"pw", bytes(32), tail=c4gh_string(b"comment") + b"junk"),
            "unexpected data after the key; restore the key file from backup",
        ),
    ],
)
def test_malformed_private_keys_name_the_problem(data: bytes, detail: str) -> None:
    """Anything but a well-formed c4gh-v1 key raises KeyFormatError with the source and the fix."""
    with pytest.raises(KeyFormatError) as info:
        decode_secret_key(data, "pw", "partner.sec")
    assert ("partner.sec", detail) == (info.value.source, info.value.detail)


def test_secret_key_never_shows_its_bytes() -> None:
    """repr and str are redacted but name the public fingerprint; pickling is refused; copies are the same object."""
    key = SecretKey.generate()
    fingerprint = key.public_key().fingerprint
    assert (f"SecretKey(<redacted> fp={fingerprint[:19]}...)", str(key)) == (repr(key), repr(key))
    assert False is (key.raw().hex() in repr(key))
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(key)
    assert (key, key) == (copy.copy(key), copy.deepcopy(key))


def test_secret_key_from_raw_derives_the_x25519_public_key() -> None:
    """from_raw keeps the bytes, and public_key() is cryptography's X25519 public key of them."""
    raw = bytes(range(32))
    expected = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes_raw()
    assert (raw, expected) == (SecretKey.from_raw(raw).raw(), SecretKey.from_raw(raw).public_key().raw)


def test_public_key_pem_and_fingerprint() -> None:
    """to_pem is the crypt4gh-keygen layout, the fingerprint is SHA256:<hex>, and parsing returns the key."""
    public = SecretKey.generate().public_key()
    expected_pem = (
        "-----BEGIN CRYPT4GH PUBLIC KEY-----\n"
        f"{base64.b64encode(public.raw).decode()}\n"
        "-----END CRYPT4GH PUBLIC KEY-----\n"
    )
    assert expected_pem == public.to_pem()
    assert "SHA256:" + hashlib.sha256(public.raw).hexdigest() == public.fingerprint
    assert public == parse_public_key(public.to_pem().replace("\n", "\r\n") + "\n\n", "r.pub")
    assert f"PublicKey({public.fingerprint})" == repr(public)


@pytest.mark.parametrize("seed", [bytes(32), bytes(range(32)), hashlib.sha256(b"partner").digest()])
def test_ssh_ed25519_key_maps_to_the_x25519_key_of_the_same_secret(seed: bytes) -> None:
    """The birational map gives the X25519 public key that the Ed25519 secret's X25519 twin has."""
    line, expected = ed25519_twin(seed)
    assert expected == parse_public_key(line, "partner.pub").raw


def test_rfc8032_vector_maps_as_libsodium_does() -> None:
    """RFC 8032 test 1's public key maps to the u-coordinate libsodium computes for it."""
    point = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    _, expected = ed25519_twin(
        bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    )
    assert expected == parse_public_key(ssh_line(point), "rfc.pub").raw


def test_invalid_ed25519_points_are_refused() -> None:
    """Non-canonical, off-curve, small-order and mixed-order points are not recipients."""
    valid_line, _ = ed25519_twin(bytes(range(32)))
    valid = base64.b64decode(valid_line.split()[1])[-32:]
    y = int.from_bytes(valid, "little") & ((1 << 255) - 1)
    mixed = ((P - y) | ((1 - (valid[31] >> 7)) << 255)).to_bytes(32, "little")  # adds the order-2 point
    points = [
        (1).to_bytes(32, "little"),  # identity
        (P - 1).to_bytes(32, "little"),  # (0, -1), order 2
        P.to_bytes(32, "little"),  # y = p, not canonical
        (2).to_bytes(32, "little"),  # y = 2 has no x on the curve
        mixed,
    ]
    outcomes = []
    for point in points:
        with pytest.raises(KeyFormatError) as info:
            parse_public_key(ssh_line(point), "bad.pub")
        outcomes.append(info.value.detail)
    assert ["the ssh-ed25519 key is not a valid Ed25519 public key"] * 5 == outcomes


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        (
            ssh_line(bytes(32), b"ssh-rsa"),
            "ssh-rsa keys cannot receive Crypt4GH files; give an ssh-ed25519 or Crypt4GH key",
        ),
        ("ssh-ed25519 !!!", "the ssh-ed25519 key's base64 is damaged; copy the line again"),
        (ssh_line(bytes(31)), "the ssh-ed25519 line does not hold one 32-byte Ed25519 key"),
        (
            pem("CRYPT4GH PUBLIC KEY", bytes(31)).decode(),
            "a Crypt4GH public key holds 32 bytes, this one 31",
        ),
        (
            pem("CRYPT4GH PUBLIC KEY", bytes(32)).decode(),
            "this X25519 public key is a low-order point; no shared key can be agreed with it; "
            "ask the recipient for their real public key",
        ),
        (
            pem("CRYPT4GH ENCRYPTED PRIVATE KEY", b"c4gh-v1").decode(),
            "a CRYPT4GH ENCRYPTED PRIVATE KEY is not a public key; "
            "give the CRYPT4GH PUBLIC KEY file or an ssh-ed25519 line",
        ),
        (
            "-----BEGIN CRYPT4GH PUBLIC KEY-----\n%%%%\n-----END CRYPT4GH PUBLIC KEY-----\n",
            "not a Crypt4GH key (expected one -----BEGIN CRYPT4GH ...----- block or an ssh-ed25519 line)",
        ),
    ],
)
def test_unusable_public_keys_name_the_problem(text: str, detail: str) -> None:
    """parse_public_key refuses anything but a usable Crypt4GH or ssh-ed25519 key, saying why."""
    with pytest.raises(KeyFormatError) as info:
        parse_public_key(text, "partner.pub")
    assert ("partner.pub", detail) == (info.value.source, info.value.detail)
