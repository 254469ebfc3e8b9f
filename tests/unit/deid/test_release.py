"""`genegate deid` as a library: a release from a synthetic manifest, exact outputs, atomicity, refusals."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from deid import DeidError, MalformedInput, OutputExists
from deid.policy import builtin_text, load_policy, parse_policy
from deid.release import deidentify
from deid.synth import CohortSpec, synthesize_cohort
from keys import CodeKind, Keystore, KeyStoreError, Passphrase, Vault

PASS = Passphrase("correct horse battery")
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-sample identified manifest (no reads)."""
    out = tmp_path_factory.mktemp("deid") / "cohort"
    synthesize_cohort(CohortSpec(out=out, samples=16, seed=21, reads=False))
    return out


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Vault:
    """A vault domain in a fresh keystore."""
    store = Keystore.init(tmp_path_factory.mktemp("ks") / "ks", PASS)
    return Vault(store.home, "default", store.vault_wrapper(PASS))


@pytest.fixture(scope="module")
def release(cohort: Path, vault: Vault, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cgipa release of the cohort."""
    out = tmp_path_factory.mktemp("releases")
    return deidentify(
        cohort / "manifest.csv", load_policy("cgipa"), out, vault, release_id="rel-test-1", now=NOW
    ).path


def _manifest(cohort: Path) -> list[dict[str, str]]:
    with (cohort / "manifest.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_release_layout_and_record(release: Path, cohort: Path) -> None:
    """The release holds samples.parquet, the joint VCF and release.json; exclusions counted by reason only."""
    assert ["genotypes", "release.json", "samples.parquet"] == sorted(p.name for p in release.iterdir())
    record = json.loads((release / "release.json").read_text())
    rows = _manifest(cohort)
    assert ("rel-test-1", "cgipa", "pseudonymised") == (
        record["release_id"],
        record["policy"]["name"],
        record["class"],
    )
    assert {"consent_revoked": 1, "no_research_consent": 1, "minor_without_guardian_consent": 1} == record[
        "excluded"
    ]
    assert (len(rows), len(rows) - 3) == (
        record["counts"]["manifest_rows"],
        record["counts"]["included_samples"],
    )
    released = ["genotypes/genotypes-1.vcf.gz", "genotypes/genotypes-1.vcf.gz.tbi", "samples.parquet"]
    assert [{"name": n, "bytes": (release / n).stat().st_size} for n in released] == [
        {k: f[k] for k in ("name", "bytes")} for f in record["files"]
    ]
    assert (["DUO:0000042"], False) == (record["data_use"], record["summary_only"])


def test_released_columns_and_transforms(release: Path, cohort: Path, vault: Vault) -> None:
    """Columns follow the policy: codes for ids, years, top-coded ages, ZIP3; no identifier column."""
    frame = pl.read_parquet(release / "samples.parquet")
    assert [
        "sample_id", "subject_id", "birth_year", "age", "zip3", "state", "country", "residence_region",
        "sex", "ancestry", "diagnosis", "collection_year", "sequencing_year", "sequencing_center",
    ] == frame.columns  # fmt: skip
    rows = {r["sample_id"]: r for r in _manifest(cohort)}
    by_code = {}
    for sample, row in rows.items():  # excluded samples never get a code
        try:
            by_code[vault.pseudonyms(CodeKind.SAMPLE, [sample], create=False)[sample]] = row
        except KeyStoreError:
            assert (
                "true" != row["consent_research"]
                or row["consent_revoked_at"]
                or row["guardian_consent"] == "false"
            )
    assert len(by_code) == frame.height
    for out in frame.iter_rows(named=True):
        source = by_code[out["sample_id"]]
        born = dt.date.fromisoformat(source["date_of_birth"])
        collected = dt.date.fromisoformat(source["collection_date"])
        on = NOW.date()  # ages are taken on the release date (a birth year that shows 90+ now is suppressed)
        age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
        expected_age = "90+" if age >= 90 else str(age)
        assert (expected_age, None if age >= 90 else born.year) == (out["age"], out["birth_year"])
        assert collected.year == out["collection_year"]
        assert (
            source["zip"][:3]
            if source["zip"]
            and source["zip"][:3] not in {"821", "823", "830", "831", "878", "879", "884", "890", "893"}
            else ("000" if source["zip"] else None)
        ) == out["zip3"]


def test_no_planted_identifier_in_any_released_byte(release: Path, cohort: Path) -> None:
    """No value from secrets.tsv appears in the decoded Parquet, its metadata, release.json or file names."""
    import pyarrow.parquet as pq

    with (cohort / "secrets.tsv").open(encoding="utf-8") as fh:
        secrets = {r["value"] for r in csv.DictReader(fh, delimiter="\t") if len(r["value"]) >= 4}
    frame = pl.read_parquet(release / "samples.parquet")
    cells = "\n".join(str(v) for col in frame.columns for v in frame[col].to_list())
    meta = pq.read_metadata(release / "samples.parquet")
    texts = [
        cells,
        str(meta.schema),
        str(meta.metadata),
        (release / "release.json").read_text(),
        *frame.columns,
    ]
    texts += [p.name for p in release.rglob("*")]
    blob = "\n".join(texts).lower()
    assert [] == sorted(s for s in secrets if s.lower() in blob)


def test_codes_are_stable_across_releases(cohort: Path, vault: Vault, release: Path, tmp_path: Path) -> None:
    """A second release of the same manifest in the same domain reuses every code."""
    again = deidentify(cohort / "manifest.csv", load_policy("cgipa"), tmp_path, vault, now=NOW).path
    first = pl.read_parquet(release / "samples.parquet").select("sample_id", "subject_id").sort("sample_id")
    second = pl.read_parquet(again / "samples.parquet").select("sample_id", "subject_id").sort("sample_id")
    assert first.to_dicts() == second.to_dicts()


def test_existing_release_id_is_refused(cohort: Path, vault: Vault, release: Path) -> None:
    """A release id that exists is never overwritten."""
    before = (release / "release.json").read_bytes()
    with pytest.raises(OutputExists):
        deidentify(
            cohort / "manifest.csv", load_policy("cgipa"), release.parent, vault, release_id="rel-test-1"
        )
    assert before == (release / "release.json").read_bytes()


def test_kept_identifier_column_fails_closed(cohort: Path, vault: Vault, tmp_path: Path) -> None:
    """A gdpr policy edited to keep a column that repeats an identifier fails, leaving nothing behind."""
    text = builtin_text("gdpr-pseudonymised").replace('vcf_sample = "internal"', 'vcf_sample = "keep"')
    with pytest.raises(DeidError, match="column vcf_sample would release 13 value"):
        deidentify(cohort / "manifest.csv", parse_policy(text, "mine.toml"), tmp_path, vault, now=NOW)
    assert [] == list(tmp_path.iterdir())


def test_unknown_column_is_refused_and_nothing_written(cohort: Path, vault: Vault, tmp_path: Path) -> None:
    """A manifest with a column the policy does not name is refused before any output."""
    frame = pl.read_csv(cohort / "manifest.csv", infer_schema=False).with_columns(pl.lit("x").alias("hobby"))
    frame.write_csv(tmp_path / "m.csv")
    with pytest.raises(MalformedInput, match="column hobby has no action in policy cgipa"):
        deidentify(tmp_path / "m.csv", load_policy("cgipa"), tmp_path / "out", vault, now=NOW)
    assert not (tmp_path / "out").exists()


def test_guard_ignores_the_scrub_marker() -> None:
    """A known value inside "[REDACTED]" (e.g. the name Reda) is not a leak; the same value in clear is."""
    from deid.guard import guard

    clean = pl.DataFrame({"notes": ["seen by [REDACTED] today"]})
    guard(clean, pl.Series(["Reda", "ACTED"]))
    with pytest.raises(DeidError, match="column notes would release 1 value"):
        guard(pl.DataFrame({"notes": ["seen by Reda today"]}), pl.Series(["Reda"]))


def test_guard_checks_code_columns_by_form() -> None:
    """A vault code that happens to contain a known ZIP passes; a non-code value in a code column fails."""
    from deid.guard import guard

    known = pl.Series(["94110"])
    guard(pl.DataFrame({"sample_id": ["GGS0094110ABCDE"]}), known, codes={"sample_id": CodeKind.SAMPLE})
    with pytest.raises(DeidError, match="column sample_id holds 1 value"):
        guard(pl.DataFrame({"sample_id": ["GG19-00017"]}), known, codes={"sample_id": CodeKind.SAMPLE})
