"""Crypt4GH v1 files: encrypt once for many readers, decrypt, and re-key by rewriting only the header.

The header (transfer/header.py) seals one random data key for every reader; the body is a run of
segments under that key (transfer/segments.py, which also keeps memory flat while streaming: a few
preallocated 1 MiB buffer pairs, and the SHA-256 of plaintext and ciphertext computed in the same
pass on a helper thread). Output decrypts with the reference `crypt4gh` tool and its output
decrypts here.

Decisions a reviewer should know:
- Edit lists (written by `crypt4gh rearrange`, htsget servers) are honoured on decryption: every
  segment is still authenticated, then only the kept bytes are written. An edit list that keeps
  bytes past the end of the payload is refused as truncation. Re-keying carries the edit list over.
- v1 cannot detect a file cut at a segment boundary, nor reordered segments (the spec's Security
  Considerations); the digests returned here go into the signed release manifest for that reason.
- `reencrypt_file` copies the payload with copy_file_range and does not read it, so by default it
  leaves both SHA-256 fields empty; `hash_payload=True` hashes the new file while copying it.
- `encrypt_to` encrypts a file into any `Writable` (transfer/delivery streams it into an S3
  multipart upload), so a delivery needs no ciphertext staged on disk; the writer gets views of
  reused buffers and must copy what it keeps.
- `*_file` outputs appear atomically: a sibling temporary file (O_EXCL; 0600 for plaintext) renamed
  over `dst` when complete, removed on any error. No fsync: this guards readers, not power loss.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from keys import DataKey, PublicKey, SecretKey
from transfer.errors import EnvelopeError, IntegrityError, NotCrypt4GH
from transfer.header import (
    MAX_HEADER_BYTES,
    NONCE_SIZE,
    PREAMBLE_SIZE,
    data_key_packet,
    open_header,
    parse_packet_length,
    parse_preamble,
    seal_header,
)
from transfer.segments import (
    CHUNK_SEGMENTS,
    CIPHER_DIFF,
    CIPHER_SEGMENT_SIZE,
    SEGMENT_SIZE,
    Digests,
    EditCursor,
    Ring,
    Writable,
    open_segment,
    payload_shape,
    read_exact,
    read_into,
    write_all,
)

PLAINTEXT_MODE, CIPHERTEXT_MODE = 0o600, 0o644


@dataclass(frozen=True, slots=True)
class EnvelopeDigest:
    """What went through an envelope operation, for the signed release manifest.

    plaintext_sha256/plaintext_bytes describe the plaintext read (encrypt) or written (decrypt;
    after any edit list). ciphertext_sha256/ciphertext_bytes describe the whole Crypt4GH file,
    header included. The hashes are "" when the operation did not read that data (re-keying).
    """

    plaintext_sha256: str
    ciphertext_sha256: str
    plaintext_bytes: int
    ciphertext_bytes: int
    header_bytes: int
    segments: int


def encrypt_stream(
    src: BinaryIO,
    dst: Writable,
    recipients: Sequence[PublicKey],
    writer: SecretKey | None = None,
    *,
    path: str = "<stream>",
) -> EnvelopeDigest:
    """Encrypt `src` once, with a header packet for each recipient; `writer` defaults to a throwaway key."""
    readers = _distinct(recipients, path)
    data_key = DataKey.generate()
    header = seal_header([data_key_packet(data_key)], readers, writer or SecretKey.generate(), os.urandom)
    aead = ChaCha20Poly1305(data_key.reveal())
    ring = Ring(CHUNK_SEGMENTS * SEGMENT_SIZE, CHUNK_SEGMENTS * CIPHER_SEGMENT_SIZE)
    plain_bytes = cipher_bytes = segments = 0
    with Digests() as digests:
        digests.submit((), memoryview(header))
        write_all(dst, memoryview(header))
        while True:
            plain, cipher = ring.take()
            size = read_into(src, plain)
            if size == 0:
                break
            nonces = os.urandom(NONCE_SIZE * CHUNK_SEGMENTS)
            out = 0
            for start in range(0, size, SEGMENT_SIZE):
                end = min(start + SEGMENT_SIZE, size)
                nonce = nonces[start // SEGMENT_SIZE * NONCE_SIZE :][:NONCE_SIZE]
                cipher[out : out + NONCE_SIZE] = nonce
                sealed = cipher[out + NONCE_SIZE : out + CIPHER_DIFF + end - start]
                aead.encrypt_into(nonce, plain[start:end], None, sealed)
                out += CIPHER_DIFF + end - start
                segments += 1
            ring.hold(digests.submit((plain[:size],), cipher[:out]))
            write_all(dst, cipher[:out])
            plain_bytes, cipher_bytes = plain_bytes + size, cipher_bytes + out
            if size < len(plain):
                break
    return EnvelopeDigest(
        digests.plain_hex(),
        digests.cipher_hex(),
        plain_bytes,
        len(header) + cipher_bytes,
        len(header),
        segments,
    )


def decrypt_stream(
    src: BinaryIO, dst: BinaryIO, keys: Sequence[SecretKey], *, path: str = "<stream>"
) -> EnvelopeDigest:
    """Decrypt with whichever of `keys` opens the header; every segment is authenticated.

    On an error, `dst` may hold the authenticated plaintext of the segments before the bad one;
    decrypt_file removes it, a caller of this function must discard it.
    """
    header, packets = _read_header(src, path)
    opened = open_header(packets, keys, path)
    aeads = [ChaCha20Poly1305(key.reveal()) for key in opened.data_keys]
    cursor = EditCursor(opened.edit_list) if opened.edit_list else None
    ring = Ring(CHUNK_SEGMENTS * SEGMENT_SIZE, CHUNK_SEGMENTS * CIPHER_SEGMENT_SIZE)
    plain_bytes = cipher_bytes = segments = 0
    with Digests() as digests:
        digests.submit((), memoryview(header))
        while True:
            plain, cipher = ring.take()
            size = read_into(src, cipher)
            if size == 0:
                break
            out = 0
            for start in range(0, size, CIPHER_SEGMENT_SIZE):
                end = min(start + CIPHER_SEGMENT_SIZE, size)
                length = end - start - CIPHER_DIFF
                if length <= 0:
                    raise IntegrityError(
                        path, f"segment {segments} is cut short ({end - start} bytes); the file is truncated"
                    )
                open_segment(aeads, cipher[start:end], plain[out : out + length], segments, path)
                out, segments = out + length, segments + 1
            kept = [plain[:out]] if cursor is None else [plain[a:b] for a, b in cursor.take(out)]
            ring.hold(digests.submit(kept, cipher[:size]))
            for piece in kept:
                write_all(dst, piece)
            plain_bytes += sum(len(piece) for piece in kept)
            cipher_bytes += size
            if size < len(cipher):
                break
        if cursor is not None:
            cursor.finish(path)
    return EnvelopeDigest(
        digests.plain_hex(),
        digests.cipher_hex(),
        plain_bytes,
        len(header) + cipher_bytes,
        len(header),
        segments,
    )


def encrypt_file(
    src: Path, dst: Path, recipients: Sequence[PublicKey], writer: SecretKey | None = None
) -> EnvelopeDigest:
    """Encrypt the file `src` into `dst` (replaced atomically)."""
    with _reading(src) as fin, _atomic_output(dst, CIPHERTEXT_MODE) as fout:
        return encrypt_stream(fin, fout, recipients, writer, path=str(src))


def encrypt_to(
    src: Path, dst: Writable, recipients: Sequence[PublicKey], writer: SecretKey | None = None
) -> EnvelopeDigest:
    """Encrypt the file `src` into the stream `dst` (an upload, say); nothing is written anywhere else."""
    with _reading(src) as fin:
        return encrypt_stream(fin, dst, recipients, writer, path=str(src))


def decrypt_file(src: Path, dst: Path, keys: Sequence[SecretKey]) -> EnvelopeDigest:
    """Decrypt the Crypt4GH file `src` into `dst` (mode 0600, replaced atomically)."""
    with _reading(src) as fin, _atomic_output(dst, PLAINTEXT_MODE) as fout:
        return decrypt_stream(fin, fout, keys, path=str(src))


def reencrypt_file(
    src: Path,
    dst: Path,
    keys: Sequence[SecretKey],
    recipients: Sequence[PublicKey],
    writer: SecretKey | None = None,
    *,
    hash_payload: bool = False,
) -> EnvelopeDigest:
    """Re-key `src` for `recipients`: a new header, then the payload copied byte for byte.

    Only the packets `keys` open are carried over (data keys and edit list), sealed for each
    recipient; packets for other readers are dropped (`crypt4gh reencrypt --trim`). The payload is
    never decrypted. Without `hash_payload` the digest's SHA-256 fields are ""; with it,
    ciphertext_sha256 is the new file's.
    """
    path = str(src)
    with _reading(src) as fin:
        old_header, packets = _read_header(fin, path)
        opened = open_header(packets, keys, path)
        payload = os.fstat(fin.fileno()).st_size - len(old_header)
        segments, plain_bytes = payload_shape(payload, opened, path)
        plain_packets = [data_key_packet(key) for key in opened.data_keys]
        if opened.edit_list is not None:
            plain_packets.append(opened.edit_list.packet())
        readers = _distinct(recipients, path)
        header = seal_header(plain_packets, readers, writer or SecretKey.generate(), os.urandom)
        with _atomic_output(dst, CIPHERTEXT_MODE) as fout:
            write_all(fout, memoryview(header))
            digest = _copy_payload(
                fin, fout, len(old_header), payload, header if hash_payload else None, path
            )
    return EnvelopeDigest("", digest, plain_bytes, len(header) + payload, len(header), segments)


def header_recipients_count(src: Path) -> int:
    """The number of header packets of `src`: one per recipient for a file without an edit list."""
    with _reading(src) as fin:
        return len(_read_header(fin, str(src))[1])


# --- header and recipients -----------------------------------------------------------------


def _read_header(src: BinaryIO, path: str) -> tuple[bytes, list[bytes]]:
    """The raw header bytes and its packets (without length fields), leaving `src` at the payload."""
    preamble = read_exact(src, PREAMBLE_SIZE)
    count = parse_preamble(preamble, path)
    raw, packets, total = [preamble], [], PREAMBLE_SIZE
    for index in range(count):
        prefix = read_exact(src, 4)
        size = parse_packet_length(prefix, index, path)
        total += 4 + size
        if total > MAX_HEADER_BYTES:
            raise NotCrypt4GH(path, f"the header is larger than {MAX_HEADER_BYTES} bytes; it is damaged")
        packet = read_exact(src, size)
        if len(packet) < size:
            raise NotCrypt4GH(path, f"the file ends inside header packet {index}; it is truncated")
        raw += [prefix, packet]
        packets.append(packet)
    return b"".join(raw), packets


def _distinct(recipients: Sequence[PublicKey], path: str) -> list[PublicKey]:
    """The recipients, each once, in order; at least one."""
    unique = list(dict.fromkeys(recipients))
    if not unique:
        raise EnvelopeError(path, "no recipients given; name at least one recipient public key")
    return unique


# --- files ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _reading(src: Path) -> Iterator[BinaryIO]:
    """`src` opened unbuffered for reading; an OSError becomes an EnvelopeError naming it."""
    try:
        fin = open(src, "rb", buffering=0)  # noqa: SIM115 - closed below, errors translated here
    except OSError as exc:
        raise EnvelopeError(str(src), f"cannot open for reading ({exc.strerror}); check the path") from exc
    with fin:
        yield fin


@contextlib.contextmanager
def _atomic_output(dst: Path, mode: int) -> Iterator[BinaryIO]:
    """A new sibling of `dst` (O_EXCL, `mode`), renamed over `dst` on success, removed on error."""
    temporary = dst.with_name(f".{dst.name}.{secrets.token_hex(6)}.part")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise EnvelopeError(str(dst), f"cannot create the output ({exc.strerror}); check the folder") from exc
    try:
        with open(fd, "wb", buffering=0) as fout:
            yield fout
        os.replace(temporary, dst)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise EnvelopeError(
            str(dst), f"writing failed ({exc.strerror}); check space and permissions"
        ) from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _copy_payload(
    fin: BinaryIO, fout: BinaryIO, offset: int, count: int, header: bytes | None, path: str
) -> str:
    """Copy `count` bytes from `offset` of `fin` to the position of `fout`.

    With `header` (hash_payload), read and write in user space to hash header + payload and
    return the hex SHA-256; else copy in the kernel (copy_file_range) and return "".
    """
    done = 0
    if header is None:
        with contextlib.suppress(_NoKernelCopy):
            done = _kernel_copy(fin.fileno(), fout.fileno(), offset, count)
    digest = hashlib.sha256(header) if header is not None else None
    fin.seek(offset + done)
    buffer = memoryview(bytearray(CHUNK_SEGMENTS * CIPHER_SEGMENT_SIZE))
    while done < count:
        size = read_into(fin, buffer[: min(len(buffer), count - done)])
        if size == 0:
            break
        if digest is not None:
            digest.update(buffer[:size])
        write_all(fout, buffer[:size])
        done += size
    if done != count:
        raise IntegrityError(
            path, f"the file shrank while it was copied ({done} of {count} bytes); try again"
        )
    return digest.hexdigest() if digest is not None else ""


class _NoKernelCopy(Exception):
    """copy_file_range is missing or refuses these files before copying anything."""


_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM, errno.EBADF}


def _kernel_copy(src_fd: int, dst_fd: int, offset: int, count: int) -> int:
    """Bytes copied by copy_file_range (at the end of the range, or when the kernel stops early)."""
    copy = getattr(os, "copy_file_range", None)
    if copy is None:
        raise _NoKernelCopy
    done = 0
    while done < count:
        try:
            copied: int = copy(src_fd, dst_fd, min(count - done, 1 << 30), offset + done)
        except OSError as exc:
            if done == 0 and exc.errno in _NO_KERNEL_COPY:
                raise _NoKernelCopy from exc
            raise
        if copied == 0:
            break
        done += copied
    return done
