"""Crypt4GH envelopes: round trips, digests, header layout, fail-closed reading, atomic files, re-keying, golden files."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from keys import DataKey, PublicKey, SecretKey
from keys.keyfiles import decode_secret_key, parse_public_key
from transfer.envelope import (
    EnvelopeDigest,
    decrypt_file,
    decrypt_stream,
    encrypt_file,
    encrypt_stream,
    encrypt_to,
    header_recipients_count,
    reencrypt_file,
)
from transfer.errors import (
    EnvelopeError,
    IntegrityError,
    NoKeyForFile,
    NotCrypt4GH,
    UnsupportedEnvelope,
)
from transfer.header import (
    EditList,
    data_key_packet,
    open_header,
    parse_packet_length,
    parse_preamble,
    seal_header,
)

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "crypt4gh"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text(encoding="utf-8"))
SEG, CSEG = 65536, 65564
ME, OTHER = SecretKey.generate(), SecretKey.generate()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encrypt_bytes(
    data: bytes, recipients: list[PublicKey], writer: SecretKey | None = None
) -> tuple[bytes, EnvelopeDigest]:
    out = io.BytesIO()
    digest = encrypt_stream(io.BytesIO(data), out, recipients, writer)
    return out.getvalue(), digest


def decrypt_bytes(ciphertext: bytes, keys: list[SecretKey]) -> tuple[bytes, EnvelopeDigest]:
    out = io.BytesIO()
    digest = decrypt_stream(io.BytesIO(ciphertext), out, keys, path="f.c4gh")
    return out.getvalue(), digest


def packets_of(ciphertext: bytes) -> list[tuple[int, int, bytes]]:
    """(length, method, writer key) of each header packet, parsed here independently."""
    count, pos, found = int.from_bytes(ciphertext[12:16], "little"), 16, []
    for _ in range(count):
        length = int.from_bytes(ciphertext[pos : pos + 4], "little")
        found.append(
            (length, int.from_bytes(ciphertext[pos + 4 : pos + 8], "little"), ciphertext[pos + 8 : pos + 40])
        )
        pos += length
    return found


def body(key: bytes | list[bytes], plaintext: bytes) -> bytes:
    """Segments written independently of transfer.envelope (a list of keys is used in turn)."""
    keys = key if isinstance(key, list) else [key]
    out = []
    for index, start in enumerate(range(0, len(plaintext), SEG)):
        nonce = os.urandom(12)
        out.append(
            nonce
            + ChaCha20Poly1305(keys[index % len(keys)]).encrypt(nonce, plaintext[start : start + SEG], None)
        )
    return b"".join(out)


def crafted(plain_packets: list[bytes], recipients: list[PublicKey], payload: bytes) -> bytes:
    return seal_header(plain_packets, recipients, SecretKey.generate(), os.urandom) + payload


def apply_edits(data: bytes, lengths: tuple[int, ...]) -> bytes:
    """The edit list's meaning, stated directly: skip, keep, skip, ...; a final skip keeps the rest."""
    out, pos = b"", 0
    for i, length in enumerate(lengths):
        if i % 2:
            out += data[pos : pos + length]
        pos += length
    return out + (data[pos:] if len(lengths) % 2 else b"")


def envelope_error(ciphertext: bytes, keys: list[SecretKey]) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as info:
        decrypt_bytes(ciphertext, keys)
    return info.value


