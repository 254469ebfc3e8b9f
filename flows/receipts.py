"""Assessment destruction receipts in the transfer log (SPEC.md 4, CGIPA test-only re-identification).

`genegate assess` destroys the matches its linkage tests computed; the receipt (what, when, how many
files and records: counts only) goes into the signed transfer log, so a reviewer can see months later
that the lab kept no re-identification results. Both the CLI and the demo (and the flows) call this.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from keys import Keystore, Passphrase
from transfer import TRANSFER_LOG, TransferLog


def log_destruction_receipt(
    store: Keystore, release: Path, outcome: dict[str, Any], passphrase: Passphrase
) -> None:
    """Append an `assessment.destroyed` entry for outcome (AssessmentResult.as_dict()) of release."""
    record = json.loads((release / "release.json").read_text(encoding="utf-8"))
    event = {
        "event": "assessment.destroyed",
        "release_id": outcome["release_id"],
        "release_sha256": record["release_sha256"],
        "release_class": outcome["class"],
        "receipt": outcome["destruction_receipt"],
        "message": f"assessment {outcome['status']} (run {outcome['run_id']})",
    }
    TransferLog(store.home / TRANSFER_LOG).append(event, store.signing_key(passphrase))
