"""One transfer of a release: the files it covers, its id, what it does per file, and its outcome.

`release_files` reads release.json (the only I/O here) and returns it and every file it lists with
the plaintext SHA-256 and size recorded there (release.json itself with the digest of its bytes);
names must be relative, without `..` or hidden parts, each listed once, and present. The digests
are checked again while each file is encrypted, so a release changed after `genegate deid` wrote
it is refused. `transfer_key` names a transfer by the release content and the recipient's key:
every re-run of the same transfer finds the receipts of the runs before it.

`plan_delivery` decides, per release file, whether the copy at the destination can stay (the last
manifest records the same plaintext SHA-256 for the same recipient key, and the object there still
has the recorded size and checksum), whether a copy an interrupted run of this transfer delivered
and verified (its receipt) can be reused, or whether it must be encrypted and sent. Crypt4GH
output is randomised, so the plaintext digest is the only stable identity of a delivered file.
`check_delivered` holds what per-file deliveries return against the plan before a manifest is
signed: every planned file once, for the planned plaintext.

`TransferPlan` carries all of that between the steps of transfer/send.py as plain values (paths,
ids, digests; no key material, no identity), so per-file tasks can run in other processes;
`SendResult` is what a send returns, `event_base` the transfer-log fields of its entries.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from keys import Recipient, SigningKey
from transfer.decision import Decision
from transfer.delivery.manifest import DeliveredFile, DeliveryManifest, ObjectInfo, ReleaseFile
from transfer.errors import DeliveryError, DeliveryMismatch, ReleaseUnreadable, TransferError
from transfer.segments import CIPHER_DIFF, SEGMENT_SIZE

RELEASE_JSON = "release.json"
HEADER_ALLOWANCE = 4096  # bytes of Crypt4GH header allowed for in a size estimate (one reader: 124)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def release_files(release: Path) -> tuple[ReleaseFile, ...]:
    """release.json and every file it lists, with their plaintext SHA-256 and sizes."""
    source = release / RELEASE_JSON
    try:
        raw = source.read_bytes()
        doc = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ReleaseUnreadable(
            str(source), "cannot read it as JSON; give the directory `genegate deid` wrote"
        ) from exc
    listed = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(listed, list):
        raise ReleaseUnreadable(str(source), '"files" must be a list of {name, sha256, bytes}')
    found = [ReleaseFile(RELEASE_JSON, hashlib.sha256(raw).hexdigest(), len(raw))]
    for n, entry in enumerate(listed, start=1):
        name = entry.get("name") if isinstance(entry, dict) else None
        sha, size = (entry.get("sha256"), entry.get("bytes")) if isinstance(entry, dict) else (None, None)
        if (
            not isinstance(name, str)
            or not _safe_name(name)
            or not isinstance(sha, str)
            or not _SHA256.match(sha)
        ):
            raise ReleaseUnreadable(
                str(source), f"files[{n}] needs a relative name (no '..', no leading '.') and a hex sha256"
            )
        if not isinstance(size, int) or not (release / name).is_file():
            raise ReleaseUnreadable(
                str(source), f"files[{n}] is missing from the release or has no byte count"
            )
        found.append(ReleaseFile(name, sha, size))
    if len({f.name for f in found}) != len(found):
        raise ReleaseUnreadable(str(source), "a file is listed twice in files; write the release again")
    return tuple(found)


def transfer_key(release_sha256: str, files: tuple[ReleaseFile, ...], recipient: Recipient) -> str:
    """A transfer id fixed by the release content and the recipient's key: re-runs share receipts."""
    digest = hashlib.sha256()
    for part in (
        release_sha256,
        recipient.id,
        recipient.fingerprint,
        *(f"{f.name}\0{f.plaintext_sha256}" for f in files),
    ):
        digest.update(part.encode("utf-8") + b"\n")
    return "t-" + digest.hexdigest()[:24]