# --- round trips and layout ----------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 16 * SEG, 16 * SEG + 1, 40 * SEG + 7])
def test_round_trip_reports_sizes_and_digests(size: int) -> None:
    """Any size decrypts to itself; both digests describe the plaintext and the whole file."""
    data = os.urandom(size)
    ciphertext, written = encrypt_bytes(data, [ME.public_key()])
    segments = -(-size // SEG)
    expected = EnvelopeDigest(sha(data), sha(ciphertext), size, 124 + size + 28 * segments, 124, segments)
    plaintext, read = decrypt_bytes(ciphertext, [ME])
    assert (expected, expected, len(ciphertext), data) == (
        written,
        read,
        expected.ciphertext_bytes,
        plaintext,
    )


def test_header_has_one_packet_per_recipient_sealed_by_the_writer() -> None:
    """Three recipients give three 108-byte method-0 packets carrying the writer's public key; each decrypts."""
    recipients = [SecretKey.generate() for _ in range(3)]
    writer = SecretKey.generate()
    ciphertext, digest = encrypt_bytes(b"x" * 1000, [r.public_key() for r in recipients], writer)
    assert [(108, 0, writer.public_key().raw)] * 3 == packets_of(ciphertext)
    assert 16 + 3 * 108 == digest.header_bytes
    assert [b"x" * 1000] * 3 == [decrypt_bytes(ciphertext, [r])[0] for r in recipients]


def test_without_a_writer_key_a_throwaway_key_seals_the_header() -> None:
    """The writer key is fresh per file and is none of the recipients' keys."""
    first, _ = encrypt_bytes(b"data", [ME.public_key(), OTHER.public_key()])
    second, _ = encrypt_bytes(b"data", [ME.public_key()])
    writers = {w for _, _, w in packets_of(first)}
    assert (1, False, False) == (
        len(writers),
        bool(writers & {ME.public_key().raw, OTHER.public_key().raw}),
        packets_of(second)[0][2] in writers,
    )


def test_duplicate_recipients_are_sealed_once() -> None:
    """A recipient named twice gets one header packet."""
    ciphertext, _ = encrypt_bytes(b"data", [ME.public_key(), ME.public_key(), OTHER.public_key()])
    assert 2 == len(packets_of(ciphertext))


def test_no_recipients_is_refused() -> None:
    """Encrypting for nobody is an error, not an unreadable file."""
    with pytest.raises(EnvelopeError) as info:
        encrypt_stream(io.BytesIO(b"data"), io.BytesIO(), [], path="r.vcf.gz")
    assert ("r.vcf.gz", "no recipients given; name at least one recipient public key") == (
        info.value.path,
        info.value.detail,
    )


class Trickle(io.RawIOBase):
    """A raw stream that reads and accepts at most a few hundred bytes per call."""

    def __init__(self, data: bytes = b"") -> None:
        self.data, self.pos, self.written = data, 0, bytearray()

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        size = min(len(buffer), 333, len(self.data) - self.pos)
        buffer[:size] = self.data[self.pos : self.pos + size]
        self.pos += size
        return size

    def write(self, data: memoryview) -> int:
        size = min(len(data), 777)
        self.written += bytes(data[:size])
        return size


class ReadOnly:
    """A stream with read() only, no readinto()."""

    def __init__(self, data: bytes) -> None:
        self.stream = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(min(size, 1000))


def test_short_reads_and_short_writes_keep_segment_boundaries() -> None:
    """Streams that return or accept little per call still give 64 KiB segments and the same plaintext."""
    data = os.urandom(3 * SEG + 5)
    sink = Trickle()
    encrypt_stream(Trickle(data), sink, [ME.public_key()])
    ciphertext = bytes(sink.written)
    assert [124 + 3 * CSEG + 33, data] == [len(ciphertext), decrypt_bytes(ciphertext, [ME])[0]]
    out = io.BytesIO()
    decrypt_stream(ReadOnly(ciphertext), out, [ME])
    assert data == out.getvalue()


# --- fail closed ---------------------------------------------------------------------------


def test_no_key_for_file_names_the_fingerprints_tried_and_no_key_bytes() -> None:
    """A file for someone else raises NoKeyForFile listing the fingerprints of our keys."""
    ciphertext, _ = encrypt_bytes(b"data", [OTHER.public_key()])
    error = envelope_error(ciphertext, [ME])
    expected = (
        f"none of the keys tried ({ME.public_key().fingerprint}) opens a data-key packet among the header's 1; "
        "ask the sender to encrypt for one of these keys (or the header was altered)"
    )
    assert (NoKeyForFile, expected, False) == (type(error), error.detail, ME.raw().hex() in str(error))


def test_packets_for_other_readers_are_skipped_without_logging(caplog: pytest.LogCaptureFixture) -> None:
    """A packet sealed for another reader is not an error and is not logged."""
    ciphertext, _ = encrypt_bytes(b"data", [OTHER.public_key(), ME.public_key()])
    assert (b"data", []) == (decrypt_bytes(ciphertext, [ME])[0], caplog.records)


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"", "not a Crypt4GH file (it does not start with 'crypt4gh'); was it encrypted?"),
        (
            b"##fileformat=VCFv4.3\n",
            "not a Crypt4GH file (it does not start with 'crypt4gh'); was it encrypted?",
        ),
        (b"crypt4gh\x01\x00", "the file ends after 10 bytes, inside the Crypt4GH preamble"),
        (b"crypt4gh\x01\x00\x00\x00\x00\x00\x00\x00", "the header declares 0 packets; the header is damaged"),
        (
            b"crypt4gh\x01\x00\x00\x00\x01\x00\x00\x00\x6c\x00",
            "the file ends inside header packet 0; it is truncated",
        ),
        (
            b"crypt4gh\x01\x00\x00\x00\x01\x00\x00\x00\x08\x00\x00\x00",
            "header packet 0 declares 8 bytes; the header is damaged",
        ),
        (
            b"crypt4gh\x01\x00\x00\x00\x01\x00\x00\x00\x6c\x00\x00\x00" + bytes(50),
            "the file ends inside header packet 0; it is truncated",
        ),
    ],
)
def test_not_crypt4gh_names_what_is_wrong(data: bytes, detail: str) -> None:
    """Files that are not (whole) Crypt4GH headers raise NotCrypt4GH with the reason."""
    error = envelope_error(data, [ME])
    assert (NotCrypt4GH, "f.c4gh", detail) == (type(error), error.path, error.detail)


