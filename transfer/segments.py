"""The Crypt4GH v1 body, streamed: segments, and the machinery that moves them with flat memory.

The body is a run of segments, each `nonce[12] | ChaCha20-IETF-Poly1305(<= 64 KiB) | MAC[16]` under
one random data key (the header, transfer/header.py, seals that key for every reader). This module
holds the segment geometry, opening one segment with whichever data key sealed it, the edit-list
cursor that keeps only the bytes an edit list names, and the shape of a payload from its size.

Streaming keeps memory flat: a ring of a few preallocated 1 MiB buffer pairs that
`encrypt_into`/`decrypt_into` fill without intermediate copies, the SHA-256 of plaintext and
ciphertext computed in the same pass on a helper thread (hashlib releases the GIL, so hashing
overlaps encryption on a second core), and reads and writes of whole views on any `Writable`.
The operations that use them (encrypt, decrypt, re-key) are in transfer/envelope.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import IO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from transfer.errors import IntegrityError
from transfer.header import NONCE_SIZE, EditList, OpenedHeader

SEGMENT_SIZE = 65536
CIPHER_DIFF = NONCE_SIZE + 16  # nonce and MAC around each segment
CIPHER_SEGMENT_SIZE = SEGMENT_SIZE + CIPHER_DIFF
CHUNK_SEGMENTS = 16  # segments per read/write: 1 MiB of plaintext


class Writable(Protocol):
    """Where encrypt_stream writes: a file, or a stream such as an S3 upload (any `write` that
    accepts a memoryview and returns how many bytes it took)."""

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        """Take some or all of `data`; the number of bytes taken."""
        ...


def open_segment(
    aeads: list[ChaCha20Poly1305], segment: memoryview, out: memoryview, index: int, path: str
) -> None:
    """Authenticate and decrypt one segment with whichever data key sealed it."""
    nonce, sealed = segment[:NONCE_SIZE], segment[NONCE_SIZE:]
    for position, aead in enumerate(aeads):
        try:
            aead.decrypt_into(nonce, sealed, None, out)
        except InvalidTag:
            continue
        if position:  # several data keys: try the one that worked first next time
            aeads.insert(0, aeads.pop(position))
        return
    raise IntegrityError(
        path,
        f"segment {index} (plaintext bytes from {index * SEGMENT_SIZE}) failed authentication: "
        "the file was altered or damaged; fetch it again from the sender",
    )


class EditCursor:
    """Walks an edit list along the decrypted plaintext, chunk by chunk."""

    __slots__ = ("_pos", "_ranges")

    def __init__(self, edits: EditList) -> None:
        self._ranges = [(a, b) for a, b in edits.kept_ranges() if b is None or b > a]
        self._pos = 0

    def take(self, size: int) -> list[tuple[int, int]]:
        """The [start, end) slices of the next `size` plaintext bytes that the edit list keeps."""
        low, high = self._pos, self._pos + size
        slices = []
        while self._ranges and self._ranges[0][0] < high:
            start, end = self._ranges[0]
            stop = high if end is None else min(end, high)
            slices.append((max(start, low) - low, stop - low))
            if end is None or end > high:
                break
            self._ranges.pop(0)
        self._pos = high
        return slices

    def finish(self, path: str) -> None:
        """Refuse an edit list that keeps bytes the payload does not have."""
        ends = [end for _, end in self._ranges if end is not None]
        if ends:
            raise IntegrityError(
                path,
                f"the edit list keeps bytes up to {ends[-1]} but the payload ends at {self._pos}; "
                "the file is truncated",
            )


def payload_shape(payload: int, opened: OpenedHeader, path: str) -> tuple[int, int]:
    """Segment count and plaintext size (after the edit list) of a payload of this many bytes."""
    segments = -(-payload // CIPHER_SEGMENT_SIZE)
    tail = payload % CIPHER_SEGMENT_SIZE
    if 0 < tail <= CIPHER_DIFF:
        raise IntegrityError(
            path, f"segment {segments - 1} is cut short ({tail} bytes); the file is truncated"
        )
    plain = payload - segments * CIPHER_DIFF
    return segments, plain if opened.edit_list is None else opened.edit_list.kept_bytes(plain)


class Ring:
    """A few preallocated (plaintext, ciphertext) buffer pairs, reused once their hashing is done."""

    __slots__ = ("_index", "_pending", "_slots")

    def __init__(self, plain_size: int, cipher_size: int, count: int = 3) -> None:
        self._slots = [
            (memoryview(bytearray(plain_size)), memoryview(bytearray(cipher_size))) for _ in range(count)
        ]
        self._pending: list[Future[None] | None] = [None] * count
        self._index = -1

    def take(self) -> tuple[memoryview, memoryview]:
        """The next buffer pair, once the helper thread has finished with it."""
        self._index = (self._index + 1) % len(self._slots)
        pending = self._pending[self._index]
        if pending is not None:
            pending.result()
        return self._slots[self._index]

    def hold(self, future: Future[None]) -> None:
        """Keep the pair last taken until `future` is done."""
        self._pending[self._index] = future


class Digests:
    """SHA-256 of the plaintext and of the ciphertext, computed in order on one helper thread."""

    __slots__ = ("_cipher", "_plain", "_pool")

    def __init__(self) -> None:
        self._plain, self._cipher = hashlib.sha256(), hashlib.sha256()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crypt4gh-sha256")

    def submit(self, plain: Sequence[memoryview], cipher: memoryview) -> Future[None]:
        """Hash these views; the caller must not change them until the future is done."""
        return self._pool.submit(self._update, plain, cipher)

    def _update(self, plain: Sequence[memoryview], cipher: memoryview) -> None:
        for piece in plain:
            self._plain.update(piece)
        self._cipher.update(cipher)

    def plain_hex(self) -> str:
        return self._plain.hexdigest()

    def cipher_hex(self) -> str:
        return self._cipher.hexdigest()

    def __enter__(self) -> Digests:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._pool.shutdown(wait=True)


def read_into(src: IO[bytes], view: memoryview) -> int:
    """Fill `view` from `src` unless the stream ends first; the number of bytes read."""
    readinto = getattr(src, "readinto", None)
    total = 0
    while total < len(view):
        if readinto is not None:
            count = readinto(view[total:]) or 0
        else:
            data = src.read(len(view) - total)
            count = len(data)
            view[total : total + count] = data
        if count == 0:
            break
        total += count
    return total


def read_exact(src: IO[bytes], size: int) -> bytes:
    """Up to `size` bytes: fewer only at the end of the stream."""
    buffer = memoryview(bytearray(size))
    return bytes(buffer[: read_into(src, buffer)])


def write_all(dst: Writable, view: memoryview) -> None:
    """Write all of `view`, also to raw streams that accept part of it."""
    while view:
        written = dst.write(view)
        view = view[written:]
