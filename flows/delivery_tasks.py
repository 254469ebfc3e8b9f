"""Delivery in the Prefect flows: one task per step of transfer/send.py, one task per file sent.

`send_all` runs, for every (release, recipient) of a `transfer` or `partner-sync` run:

- `plan-transfer` (transfer.plan_transfer): the gate, then what to send. A denial is logged there
  ("transfer.denied") and nothing touches the destination; the recipient's send is the denial
  with the gate's reasons.
- one `deliver-<i>` task per file of `plan.sending` (transfer.deliver_file: encrypt one file for
  the recipient's key straight into the destination, upload and verify it), every recipient's
  submitted together to the flow's task runner (threads, or Dask workers: flows.runners);
- `finish-transfer` (transfer.finish_transfer): the signed delivery manifest, written last, and
  the "transfer.delivered" or "transfer.unchanged" entry (a denied plan finishes with its denial).

`plan-transfer` and `finish-transfer` sign transfer-log entries, so they need the keystore
passphrase: they run in the flow's own process (called, not submitted), one recipient after
another, and read it there from $GENEGATE_PASSPHRASE (`keystore_passphrase`); it never passes
through Prefect. A plan is plain values (paths, ids, digests and the gate's decision; no key
material, no identity: transfer.TransferPlan), so it is a task parameter, and `deliver-<i>`
reads the recipient's public key from the keystore's signed registry: it needs no secret and runs
on any worker that sees the release, the keystore folder and the destination's credentials.

These three are the only tasks that retry (DELIVERY_RETRIES, after DELIVERY_RETRY_DELAYS), each
talking to the destination, and only on a delivery error that may pass (`_transient`): not an
unusable destination, not a bug; a denial is no error. When a file still fails, the transfer is
logged as failed (transfer.fail_transfer) and nothing is published for that recipient; the other
recipients' work completes, their artifacts are published, and then DeliveryFailed names every
failed (release, recipient), raised from the first error. A re-run reuses the files delivered.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.futures import PrefectFuture, wait
from prefect.runtime import flow_run
from prefect.tasks import Task

from flows.artifacts import publish_audit_report, publish_delivery, publish_gate
from flows.console import PASSPHRASE_ENV, today
from flows.errors import FlowsError, UsageProblem
from keys import Keystore, KeyWrapper, Passphrase, WrapMode
from transfer import (
    TRANSFER_LOG,
    DeliveredFile,
    DeliveryError,
    DestinationUnusable,
    TransferBusy,
    TransferLog,
    TransferPlan,
    deliver_file,
    fail_transfer,
    finish_transfer,
    plan_transfer,
    sending,
)

T = TypeVar("T")

DELIVERY_RETRIES = 2
DELIVERY_RETRY_DELAYS = [5.0, 30.0]  # seconds before the first and the second retry


class DeliveryFailed(FlowsError):
    """A delivery task still failed after its retries; names the recipients, never file content."""


def keystore_passphrase() -> Passphrase:
    """$GENEGATE_PASSPHRASE: flows run unattended, so they never prompt and never take it as a parameter."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is None:
        raise UsageProblem(f"no passphrase: set ${PASSPHRASE_ENV} before running a flow (flows never prompt)")
    return Passphrase(value)


def keystore_wrapper(store: Keystore) -> KeyWrapper:
    """What opens the vault and the consent register: the passphrase unless KMS wraps them."""
    needs_passphrase = store.config().wrap_mode is WrapMode.LAB_KEY
    return store.vault_wrapper(keystore_passphrase() if needs_passphrase else None)


def _transient(_task: Task[..., Any], _run: TaskRun, state: State[Any]) -> bool:
    """Retry a delivery that may pass on a second try; not an unusable destination, not a bug."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, DeliveryError) and not isinstance(error, DestinationUnusable)


def _log(store: Keystore) -> TransferLog:
    return TransferLog(store.home / TRANSFER_LOG)


@task(
    name="plan-transfer",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=DELIVERY_RETRIES,
    retry_delay_seconds=DELIVERY_RETRY_DELAYS,
    retry_condition_fn=_transient,
)
def plan_task(release: str, recipient: str, home: str) -> TransferPlan:
    """Gate the release for one recipient and plan what to send (transfer.plan_transfer)."""
    store = Keystore(Path(home))
    run_id = flow_run.get_id()
    return plan_transfer(
        store,
        Path(release),
        recipient,
        keystore_passphrase(),
        today(),
        wrapper=keystore_wrapper(store),
        log=_log(store),
        flow_run_id=str(run_id) if run_id else None,
    )


@task(
    name="deliver-file",
    task_run_name="deliver-{index}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=DELIVERY_RETRIES,
    retry_delay_seconds=DELIVERY_RETRY_DELAYS,
    retry_condition_fn=_transient,
)
def deliver_task(plan: TransferPlan, index: int) -> DeliveredFile:
    """Encrypt, upload and verify file index of plan.sending (transfer.deliver_file); its manifest entry."""
    return deliver_file(plan, plan.sending[index])


@task(
    name="finish-transfer",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=DELIVERY_RETRIES,
    retry_delay_seconds=DELIVERY_RETRY_DELAYS,
    retry_condition_fn=_transient,
)
def finish_task(plan: TransferPlan, delivered: list[DeliveredFile]) -> dict[str, Any]:
    """Publish the signed manifest and log the outcome (transfer.finish_transfer): SendResult.to_json
    with the gate's reasons and decision (the decision is for the gate artifact only)."""
    store = Keystore(plan.home)
    result = finish_transfer(store, plan, delivered, keystore_passphrase(), log=_log(store))
    decision = result.decision
    return {**result.to_json(), "reasons": list(decision.reasons), "decision": decision.to_json()}