def test_other_versions_are_refused() -> None:
    """Version 2 is not guessed at."""
    ciphertext, _ = encrypt_bytes(b"data", [ME.public_key()])
    error = envelope_error(ciphertext[:8] + (2).to_bytes(4, "little") + ciphertext[12:], [ME])
    assert (UnsupportedEnvelope, "Crypt4GH version 2; genegate reads version 1 only") == (
        type(error),
        error.detail,
    )


def test_unknown_packet_encryption_method_is_refused() -> None:
    """A header packet with method 1 is refused, not skipped."""
    ciphertext, _ = encrypt_bytes(b"data", [ME.public_key()])
    error = envelope_error(ciphertext[:20] + (1).to_bytes(4, "little") + ciphertext[24:], [ME])
    expected = "header packet 0 uses encryption method 1; genegate reads only method 0 (X25519_chacha20_ietf_poly1305)"
    assert (UnsupportedEnvelope, expected) == (type(error), error.detail)


@pytest.mark.parametrize(
    ("plain", "detail"),
    [
        (
            (7).to_bytes(4, "little") + bytes(36),
            "header packet 1 has type 7; genegate knows only data keys (0) and edit lists (1)",
        ),
        (
            (0).to_bytes(4, "little") + (1).to_bytes(4, "little") + bytes(32),
            "header packet 1 encrypts the data with method 1; genegate reads only chacha20_ietf_poly1305 (0)",
        ),
        ((0).to_bytes(4, "little") + bytes(20), "header packet 1 is malformed (24 bytes)"),
        (
            (1).to_bytes(4, "little") + (2).to_bytes(4, "little") + bytes(8),
            "header packet 1 holds a malformed edit list",
        ),
        (
            (1).to_bytes(4, "little") + (0).to_bytes(4, "little"),
            "header packet 1 holds a malformed edit list",
        ),
    ],
)
def test_unknown_or_malformed_packets_are_refused(plain: bytes, detail: str) -> None:
    """A packet we can open but do not understand stops decryption."""
    key = os.urandom(32)
    ciphertext = crafted([data_key_packet(DataKey(key)), plain], [ME.public_key()], body(key, b"data"))
    error = envelope_error(ciphertext, [ME])
    assert (UnsupportedEnvelope, detail) == (type(error), error.detail)


