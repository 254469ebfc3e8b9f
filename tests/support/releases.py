"""Test support: a keystore with an assessed summary release that the gate can let go, built the way
an operator builds one (synth -> deid --summary-only -> assess), and a way to grow it by one file.

Shared by the delivery, transfer-CLI and recipient tests, so each builds the same thing one way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from deid import assess, deidentify, load_policy
from deid.release import release_digest
from deid.synth import CohortSpec, synthesize_cohort
from keys import Keystore, Passphrase, Vault
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
