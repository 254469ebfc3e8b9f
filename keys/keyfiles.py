"""Crypt4GH key files: X25519 key types, public keys (Crypt4GH PEM or OpenSSH ed25519), private keys.

Pure: text or bytes in, values or bytes out; no filesystem. Randomness only where a new secret
is made (generate(); the salt and nonce of encode_secret_key). Formats (GA4GH Crypt4GH `docs/keys.rst`):

    public   -----BEGIN CRYPT4GH PUBLIC KEY----- / base64(32-byte X25519 key) / -----END ...-----
             or one OpenSSH line `ssh-ed25519 AAAA... comment`, mapped Ed25519 -> X25519 as libsodium's
             crypto_sign_ed25519_pk_to_curve25519 does (the point is validated first)
    private  PEM (label CRYPT4GH ENCRYPTED PRIVATE KEY, or CRYPT4GH PRIVATE KEY as the Python tool writes)
             around  "c4gh-v1" | str kdf | [str rounds_u32be || salt] | str cipher | str blob | [str comment]
             where str = u16 big-endian length || bytes, and blob = nonce12 || ChaCha20-Poly1305(sk32)

We write scrypt (n=2**14, r=8, p=1; the rounds field is stored as 0, as the reference tool does) with
the ENCRYPTED label that the Go and htslib readers rely on; we read scrypt, bcrypt,
pbkdf2_hmac_sha256 and unencrypted (`none`) keys under either label.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass
from typing import NoReturn

import bcrypt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from keys.errors import KeyFormatError, WrongPassphrase

KEY_SIZE = 32
MAGIC = b"c4gh-v1"
PUBLIC_LABEL = "CRYPT4GH PUBLIC KEY"
ENCRYPTED_LABEL = "CRYPT4GH ENCRYPTED PRIVATE KEY"
PLAIN_LABEL = "CRYPT4GH PRIVATE KEY"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_SIZE = 16
NONCE_SIZE = 12
MAX_KEY_TEXT = 16_384  # real key files are under 1 KiB

_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s*([A-Za-z0-9+/=\s]*?)\s*-----END \1-----\s*", re.ASCII)


class SecretKey:
    """An X25519 private key. It never prints, compares or pickles its bytes."""

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes) -> None:
        if len(raw) != KEY_SIZE:
            raise ValueError(f"an X25519 private key has {KEY_SIZE} bytes")
        self._raw = bytes(raw)

    @classmethod
    def generate(cls) -> SecretKey:
        """A fresh key from the operating system's CSPRNG (through cryptography)."""
        private = X25519PrivateKey.generate()
        return cls(private.private_bytes_raw())

    @classmethod
    def from_raw(cls, raw: bytes) -> SecretKey:
        """The key whose 32 private bytes are `raw`."""
        return cls(raw)

    def raw(self) -> bytes:
        """The 32 private bytes, for the envelope's key exchange only."""
        return self._raw

    def public_key(self) -> PublicKey:
        """The matching X25519 public key."""
        return PublicKey(X25519PrivateKey.from_private_bytes(self._raw).public_key().public_bytes_raw())

    def __repr__(self) -> str:
        return f"SecretKey(<redacted> fp={self.public_key().fingerprint[:19]}...)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SecretKey is not pickled; pass the key file's path and load it where it is used")

    def __copy__(self) -> SecretKey:
        return self

    def __deepcopy__(self, memo: object) -> SecretKey:
        return self


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An X25519 public key that is a valid Crypt4GH recipient (not a low-order point)."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != KEY_SIZE:
            raise ValueError(f"an X25519 public key has {KEY_SIZE} bytes, not {len(self.raw)}")
        if not _usable_x25519(self.raw):
            raise ValueError(
                "this X25519 public key is a low-order point; no shared key can be agreed with it"
            )

    @property
    def fingerprint(self) -> str:
        """The SHA-256 of the 32 key bytes, as `SHA256:` and 64 hex digits."""
        return "SHA256:" + hashlib.sha256(self.raw).hexdigest()

    def to_pem(self) -> str:
        """The Crypt4GH public key file, as `crypt4gh-keygen` writes it."""
        body = base64.b64encode(self.raw).decode("ascii")
        return f"-----BEGIN {PUBLIC_LABEL}-----\n{body}\n-----END {PUBLIC_LABEL}-----\n"

    def __repr__(self) -> str:
        return f"PublicKey({self.fingerprint})"