def test_two_different_edit_lists_are_refused() -> None:
    """Two edit lists that disagree are not resolved by guessing."""
    key = os.urandom(32)
    packets = [data_key_packet(DataKey(key)), EditList((0, 1)).packet(), EditList((0, 2)).packet()]
    error = envelope_error(crafted(packets, [ME.public_key()], body(key, b"data")), [ME])
    assert (UnsupportedEnvelope, "the header holds two different edit lists; refusing to guess") == (
        type(error),
        error.detail,
    )


@pytest.mark.parametrize("position", [0, 12, CSEG - 1, CSEG, CSEG + 500, 2 * CSEG + 40])
def test_a_flipped_payload_byte_names_its_segment(position: int) -> None:
    """Any altered byte in the payload fails authentication of its segment, which the error names."""
    ciphertext, digest = encrypt_bytes(os.urandom(2 * SEG + 100), [ME.public_key()])
    tampered = bytearray(ciphertext)
    tampered[digest.header_bytes + position] ^= 0x01
    error = envelope_error(bytes(tampered), [ME])
    index = position // CSEG
    expected = (
        f"segment {index} (plaintext bytes from {index * SEG}) failed authentication: "
        "the file was altered or damaged; fetch it again from the sender"
    )
    assert (IntegrityError, expected) == (type(error), error.detail)


@pytest.mark.parametrize(
    ("cut", "detail"),
    [
        (
            1,
            "segment 2 (plaintext bytes from 131072) failed authentication: the file was altered or damaged; fetch it again from the sender",
        ),
        (100, "segment 2 is cut short (28 bytes); the file is truncated"),
        (
            CSEG + 50,
            "segment 1 (plaintext bytes from 65536) failed authentication: the file was altered or damaged; fetch it again from the sender",
        ),
    ],
)
def test_truncated_payloads_are_integrity_errors(cut: int, detail: str) -> None:
    """A payload cut inside a segment is reported as altered or cut short."""
    ciphertext, _ = encrypt_bytes(os.urandom(2 * SEG + 100), [ME.public_key()])
    error = envelope_error(ciphertext[:-cut], [ME])
    assert (IntegrityError, detail) == (type(error), error.detail)


# --- edit lists and several data keys ------------------------------------------------------


@pytest.mark.parametrize(
    "lengths",
    [
        (10, 20),
        (0, 2 * SEG),
        (SEG - 6, 12, 100),
        (5, 5, 5, 5),
        (0, 3 * SEG + 100),
        (3 * SEG + 100,),
        (200_000,),
    ],
)
def test_edit_lists_keep_exactly_the_listed_bytes(lengths: tuple[int, ...]) -> None:
    """Decryption writes the kept ranges only (a trailing skip keeps the rest); every segment is still checked."""
    data, key = os.urandom(3 * SEG + 100), os.urandom(32)
    packets = [data_key_packet(DataKey(key)), EditList(lengths).packet()]
    plaintext, digest = decrypt_bytes(crafted(packets, [ME.public_key()], body(key, data)), [ME])
    expected = apply_edits(data, lengths)
    assert (expected, sha(expected), len(expected), 4) == (
        plaintext,
        digest.plaintext_sha256,
        digest.plaintext_bytes,
        digest.segments,
    )


def test_an_edit_list_past_the_end_is_truncation() -> None:
    """An edit list that keeps bytes the payload does not have is refused."""
    key = os.urandom(32)
    packets = [data_key_packet(DataKey(key)), EditList((10, SEG)).packet()]
    error = envelope_error(crafted(packets, [ME.public_key()], body(key, os.urandom(SEG))), [ME])
    expected = "the edit list keeps bytes up to 65546 but the payload ends at 65536; the file is truncated"
    assert (IntegrityError, expected) == (type(error), error.detail)


