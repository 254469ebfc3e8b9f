"""Send a release to a recipient: plan (gate, what to send), deliver each file, finish (manifest, log).

`send_release` is the composition of three steps that a flow may also run apart, one task per file:

- `plan_transfer` asks the gate (transfer.check); a denial is logged ("transfer.denied") and the
  plan says so, and nothing touches the destination. When allowed, it opens the destination (an S3
  bucket must be in the recipient's declared region before anything is sent), reads the last
  signed delivery manifest and the receipts of an interrupted run of the same transfer, and decides
  per file: kept (the manifest records the same plaintext SHA-256 for the same recipient key and
  the object still has the recorded size and checksum), reused (an interrupted run delivered and
  verified it), or to send. Crypt4GH output is randomised, so the plaintext digest is the only
  stable identity of a delivered file. If anything will change it withdraws the published
  manifest first, so a stale manifest never vouches for a half-replaced set.
- `deliver_file` encrypts one file for the recipient's key straight into the destination (for S3,
  into a multipart upload: one pass, encrypt -> hash parts -> upload; never a plaintext copy, no
  ciphertext staged on disk), checks the plaintext against release.json, verifies the stored
  object and records a receipt. It takes the plan and a file name only — paths, ids and digests,
  no key material, no identity — and reads the recipient's public key from the keystore's signed
  registry, so it runs in another process as well; it refuses if the key changed since the plan.
- `finish_transfer` requires every planned file delivered, writes the signed delivery manifest
  last (the completion marker: a recipient takes as delivered exactly what it lists) and logs
  "transfer.delivered", or "transfer.unchanged" when the plan found everything in place.

`send_release` holds the (release, recipient) send lock (transfer.inflight.sending) from the gate
to the manifest: planning aborts unfinished uploads and withdraws the manifest, so a second
concurrent sender would undo the first; it fails at once with TransferBusy instead. A flow that
runs the steps apart holds the same lock in its own process (flows.delivery_tasks).

The transfer id (delivery/release.py) is derived from the release content and the recipient key,
so a re-run of an interrupted transfer finds its receipts. An error is logged as "transfer.failed"
(the message names the file and the fix, never content; `fail_transfer` for flows that run the
steps apart) and re-raised.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from keys import Keystore, KeyWrapper, Passphrase, PublicKey, Recipient, SigningKey, UnknownRecipient
from transfer.check import check_transfer
from transfer.delivery import (
    DeliveredFile,
    DeliveryManifest,
    Destination,
    ReleaseFile,
    open_destination,
    read_manifest,
    sign_manifest,
)
from transfer.delivery.plan import (
    RELEASE_JSON,
    EventLog,
    SendOutcome,
    SendResult,
    TransferPlan,
    check_delivered,
    ciphertext_size,
    event_base,
    failure_message,
    plan_delivery,
    release_files,
    transfer_key,
)
from transfer.envelope import encrypt_to
from transfer.errors import DeliveryError, DeliveryMismatch, ReleaseUnreadable
from transfer.inflight import sending
from transfer.segments import Writable

__all__ = [
    "RELEASE_JSON",
    "EventLog",
    "Opener",
    "SendOutcome",
    "SendResult",
    "TransferPlan",
    "deliver_file",
    "fail_transfer",
    "finish_transfer",
    "plan_transfer",
    "release_files",
    "send_release",
    "transfer_key",
]

Opener = Callable[[Recipient, str, str], Destination]
Clock = Callable[[], dt.datetime]
Progress = Callable[[str, int, int], None]  # (stage, done, total)


def plan_transfer(
    store: Keystore,
    release: Path,
    recipient_id: str,
    passphrase: Passphrase,
    today: dt.date,
    *,
    wrapper: KeyWrapper,
    log: EventLog,
    opener: Opener | None = None,
    flow_run_id: str | None = None,
) -> TransferPlan:
    """Gate the transfer and decide what to send (see the module doc); a denial is logged and returned."""
    return _plan(store, release, recipient_id, passphrase, today, wrapper, log, opener, flow_run_id).plan


def deliver_file(plan: TransferPlan, name: str, *, opener: Opener | None = None) -> DeliveredFile:
    """Encrypt, upload and verify one planned file (a name of `plan.sending`); its manifest entry."""
    item = next((f for f in plan.to_send if f.name == name), None)
    if plan.outcome is not SendOutcome.DELIVERED or item is None or plan.transfer_id is None:
        raise DeliveryError(
            plan.destination or str(plan.release),
            f"{name} is not a file this transfer plan sends; deliver only the names of plan.sending",
        )
    recipient = _planned_recipient(plan)
    destination = (opener or open_destination)(recipient, plan.decision.release_id, plan.transfer_id)
    return _deliver(plan, item, destination, recipient.public_key)


def finish_transfer(
    store: Keystore,
    plan: TransferPlan,
    delivered: Sequence[DeliveredFile],
    passphrase: Passphrase,
    *,
    log: EventLog,
    opener: Opener | None = None,
    now: Clock | None = None,
) -> SendResult:
    """Publish the signed manifest once every planned file is delivered; log the outcome."""
    signer = store.signing_key(passphrase)
    if plan.outcome is not SendOutcome.DELIVERED or plan.transfer_id is None:
        return _finish(plan, delivered, None, signer, log, now)
    try:
        recipient = _planned_recipient(plan)
        destination = (opener or open_destination)(recipient, plan.decision.release_id, plan.transfer_id)
    except BaseException as exc:
        _log_failure(plan, signer, log, exc)
        raise
    return _finish(plan, delivered, destination, signer, log, now)


def fail_transfer(
    store: Keystore, plan: TransferPlan, passphrase: Passphrase, error: BaseException, *, log: EventLog
) -> None:
    """Log "transfer.failed" for a planned transfer whose delivery failed (its message, never content)."""
    _log_failure(plan, store.signing_key(passphrase), log, error)


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
    now: Clock | None = None,
    flow_run_id: str | None = None,
    progress: Progress | None = None,
) -> SendResult:
    """Gate, encrypt, deliver, verify and log one release for one recipient (see the module doc).
    progress, if given, hears ("files", done, total) as each file is delivered and verified.
    TransferBusy, before anything is done, while another process sends it to the recipient."""
    with sending(store.home, release, recipient_id):
        opened = _plan(store, release, recipient_id, passphrase, today, wrapper, log, opener, flow_run_id)
        plan, signer, destination = opened.plan, opened.signer, opened.destination
        delivered: list[DeliveredFile] = []
        if destination is not None and opened.key is not None:
            try:
                for item in plan.to_send:
                    delivered.append(_deliver(plan, item, destination, opened.key))
                    if progress is not None:
                        progress("files", len(delivered), len(plan.to_send))
            except BaseException as exc:
                _log_failure(plan, signer, log, exc)
                raise
        return _finish(plan, delivered, destination, signer, log, now)


# --- the steps, with the signing key unlocked once -------------------------------------------


@dataclass(frozen=True, slots=True)
class _Planned:
    """A plan with what send_release keeps open for its deliveries (never passed to a task)."""

    plan: TransferPlan
    signer: SigningKey
    destination: Destination | None = None
    key: PublicKey | None = None


def _plan(
    store: Keystore,
    release: Path,
    recipient_id: str,
    passphrase: Passphrase,
    today: dt.date,
    wrapper: KeyWrapper,
    log: EventLog,
    opener: Opener | None,
    flow_run_id: str | None,
) -> _Planned:
    decision = check_transfer(store, release, recipient_id, today, wrapper)
    signer = store.signing_key(passphrase)
    try:
        recipient: Recipient | None = store.registry().get(recipient_id)
    except UnknownRecipient:
        recipient = None  # the decision denies it (recipient.registered)
    base = event_base(decision, recipient, flow_run_id)
    if not decision.allowed or recipient is None:
        log.append(
            {**base, "event": "transfer.denied", "message": "; ".join(decision.reasons)[:2000]}, signer
        )
        denied = TransferPlan(
            SendOutcome.DENIED, decision, store.home, release, recipient_id, log_fields=base
        )
        return _Planned(denied, signer)
    files = release_files(release)
    transfer_id = transfer_key(decision.release_sha256, files, recipient)
    base["key_fingerprints"] = {
        "recipient": recipient.fingerprint,
        "signing": signer.verify_key().fingerprint,
    }
    try:
        destination = (opener or open_destination)(recipient, decision.release_id, transfer_id)
        base["destination"] = {"country": recipient.country, "uri": destination.uri}
        published = _signed(destination.manifest(), destination, store, decision.release_id)
        previous = published or _signed(destination.withdrawn(), destination, store, decision.release_id)
        existing = destination.existing() if previous is not None else {}
        delivery = plan_delivery(files, previous, recipient.fingerprint, existing, destination.pending())
        unchanged = (
            delivery.unchanged
            and published is not None
            and published.release_sha256 == decision.release_sha256
        )
        if not unchanged:
            destination.withdraw()  # before anything is replaced: no stale manifest vouches for it
    except BaseException as exc:
        log.append({**base, "event": "transfer.failed", "message": failure_message(exc)}, signer)
        raise
    plan = TransferPlan(
        SendOutcome.UNCHANGED if unchanged else SendOutcome.DELIVERED,
        decision,
        store.home,
        release,
        recipient_id,
        recipient.fingerprint,
        destination.uri,
        transfer_id,
        delivery.kept,
        delivery.reused,
        delivery.to_send,
        base,
    )
    return _Planned(plan, signer, destination, recipient.public_key)


def _deliver(
    plan: TransferPlan, item: ReleaseFile, destination: Destination, key: PublicKey
) -> DeliveredFile:
    source = plan.release / item.name

    def encrypt(sink: Writable) -> DeliveredFile:
        digest = encrypt_to(source, sink, [key])
        if digest.plaintext_sha256 != item.plaintext_sha256:
            raise ReleaseUnreadable(
                str(source),
                "its SHA-256 differs from release.json: the release changed after `genegate deid` "
                "wrote it; write the release again",
            )
        return DeliveredFile(
            item.delivered_name,
            item.plaintext_sha256,
            digest.ciphertext_sha256,
            digest.ciphertext_bytes,
            digest.plaintext_bytes,
        )

    return destination.deliver(item.delivered_name, encrypt, ciphertext_size(item.plaintext_bytes))


def _finish(
    plan: TransferPlan,
    delivered: Sequence[DeliveredFile],
    destination: Destination | None,
    signer: SigningKey,
    log: EventLog,
    now: Clock | None,
) -> SendResult:
    decision = plan.decision
    if plan.outcome is SendOutcome.DENIED:
        return SendResult(SendOutcome.DENIED, decision, None)
    if plan.outcome is SendOutcome.UNCHANGED:
        result = SendResult(
            SendOutcome.UNCHANGED, decision, plan.destination, plan.kept, transfer_id=plan.transfer_id
        )
        return _log_outcome(plan, result, signer, log)
    try:
        if destination is None:
            raise DeliveryError(str(plan.release), "the plan names no destination; plan the transfer again")
        sent = check_delivered(plan.to_send, delivered, plan.destination or str(plan.release))
        clock = now or (lambda: dt.datetime.now(dt.UTC))
        manifest = DeliveryManifest(
            release_id=decision.release_id,
            release_sha256=decision.release_sha256,
            recipient_id=plan.recipient_id,
            recipient_key=plan.recipient_key or "",
            transfer_id=plan.transfer_id or "",
            created_at=clock().isoformat(timespec="seconds"),
            files=tuple(sorted((*plan.kept, *plan.reused, *sent), key=lambda f: f.name)),
        )
        destination.publish(sign_manifest(manifest, signer), manifest.files)
    except BaseException as exc:
        _log_failure(plan, signer, log, exc)
        raise
    result = SendResult(
        SendOutcome.DELIVERED,
        decision,
        plan.destination,
        manifest.files,
        tuple(f.name for f in sent),
        sum(f.bytes for f in sent),
        plan.transfer_id,
    )
    return _log_outcome(plan, result, signer, log)


def _log_outcome(plan: TransferPlan, result: SendResult, signer: SigningKey, log: EventLog) -> SendResult:
    event = "transfer.delivered" if result.outcome is SendOutcome.DELIVERED else "transfer.unchanged"
    log.append(
        {
            **plan.log_fields,
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


def _log_failure(plan: TransferPlan, signer: SigningKey, log: EventLog, exc: BaseException) -> None:
    log.append({**plan.log_fields, "event": "transfer.failed", "message": failure_message(exc)}, signer)


def _planned_recipient(plan: TransferPlan) -> Recipient:
    """The recipient from the keystore's signed registry; refused if its key changed or it was revoked."""
    recipient = Keystore(plan.home).registry().get(plan.recipient_id)
    where = plan.destination or str(plan.release)
    if recipient.fingerprint != plan.recipient_key:
        raise DeliveryError(
            where,
            f"recipient {plan.recipient_id}'s key changed after the transfer was planned; plan it again",
        )
    if recipient.revoked_at:
        raise DeliveryError(
            where,
            f"recipient {plan.recipient_id} was revoked after the transfer was planned; nothing more is sent",
        )
    return recipient


def _signed(
    data: bytes | None, destination: Destination, store: Keystore, release_id: str
) -> DeliveryManifest | None:
    """A manifest the lab signed for this release, else None (then everything is sent again)."""
    if data is None:
        return None
    try:
        manifest = read_manifest(data, store.verify_key(), destination.uri)
    except DeliveryMismatch:
        return None  # not one we signed: deliver everything again and replace it
    return manifest if manifest.release_id == release_id else None