def _usable_x25519(raw: bytes) -> bool:
    """False for the points of order 1, 2, 4 or 8, with which every shared secret is zero."""
    probe = X25519PrivateKey.from_private_bytes(b"\x01" * KEY_SIZE)  # clamped: a multiple of 8
    try:
        probe.exchange(X25519PublicKey.from_public_bytes(raw))
    except ValueError:
        return False
    return True


# --- public keys ---------------------------------------------------------------------------


def parse_public_key(text: str, source: str) -> PublicKey:
    """A Crypt4GH PEM public key or an OpenSSH `ssh-ed25519` line, as an X25519 public key."""
    stripped = text.strip()
    if stripped.startswith("ssh-"):
        return PublicKey(_ssh_ed25519_to_x25519(stripped, source))
    label, der = _pem(stripped, source)
    if label != PUBLIC_LABEL:
        raise KeyFormatError(
            source, f"a {label} is not a public key; give the {PUBLIC_LABEL} file or an ssh-ed25519 line"
        )
    if len(der) != KEY_SIZE:
        raise KeyFormatError(source, f"a Crypt4GH public key holds {KEY_SIZE} bytes, this one {len(der)}")
    try:
        return PublicKey(der)
    except ValueError as exc:
        raise KeyFormatError(source, f"{exc}; ask the recipient for their real public key") from exc


def _pem(text: str, source: str) -> tuple[str, bytes]:
    """The label and decoded body of exactly one PEM block."""
    if len(text) > MAX_KEY_TEXT:
        raise KeyFormatError(source, f"{len(text)} characters is too large for a Crypt4GH key file")
    match = _PEM.fullmatch(text.strip() + "\n")
    if match is None:
        raise KeyFormatError(
            source,
            "not a Crypt4GH key (expected one -----BEGIN CRYPT4GH ...----- block or an ssh-ed25519 line)",
        )
    try:
        body = base64.b64decode("".join(match.group(2).split()), validate=True)
    except binascii.Error as exc:
        raise KeyFormatError(source, "the key's base64 body is damaged; copy the key file again") from exc
    return match.group(1), body


def _ssh_ed25519_to_x25519(line: str, source: str) -> bytes:
    """Decode `ssh-ed25519 <base64> [comment]` and map its Ed25519 point to X25519."""
    fields = line.split(maxsplit=2)
    if fields[0] != "ssh-ed25519" or len(fields) < 2:
        raise KeyFormatError(
            source, f"{fields[0]} keys cannot receive Crypt4GH files; give an ssh-ed25519 or Crypt4GH key"
        )
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except binascii.Error as exc:
        raise KeyFormatError(source, "the ssh-ed25519 key's base64 is damaged; copy the line again") from exc
    kind, rest = _ssh_string(blob)
    point, tail = _ssh_string(rest)
    if kind != b"ssh-ed25519" or len(point) != KEY_SIZE or tail:
        raise KeyFormatError(source, "the ssh-ed25519 line does not hold one 32-byte Ed25519 key")
    u = _edwards_to_montgomery(point)
    if u is None:
        raise KeyFormatError(source, "the ssh-ed25519 key is not a valid Ed25519 public key")
    return u


def _ssh_string(data: bytes) -> tuple[bytes, bytes]:
    """An OpenSSH u32-big-endian-length string and what follows it (empty on a short buffer)."""
    if len(data) < 4:
        return b"", b""
    size = int.from_bytes(data[:4], "big")
    if len(data) < 4 + size:
        return b"", b""
    return data[4 : 4 + size], data[4 + size :]


