"""deid.synth.people.make_people: the consent and privacy edge cases every cohort holds, and determinism."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from deid.synth import MIN_SAMPLES
from deid.synth.people import Person, make_people

# HHS Safe Harbor: three-digit ZIP prefixes with under 20,000 people (2000 Census)
RESTRICTED_ZIP3 = {
    "036",
    "059",
    "063",
    "102",
    "203",
    "556",
    "692",
    "790",
    "821",
    "823",
    "830",
    "831",
    "878",
    "879",
    "884",
    "890",
    "893",
}
COUNTRY = {
    "US-CA": "US",
    "US-WY": "US",
    "US-NM": "US",
    "US-NV": "US",
    "EU-DE": "DE",
    "EU-FR": "FR",
    "EU-NL": "NL",
    "EU-IT": "IT",
    "EU-ES": "ES",
    "GB": "GB",
    "CH": "CH",
    "JP": "JP",
    "CN": "CN",
}
COHORTS = [(MIN_SAMPLES, 1), (MIN_SAMPLES, 2), (13, 7), (16, 11), (40, 99)]
REPO = Path(__file__).resolve().parents[3]


def _minors(people: list[Person]) -> list[tuple[bool | None, str]]:
    return sorted(
        ((p.guardian_consent, p.residence_region) for p in people if p.age_at_collection < 16),
        key=repr,
    )


def _check_edge_cases(people: list[Person]) -> None:
    revoked = [p for p in people if p.consent_revoked_at is not None]
    assert [("US-CA", ("revoked",))] == [(p.residence_region, p.edge_cases) for p in revoked]
    revoked_at = revoked[0].consent_revoked_at
    assert revoked_at is not None
    assert revoked_at > revoked[0].collection_date
    assert [("EU-DE", ("no_research_consent",))] == [
        (p.residence_region, p.edge_cases) for p in people if not p.consent_research
    ]
    assert [(False, "US-CA"), (True, "GB")] == _minors(people)
    assert [None] * (len(people) - 2) == [p.guardian_consent for p in people if p.age_at_collection >= 16]
    assert ["JP", "US-CA"] == sorted(p.residence_region for p in people if p.age_at_collection >= 90)
    regions = {p.residence_region for p in people}
    assert {"US-CA", "GB", "CH", "JP", "CN"} <= regions
    assert len({r for r in regions if r.startswith("EU-")}) >= 2
    restricted = [p.sample_id for p in people if p.zip[:3] in RESTRICTED_ZIP3]
    assert [p.sample_id for p in people if p.residence_region in ("US-WY", "US-NM", "US-NV")] == restricted
    assert len(restricted) >= 2


@pytest.mark.parametrize(("n", "seed"), COHORTS)
def test_every_cohort_holds_the_edge_cases(n: int, seed: int) -> None:
    """Revoked, no-research, both minor guardian cases, two over-89s, restricted ZIPs and all regions appear."""
    people = make_people(n, seed)
    assert n == len(people)
    _check_edge_cases(people)


@pytest.mark.parametrize("seed", range(100, 124))
def test_edge_cases_hold_across_seeds_and_sizes(seed: int) -> None:
    """For a sweep of seeds and sizes from MIN_SAMPLES to 35, the cohort has n people and every edge case."""
    n = MIN_SAMPLES + (seed * 7) % 24
    people = make_people(n, seed)
    assert n == len(people)
    _check_edge_cases(people)


def test_edge_case_labels_are_counted_once_per_slot() -> None:
    """Each edge-case label is carried by as many people as it has slots."""
    people = make_people(20, 5)
    assert {
        "revoked": 1,
        "no_research_consent": 1,
        "minor_without_guardian_consent": 1,
        "minor_with_guardian_consent": 1,
        "over_89": 2,
        "restricted_zip": 2,
    } == dict(Counter(e for p in people for e in p.edge_cases))


def test_too_few_samples_raise_value_error() -> None:
    """MIN_SAMPLES - 1 (or none) is refused with ValueError naming the minimum; MIN_SAMPLES itself works."""
    with pytest.raises(ValueError, match=f"at least {MIN_SAMPLES} samples"):
        make_people(MIN_SAMPLES - 1, 1)
    with pytest.raises(ValueError, match=f"at least {MIN_SAMPLES} samples"):
        make_people(0, 1)
    assert MIN_SAMPLES == len(make_people(MIN_SAMPLES, 1))
    assert 12 == MIN_SAMPLES


@pytest.mark.parametrize(("n", "seed"), COHORTS)
def test_sample_ids_are_sequential_and_unique(n: int, seed: int) -> None:
    """Sample ids run GGyy-00001..n with one year code; subject ids and MRNs are unique."""
    people = make_people(n, seed)
    prefix = people[0].sample_id[:5]
    assert [f"{prefix}{i:05d}" for i in range(1, n + 1)] == [p.sample_id for p in people]
    assert ("GG", "-") == (prefix[:2], prefix[4])
    assert n == len({p.mrn for p in people})
    assert n == len({p.subject_id for p in people})


@pytest.mark.parametrize(("n", "seed"), COHORTS)
def test_country_specific_identifiers(n: int, seed: int) -> None:
    """US residents have SSN, health-plan id, state and ZIP; nobody else does; country follows the region."""
    for p in make_people(n, seed):
        us = p.residence_region.startswith("US-")
        assert COUNTRY[p.residence_region] == p.country
        assert (us, us, us, us) == (bool(p.ssn), bool(p.health_plan_id), bool(p.state), bool(p.zip))
        if us:
            assert p.residence_region[3:] == p.state
            assert 5 == len(p.zip)
            assert p.zip.isdigit()


@pytest.mark.parametrize(("n", "seed"), COHORTS)
def test_dates_are_consistent(n: int, seed: int) -> None:
    """Birth precedes collection, sequencing follows collection by 5-119 days, revocation follows collection."""
    for p in make_people(n, seed):
        assert p.date_of_birth < p.collection_date
        assert 5 <= (p.sequencing_date - p.collection_date).days < 120
        assert dt.date(2016, 1, 1) <= p.collection_date
        age = p.age_at_collection
        assert age < 16 or 18 <= age <= 85 or age >= 90, (p.sample_id, age, p.edge_cases)
        assert ("over_89" in p.edge_cases) == (age >= 90)


@pytest.mark.parametrize(("n", "seed"), COHORTS)
def test_notes_name_the_participant(n: int, seed: int) -> None:
    """Each note names its participant with MRN and DOB, and records the guardian form for minors."""
    for p in make_people(n, seed):
        assert p.notes.startswith(f"Pt {p.full_name} (MRN {p.mrn}), DOB {p.date_of_birth.isoformat()}; ")
        guardian = {True: "Guardian consent on file.", False: "Guardian form missing."}
        expected = [] if p.guardian_consent is None else [guardian[p.guardian_consent]]
        assert expected == [g for g in guardian.values() if g in p.notes]


def test_sex_drives_the_male_property() -> None:
    """sex is male or female, and Person.male is True exactly for males."""
    people = make_people(40, 3)
    assert {"male", "female"} == {p.sex for p in people}
    assert [p.sex == "male" for p in people] == [p.male for p in people]


def test_same_seed_gives_the_same_people() -> None:
    """make_people is a pure function of (n, seed)."""
    assert make_people(16, 42) == make_people(16, 42)


def test_other_seed_gives_other_people() -> None:
    """Different seeds give different people, with no MRN in common."""
    a, b = make_people(16, 42), make_people(16, 43)
    assert a != b
    assert set() == {p.mrn for p in a} & {p.mrn for p in b}


def test_people_do_not_depend_on_the_process() -> None:
    """Another interpreter, with a different hash seed, makes the same people for the same seed."""
    code = "from deid.synth.people import make_people; print(repr(make_people(14, 8)))"
    outputs = set()
    for hash_seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-W", "error", "-c", code],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        outputs.add(done.stdout)
    assert {repr(make_people(14, 8)) + "\n"} == outputs