def send_all(jobs: Sequence[tuple[str, str]], home: str, key: str) -> list[dict[str, Any]]:
    """Send each (release, recipient) of jobs (see the module doc); publish each gate decision, the
    delivery summary under artifact key and the report link; raise DeliveryFailed at the end if a
    recipient failed. Returns the sends in job order, without the decisions. Each (release,
    recipient) is held from its plan to its finish (transfer.sending): one that another process is
    sending now fails with TransferBusy and is not planned."""
    with contextlib.ExitStack() as held:
        planned = [_planned(held, release, rid, home) for release, rid in jobs]
        deliveries = [
            [deliver_task.submit(plan, i) for i in range(len(plan.sending))]
            if isinstance(plan, TransferPlan)
            else []
            for plan in planned
        ]
        wait([future for futures in deliveries for future in futures])
        outcomes = [_finish(plan, futures) for plan, futures in zip(planned, deliveries, strict=True)]
    sends: list[dict[str, Any]] = []
    failed: list[str] = []
    errors: list[BaseException] = []
    for (release, rid), send in zip(jobs, outcomes, strict=True):
        if isinstance(send, BaseException):
            name = Path(release).name
            errors.append(send)
            failed.append(f"{name} -> {rid} ({type(send).__name__})")
            sends.append({"release_id": name, "recipient_id": rid, "outcome": "failed", "files": []})
        else:
            publish_gate(send)
            sends.append(send)
    publish_delivery(key, sends)
    publish_audit_report(home)
    if failed:
        raise DeliveryFailed(
            f"delivery failed for {', '.join(failed)} after {DELIVERY_RETRIES} retries; the transfer log "
            "has each failure; fix the destination and rerun (files already delivered are kept)"
        ) from errors[0]
    return [{k: v for k, v in s.items() if k != "decision"} for s in sends]


def _finish(
    plan: TransferPlan | BaseException, deliveries: list[PrefectFuture[DeliveredFile]]
) -> dict[str, Any] | BaseException:
    """The finish-transfer outcome of a plan whose files were all delivered; else the error that
    failed it (a failed delivery is logged as the transfer's failure; a failed plan logged its own)."""
    if isinstance(plan, BaseException):
        return plan
    delivered = [_delivered(future) for future in deliveries]
    error = next((d for d in delivered if isinstance(d, BaseException)), None)
    if error is None:
        files = [d for d in delivered if isinstance(d, DeliveredFile)]
        return _settled(finish_task(plan, files, return_state=True))
    store = Keystore(plan.home)
    fail_transfer(store, plan, keystore_passphrase(), error, log=_log(store))
    return error


def _planned(
    held: contextlib.ExitStack, release: str, recipient: str, home: str
) -> TransferPlan | BaseException:
    """Take the send lock of (release, recipient) into held, then run plan-transfer here, in the
    flow's process; its plan, or the error that failed it (TransferBusy without a plan)."""
    try:
        held.enter_context(sending(Path(home), Path(release), recipient))
    except TransferBusy as exc:
        return exc
    state = plan_task(release, recipient, home, return_state=True)
    return _settled(state)


def _settled(state: State[T]) -> T | BaseException:
    """A finished task's result, or the exception that failed it (after its retries)."""
    if state.is_completed():
        return state.result()
    return _error(state)


def _delivered(future: PrefectFuture[DeliveredFile]) -> DeliveredFile | BaseException:
    """A deliver task's manifest entry, or the exception that failed it (after its retries)."""
    return future.result() if future.state.is_completed() else _error(future.state)


def _error(state: State[Any]) -> BaseException:
    error = state.result(raise_on_failure=False)
    if isinstance(error, BaseException):
        return error
    return DeliveryFailed(f"a delivery task ended {state.type.value} without an error; rerun the transfer")
