"""Gather what the transfer gate decides on, then ask it: the adapter around transfer.gate.

`check_transfer` reads the release (release.json and the lab's ledger), the recipient from the
registry, the lab's jurisdiction, the consent register (revoked subject ids mapped to this
release's vault codes, plus the codes a deletion request withdrew, so the gate never sees an
identity) and the transfer log's earlier
deliveries, and calls the pure `decide_transfer` with the legal tables. The CLI, the demo and
the flows all call this one function, so they cannot disagree about what the gate was told.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from keys import ConsentRegister, Keystore, KeyWrapper, Recipient, UnknownRecipient
from transfer.decision import Decision
from transfer.facts import TRANSFER_LOG, deliveries_to, load_release_facts, read_deliveries, revoked_codes
from transfer.gate import decide_transfer
from transfer.law.tables import load_law_tables


def check_transfer(
    store: Keystore,
    release: Path,
    recipient_id: str,
    today: dt.date,
    wrapper: KeyWrapper,
    *,
    scheduled: bool = False,
) -> Decision:
    """The gate's decision for sending release to recipient_id today (nothing is sent or logged)."""
    facts = load_release_facts(release, store.home)
    recipient: Recipient | None
    try:
        recipient = store.registry().get(recipient_id)
    except UnknownRecipient:
        recipient = None  # the gate's recipient.registered rule denies, naming the fix
    revocations = ConsentRegister(store.home, wrapper).revocations()
    revoked = revoked_codes(store.home, facts.vault_domain, wrapper, revocations)  # deletions too
    deliveries = read_deliveries(store.home / TRANSFER_LOG)
    return decide_transfer(
        facts,
        recipient,
        load_law_tables(),
        store.config().jurisdiction,
        today,
        revoked,
        recipient_id=recipient_id,
        prior_deliveries=deliveries_to(deliveries, recipient_id),
        scheduled=scheduled,
    )
