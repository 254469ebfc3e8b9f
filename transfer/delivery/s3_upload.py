"""Stream bytes into one S3 object as they are produced: per-part SHA-256, parts four at a time.

`ObjectUpload` is a write-only stream. The Crypt4GH encryption writes into it; it cuts the stream
into parts of the part size and uploads each with its SHA-256 checksum
(`ChecksumAlgorithm="SHA256"`) on a small thread pool while the encryption goes on, so encryption,
hashing and upload overlap and no ciphertext is ever staged on disk. A stream no larger than one
part is sent as a single PUT with the SHA-256 of its bytes when it is finished; otherwise the
multipart upload is created with the first full part and completed by `finish`, which returns the
checksum S3 must then report for the object: the base64 SHA-256 of the bytes for a single PUT,
else the base64 SHA-256 of the concatenated part SHA-256s suffixed `-<parts>` (S3's COMPOSITE
checksum). The caller compares that with HeadObject; S3-compatible servers such as moto accept a
wrong client checksum, so that comparison is ours.

Memory is bounded: at most UPLOAD_THREADS parts in flight and one filling, in buffers reused from
part to part (a fresh 64 MiB buffer per part cost more in page faults than the copy into it). Any
error — in the producer, in a part, in completing — aborts the multipart upload
(`with ObjectUpload(...)`); one a crash leaves behind is aborted by the next run
(S3Client.abort_unfinished). A part that must be
sent again after a dropped connection is resent by botocore from the bytes held in memory.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

from transfer.delivery.s3_client import S3Client
from transfer.errors import DeliveryRejected

UPLOAD_THREADS = 4  # parts in flight at once (and one more filling)
MAX_PARTS = 10_000


def b64(digest: bytes) -> str:
    """The base64 form S3 uses for a SHA-256 checksum."""
    return base64.b64encode(digest).decode("ascii")


def part_size_for(size_hint: int, part_size: int) -> int:
    """The configured part size, raised so that `size_hint` bytes fit in MAX_PARTS parts."""
    return max(part_size, -(-size_hint // MAX_PARTS))


class ObjectUpload:
    """A write-only stream into the object `key` (see the module docstring)."""

    def __init__(self, client: S3Client, key: str, part_size: int) -> None:
        self._client = client
        self._key = key
        self._part_size = part_size
        self._buffer = bytearray(part_size)
        self._filled = 0
        self._upload_id: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[tuple[Future[tuple[dict[str, Any], bytes]], bytearray]] = deque()
        self._parts: list[tuple[dict[str, Any], bytes]] = []
        self._spare: list[bytearray] = []  # buffers of sent parts, reused (no fresh pages to fault in)
        self._finished = False
        self.bytes = 0

    def __enter__(self) -> ObjectUpload:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._finished:
            self._abort()

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        """Take `data` (copied into the current part); a full part goes up once more data follows."""
        view = memoryview(data).cast("B")
        size = len(view)
        while view:
            if self._filled == self._part_size:
                self._send_part()
            take = min(len(view), self._part_size - self._filled)
            self._buffer[self._filled : self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]
        self.bytes += size
        return size

    def finish(self) -> str:
        """Send what is left and complete the object; the checksum S3 must report for it."""
        if self._upload_id is None:
            body = self._buffer
            del body[self._filled :]
            checksum = b64(hashlib.sha256(body).digest())
            self._client.call(
                "PutObject",
                self._key,
                Key=self._key,
                Body=body,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
                **self._client.settings.sse(),
            )
            self._finished = True
            return checksum
        self._send_part()
        while self._pending:
            self._collect()
        self._client.call(
            "CompleteMultipartUpload",
            self._key,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": [entry for entry, _ in self._parts]},
        )
        self._finished = True
        self._shutdown()
        digests = b"".join(digest for _, digest in self._parts)
        return f"{b64(hashlib.sha256(digests).digest())}-{len(self._parts)}"

    def _send_part(self) -> None:
        if self._upload_id is None:
            upload = self._client.call(
                "CreateMultipartUpload",
                self._key,
                Key=self._key,
                ChecksumAlgorithm="SHA256",
                **self._client.settings.sse(),
            )
            self._upload_id = str(upload["UploadId"])
            self._pool = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="s3-part")
        assert self._pool is not None
        number = len(self._parts) + len(self._pending) + 1
        if number > MAX_PARTS:
            raise DeliveryRejected(
                f"s3 key {self._key}",
                f"the object needs more than {MAX_PARTS} parts; raise GENEGATE_S3_PART_SIZE",
            )
        while len(self._pending) >= UPLOAD_THREADS:
            self._collect()
        buffer, filled = self._buffer, self._filled
        if filled < len(buffer):  # the last part: shrink in place rather than copy
            del buffer[filled:]
        self._pending.append((self._pool.submit(self._upload_part, number, buffer), buffer))
        self._buffer = self._spare.pop() if self._spare else bytearray(self._part_size)
        self._filled = 0

    def _collect(self) -> None:
        """Wait for the oldest part in flight; keep its entry and reuse its buffer."""
        future, buffer = self._pending.popleft()
        self._parts.append(future.result())
        if len(buffer) == self._part_size:
            self._spare.append(buffer)

    def _upload_part(self, number: int, body: bytearray) -> tuple[dict[str, Any], bytes]:
        """Hash and upload one part (in a pool thread); its CompleteMultipartUpload entry and digest."""
        digest = hashlib.sha256(body).digest()
        checksum = b64(digest)
        response = self._client.call(
            "UploadPart",
            self._key,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )
        return {"ETag": response["ETag"], "PartNumber": number, "ChecksumSHA256": checksum}, digest

    def _abort(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self._shutdown()
        if self._upload_id is None:
            return
        # if this fails too, the next run (or a lifecycle rule AbortIncompleteMultipartUpload) removes it
        with contextlib.suppress(DeliveryRejected, BotoCoreError, ClientError):
            self._client.call("AbortMultipartUpload", self._key, Key=self._key, UploadId=self._upload_id)

    def _shutdown(self) -> None:
        """Stop the part threads: parts not started are cancelled, running ones are waited for."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()