# Edwards25519 (RFC 8032): -x^2 + y^2 = 1 + d x^2 y^2 over GF(p); L is the prime subgroup's order.
_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P
_L = 2**252 + 27742317777372353535851937790883648493
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_Point = tuple[int, int, int, int]  # extended coordinates X, Y, Z, T with x = X/Z, y = Y/Z, xy = T/Z


def _edwards_to_montgomery(encoded: bytes) -> bytes | None:
    """u = (1 + y) / (1 - y) for a canonical point of the prime-order subgroup, else None.

    As libsodium, we refuse points that do not decode and points outside the main subgroup
    (which covers the small-order points); we also refuse non-canonical y (y >= p).
    """
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    sign = encoded[31] >> 7
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, -1, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P or (x == 0 and sign):
        return None
    if x & 1 != sign:
        x = _P - x
    point = (x, y, 1, x * y % _P)
    if _is_identity(point) or not _is_identity(_multiply(_L, point)):
        return None
    return ((1 + y) * pow(1 - y, -1, _P) % _P).to_bytes(KEY_SIZE, "little")


def _add(a: _Point, b: _Point) -> _Point:
    """Unified point addition in extended coordinates (RFC 8032 section 5.1.4)."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    e1 = (y1 - x1) * (y2 - x2) % _P
    e2 = (y1 + x1) * (y2 + x2) % _P
    c = 2 * t1 * t2 * _D % _P
    dz = 2 * z1 * z2 % _P
    e, f, g, h = e2 - e1, dz - c, dz + c, e2 + e1
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _multiply(scalar: int, point: _Point) -> _Point:
    """scalar * point by double-and-add (public inputs only: not constant time)."""
    result: _Point = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _is_identity(point: _Point) -> bool:
    x, y, z, _ = point
    return x % _P == 0 and (y - z) % _P == 0


# --- private keys --------------------------------------------------------------------------


def encode_secret_key(key: SecretKey, passphrase: str, comment: str | None = None) -> bytes:
    """The PEM private key file, encrypted under `passphrase` with scrypt and ChaCha20-Poly1305."""
    if not passphrase:
        raise ValueError("an empty passphrase would store the private key unencrypted; give a passphrase")
    salt, nonce = os.urandom(SALT_SIZE), os.urandom(NONCE_SIZE)
    derived = _derive(b"scrypt", passphrase.encode("utf-8"), salt, 0)
    sealed = ChaCha20Poly1305(derived).encrypt(nonce, key.raw(), None)
    body = (
        MAGIC
        + _c4gh_string(b"scrypt")
        + _c4gh_string((0).to_bytes(4, "big") + salt)
        + _c4gh_string(b"chacha20_poly1305")
        + _c4gh_string(nonce + sealed)
        + (_c4gh_string(comment.encode("utf-8")) if comment is not None else b"")
    )
    text = base64.b64encode(body).decode("ascii")
    return f"-----BEGIN {ENCRYPTED_LABEL}-----\n{text}\n-----END {ENCRYPTED_LABEL}-----\n".encode("ascii")


def decode_secret_key(data: bytes, passphrase: str | None, source: str) -> SecretKey:
    """Open a Crypt4GH private key file (scrypt, bcrypt, pbkdf2_hmac_sha256 or unencrypted)."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise KeyFormatError(source, "not a Crypt4GH private key file (it is not PEM text)") from exc
    label, body = _pem(text, source)
    if label not in (ENCRYPTED_LABEL, PLAIN_LABEL):
        raise KeyFormatError(source, f"a {label} is not a Crypt4GH private key; give the .sec key file")
    if not body.startswith(MAGIC):
        raise KeyFormatError(source, "not a c4gh-v1 private key (OpenSSH and other formats are not read)")
    reader = _Fields(body[len(MAGIC) :], source)
    kdf = reader.take()
    if kdf == b"none":
        if reader.take() != b"none":
            raise KeyFormatError(source, "an unencrypted key must name cipher none")
        return _finish(reader, reader.take(), source)
    if kdf not in _KDFS:
        raise KeyFormatError(source, f"unsupported key derivation {kdf!r}; re-export the key with scrypt")
    options = reader.take()
    rounds, salt = int.from_bytes(options[:4], "big"), options[4:]
    cipher = reader.take()
    if cipher != b"chacha20_poly1305":
        raise KeyFormatError(
            source, f"unsupported key cipher {cipher!r}; re-export the key with crypt4gh-keygen"
        )
    blob = reader.take()
    if len(salt) == 0 or len(blob) != NONCE_SIZE + KEY_SIZE + 16:
        raise KeyFormatError(
            source, "the encrypted key material is damaged; restore the key file from backup"
        )
    if passphrase is None:
        raise WrongPassphrase(source)
    if kdf in _MAX_ROUNDS and not 0 < rounds <= _MAX_ROUNDS[kdf]:
        raise KeyFormatError(
            source, f"the {kdf.decode()} rounds ({rounds}) are out of range; re-export the key"
        )
    try:
        derived = _derive(kdf, passphrase.encode("utf-8"), salt, rounds)
    except ValueError as exc:
        raise KeyFormatError(source, f"the {kdf.decode()} parameters are invalid; re-export the key") from exc
    try:
        raw = ChaCha20Poly1305(derived).decrypt(blob[:NONCE_SIZE], blob[NONCE_SIZE:], None)
    except InvalidTag as exc:
        raise WrongPassphrase(source) from exc
    return _finish(reader, raw, source)


