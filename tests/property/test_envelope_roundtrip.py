"""Envelope invariants: any bytes round-trip, any altered byte is refused, re-keying and edit lists keep their meaning."""

from __future__ import annotations

import io
import os

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from keys import DataKey, SecretKey
from tests.property.strategies import SEGMENT, edit_lists, payloads
from transfer.envelope import EnvelopeDigest, decrypt_stream, encrypt_stream
from transfer.errors import EnvelopeError, IntegrityError
from transfer.header import EditList, data_key_packet, seal_header

CIPHER_SEGMENT = SEGMENT + 28
READER, OTHER = SecretKey.generate(), SecretKey.generate()
FAST = settings(max_examples=40, deadline=None)


def encrypt(data: bytes) -> tuple[bytes, EnvelopeDigest]:
    out = io.BytesIO()
    digest = encrypt_stream(io.BytesIO(data), out, [OTHER.public_key(), READER.public_key()])
    return out.getvalue(), digest


def decrypt(ciphertext: bytes) -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(ciphertext), out, [READER])
    return out.getvalue()


@FAST
@given(payloads())
def test_any_bytes_round_trip(data: bytes) -> None:
    """Whatever the size, decryption returns exactly what was encrypted."""
    ciphertext, _ = encrypt(data)
    assert data == decrypt(ciphertext)


@FAST
@given(payloads(max_size=3 * SEGMENT).filter(len), st.data())
def test_any_flipped_payload_byte_is_refused_with_its_segment(data: bytes, draw: st.DataObject) -> None:
    """Changing any one payload byte (any bit pattern) fails authentication of the segment holding it."""
    ciphertext, digest = encrypt(data)
    offset = draw.draw(st.integers(0, digest.ciphertext_bytes - digest.header_bytes - 1))
    tampered = bytearray(ciphertext)
    tampered[digest.header_bytes + offset] ^= draw.draw(st.integers(1, 255))
    try:
        decrypt(bytes(tampered))
    except IntegrityError as error:
        outcome = error.detail.split(" ")[:2]
    assert ["segment", str(offset // CIPHER_SEGMENT)] == outcome


@FAST
@given(payloads(max_size=2 * SEGMENT), st.data())
def test_any_flipped_header_byte_is_refused_unless_it_is_in_another_readers_packet(
    data: bytes, draw: st.DataObject
) -> None:
    """A changed header byte is refused, except inside the sealed part of a packet for someone else.

    The header is preamble (16 bytes), the packet for OTHER, then ours (108 bytes each). OTHER's
    writer key, nonce and ciphertext are opaque to us: we skip that packet whatever it holds.
    """
    ciphertext, digest = encrypt(data)
    offset = draw.draw(st.integers(0, digest.header_bytes - 1))
    tampered = bytearray(ciphertext)
    tampered[offset] ^= draw.draw(st.integers(1, 255))
    try:
        outcome: object = decrypt(bytes(tampered))
    except EnvelopeError:
        outcome = "refused"
    assert (data if 16 + 8 <= offset < 16 + 108 else "refused") == outcome


@FAST
@given(payloads(max_size=3 * SEGMENT), st.data())
def test_truncation_is_refused_unless_at_a_segment_boundary(data: bytes, draw: st.DataObject) -> None:
    """A cut inside a segment is refused; a cut between segments yields a prefix (a documented v1 limit)."""
    ciphertext, digest = encrypt(data)
    keep = draw.draw(st.integers(0, len(ciphertext) - 1))
    payload = keep - digest.header_bytes
    try:
        outcome: object = decrypt(ciphertext[:keep])
    except EnvelopeError:
        outcome = "refused"
    at_boundary = payload >= 0 and payload % CIPHER_SEGMENT == 0
    assert (data[: payload // CIPHER_SEGMENT * SEGMENT] if at_boundary else "refused") == outcome


@FAST
@given(payloads(max_size=3 * SEGMENT), st.data())
def test_edit_lists_select_the_same_bytes_as_slicing(data: bytes, draw: st.DataObject) -> None:
    """Decrypting under an edit list equals applying skip/keep lengths to the plaintext directly."""
    lengths = draw.draw(edit_lists(len(data)))
    key = os.urandom(32)
    segments = []
    for start in range(0, len(data), SEGMENT):
        nonce = os.urandom(12)
        segments.append(nonce + ChaCha20Poly1305(key).encrypt(nonce, data[start : start + SEGMENT], None))
    packets = [data_key_packet(DataKey(key)), EditList(lengths).packet()]
    ciphertext = seal_header(packets, [READER.public_key()], SecretKey.generate(), os.urandom) + b"".join(
        segments
    )
    expected, pos = b"", 0
    for i, length in enumerate(lengths):
        expected += data[pos : pos + length] if i % 2 else b""
        pos += length
    expected += data[pos:] if len(lengths) % 2 else b""
    assert expected == decrypt(ciphertext)
