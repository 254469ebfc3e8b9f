"""The recipient registry: validation of declarations, bases, revocation, signatures."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from keys import (
    Basis,
    BasisType,
    Keystore,
    Passphrase,
    RecipientUnusable,
    RegistryTampered,
    SecretKey,
    UnknownRecipient,
    new_recipient,
)
from keys.errors import KeyStoreError

PASS = Passphrase("correct horse battery")
TODAY = dt.date(2026, 11, 22)


def _declare(recipient_id: str = "ch-zurich-genomics", **changes: object) -> dict[str, object]:
    args: dict[str, object] = {
        "name": "Zurich Genomics AG",
        "country": "ch",
        "public_key_text": SecretKey.generate().public_key().to_pem(),
        "key_source": "zurich.pub",
        "destination": "file:///srv/outbox/zurich",
        "region": "eu-central-2",
        "valid_until": dt.date(2027, 12, 31),
        "purposes": ("DUO:0000006",),
        "contract_ref": "NRC-2026-014",
        "contract_signed": dt.date(2026, 3, 1),
        "today": TODAY,
        "added_at": "2026-11-22T10:00:00+00:00",
    }
    args.update(changes)
    return {"recipient_id": recipient_id, **args}


def test_declaration_is_normalised_and_fingerprinted() -> None:
    """Country codes are upper-cased and the key fingerprint is SHA-256 of the public key."""
    decl = _declare()
    r = new_recipient(**decl)  # type: ignore[arg-type]
    assert "CH" == r.country
    assert r.public_key.fingerprint == r.fingerprint
    assert 71 == len(r.fingerprint)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"recipient_id": "Bad Id!"}, "lowercase letters"),
        ({"country": "Switzerland"}, "ISO 3166-1 alpha-2"),
        ({"purposes": ("research",)}, "DUO code"),
        ({"destination": "ftp://x/y"}, "file:///absolute/outbox or s3://bucket/prefix"),
        ({"destination": "file://relative/path"}, "file:///absolute/outbox"),
        ({"valid_until": dt.date(2020, 1, 1)}, "already past"),
        ({"contract_signed": None}, "both --contract and --contract-signed"),
        ({"contract_signed": dt.date(2027, 1, 1)}, "in the future"),
        ({"public_key_text": "not a key"}, "zurich.pub"),
    ],
)
def test_bad_declarations_are_refused(changes: dict[str, object], message: str) -> None:
    """Each malformed field is refused with a message naming it and the fix."""
    decl = _declare(**{k: v for k, v in changes.items() if k != "recipient_id"})
    if "recipient_id" in changes:
        decl["recipient_id"] = changes["recipient_id"]
    with pytest.raises(KeyStoreError, match=message):
        new_recipient(**decl)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("basis", "message"),
    [
        (Basis(BasisType.SCC_EU_2021, "SCC-1", dt.date(2026, 1, 1)), "needs --module"),
        (Basis(BasisType.SCC_EU_2021, "SCC-1", dt.date(2026, 1, 1), module=5), "modules are 1, 2, 3 or 4"),
        (Basis(BasisType.HGR_FILING, "HGR", dt.date(2026, 1, 1)), "needs --filing"),
        (Basis(BasisType.GDPR_49_1_A, "C", dt.date(2026, 1, 1)), "needs --consent-ref"),
        (Basis(BasisType.IDTA, "I", dt.date(2027, 1, 1)), "signed in the future"),
        (Basis(BasisType.DPF, "D", dt.date(2026, 1, 1), expires=dt.date(2025, 1, 1)), "not after --signed"),
        (Basis(BasisType.CH_SCC, "C", dt.date(2026, 1, 1), tia_ref="TIA-1"), "both --tia-ref and --tia-date"),
    ],
)
def test_bases_must_be_the_named_instrument(basis: Basis, message: str) -> None:
    """A basis missing its defining evidence, or self-contradictory, is refused."""
    with pytest.raises(KeyStoreError, match=message):
        basis.validate(TODAY)


@pytest.fixture
def store(tmp_path: Path) -> Keystore:
    """A keystore with one registered recipient."""
    ks = Keystore.init(tmp_path / "ks", PASS)
    with ks.editing_registry(PASS) as registry:
        registry.add(new_recipient(**_declare()))  # type: ignore[arg-type]
    return ks


def test_registry_round_trips_with_bases(store: Keystore) -> None:
    """A recipient and its SCC basis with TIA evidence read back exactly as recorded."""
    scc = Basis(
        BasisType.SCC_EU_2021,
        "SCC-2026-7",
        dt.date(2026, 2, 1),
        dt.date(2029, 2, 1),
        1,
        "TIA-9",
        dt.date(2026, 1, 20),
    )
    with store.editing_registry(PASS) as registry:
        registry.add_basis("ch-zurich-genomics", scc, TODAY)
    (recipient,) = store.registry().all()
    assert (scc,) == recipient.bases
    assert "Zurich Genomics AG" == recipient.name


def test_ids_are_never_reused(store: Keystore) -> None:
    """Adding an id that exists (even revoked) is refused, so the log's ids stay unambiguous."""
    with store.editing_registry(PASS) as registry:
        registry.revoke("ch-zurich-genomics", "contract ended", "2026-11-22T11:00:00+00:00")
    with pytest.raises(KeyStoreError, match="already exists"), store.editing_registry(PASS) as registry:
        registry.add(new_recipient(**_declare()))  # type: ignore[arg-type]


def test_revoked_and_expired_recipients_are_unusable(store: Keystore) -> None:
    """A revoked recipient, or one past its key's validity, cannot receive data."""
    assert ["ch-zurich-genomics"] == [r.id for r in store.recipients_for(["ch-zurich-genomics"], TODAY)]
    with pytest.raises(RecipientUnusable, match="expired on 2027-12-31"):
        store.recipients_for(["ch-zurich-genomics"], dt.date(2028, 1, 1))
    with store.editing_registry(PASS) as registry:
        registry.revoke("ch-zurich-genomics", "key compromised", "2026-11-22T11:00:00+00:00")
    with pytest.raises(RecipientUnusable, match="revoked on 2026-11-22"):
        store.recipients_for(["ch-zurich-genomics"], TODAY)
    with pytest.raises(UnknownRecipient, match="genegate keys list"):
        store.recipients_for(["nobody"], TODAY)


def test_failed_edit_leaves_registry_unchanged(store: Keystore) -> None:
    """An error inside an edit block saves nothing."""
    before = store.registry_path.read_bytes()
    with pytest.raises(KeyStoreError), store.editing_registry(PASS) as registry:
        registry.add_basis("ch-zurich-genomics", Basis(BasisType.BCR, "B", dt.date(2030, 1, 1)), TODAY)
    assert before == store.registry_path.read_bytes()


@pytest.mark.parametrize("field", ["country", "destination", "contract_ref"])
def test_any_edit_outside_genegate_is_detected(store: Keystore, field: str) -> None:
    """Changing one field of recipients.json by hand breaks its signature."""
    body = json.loads(store.registry_path.read_text())
    body["document"]["recipients"][0][field] = "XX"
    store.registry_path.write_text(json.dumps(body))
    with pytest.raises(RegistryTampered, match="changed outside genegate"):
        store.registry()


def test_deleted_registry_is_detected(store: Keystore) -> None:
    """A missing recipients.json is reported, not read as an empty registry."""
    store.registry_path.unlink()
    with pytest.raises(RegistryTampered, match="missing"):
        store.registry()
