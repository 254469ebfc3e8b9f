"""deid.ledger: the lab-side facts of a release, one row per subject code, never an identity."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

from deid.ledger import subject_facts, write_ledger

RELEASE_DAY = dt.date(2026, 11, 22)


def _rows() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "residence_region": ["EU-DE", "EU-DE", "JP", "US-CA"],
            "consent_transfer": ["a; b", "b;c", "*", None],
            "date_of_birth": [dt.date(2000, 1, 1), dt.date(2000, 1, 1), dt.date(2015, 5, 5), None],
            "collection_date": [dt.date(2020, 1, 1), dt.date(2021, 1, 1), dt.date(2020, 1, 1), None],
            "guardian_consent": [None, None, True, None],
        }
    )


def test_subjects_are_merged_narrowest_consent_first() -> None:
    """Two samples of one subject: the intersection of their consents; a 5-year-old with a guardian;
    a subject without a birth date counts as a minor (unknown age) without guardian consent."""
    codes = pl.Series(["GGP1", "GGP1", "GGP2", "GGP3"])
    facts = subject_facts(_rows(), codes, RELEASE_DAY).sort("subject").to_dicts()
    assert [
        {"subject": "GGP1", "residence_region": "EU-DE", "consent_transfer": ["b"],
         "minor_at_collection": False, "guardian_consent": None, "received_opt_out": False},
        {"subject": "GGP2", "residence_region": "JP", "consent_transfer": ["*"],
         "minor_at_collection": True, "guardian_consent": True, "received_opt_out": False},
        {"subject": "GGP3", "residence_region": "US-CA", "consent_transfer": [],
         "minor_at_collection": True, "guardian_consent": None, "received_opt_out": False},
    ] == facts  # fmt: skip


def test_ledger_file_is_one_json_object_readable_by_the_lab_only(tmp_path: Path) -> None:
    """The ledger is written atomically, 0600, as one JSON document holding the subjects array."""
    facts = subject_facts(_rows(), pl.Series(["GGP1", "GGP1", "GGP2", "GGP3"]), RELEASE_DAY)
    path = write_ledger(tmp_path / "ledger", "rel-1", "default", "ab" * 32, True, facts)
    doc = json.loads(path.read_text())
    assert (1, "rel-1", 3, 0o600) == (
        doc["format"],
        doc["release_id"],
        len(doc["subjects"]),
        path.stat().st_mode & 0o777,
    )
    assert ["rel-1.json"] == [p.name for p in (tmp_path / "ledger").iterdir()]
