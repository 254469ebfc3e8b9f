"""The three steps of a send run apart (plan -> deliver each file -> finish), as a flow with one task per file does."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import crypt4gh.keys
import crypt4gh.lib
import pytest

from keys import Passphrase
from tests.support.releases import OutboxWorld, assessed_summary_release, outbox_world, register_partner
from transfer import DeliveryError, SendOutcome
from transfer.delivery import MANIFEST_NAME, read_manifest
from transfer.send import (
    TransferPlan,
    deliver_file,
    fail_transfer,
    finish_transfer,
    plan_transfer,
    send_release,
)

PASS = Passphrase("correct horse battery")
TODAY = dt.datetime.now(dt.UTC).date()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keystore with a summary-only release that passed assessment (built once per module)."""
    root = tmp_path_factory.mktemp("template")
    assessed_summary_release(root, PASS)
    return root


World = OutboxWorld


@pytest.fixture
def world(template: Path, tmp_path: Path) -> World:
    """A private copy of the template with the Swiss partner delivering to a local outbox."""
    return outbox_world(template, tmp_path, PASS, TODAY)


def plan(world: World, recipient: str = "ch-zurich") -> TransferPlan:
    wrapper = world.store.vault_wrapper(PASS)
    return plan_transfer(world.store, world.release, recipient, PASS, TODAY, wrapper=wrapper, log=world.log)


def events(world: World) -> list[str]:
    return [e["event"] for e in world.log.entries()]


def root_of(world: World) -> Path:
    return world.outbox / str(json.loads((world.release / "release.json").read_text())["release_id"])


def test_each_file_delivered_in_another_process_then_finished_publishes_one_manifest(world: World) -> None:
    """The plan pickles to a fresh interpreter, which delivers each file; finish publishes them all, once."""
    planned = plan(world)
    assert (SendOutcome.DELIVERED, []) == (planned.outcome, events(world))  # nothing logged before finish
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        delivered = list(pool.map(deliver_file, [planned] * len(planned.sending), planned.sending))
    assert not (root_of(world) / MANIFEST_NAME).exists()  # delivered, but nothing is vouched for yet
    result = finish_transfer(world.store, planned, delivered, PASS, log=world.log)
    assert (SendOutcome.DELIVERED, sorted(planned.sending)) == (
        result.outcome,
        sorted(n.removesuffix(".c4gh") for n in result.sent),
    )
    manifest = read_manifest((root_of(world) / MANIFEST_NAME).read_bytes(), world.store.verify_key(), "t")
    assert sorted(delivered, key=lambda f: f.name) == list(manifest.files)
    secret = crypt4gh.keys.get_private_key(str(world.partner), PASS.reveal)
    for name in planned.sending:
        out = io.BytesIO()
        with open(root_of(world) / f"{name}.c4gh", "rb") as fin:
            crypt4gh.lib.decrypt([(0, secret, None)], fin, out)
        assert (world.release / name).read_bytes() == out.getvalue()
    assert ["transfer.delivered"] == events(world)
    assert not (root_of(world) / ".partial").exists()


def test_a_plan_carries_no_key_material(world: World) -> None:
    """What a task receives holds paths, ids and digests: not the passphrase, not the recipient's public key."""
    planned = plan(world)
    recipient = world.store.registry().get("ch-zurich")
    data = pickle.dumps(planned)
    assert (False, False) == (PASS.reveal().encode() in data, recipient.public_key.raw in data)
    assert recipient.fingerprint == planned.recipient_key


def test_finish_refuses_a_plan_with_a_file_missing_and_publishes_nothing(world: World) -> None:
    """A file not delivered: finish raises naming it, logs transfer.failed, and no manifest appears."""
    planned = plan(world)
    delivered = [deliver_file(planned, name) for name in planned.sending[1:]]
    missing = planned.sending[0] + ".c4gh"
    with pytest.raises(DeliveryError, match=missing.replace(".", r"\.")):
        finish_transfer(world.store, planned, delivered, PASS, log=world.log)
    assert not (root_of(world) / MANIFEST_NAME).exists()
    assert ["transfer.failed"] == events(world)
    rest = deliver_file(planned, planned.sending[0])  # the retry of the missing task, then finish
    assert (
        SendOutcome.DELIVERED
        == finish_transfer(world.store, planned, [*delivered, rest], PASS, log=world.log).outcome
    )


def test_deliver_file_refuses_a_name_the_plan_does_not_send(world: World) -> None:
    """Only the names of plan.sending can be delivered."""
    with pytest.raises(DeliveryError, match=r"plan\.sending"):
        deliver_file(plan(world), "not-in-the-release.tsv")


def test_deliver_file_refuses_when_the_recipient_changed_after_planning(world: World) -> None:
    """Another key than planned, or a recipient revoked since: fail closed, nothing written."""
    planned = plan(world)
    with pytest.raises(DeliveryError, match="key changed"):
        deliver_file(dataclasses.replace(planned, recipient_key="SHA256:" + "0" * 64), planned.sending[0])
    with world.store.editing_registry(PASS) as registry:
        registry.revoke("ch-zurich", "contract ended", "2026-01-02T00:00:00+00:00")
    with pytest.raises(DeliveryError, match="revoked"):
        deliver_file(planned, planned.sending[0])
    assert not world.outbox.exists()


def test_a_denied_plan_sends_nothing_and_finish_logs_nothing_more(world: World, tmp_path: Path) -> None:
    """A recipient without a basis: the plan is DENIED (logged once), with nothing to send."""
    register_partner(
        world.store,
        PASS,
        "us-boston",
        "US",
        "us-east-1",
        (tmp_path / "us").as_uri(),
        bases=False,
        today=TODAY,
    )
    planned = plan(world, "us-boston")
    assert (SendOutcome.DENIED, ()) == (planned.outcome, planned.sending)
    assert SendOutcome.DENIED == finish_transfer(world.store, planned, [], PASS, log=world.log).outcome
    assert ["transfer.denied"] == events(world)


def test_a_plan_after_a_complete_delivery_is_unchanged(world: World) -> None:
    """After send_release (which reports each delivered file to its progress callback), a new plan
    finds everything in place; finish logs transfer.unchanged."""
    heard: list[tuple[str, int, int]] = []
    sent = send_release(
        world.store,
        world.release,
        "ch-zurich",
        PASS,
        TODAY,
        wrapper=world.store.vault_wrapper(PASS),
        log=world.log,
        progress=lambda stage, done, total: heard.append((stage, done, total)),
    )
    n = len(sent.files)
    assert [("files", i, n) for i in range(1, n + 1)] == heard
    planned = plan(world)
    assert (SendOutcome.UNCHANGED, ()) == (planned.outcome, planned.sending)
    result = finish_transfer(world.store, planned, [], PASS, log=world.log)
    assert (SendOutcome.UNCHANGED, 0) == (result.outcome, result.bytes_sent)
    assert ["transfer.delivered", "transfer.unchanged"] == events(world)


def test_fail_transfer_logs_the_error_message_for_a_task_that_failed(world: World) -> None:
    """A flow whose per-file task failed records transfer.failed with our error's text."""
    planned = plan(world)
    error = DeliveryError(planned.destination or "", "summary.tsv.c4gh: connection dropped; run it again")
    fail_transfer(world.store, planned, PASS, error, log=world.log)
    entry = world.log.entries()[-1]
    assert ("transfer.failed", str(error)) == (entry["event"], entry["message"])
    assert planned.destination == entry["destination"]["uri"]