def _finish(reader: _Fields, raw: bytes, source: str) -> SecretKey:
    """The key, once the optional comment is the only thing left."""
    if len(raw) != KEY_SIZE:
        raise KeyFormatError(source, f"the private key holds {len(raw)} bytes, not {KEY_SIZE}")
    if not reader.done():
        reader.take()  # the comment, which we do not need
    if not reader.done():
        raise KeyFormatError(source, "unexpected data after the key; restore the key file from backup")
    return SecretKey(raw)


_KDFS = (b"scrypt", b"bcrypt", b"pbkdf2_hmac_sha256")
# Upper bounds on the stored work factor, so a crafted file cannot pin a CPU for hours (the
# reference tool writes 0 for scrypt, whose n is fixed, 100 for bcrypt and 100,000 for pbkdf2).
_MAX_ROUNDS = {b"bcrypt": 4096, b"pbkdf2_hmac_sha256": 10_000_000}


def _derive(kdf: bytes, passphrase: bytes, salt: bytes, rounds: int) -> bytes:
    """The 32-byte key-encryption key, as crypt4gh/keys/kdf.py derives it."""
    if kdf == b"scrypt":  # the stored rounds value is ignored by every implementation
        return hashlib.scrypt(passphrase, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=KEY_SIZE)
    if kdf == b"bcrypt":
        return bcrypt.kdf(passphrase, salt, KEY_SIZE, rounds, ignore_few_rounds=True)
    return hashlib.pbkdf2_hmac("sha256", passphrase, salt, rounds, dklen=KEY_SIZE)


def _c4gh_string(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


class _Fields:
    """Reads the u16-length-prefixed strings of a c4gh-v1 key body."""

    __slots__ = ("_data", "_pos", "_source")

    def __init__(self, data: bytes, source: str) -> None:
        self._data, self._pos, self._source = data, 0, source

    def take(self) -> bytes:
        start = self._pos + 2
        if start > len(self._data):
            raise KeyFormatError(self._source, "the private key file is truncated; restore it from backup")
        end = start + int.from_bytes(self._data[self._pos : start], "big")
        if end > len(self._data):
            raise KeyFormatError(self._source, "the private key file is truncated; restore it from backup")
        self._pos = end
        return self._data[start:end]

    def done(self) -> bool:
        return self._pos == len(self._data)
