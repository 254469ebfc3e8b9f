"""The legal tables: shipped, versioned, typed, and pinned by a digest of their content."""

from __future__ import annotations

import datetime as dt
from importlib import resources

import pytest

from transfer import LawTableError, Regime, load_law_tables
from transfer.law.tables import TABLE_FILES, Condition, parse_law_tables


def _texts() -> dict[str, str]:
    root = resources.files("transfer.law")
    return {k: root.joinpath(f"{k}.toml").read_text(encoding="utf-8") for k in TABLE_FILES}


def test_every_table_has_version_source_and_date() -> None:
    """Six tables ship with the package, each with a version, a source and an effective date."""
    tables = load_law_tables()
    assert list(TABLE_FILES) == [t.key for t in tables.info]
    assert [] == [t.key for t in tables.info if not (t.version and t.source and t.effective_from)]
    assert set(Regime) == set(tables.regimes)


def test_digest_is_stable_and_changes_with_content() -> None:
    """Parsing the same texts gives the same digest; changing one value (not a comment) changes it."""
    texts = _texts()
    assert load_law_tables().digest == parse_law_tables(texts).digest
    commented = texts | {"concern": texts["concern"] + "\n# a comment\n"}
    assert load_law_tables().digest == parse_law_tables(commented).digest
    changed = texts | {
        "concern": texts["concern"].replace("bulk_genomic_us_persons = 100", "bulk_genomic_us_persons = 50")
    }
    assert 50 == parse_law_tables(changed).bulk_genomic_us_persons
    assert load_law_tables().digest != parse_law_tables(changed).digest


@pytest.mark.parametrize(
    ("region", "regime"),
    [("US-CA", Regime.US_CA), ("US-NY", Regime.US), ("US", Regime.US), ("EU-DE", Regime.EU_EEA),
     ("eu-fr", Regime.EU_EEA), ("EU-EL", Regime.EU_EEA), ("NO", Regime.EU_EEA), ("GB", Regime.UK),
     ("UK", Regime.UK), ("GB-SCT", Regime.UK), ("CH", Regime.CH), ("JP", Regime.JP), ("CN", Regime.CN),
     ("BR", None), ("EU-XX", None)],
)  # fmt: skip
def test_region_to_regime(region: str, regime: Regime | None) -> None:
    """Region codes map to origin regimes; a code no table covers maps to none."""
    assert regime == load_law_tables().regime_of(region)


@pytest.mark.parametrize(
    ("region", "country"),
    [("eu-central-2", "CH"), ("ap-northeast-1", "JP"), ("cn-north-1", "CN"), ("us-east-1", "US"),
     ("eu-central-1", "DE"), ("ap-east-1", "HK"), ("europe-west6", "CH"), ("switzerlandnorth", "CH"),
     ("mars-north-1", None)],
)  # fmt: skip
def test_storage_region_to_country(region: str, country: str | None) -> None:
    """Cloud storage regions map to the country that stores the data."""
    assert country == load_law_tables().storage_country(region)


def test_adequacy_entries_in_force_by_date_and_condition() -> None:
    """EU adequacy: Brazil from 27 Jan 2026, the UK until 27 Dec 2031, the US only under the DPF."""
    eu = load_law_tables().regimes[Regime.EU_EEA]
    assert eu.adequacy_for("BR", dt.date(2026, 1, 26)) is None
    assert eu.adequacy_for("BR", dt.date(2026, 1, 27)) is not None
    assert eu.adequacy_for("GB", dt.date(2031, 12, 28)) is None
    us = eu.adequacy_for("US", dt.date(2026, 5, 1))
    assert us is not None
    assert Condition.DPF == us.condition
    jp = load_law_tables().regimes[Regime.JP]
    assert {"GB", "DE", "NO"} <= {a.country for a in jp.adequate}
    assert load_law_tables().regimes[Regime.CH].adequacy_for("JP", dt.date(2026, 5, 1)) is None


@pytest.mark.parametrize(
    ("table", "old", "new", "message"),
    [
        ("concern", 'countries = ["CN",', 'countries = ["China",', "concern.toml countries: 'China' is not an ISO"),
        ("duo", '"DUO:0000007" = { label = "DS', '"DS" = { label = "DS', "duo.toml: 'DS' is not a DUO code"),
        ("regimes", "[table]", "[tabel]", "regimes.toml: needs a [table]"),
        ("storage_regions", "cn-north-1 = \"CN\"", "cn-north-1 = \"CHN\"", "'CHN' is not an ISO"),
    ],
)  # fmt: skip
def test_malformed_table_is_named(table: str, old: str, new: str, message: str) -> None:
    """A malformed table is refused with the file and the field."""
    texts = _texts()
    assert old in texts[table]
    with pytest.raises(LawTableError) as info:
        parse_law_tables(texts | {table: texts[table].replace(old, new, 1)})
    assert message in str(info.value)