def ciphertext_size(plaintext_bytes: int) -> int:
    """An upper bound of the Crypt4GH size of a file of this many bytes (for choosing part sizes)."""
    segments = -(-plaintext_bytes // SEGMENT_SIZE)
    return plaintext_bytes + segments * CIPHER_DIFF + HEADER_ALLOWANCE


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    """Per release file: kept in place, reused from an interrupted run, or to send."""

    kept: tuple[DeliveredFile, ...]
    reused: tuple[DeliveredFile, ...]
    to_send: tuple[ReleaseFile, ...]

    @property
    def unchanged(self) -> bool:
        """Everything is already in place as the manifest records it: nothing to send or publish."""
        return not self.reused and not self.to_send


def plan_delivery(
    files: Sequence[ReleaseFile],
    previous: DeliveryManifest | None,
    recipient_key: str,
    existing: Mapping[str, ObjectInfo],
    pending: Mapping[str, DeliveredFile],
) -> DeliveryPlan:
    """What a delivery must do, by plaintext digest (ciphertexts differ on every encryption).

    `existing` are the objects at their delivered names, `pending` the files an interrupted run of
    this transfer delivered and verified (keyed by the transfer id, so they encrypt these files for
    this recipient key; the plaintext digest is checked again all the same).
    """
    usable = previous if previous is not None and previous.recipient_key == recipient_key else None
    kept: list[DeliveredFile] = []
    reused: list[DeliveredFile] = []
    to_send: list[ReleaseFile] = []
    for item in files:
        name = item.delivered_name
        entry = usable.file(name) if usable is not None else None
        held = pending.get(name)
        if (
            entry is not None
            and entry.plaintext_sha256 == item.plaintext_sha256
            and existing.get(name) == entry.stored
        ):
            kept.append(entry)
        elif held is not None and held.plaintext_sha256 == item.plaintext_sha256:
            reused.append(held)
        else:
            to_send.append(item)
    return DeliveryPlan(tuple(kept), tuple(reused), tuple(to_send))


def check_delivered(
    to_send: Sequence[ReleaseFile], delivered: Sequence[DeliveredFile], where: str
) -> tuple[DeliveredFile, ...]:
    """The delivered entries in plan order: every planned file exactly once, for its planned content."""
    by_name = {f.name: f for f in delivered}
    names = [item.delivered_name for item in to_send]
    odd = sorted(set(names) ^ set(by_name))
    if odd or len(by_name) != len(delivered):
        raise DeliveryError(
            where,
            f"the delivered files do not match the plan ({odd[0] if odd else 'one twice'}); "
            "deliver each name of plan.sending once",
        )
    for item in to_send:
        if by_name[item.delivered_name].plaintext_sha256 != item.plaintext_sha256:
            raise DeliveryMismatch(
                where, f"{item.delivered_name} was delivered for other content than planned; plan again"
            )
    return tuple(by_name[name] for name in names)


class EventLog(Protocol):
    """What a send writes to: transfer.log.TransferLog."""

    def append(self, event: Mapping[str, Any], signing_key: SigningKey) -> dict[str, Any]:
        """Append one signed entry."""
        ...


class SendOutcome(enum.StrEnum):
    """What a send did (or, in a plan, will do)."""

    DELIVERED = "delivered"
    UNCHANGED = "unchanged"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of send_release, for the CLI and flows."""

    outcome: SendOutcome
    decision: Decision
    destination: str | None
    files: tuple[DeliveredFile, ...] = ()
    sent: tuple[str, ...] = ()
    bytes_sent: int = 0
    transfer_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON summary (no decision detail beyond the failed rules)."""
        return {
            "outcome": self.outcome.value,
            "release_id": self.decision.release_id,
            "recipient_id": self.decision.recipient_id,
            "destination": self.destination,
            "transfer_id": self.transfer_id,
            "failed_rules": [r.value for r in self.decision.failed],
            "files": [f.to_json() for f in self.files],
            "sent": list(self.sent),
            "bytes_sent": self.bytes_sent,
        }


def event_base(decision: Decision, recipient: Recipient | None, flow_run_id: str | None) -> dict[str, Any]:
    """The fields every log entry of this send carries (destination as registered, until opened)."""
    base: dict[str, Any] = {
        "release_id": decision.release_id,
        "release_sha256": decision.release_sha256,
        "recipient_id": decision.recipient_id,
        "origin_regimes": list(decision.origin_regimes),
        "release_class": decision.release_class,
        "decision": decision.to_json(),
    }
    if recipient is not None:
        base["destination"] = {"country": recipient.country, "uri": recipient.destination}
        base["basis"] = [{"type": b.type.value, "ref": b.ref} for b in recipient.bases]
    if flow_run_id is not None:
        base["flow_run_id"] = flow_run_id
    return base


def failure_message(exc: BaseException) -> str:
    """A failure's message for the log: our errors' text (which names no value), else the type."""
    if isinstance(exc, TransferError):
        return str(exc)[:2000]
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    return f"unexpected {type(exc).__name__}"


@dataclass(frozen=True, slots=True)
class TransferPlan:
    """What one transfer will do, as plain values (paths, ids, digests; no key material, no identity).

    `outcome` is DENIED (the gate refused; logged already), UNCHANGED (everything in place) or
    DELIVERED (deliver each of `sending`, then finish). `log_fields` are the transfer log fields
    every entry of this transfer carries (the decision, the destination, the key fingerprints).
    """

    outcome: SendOutcome
    decision: Decision
    home: Path
    release: Path
    recipient_id: str
    recipient_key: str | None = None
    destination: str | None = None
    transfer_id: str | None = None
    kept: tuple[DeliveredFile, ...] = ()
    reused: tuple[DeliveredFile, ...] = ()
    to_send: tuple[ReleaseFile, ...] = ()
    log_fields: dict[str, Any] = field(default_factory=dict)

    @property
    def sending(self) -> tuple[str, ...]:
        """The release-relative names of the files to deliver (one deliver_file call each)."""
        return tuple(item.name for item in self.to_send)


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return (
        bool(name)
        and not path.is_absolute()
        and "\\" not in name
        and all(part not in ("", ".", "..") and not part.startswith(".") for part in path.parts)
        and name != RELEASE_JSON
    )
