"""What a transfer-log entry may hold: the allow-list of SPEC.md 7 and each field's form. Pure.

An event is checked before it is chained and signed: a field outside the allow-list, or a value
of the wrong form, raises LogEventRefused naming the field, never its value (a field name that
does not look like one is not named either). The log itself adds seq, timestamp, prev_hash,
entry_hash, signed_by and signature; an event that holds one of those is refused too.

Operator: an entry records a role label, never a login. The event's `operator` if given, else
$GENEGATE_OPERATOR, else "operator" (letters, digits, `.`, `_`, `-`; at most 64 characters).
"""

from __future__ import annotations

import enum
import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from transfer.errors import LogEventRefused

OPERATOR_ENV = "GENEGATE_OPERATOR"
DEFAULT_OPERATOR = "operator"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_EVENT = re.compile(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)+$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_FIELD_NAME = re.compile(r"^[a-z][a-z_]{0,39}$")
_FILE_FIELDS = frozenset({"name", "plaintext_sha256", "ciphertext_sha256", "bytes"})


class LogEvent(enum.StrEnum):
    """The events genegate writes (any dotted, past-tense lowercase name is accepted)."""

    TRANSFER_ALLOWED = "transfer.allowed"
    TRANSFER_DENIED = "transfer.denied"
    TRANSFER_DELIVERED = "transfer.delivered"
    TRANSFER_FAILED = "transfer.failed"
    TRANSFER_UNCHANGED = "transfer.unchanged"
    ASSESSMENT_DESTROYED = "assessment.destroyed"


def operator_label() -> str:
    """$GENEGATE_OPERATOR or "operator": a role label recorded in entries, never a login."""
    return os.environ.get(OPERATOR_ENV, DEFAULT_OPERATOR)


def check_event(event: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The event as a plain JSON object, or LogEventRefused naming the field (never its value)."""
    body = json.loads(_dumps(event, source))
    if not isinstance(body, dict):
        raise LogEventRefused(source, "an event must be a JSON object")
    for name in sorted(body):
        check = FIELDS.get(name)
        if check is None:
            shown = f'"{name}"' if _FIELD_NAME.match(name) else "a field"
            raise LogEventRefused(
                source, f"{shown} is not a transfer-log field (allowed: {', '.join(sorted(FIELDS))})"
            )
        problem = check(body[name])
        if problem is not None:
            raise LogEventRefused(source, f'"{name}" {problem}')
    if "event" not in body:
        raise LogEventRefused(source, '"event" is required (a dotted name such as "transfer.delivered")')
    return body


def _dumps(value: Any, source: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LogEventRefused(source, "the event holds a value that is not plain JSON") from exc


def _text(value: Any) -> str | None:
    return None if value is None or isinstance(value, str) else "must be text or null"


def _hex(value: Any) -> str | None:
    return (
        None if value is None or (isinstance(value, str) and _HEX64.match(value)) else "must be hex SHA-256"
    )


def _event(value: Any) -> str | None:
    return (
        None if isinstance(value, str) and _EVENT.match(value) else "must be a dotted name (transfer.denied)"
    )


def _strings(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    return None if ok else "must be a list of text"


def _obj(value: Any) -> str | None:
    return None if value is None or isinstance(value, dict) else "must be an object or null"


def _basis(value: Any) -> str | None:
    return None if value is None or isinstance(value, dict | list) else "must be an object, a list or null"


def _destination(value: Any) -> str | None:
    ok = isinstance(value, dict) and set(value) <= {"country", "uri"}
    if not ok or any(_text(v) for v in value.values()):
        return 'must be {"country": text, "uri": text}'
    return None


def _files(value: Any) -> str | None:
    if not isinstance(value, list):
        return "must be a list of files"
    for n, f in enumerate(value, start=1):
        if not isinstance(f, dict) or not set(f) <= _FILE_FIELDS or not isinstance(f.get("name"), str):
            return f"[{n}] must be {{name, plaintext_sha256, ciphertext_sha256, bytes}}"
        size = f.get("bytes")
        if _hex(f.get("plaintext_sha256")) or _hex(f.get("ciphertext_sha256")):
            return f"[{n}]: the SHA-256 fields must be lowercase hex"
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            return f"[{n}].bytes must be a count of bytes"
    return None


def _fingerprints(value: Any) -> str | None:
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return None
    return _strings(value)


def _counts(value: Any) -> str | None:
    ok = isinstance(value, dict) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value.values()
    )
    return None if ok else "must map names to whole numbers"


def _operator(value: Any) -> str | None:
    ok = isinstance(value, str) and _LABEL.match(value)
    return None if ok else "must be a role label (letters, digits, . _ -), not a person's login"


FIELDS: Mapping[str, Callable[[Any], str | None]] = {
    "event": _event,
    "release_id": _text,
    "release_sha256": _hex,
    "recipient_id": _text,
    "destination": _destination,
    "origin_regimes": _strings,
    "release_class": _text,
    "decision": _obj,
    "basis": _basis,
    "files": _files,
    "key_fingerprints": _fingerprints,
    "flow_run_id": _text,
    "operator": _operator,
    "message": _text,
    "counts": _counts,
    "receipt": _obj,
}


def checked_operator(label: str, source: str) -> str:
    """The label, or LogEventRefused if it is not a role label."""
    if _operator(label) is not None:
        raise LogEventRefused(source, f"${OPERATOR_ENV} must be a role label (letters, digits, . _ -)")
    return label
