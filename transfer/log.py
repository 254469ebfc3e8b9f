"""The transfer log: append-only JSON Lines, hash-chained, Ed25519-signed (SPEC.md 7).

Each line is one entry in canonical JSON (sorted keys, no spaces, UTF-8) holding the event's
fields (an allow-list: unknown fields are refused) and what the log adds: `seq` (1-based),
`timestamp` (UTC, ISO 8601 with "Z"), `prev_hash` (the previous entry's `entry_hash`; 64 zeros
for the first), `entry_hash` (hex SHA-256 of the canonical entry without `entry_hash` and
`signature`), `signed_by` (the signing key's fingerprint) and `signature` (base64 Ed25519 over
the ASCII hex `entry_hash`).

Writers take an exclusive `fcntl` lock on the log, read the last entry, append one line with a
single write and fsync it. A crash mid-write leaves a last line without its newline: reading or
appending then raises TornLogError naming the line, and `verify` reports it; it is never dropped.
Beside the log, `<log>.head` holds the last seq and entry_hash, signed, rewritten atomically
after each append: removing entries from the end of the log is detected too. (Replacing both
by an older pair is only caught by an outside copy: see `mirror_entry`, S3 with Object Lock.)

What an event may hold (the allow-list) and the operator label: transfer/log_event.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keys import SigningKey, VerifyKey
from transfer.errors import LogMirrorFailed, TornLogError, TransferLogError
from transfer.log_event import FIELDS, check_event, checked_operator, operator_label

GENESIS = "0" * 64
ADDED_FIELDS = ("seq", "timestamp", "prev_hash", "entry_hash", "signed_by", "signature")


@dataclass(frozen=True, slots=True)
class LogVerification:
    """The result of checking a log: `entries` counts the entries that held before `first_bad`.

    `first_bad` is a line number (the seq of that entry in an intact log), `reason` says what is
    wrong there: an edited field, a deleted, duplicated or moved entry, a foreign or bad signature,
    a torn line, or entries removed from the end.
    """

    ok: bool
    entries: int
    first_bad: int | None = None
    reason: str | None = None


def canonical(value: Mapping[str, Any]) -> bytes:
    """The canonical JSON bytes of an entry: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def entry_hash(entry: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the entry without its entry_hash and signature."""
    body = {k: v for k, v in entry.items() if k not in ("entry_hash", "signature")}
    return hashlib.sha256(canonical(body)).hexdigest()


class TransferLog:
    """One transfer-log file and its signed head; safe for concurrent writers on one host."""

    def __init__(
        self,
        path: Path,
        clock: Callable[[], dt.datetime] | None = None,
        mirror: Callable[[dict[str, Any]], object] | None = None,
    ) -> None:
        self.path = path
        self.head_path = path.with_name(path.name + ".head")
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._mirror = mirror  # e.g. functools.partial(mirror_entry, bucket=..., prefix=..., client=...)

    def append(self, event: Mapping[str, Any], signing_key: SigningKey) -> dict[str, Any]:
        """Validate event, chain, sign and append it under the file lock; return the entry as written."""
        body = check_event(event, str(self.path))
        body.setdefault("operator", checked_operator(operator_label(), str(self.path)))
        verify_key = signing_key.verify_key()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            last = self._last_entry(fd)
            problem = _head_problem(self._read_head(verify_key), last, None)
            if problem is not None:
                raise TransferLogError(str(self.path), f"{problem}; run `genegate audit verify`")
            entry = dict(body)
            entry["seq"] = 1 if last is None else int(last["seq"]) + 1
            entry["timestamp"] = _stamp(self._clock())
            entry["prev_hash"] = GENESIS if last is None else str(last["entry_hash"])
            entry["signed_by"] = verify_key.fingerprint
            entry["entry_hash"] = entry_hash(entry)
            entry["signature"] = base64.b64encode(signing_key.sign(entry["entry_hash"].encode())).decode()
            line = canonical(entry)
            _write_all(fd, line + b"\n")
            os.fsync(fd)
            self._write_head(entry["seq"], entry["entry_hash"], signing_key)
        finally:
            os.close(fd)  # closing releases the lock
        written: dict[str, Any] = json.loads(line)
        if self._mirror is not None:
            self._mirror(written)  # after the local append: a failure raises, the local entry stays
        return written

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, in order; a torn last line raises TornLogError (never dropped)."""
        lines, torn = self._lines()
        if torn:
            raise TornLogError(str(self.path), len(lines) + 1)
        found = []
        for n, raw in enumerate(lines, start=1):
            entry = _parse(raw)
            if entry is None:
                raise TransferLogError(
                    str(self.path), f"line {n} is not a JSON object; run `genegate audit verify`"
                )
            found.append(entry)
        return found

    def verify(self, verify_key: VerifyKey) -> LogVerification:
        """Check every line, the chain, every signature and the signed head; stop at the first bad entry."""
        lines, torn = self._lines()
        prev = GENESIS
        for n, raw in enumerate(lines, start=1):
            problem = _line_problem(raw, n, prev, verify_key)
            if problem is not None:
                return LogVerification(False, n - 1, n, f"line {n}: {problem}")
            prev = json.loads(raw)["entry_hash"]
        if torn:
            return LogVerification(
                False, len(lines), len(lines) + 1, f"line {len(lines) + 1} is cut short (a crash mid-write)"
            )
        hashes = [json.loads(raw)["entry_hash"] for raw in lines]
        last = {"seq": len(lines), "entry_hash": prev} if lines else None
        try:
            head = self._read_head(verify_key)
        except TransferLogError as exc:
            return LogVerification(False, len(lines), len(lines) + 1, exc.detail)
        problem = _head_problem(head, last, hashes)
        if problem is not None:
            return LogVerification(False, len(lines), len(lines) + 1, problem)
        return LogVerification(True, len(lines))

    # adapters
    def _lines(self) -> tuple[list[bytes], bool]:
        """The complete lines and whether a partial last line follows them."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], False
        except OSError as exc:
            raise TransferLogError(str(self.path), f"cannot read it ({exc.strerror})") from exc
        pieces = data.split(b"\n")
        return pieces[:-1], pieces[-1] != b""

    def _last_entry(self, fd: int) -> dict[str, Any] | None:
        size = os.fstat(fd).st_size
        if size == 0:
            return None
        if os.pread(fd, 1, size - 1) != b"\n":
            lines, _ = self._lines()
            raise TornLogError(str(self.path), len(lines) + 1)
        chunk = 4096
        while True:
            start = max(0, size - chunk)
            tail = os.pread(fd, size - start, start)
            cut = tail.rfind(b"\n", 0, len(tail) - 1)
            if cut >= 0 or start == 0:
                break
            chunk *= 4
        entry = _parse(tail[cut + 1 : -1])
        if (
            entry is None
            or not isinstance(entry.get("seq"), int)
            or not isinstance(entry.get("entry_hash"), str)
        ):
            raise TransferLogError(
                str(self.path), "the last line is not a log entry; run `genegate audit verify`"
            )
        return entry

    def _read_head(self, verify_key: VerifyKey) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.head_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise TransferLogError(str(self.head_path), "the signed head of the log is unreadable") from exc
        if not isinstance(doc, dict) or set(doc) != {"seq", "entry_hash", "signed_by", "signature"}:
            raise TransferLogError(str(self.head_path), "the signed head of the log is not a genegate head")
        if doc["signed_by"] != verify_key.fingerprint or not _signature_holds(
            doc["signature"], _head_message(doc["seq"], doc["entry_hash"]), verify_key
        ):
            raise TransferLogError(
                str(self.head_path), "the signed head of the log does not verify with the lab signing key"
            )
        return doc

    def _write_head(self, seq: int, digest: str, signing_key: SigningKey) -> None:
        signature = base64.b64encode(signing_key.sign(_head_message(seq, digest))).decode()
        doc = {"seq": seq, "entry_hash": digest, "signed_by": signing_key.verify_key().fingerprint}
        data = canonical({**doc, "signature": signature}) + b"\n"
        tmp = self.head_path.with_name(f".{self.head_path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.head_path)
        directory = os.open(self.head_path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def mirror_entry(
    entry: Mapping[str, Any], bucket: str, prefix: str, client: Any, retain_days: int = 3650
) -> str:
    """Put one entry to S3 under Object Lock (COMPLIANCE mode) and return its key.

    The key is `<prefix>/<seq, 12 digits>-<entry_hash>.json`: a listing is the log in order, and
    an object under retention cannot be overwritten or deleted before retain_days have passed,
    not even by the bucket's owner. The bucket must have been created with Object Lock enabled.
    """
    import botocore.exceptions

    body = canonical(entry) + b"\n"
    key = f"{prefix.strip('/')}/{int(entry['seq']):012d}-{entry['entry_hash']}.json".lstrip("/")
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=retain_days)
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    try:
        answer = client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",  # S3 requires a checksum header on an Object Lock put
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=until,
        )
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise LogMirrorFailed(
            f"s3://{bucket}/{key}",
            f"the Object Lock mirror refused entry {entry['seq']} ({type(exc).__name__}); the local log "
            "holds it; check the bucket has Object Lock enabled and the credentials may write to it",
        ) from exc
    if answer.get("ChecksumSHA256", digest) != digest:
        raise LogMirrorFailed(
            f"s3://{bucket}/{key}", f"the mirror stored other bytes for entry {entry['seq']}"
        )
    return key


def _stamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _head_message(seq: object, digest: object) -> bytes:
    return canonical({"head": {"entry_hash": digest, "seq": seq}})


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _signature_holds(value: object, message: bytes, verify_key: VerifyKey) -> bool:
    if not isinstance(value, str):
        return False
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return False
    # a re-encoding check: base64 has spare bits an edit could flip without changing the bytes
    return base64.b64encode(raw).decode() == value and verify_key.verify(message, raw)


def _line_problem(raw: bytes, n: int, prev: str, verify_key: VerifyKey) -> str | None:
    """What is wrong with line n (None: it holds), given the previous entry_hash."""
    entry = _parse(raw)
    if entry is None:
        return "is not a JSON object (edited or garbled)"
    checks: tuple[tuple[Callable[[], bool], str], ...] = (
        (lambda: canonical(entry) == raw, "is not in the form genegate writes (edited outside genegate)"),
        (
            lambda: set(ADDED_FIELDS) <= set(entry) <= set(ADDED_FIELDS) | set(FIELDS),
            "does not hold exactly the fields of a log entry (a field was added or removed)",
        ),
        (
            lambda: entry["seq"] == n,
            f"is not entry {n} of the chain (seq): an entry was deleted, duplicated or moved",
        ),
        (
            lambda: entry["prev_hash"] == prev,
            "does not chain to the entry before it (prev_hash): an earlier entry was changed or moved",
        ),
        (
            lambda: entry_hash(entry) == entry["entry_hash"],
            "its contents do not match its entry_hash (a field was edited)",
        ),
        (
            lambda: entry["signed_by"] == verify_key.fingerprint,
            f"was signed by another key, not the lab signing key {verify_key.fingerprint}",
        ),
        (
            lambda: _signature_holds(entry["signature"], str(entry["entry_hash"]).encode(), verify_key),
            "its signature does not verify with the lab signing key",
        ),
    )
    return next((message for holds, message in checks if not holds()), None)


def _head_problem(
    head: Mapping[str, Any] | None, last: Mapping[str, Any] | None, hashes: list[str] | None
) -> str | None:
    """Does the signed head agree with the log's last entry? (It may lag one append after a crash.)"""
    seq = 0 if last is None else int(last["seq"])
    if head is None:
        return None if seq <= 1 else "the signed head of the log is missing (entries may have been removed)"
    head_seq = head["seq"]
    if not isinstance(head_seq, int) or head_seq > seq:
        return f"the signed head records {head_seq} entries but the log holds {seq}: entries were removed"
    if head_seq == seq and last is not None and head["entry_hash"] != last["entry_hash"]:
        return "the last entry is not the one the signed head records: it was replaced"
    if head_seq < seq - 1:
        return f"the signed head records {head_seq} entries but the log holds {seq}"
    if hashes is not None and head_seq >= 1 and hashes[head_seq - 1] != head["entry_hash"]:
        return f"entry {head_seq} is not the one the signed head records: it was replaced"
    return None


def _write_all(fd: int, data: bytes) -> None:
    """Write all of data (one write call in practice; the loop covers a short write)."""
    view = memoryview(data)
    while view:
        done = os.write(fd, view)
        view = view[done:]
