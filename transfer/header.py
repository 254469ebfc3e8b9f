"""The Crypt4GH v1 header: packets sealed for each reader, holding the data key and an edit list.

Pure: bytes in, values and bytes out; randomness (nonces) is passed in by the caller. Layout, all
integers little-endian (GA4GH Crypt4GH v1, section 3):

    header   "crypt4gh" | u32 version = 1 | u32 packet_count | packet...
    packet   u32 length (itself included) | u32 method = 0 (X25519_chacha20_ietf_poly1305)
             | writer_pk[32] | nonce[12] | ChaCha20-IETF-Poly1305(plain) | MAC[16]
    plain    u32 type 0 | u32 data method 0 (chacha20_ietf_poly1305) | data key[32]
             u32 type 1 | u32 n | n x u64 edit lengths (skip, keep, skip, ...)

The packet key is libsodium's crypto_kx: BLAKE2b-512(X25519(sk, peer) | reader_pk | writer_pk)[:32],
the writer in the server role, the reader in the client role.

We fail closed where the reference reader is lenient: an unknown packet method, packet type or
data method, a malformed packet, and two different edit lists are refused, never skipped. Packets
that none of our keys opens are skipped silently: they are meant for other readers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from keys import DataKey, PublicKey, SecretKey
from transfer.errors import NoKeyForFile, NotCrypt4GH, UnsupportedEnvelope

MAGIC = b"crypt4gh"
VERSION = 1
PREAMBLE_SIZE = 16  # magic, version, packet count
METHOD_X25519_CHACHA20_POLY1305 = 0
DATA_METHOD_CHACHA20_POLY1305 = 0
TYPE_DATA_KEY = 0
TYPE_EDIT_LIST = 1
NONCE_SIZE = 12
MAC_SIZE = 16
SEALED_OVERHEAD = 4 + 32 + NONCE_SIZE + MAC_SIZE  # method, writer key, nonce, MAC
# Bounds that keep a crafted header from exhausting memory; real headers are a few hundred bytes.
MAX_PACKETS = 65_536
MAX_PACKET_BYTES = 1 << 20
MAX_HEADER_BYTES = 16 << 20

RandomBytes = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class EditList:
    """Alternating byte counts to skip and keep over the plaintext, starting with a skip.

    An odd count ends with a skip, after which everything is kept (the spec's CRAM example:
    `(0, 7853, 71721, 307929, 51299, 38)`).
    """

    lengths: tuple[int, ...]

    def kept_ranges(self) -> tuple[tuple[int, int | None], ...]:
        """The plaintext [start, end) ranges kept; the last end is None when all after it is kept."""
        ranges: list[tuple[int, int | None]] = []
        pos = 0
        for i, length in enumerate(self.lengths):
            if i % 2:
                ranges.append((pos, pos + length))
            pos += length
        if len(self.lengths) % 2:
            ranges.append((pos, None))
        return tuple(ranges)

    def kept_bytes(self, plaintext_bytes: int) -> int:
        """How many bytes of a plaintext of this size the edit list keeps."""
        return sum(
            max(0, min(plaintext_bytes, plaintext_bytes if end is None else end) - start)
            for start, end in self.kept_ranges()
        )

    def packet(self) -> bytes:
        """The plaintext of an edit-list packet."""
        return (
            TYPE_EDIT_LIST.to_bytes(4, "little")
            + len(self.lengths).to_bytes(4, "little")
            + b"".join(n.to_bytes(8, "little") for n in self.lengths)
        )


@dataclass(frozen=True, slots=True)
class OpenedHeader:
    """What our keys read from a header: the data keys and the edit list, if any."""

    data_keys: tuple[DataKey, ...]
    edit_list: EditList | None
    packets: int


def data_key_packet(key: DataKey) -> bytes:
    """The plaintext of a data-encryption-parameters packet (ChaCha20-Poly1305, this key)."""
    return (
        TYPE_DATA_KEY.to_bytes(4, "little")
        + DATA_METHOD_CHACHA20_POLY1305.to_bytes(4, "little")
        + key.reveal()
    )


def seal_header(
    plain_packets: Sequence[bytes],
    recipients: Sequence[PublicKey],
    writer: SecretKey,
    random_bytes: RandomBytes,
) -> bytes:
    """The serialized header: every plaintext packet sealed for every recipient, by `writer`."""
    private = X25519PrivateKey.from_private_bytes(writer.raw())
    writer_pk = writer.public_key().raw
    sealed = []
    for recipient in recipients:
        shared = private.exchange(X25519PublicKey.from_public_bytes(recipient.raw))
        aead = ChaCha20Poly1305(_session_key(shared, reader_pk=recipient.raw, writer_pk=writer_pk))
        for plain in plain_packets:
            nonce = random_bytes(NONCE_SIZE)
            sealed.append(
                METHOD_X25519_CHACHA20_POLY1305.to_bytes(4, "little")
                + writer_pk
                + nonce
                + aead.encrypt(nonce, plain, None)
            )
    return serialize_header(sealed)


def serialize_header(packets: Sequence[bytes]) -> bytes:
    """Preamble and length-prefixed packets (each packet given without its length field)."""
    return (
        MAGIC
        + VERSION.to_bytes(4, "little")
        + len(packets).to_bytes(4, "little")
        + b"".join((len(p) + 4).to_bytes(4, "little") + p for p in packets)
    )


def parse_preamble(preamble: bytes, path: str) -> int:
    """The packet count of a header that starts with these 16 bytes."""
    if preamble[:8] != MAGIC:
        raise NotCrypt4GH(path, "not a Crypt4GH file (it does not start with 'crypt4gh'); was it encrypted?")
    if len(preamble) < PREAMBLE_SIZE:
        raise NotCrypt4GH(path, f"the file ends after {len(preamble)} bytes, inside the Crypt4GH preamble")
    version = int.from_bytes(preamble[8:12], "little")
    if version != VERSION:
        raise UnsupportedEnvelope(path, f"Crypt4GH version {version}; genegate reads version 1 only")
    count = int.from_bytes(preamble[12:16], "little")
    if not 0 < count <= MAX_PACKETS:
        raise NotCrypt4GH(path, f"the header declares {count} packets; the header is damaged")
    return count


def parse_packet_length(prefix: bytes, index: int, path: str) -> int:
    """The size of packet `index` after its 4-byte length field."""
    if len(prefix) < 4:
        raise NotCrypt4GH(path, f"the file ends inside header packet {index}; it is truncated")
    size = int.from_bytes(prefix, "little") - 4
    if not SEALED_OVERHEAD <= size <= MAX_PACKET_BYTES:
        raise NotCrypt4GH(path, f"header packet {index} declares {size + 4} bytes; the header is damaged")
    return size


def open_header(packets: Sequence[bytes], keys: Sequence[SecretKey], path: str) -> OpenedHeader:
    """Open every packet one of `keys` can open; refuse what genegate does not accept."""
    openers = [_Opener(key) for key in keys]
    data_keys: list[DataKey] = []
    edit_list: EditList | None = None
    for index, packet in enumerate(packets):
        method = int.from_bytes(packet[:4], "little")
        if method != METHOD_X25519_CHACHA20_POLY1305:
            raise UnsupportedEnvelope(
                path,
                f"header packet {index} uses encryption method {method}; "
                "genegate reads only method 0 (X25519_chacha20_ietf_poly1305)",
            )
        plain = next((p for p in (o.open(packet) for o in openers) if p is not None), None)
        if plain is None:
            continue  # sealed for another reader
        found = _parse_plain(plain, index, path)
        if isinstance(found, DataKey):
            if found not in data_keys:
                data_keys.append(found)
        elif edit_list is not None and edit_list != found:
            raise UnsupportedEnvelope(path, "the header holds two different edit lists; refusing to guess")
        else:
            edit_list = found
    if not data_keys:
        tried = ", ".join(key.public_key().fingerprint for key in keys) or "no keys given"
        raise NoKeyForFile(
            path,
            f"none of the keys tried ({tried}) opens a data-key packet among the header's {len(packets)}; "
            "ask the sender to encrypt for one of these keys (or the header was altered)",
        )
    return OpenedHeader(tuple(data_keys), edit_list, len(packets))


def _parse_plain(plain: bytes, index: int, path: str) -> DataKey | EditList:
    """A decrypted packet as a data key or an edit list."""
    kind = int.from_bytes(plain[:4], "little") if len(plain) >= 4 else -1
    if kind == TYPE_DATA_KEY and len(plain) == 8 + DataKey.SIZE:
        method = int.from_bytes(plain[4:8], "little")
        if method != DATA_METHOD_CHACHA20_POLY1305:
            raise UnsupportedEnvelope(
                path,
                f"header packet {index} encrypts the data with method {method}; "
                "genegate reads only chacha20_ietf_poly1305 (0)",
            )
        return DataKey(plain[8:])
    if kind == TYPE_EDIT_LIST and len(plain) >= 8:
        count = int.from_bytes(plain[4:8], "little")
        if count > 0 and len(plain) == 8 + 8 * count:
            return EditList(
                tuple(int.from_bytes(plain[i : i + 8], "little") for i in range(8, len(plain), 8))
            )
        raise UnsupportedEnvelope(path, f"header packet {index} holds a malformed edit list")
    if kind in (TYPE_DATA_KEY, TYPE_EDIT_LIST):
        raise UnsupportedEnvelope(path, f"header packet {index} is malformed ({len(plain)} bytes)")
    raise UnsupportedEnvelope(
        path,
        f"header packet {index} has type {kind}; genegate knows only data keys (0) and edit lists (1)",
    )


class _Opener:
    """Opens packets with one reader key, caching the packet key per writer key."""

    __slots__ = ("_keys", "_private", "_public")

    def __init__(self, key: SecretKey) -> None:
        self._private = X25519PrivateKey.from_private_bytes(key.raw())
        self._public = key.public_key().raw
        self._keys: dict[bytes, ChaCha20Poly1305 | None] = {}

    def open(self, packet: bytes) -> bytes | None:
        """The packet's plaintext, or None if it is not sealed for this key."""
        writer_pk, nonce, sealed = packet[4:36], packet[36:48], packet[48:]
        if writer_pk not in self._keys:
            try:
                shared = self._private.exchange(X25519PublicKey.from_public_bytes(writer_pk))
            except ValueError:  # a low-order writer key: no packet of it is for anyone
                self._keys[writer_pk] = None
            else:
                key = _session_key(shared, reader_pk=self._public, writer_pk=writer_pk)
                self._keys[writer_pk] = ChaCha20Poly1305(key)
        aead = self._keys[writer_pk]
        if aead is None:
            return None
        try:
            return aead.decrypt(nonce, sealed, None)
        except InvalidTag:
            return None


def _session_key(shared: bytes, *, reader_pk: bytes, writer_pk: bytes) -> bytes:
    """crypto_kx: the first half of BLAKE2b-512(shared | client (reader) pk | server (writer) pk)."""
    return hashlib.blake2b(shared + reader_pk + writer_pk, digest_size=64).digest()[:32]
