"""Test support: a keystore with an assessed summary release that the gate can let go, built the way
an operator builds one (synth -> deid --summary-only -> assess), and a way to grow it by one file.

Shared by the delivery, transfer-CLI and recipient tests, so each builds the same thing one way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from deid import assess, deidentify, load_policy
from deid.release import release_digest
from deid.synth import CohortSpec, synthesize_cohort
from keys import Basis, BasisType, Keystore, Passphrase, SecretKey, Vault, encode_secret_key, new_recipient
from transfer import TRANSFER_LOG, TransferLog
from transfer.facts import ledger_path

RELEASE_NAME = "the-release"


def assessed_summary_release(root: Path, passphrase: Passphrase) -> Keystore:
    """root/cohort (12 synthetic samples), root/ks (a keystore) and root/releases/the-release: a
    summary-only cgipa release that passed assessment (class deidentified), with its ledger."""
    synthesize_cohort(CohortSpec(out=root / "cohort", samples=12, seed=3, reads=False))
    store = Keystore.init(root / "ks", passphrase)
    policy = load_policy("cgipa")
    vault = Vault(store.home, policy.vault_domain, store.vault_wrapper(passphrase))
    result = deidentify(
        root / "cohort" / "manifest.csv",
        policy,
        root / "releases",
        vault,
        summary_only=True,
        ledger=store.home / "ledger",
    )
    assess(result.path, root / "cohort" / "manifest.csv", root / "results", seed=7)
    result.path.rename(root / "releases" / RELEASE_NAME)
    return store


def add_file(release: Path, home: Path, name: str, data: bytes) -> None:
    """Add a file to a release as `genegate deid` would list it: release.json and ledger digests agree."""
    (release / name).parent.mkdir(parents=True, exist_ok=True)
    (release / name).write_bytes(data)
    doc = json.loads((release / "release.json").read_text())
    doc["files"].append({"name": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
    doc["release_sha256"] = release_digest(doc["files"])
    (release / "release.json").write_text(json.dumps(doc, indent=2))
    ledger = ledger_path(home, doc["release_id"])
    entry = json.loads(ledger.read_text())
    entry["release_sha256"] = doc["release_sha256"]
    ledger.write_text(json.dumps(entry, indent=2))


def register_partner(
    store: Keystore,
    passphrase: Passphrase,
    rid: str,
    country: str,
    region: str,
    destination: str,
    *,
    bases: bool = True,
    today: dt.date | None = None,
) -> SecretKey:
    """Register a recipient and return its secret key. With bases, it is the demo's Swiss partner: a
    no-reidentification contract plus the APPI, PIPL and HGR bases JP- and CN-origin data need."""
    today = today or dt.datetime.now(dt.UTC).date()
    key = SecretKey.generate()
    with store.editing_registry(passphrase) as registry:
        registry.add(
            new_recipient(
                rid,
                name=f"{rid} institute",
                country=country,
                public_key_text=key.public_key().to_pem(),
                key_source=f"{rid}.pub",
                destination=destination,
                region=region,
                valid_until=today + dt.timedelta(days=365),
                purposes=("DUO:0000006",),
                contract_ref=f"NRC-{rid}",
                contract_signed=today - dt.timedelta(days=30),
                today=today,
                added_at="2026-01-01T00:00:00+00:00",
            )
        )
        if bases:
            signed = today - dt.timedelta(days=90)
            for basis in (
                Basis(BasisType.APPI_CONSENT, ref="APPI-1", signed=signed, consent_ref="APPI-C-1"),
                Basis(BasisType.PIPL_CONTRACT, ref="PIPL-1", signed=signed, consent_ref="PIPL-C-1"),
                Basis(BasisType.HGR_FILING, ref="HGR-1", signed=signed, filing="HGR-0042"),
            ):
                registry.add_basis(rid, basis, today)
    return key


@dataclass(frozen=True, slots=True)
class OutboxWorld:
    """A private keystore and release, with the Swiss partner delivering to a file:// outbox."""

    store: Keystore
    release: Path
    outbox: Path
    partner: Path  # the partner's secret key file (encrypted with the keystore's passphrase)
    log: TransferLog


def outbox_world(template: Path, tmp: Path, passphrase: Passphrase, today: dt.date) -> OutboxWorld:
    """Copy a template (assessed_summary_release) into tmp and register the demo's Swiss partner."""
    shutil.copytree(template / "ks", tmp / "ks")
    shutil.copytree(template / "releases" / RELEASE_NAME, tmp / "release")
    store = Keystore(tmp / "ks")
    outbox = tmp / "outbox" / "ch-zurich"
    key = register_partner(store, passphrase, "ch-zurich", "CH", "eu-central-2", outbox.as_uri(), today=today)
    partner = tmp / "ch-zurich.sec"
    partner.write_bytes(encode_secret_key(key, passphrase.reveal()))
    return OutboxWorld(store, tmp / "release", outbox, partner, TransferLog(store.home / TRANSFER_LOG))
