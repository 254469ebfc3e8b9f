"""Any tampering with the transfer log is caught by verify; an untouched log always verifies."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from keys import SigningKey
from transfer import TransferLog

ENTRIES = 6


@functools.cache
def _original() -> tuple[Path, SigningKey]:
    """One signed log of six varied entries, built once for the module."""
    key = SigningKey.generate()
    log = TransferLog(Path(tempfile.mkdtemp(prefix="genegate-log-")) / "transfer-log.jsonl")
    for n in range(ENTRIES):
        event = "transfer.denied" if n % 3 == 2 else "transfer.delivered"
        decision = {"allowed": event != "transfer.denied", "failed_rules": ["origin.eu_eea"] * (n % 3 == 2)}
        log.append({"event": event, "release_id": f"rel-{n}", "recipient_id": "ch-zurich",
                    "destination": {"country": "CH", "uri": "s3://inbox/é"}, "decision": decision,
                    "files": [{"name": f"f{n}.vcf.gz", "bytes": 100 + n}], "message": 'quote " and \\ é'}, key)  # fmt: skip
    return log.path, key


def _verify(data: bytes) -> bool:
    path, key = _original()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        shutil.copy(path.with_name(path.name + ".head"), Path(tmp) / (path.name + ".head"))
        copy.write_bytes(data)
        return TransferLog(copy).verify(key.verify_key()).ok


def _lines() -> list[bytes]:
    return _original()[0].read_bytes().splitlines(keepends=True)


def test_untouched_log_verifies() -> None:
    """The log as written verifies, every entry counted."""
    path, key = _original()
    result = TransferLog(path).verify(key.verify_key())
    assert (True, ENTRIES) == (result.ok, result.entries)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_single_byte_edit_is_detected(data: st.DataObject) -> None:
    """Replacing any one byte of the file with any other byte makes verify fail."""
    original = b"".join(_lines())
    at = data.draw(st.integers(0, len(original) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[at]))
    assert False is _verify(original[:at] + bytes([byte]) + original[at + 1 :])


@settings(max_examples=50, deadline=None)
@given(st.integers(0, ENTRIES - 1))
def test_a_deleted_line_is_detected(n: int) -> None:
    """Removing any one entry, the last included, makes verify fail."""
    lines = _lines()
    assert False is _verify(b"".join(lines[:n] + lines[n + 1 :]))


@settings(max_examples=50, deadline=None)
@given(st.integers(0, ENTRIES - 1), st.integers(0, ENTRIES - 1))
def test_swapped_or_duplicated_lines_are_detected(i: int, j: int) -> None:
    """Swapping two entries, or overwriting one with a copy of another, makes verify fail."""
    lines = _lines()
    swapped, copied = list(lines), list(lines)
    swapped[i], swapped[j] = lines[j], lines[i]
    copied[i] = lines[j]
    if i != j:
        assert (False, False) == (_verify(b"".join(swapped)), _verify(b"".join(copied)))
    assert False is _verify(b"".join([*lines, lines[j]]))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_truncation_is_detected(data: st.DataObject) -> None:
    """Cutting the file at any byte, mid-line or at a line boundary, makes verify fail."""
    original = b"".join(_lines())
    assert False is _verify(original[: data.draw(st.integers(0, len(original) - 1))])
