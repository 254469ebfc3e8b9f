"""Property: for any manifest, no identifier value of any row appears in any released byte."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deid import DeidError
from deid.policy import load_policy
from deid.release import deidentify
from keys import Keystore, Passphrase, Vault

# Identifier values are consonant strings: no released word (diagnoses, regions, column names,
# release.json keys) contains six consonants in a row, so any hit is a real leak.
_CONSONANTS = "bcdfghjklmnpqrstvwxz"
ident = st.text(alphabet=_CONSONANTS, min_size=6, max_size=10)
dates = st.dates(min_value=dt.date(1925, 1, 1), max_value=dt.date(2012, 12, 31))
collected = st.dates(min_value=dt.date(2016, 1, 1), max_value=dt.date(2024, 12, 31))


@st.composite
def manifests(draw: st.DrawFn) -> list[dict[str, str]]:
    """Manifests of 1-8 rows with random identifiers, consent mixes and free text that names them."""
    n = draw(st.integers(1, 8))
    ids = draw(st.lists(ident, min_size=2 * n, max_size=2 * n, unique=True))
    rows = []
    for i in range(n):
        name = f"{draw(ident).title()} {draw(ident).title()}"
        mrn = str(draw(st.integers(10_000_000, 99_999_999)))
        zip_code = draw(st.sampled_from(["", "94110", "03601", "83001", "10001-2345"]))
        rows.append({
            "sample_id": ids[2 * i], "subject_id": ids[2 * i + 1], "full_name": name,
            "email": f"{draw(ident)}@{draw(ident)}.org", "phone": "", "street_address": f"{draw(ident).title()} Street",
            "city": draw(ident).title(), "ssn": "", "mrn": mrn, "health_plan_id": "", "device_id": "",
            "ip_address": "", "url": "", "date_of_birth": draw(dates).isoformat(), "zip": zip_code,
            "state": "CA", "country": "US", "residence_region": "US-CA", "sex": draw(st.sampled_from(["male", "female"])),
            "ancestry": "European", "diagnosis": "Z13.79 encounter for other genetic screening",
            "collection_date": draw(collected).isoformat(), "sequencing_date": "",
            "sequencing_center": f"Lab of {name} at {ids[2 * i]}", "notes": f"Pt {name} MRN {mrn}",
            "consent_research": draw(st.sampled_from(["true", "false", "true"])), "consent_transfer": "*",
            "consent_revoked_at": "", "guardian_consent": draw(st.sampled_from(["", "true", "false"])),
            "vcf": "", "vcf_sample": ids[2 * i], "alignment": "", "fastq": "",
        })  # fmt: skip
    return rows


def _age(row: dict[str, str]) -> int:
    born, at = dt.date.fromisoformat(row["date_of_birth"]), dt.date.fromisoformat(row["collection_date"])
    return at.year - born.year - ((at.month, at.day) < (born.month, born.day))


@settings(max_examples=25, deadline=None)
@given(rows=manifests())
def test_no_identifier_survives(rows: list[dict[str, str]]) -> None:
    """Parquet cells and metadata, release.json and file names hold no identifier value of any row."""
    base = Path(tempfile.mkdtemp())
    try:
        store = Keystore.init(base / "ks", Passphrase("correct horse battery"))
        vault = Vault(store.home, "default", store.vault_wrapper(Passphrase("correct horse battery")))
        with (base / "m.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        consenting = [
            r
            for r in rows
            if r["consent_research"] == "true" and (_age(r) >= 16 or r["guardian_consent"] == "true")
        ]
        if not consenting:  # nothing to release: refused, and nothing written
            with pytest.raises(DeidError, match="every sample was excluded"):
                deidentify(base / "m.csv", load_policy("cgipa"), base / "out", vault)
            assert not (base / "out").exists()
            return
        release = deidentify(base / "m.csv", load_policy("cgipa"), base / "out", vault).path
        frame = pl.read_parquet(release / "samples.parquet")
        meta = pq.read_metadata(release / "samples.parquet")
        blob = "\n".join(
            [str(v) for c in frame.columns for v in frame[c].to_list()]
            + [str(meta.schema), str(meta.metadata), (release / "release.json").read_text()]
            + [p.name for p in release.rglob("*")]
        ).lower()
        identifiers = {
            v for r in rows for k, v in r.items() if k not in ("state", "country", "residence_region", "sex",
            "ancestry", "diagnosis", "consent_research", "consent_transfer", "guardian_consent") and len(v) >= 6
        }  # fmt: skip
        identifiers |= {part for r in rows for part in r["full_name"].split()}
        assert [] == sorted(v for v in identifiers if v.lower() in blob)
        record = json.loads((release / "release.json").read_text())
        assert (len(rows), len(consenting)) == (
            record["counts"]["manifest_rows"],
            record["counts"]["included_samples"],
        )
    finally:
        shutil.rmtree(base)