def test_segments_under_several_data_keys_decrypt() -> None:
    """A header may carry several data keys; each segment opens with whichever sealed it."""
    data, keys = os.urandom(5 * SEG), [os.urandom(32), os.urandom(32)]
    packets = [data_key_packet(DataKey(k)) for k in keys]
    assert data == decrypt_bytes(crafted(packets, [ME.public_key()], body(keys, data)), [ME])[0]


# --- files ---------------------------------------------------------------------------------


def test_file_round_trip_with_private_plaintext(tmp_path: Path) -> None:
    """encrypt_file then decrypt_file restore the bytes; the plaintext is created 0600; nothing else is left."""
    (tmp_path / "r.vcf").write_bytes(b"##fileformat=VCFv4.3\n" * 5000)
    written = encrypt_file(tmp_path / "r.vcf", tmp_path / "r.vcf.c4gh", [ME.public_key()])
    read = decrypt_file(tmp_path / "r.vcf.c4gh", tmp_path / "out.vcf", [ME])
    assert (written, (tmp_path / "r.vcf").read_bytes()) == (read, (tmp_path / "out.vcf").read_bytes())
    assert 0o600 == stat.S_IMODE((tmp_path / "out.vcf").stat().st_mode)
    assert ["out.vcf", "r.vcf", "r.vcf.c4gh"] == sorted(p.name for p in tmp_path.iterdir())


def test_failed_decryption_leaves_no_output_and_keeps_the_old_file(tmp_path: Path) -> None:
    """A tampered file raises, the existing destination is untouched and no temporary file remains."""
    ciphertext, digest = encrypt_bytes(os.urandom(3 * SEG), [ME.public_key()])
    tampered = bytearray(ciphertext)
    tampered[digest.header_bytes + 2 * CSEG + 7] ^= 0xFF
    (tmp_path / "in.c4gh").write_bytes(bytes(tampered))
    (tmp_path / "out").write_bytes(b"previous")
    with pytest.raises(IntegrityError):
        decrypt_file(tmp_path / "in.c4gh", tmp_path / "out", [ME])
    assert (b"previous", ["in.c4gh", "out"]) == (
        (tmp_path / "out").read_bytes(),
        sorted(p.name for p in tmp_path.iterdir()),
    )


def test_encrypt_file_replaces_an_existing_destination(tmp_path: Path) -> None:
    """*_file functions overwrite atomically; refusing to overwrite is the CLI's decision."""
    (tmp_path / "a").write_bytes(b"new data")
    (tmp_path / "a.c4gh").write_bytes(b"stale")
    encrypt_file(tmp_path / "a", tmp_path / "a.c4gh", [ME.public_key()])
    assert b"new data" == decrypt_bytes((tmp_path / "a.c4gh").read_bytes(), [ME])[0]


def test_a_missing_source_is_an_envelope_error(tmp_path: Path) -> None:
    """An unreadable source names the path, and no output appears."""
    with pytest.raises(EnvelopeError) as info:
        encrypt_file(tmp_path / "absent.vcf", tmp_path / "absent.vcf.c4gh", [ME.public_key()])
    assert (
        str(tmp_path / "absent.vcf"),
        "cannot open for reading (No such file or directory); check the path",
        [],
    ) == (
        info.value.path,
        info.value.detail,
        list(tmp_path.iterdir()),
    )


class Sip:
    """A writer that is not a file and takes at most 777 bytes per call (an upload stream, a socket)."""

    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        size = min(len(data), 777)
        self.written += memoryview(data)[:size]
        return size


