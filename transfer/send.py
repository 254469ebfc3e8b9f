"""Send a release to a recipient: gate, encrypt, deliver, verify, publish, log.

`send_release` asks the gate (transfer.check); a denial is logged ("transfer.denied") and returned,
and nothing touches the destination. When allowed, each release file (release.json and every file
it lists) is Crypt4GH-encrypted for the recipient's key, streamed into a private temporary
directory (mode 0700; ciphertext only, never a plaintext copy), staged at the destination,
verified there, and removed locally. A signed delivery manifest is then published last.

Re-runs compare by plaintext SHA-256 (Crypt4GH output is randomised, so ciphertexts never repeat):
a file is left alone when the last published manifest records its plaintext digest for the same
recipient key and the object still has the recorded size and ciphertext digest. The staging area
is named by a transfer id derived from the release content and the recipient key, so a re-run of
an interrupted transfer finds and reuses what it had already staged and verified. A run that
finds everything in place logs "transfer.unchanged"; an error is logged as "transfer.failed"
(the message names the file and the fix, never content) and re-raised.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from keys import Keystore, KeyWrapper, Passphrase, Recipient, SigningKey, UnknownRecipient
from transfer.check import check_transfer
from transfer.decision import Decision
from transfer.delivery import (
    DeliveredFile,
    DeliveryManifest,
    Destination,
    ReleaseFile,
    open_destination,
    plan_delivery,
    read_manifest,
    sign_manifest,
)
from transfer.envelope import encrypt_file
from transfer.errors import DeliveryMismatch, ReleaseUnreadable, TransferError

RELEASE_JSON = "release.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Opener = Callable[[Recipient, str, str], Destination]


class EventLog(Protocol):
    """What send_release writes to: transfer.log.TransferLog."""

    def append(self, event: Mapping[str, Any], signing_key: SigningKey) -> dict[str, Any]:
        """Append one signed entry."""
        ...


class SendOutcome(enum.StrEnum):
    """What a send did."""

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


def send_release(
    store: Keystore,
    release: Path,
    recipient_id: str,
    passphrase: Passphrase,
    today: dt.date,
    *,
    wrapper: KeyWrapper,
    log: EventLog,
    opener: Opener | None = None,
    now: Callable[[], dt.datetime] | None = None,
    flow_run_id: str | None = None,
) -> SendResult:
    """Gate, encrypt, deliver, verify and log one release for one recipient (see the module doc)."""
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    decision = check_transfer(store, release, recipient_id, today, wrapper)
    signer = store.signing_key(passphrase)
    try:
        recipient: Recipient | None = store.registry().get(recipient_id)
    except UnknownRecipient:
        recipient = None  # the decision denies it (recipient.registered)
    base = _event_base(decision, recipient, flow_run_id)
    if not decision.allowed or recipient is None:
        log.append(
            {**base, "event": "transfer.denied", "message": "; ".join(decision.reasons)[:2000]}, signer
        )
        return SendResult(SendOutcome.DENIED, decision, None)
    files = release_files(release)
    transfer_id = transfer_key(decision.release_sha256, files, recipient)
    base["key_fingerprints"] = {
        "recipient": recipient.fingerprint,
        "signing": signer.verify_key().fingerprint,
    }
    uri: str | None = None
    try:
        destination = (opener or open_destination)(recipient, decision.release_id, transfer_id)
        uri = destination.uri
        base["destination"] = {"country": recipient.country, "uri": uri}
        result = _deliver(destination, release, files, decision, recipient, store, signer, transfer_id, clock)
    except BaseException as exc:
        failed = {**base, "event": "transfer.failed", "message": _message(exc)}
        if uri is None:
            failed["destination"] = {"country": recipient.country, "uri": recipient.destination}
        log.append(failed, signer)
        raise
    event = "transfer.delivered" if result.outcome is SendOutcome.DELIVERED else "transfer.unchanged"
    log.append(
        {
            **base,
            "event": event,
            "files": [f.log_json() for f in result.files],
            "counts": {
                "files": len(result.files),
                "sent": len(result.sent),
                "bytes_sent": result.bytes_sent,
                "bytes": sum(f.bytes for f in result.files),
            },
        },
        signer,
    )
    return result


def _deliver(
    destination: Destination,
    release: Path,
    files: tuple[ReleaseFile, ...],
    decision: Decision,
    recipient: Recipient,
    store: Keystore,
    signer: SigningKey,
    transfer_id: str,
    clock: Callable[[], dt.datetime],
) -> SendResult:
    previous = _previous_manifest(destination, store)
    if previous is not None and previous.release_id != decision.release_id:
        previous = None
    plan = plan_delivery(files, previous, recipient.fingerprint, destination.existing(), destination.staged())
    if plan.unchanged and previous is not None and previous.release_sha256 == decision.release_sha256:
        return SendResult(
            SendOutcome.UNCHANGED, decision, destination.uri, plan.kept, transfer_id=transfer_id
        )
    sent: list[DeliveredFile] = []
    with tempfile.TemporaryDirectory(prefix="genegate-send-") as scratch:  # mkdtemp: mode 0700
        for item in plan.to_send:
            encrypted = Path(scratch) / "file.c4gh"
            digest = encrypt_file(release / item.name, encrypted, [recipient.public_key])
            if digest.plaintext_sha256 != item.plaintext_sha256:
                raise ReleaseUnreadable(
                    str(release / item.name),
                    "its SHA-256 differs from release.json: the release changed after `genegate deid` "
                    "wrote it; write the release again",
                )
            entry = DeliveredFile(
                item.delivered_name,
                item.plaintext_sha256,
                digest.ciphertext_sha256,
                digest.ciphertext_bytes,
                digest.plaintext_bytes,
            )
            destination.put(entry.name, encrypted, entry.ciphertext_sha256, entry.bytes)
            destination.verify(entry.name, entry.ciphertext_sha256, entry.bytes)
            encrypted.unlink()
            sent.append(entry)
    manifest = DeliveryManifest(
        release_id=decision.release_id,
        release_sha256=decision.release_sha256,
        recipient_id=recipient.id,
        recipient_key=recipient.fingerprint,
        transfer_id=transfer_id,
        created_at=clock().isoformat(timespec="seconds"),
        files=(*plan.kept, *plan.reused, *sent),
    )
    destination.publish(sign_manifest(manifest, signer))
    return SendResult(
        SendOutcome.DELIVERED,
        decision,
        destination.uri,
        tuple(sorted(manifest.files, key=lambda f: f.name)),
        tuple(f.name for f in sent),
        sum(f.bytes for f in sent),
        transfer_id,
    )


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
    """A transfer id fixed by the release content and the recipient's key: re-runs share staging."""
    digest = hashlib.sha256()
    for part in (
        release_sha256,
        recipient.id,
        recipient.fingerprint,
        *(f"{f.name}\0{f.plaintext_sha256}" for f in files),
    ):
        digest.update(part.encode("utf-8") + b"\n")
    return "t-" + digest.hexdigest()[:24]


def _previous_manifest(destination: Destination, store: Keystore) -> DeliveryManifest | None:
    data = destination.manifest()
    if data is None:
        return None
    try:
        return read_manifest(data, store.verify_key(), destination.uri)
    except DeliveryMismatch:
        return None  # not one we signed: deliver everything again and replace it


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return (
        bool(name)
        and not path.is_absolute()
        and "\\" not in name
        and all(part not in ("", ".", "..") and not part.startswith(".") for part in path.parts)
        and name != RELEASE_JSON
    )


def _event_base(decision: Decision, recipient: Recipient | None, flow_run_id: str | None) -> dict[str, Any]:
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


def _message(exc: BaseException) -> str:
    """A failure's message for the log: our errors' text (which names no value), else the type."""
    if isinstance(exc, TransferError):
        return str(exc)[:2000]
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    return f"unexpected {type(exc).__name__}"