def test_encrypt_to_streams_a_file_into_any_writer_and_reports_what_it_wrote(tmp_path: Path) -> None:
    """A file encrypted into a stream that takes a little per write (as an upload does): digests match its bytes."""
    data = os.urandom(2 * SEG + 99)
    (tmp_path / "a.tsv").write_bytes(data)
    sink = Sip()
    digest = encrypt_to(tmp_path / "a.tsv", sink, [ME.public_key()])
    written = bytes(sink.written)
    assert (sha(data), sha(written), len(written)) == (
        digest.plaintext_sha256,
        digest.ciphertext_sha256,
        digest.ciphertext_bytes,
    )
    assert data == decrypt_bytes(written, [ME])[0]
    assert ["a.tsv"] == [p.name for p in tmp_path.iterdir()]  # nothing staged beside it


def test_encrypt_to_a_missing_source_writes_nothing(tmp_path: Path) -> None:
    """The source is opened before the first byte goes to the stream."""
    sink = Sip()
    with pytest.raises(EnvelopeError, match="cannot open for reading"):
        encrypt_to(tmp_path / "absent.tsv", sink, [ME.public_key()])
    assert b"" == bytes(sink.written)


def test_header_recipients_count_counts_packets(tmp_path: Path) -> None:
    """One packet per recipient."""
    (tmp_path / "a").write_bytes(b"data")
    encrypt_file(tmp_path / "a", tmp_path / "a.c4gh", [ME.public_key(), OTHER.public_key()])
    assert 2 == header_recipients_count(tmp_path / "a.c4gh")


# --- re-keying -----------------------------------------------------------------------------


def test_reencrypt_rewrites_the_header_and_copies_the_payload(tmp_path: Path) -> None:
    """The new file's payload is byte-identical; the new recipient reads it, the old key no longer does."""
    data, partner = os.urandom(2 * SEG + 3), SecretKey.generate()
    (tmp_path / "a").write_bytes(data)
    source = encrypt_file(tmp_path / "a", tmp_path / "a.c4gh", [ME.public_key()])
    digest = reencrypt_file(tmp_path / "a.c4gh", tmp_path / "b.c4gh", [ME], [partner.public_key()])
    old, new = (tmp_path / "a.c4gh").read_bytes(), (tmp_path / "b.c4gh").read_bytes()
    assert EnvelopeDigest("", "", len(data), len(new), 124, 3) == digest
    assert (old[source.header_bytes :], data) == (
        new[digest.header_bytes :],
        decrypt_bytes(new, [partner])[0],
    )
    assert NoKeyForFile is type(envelope_error(new, [ME]))


def test_reencrypt_can_hash_the_new_file(tmp_path: Path) -> None:
    """With hash_payload the digest carries the SHA-256 of the new file."""
    (tmp_path / "a").write_bytes(os.urandom(SEG + 1))
    encrypt_file(tmp_path / "a", tmp_path / "a.c4gh", [ME.public_key()])
    digest = reencrypt_file(
        tmp_path / "a.c4gh", tmp_path / "b.c4gh", [ME], [OTHER.public_key()], hash_payload=True
    )
    assert ("", sha((tmp_path / "b.c4gh").read_bytes())) == (
        digest.plaintext_sha256,
        digest.ciphertext_sha256,
    )


def test_reencrypt_drops_foreign_packets_and_carries_the_edit_list(tmp_path: Path) -> None:
    """Only what our keys open is re-sealed (data key and edit list), for each new recipient."""
    data, key, partner = os.urandom(2 * SEG), os.urandom(32), SecretKey.generate()
    packets = [data_key_packet(DataKey(key)), EditList((100, 1000)).packet()]
    (tmp_path / "a.c4gh").write_bytes(
        crafted(packets, [OTHER.public_key(), ME.public_key()], body(key, data))
    )
    digest = reencrypt_file(tmp_path / "a.c4gh", tmp_path / "b.c4gh", [ME], [partner.public_key()])
    new = (tmp_path / "b.c4gh").read_bytes()
    assert (2, 1000, data[100:1100]) == (
        header_recipients_count(tmp_path / "b.c4gh"),
        digest.plaintext_bytes,
        decrypt_bytes(new, [partner])[0],
    )


def test_reencrypt_refuses_a_payload_cut_short(tmp_path: Path) -> None:
    """A payload whose last segment is too short to hold a MAC is refused before anything is written."""
    ciphertext, _ = encrypt_bytes(os.urandom(SEG + 100), [ME.public_key()])
    (tmp_path / "a.c4gh").write_bytes(ciphertext[:-110])
    with pytest.raises(IntegrityError) as info:
        reencrypt_file(tmp_path / "a.c4gh", tmp_path / "b.c4gh", [ME], [OTHER.public_key()])
    assert ("segment 1 is cut short (18 bytes); the file is truncated", ["a.c4gh"]) == (
        info.value.detail,
        sorted(p.name for p in tmp_path.iterdir()),
    )


# --- golden files (written by the reference implementation; see make_golden.py) --------------


def golden_plaintext(name: str, size: int) -> bytes:
    return hashlib.shake_256(f"genegate golden {name}".encode()).digest(size)


def golden_key(name: str) -> SecretKey:
    info = MANIFEST["keys"][name]
    return decode_secret_key((GOLDEN / f"{name}.sec").read_bytes(), info["passphrase"] or None, f"{name}.sec")


@pytest.mark.parametrize("name", sorted(MANIFEST["keys"]))
def test_golden_key_files_load(name: str) -> None:
    """Each reference-written private key opens and matches its public key file and fingerprint."""
    public = parse_public_key((GOLDEN / f"{name}.pub").read_text(encoding="ascii"), f"{name}.pub")
    assert (MANIFEST["keys"][name]["fingerprint"], public) == (
        public.fingerprint,
        golden_key(name).public_key(),
    )


def test_golden_ssh_key_is_the_twin_of_its_c4gh_key() -> None:
    """The ssh-ed25519 line converts to the same X25519 key the reference derived for erin."""
    line = (GOLDEN / "erin.ssh.pub").read_text(encoding="ascii")
    assert golden_key("erin").public_key() == parse_public_key(line, "erin.ssh.pub")


@pytest.mark.parametrize("name", sorted(MANIFEST["files"]))
def test_golden_file_header_parses_and_decrypts(name: str) -> None:
    """Our header parser reads the exact packet layout, and every listed reader decrypts the expected bytes."""
    expected, data = MANIFEST["files"][name], (GOLDEN / f"{name}.c4gh").read_bytes()
    packets, bodies, pos = [], [], 16
    for index in range(parse_preamble(data[:16], name)):
        size = parse_packet_length(data[pos : pos + 4], index, name)
        bodies.append(data[pos + 4 : pos + 4 + size])
        packets.append(
            {
                "length": size + 4,
                "method": int.from_bytes(data[pos + 4 : pos + 8], "little"),
                "writer_pk": data[pos + 8 : pos + 40].hex(),
            }
        )
        pos += 4 + size
    assert (expected["packets"], expected["header_bytes"]) == (packets, pos)
    if "writer" in expected:
        writer = parse_public_key(
            (GOLDEN / f"{expected['writer']}.pub").read_text(encoding="ascii"), "writer"
        )
        assert {writer.raw.hex()} == {p["writer_pk"] for p in packets}
    source = golden_plaintext(name, expected["source_bytes"])
    want = source[expected["kept"][0] : expected["kept"][1]]
    for reader in expected["readers"]:
        opened = open_header(bodies, [golden_key(reader)], name)
        assert (1, expected.get("edit_list")) == (
            len(opened.data_keys),
            None if opened.edit_list is None else list(opened.edit_list.lengths),
        )
        plaintext, digest = decrypt_bytes(data, [golden_key(reader)])
        assert (want, expected["plaintext_sha256"], expected["header_bytes"], expected["segments"]) == (
            plaintext,
            digest.plaintext_sha256,
            digest.header_bytes,
            digest.segments,
        )
