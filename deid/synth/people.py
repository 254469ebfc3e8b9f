"""Synthetic identified participants: Faker identities with the consent edge cases a lab meets.

Every value here is invented, but shaped like the real thing: locale-correct names, addresses and
phone numbers per country of residence, US SSNs and health-plan ids for US residents, ZIPs in
restricted three-digit areas, people over 89 and minors, and free-text notes that name the
participant and sometimes a relative who is also in the cohort.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from faker import Faker

from deid.synth.genome import Population

# residence_region -> (Faker locale, ISO country)
REGIONS: dict[str, tuple[str, str]] = {
    "US-CA": ("en_US", "US"),
    "US-WY": ("en_US", "US"),
    "US-NM": ("en_US", "US"),
    "US-NV": ("en_US", "US"),
    "EU-DE": ("de_DE", "DE"),
    "EU-FR": ("fr_FR", "FR"),
    "EU-NL": ("nl_NL", "NL"),
    "EU-IT": ("it_IT", "IT"),
    "EU-ES": ("es_ES", "ES"),
    "GB": ("en_GB", "GB"),
    "CH": ("de_CH", "CH"),
    "JP": ("ja_JP", "JP"),
    "CN": ("zh_CN", "CN"),
}
# ZIPs whose three-digit prefix is on the HHS restricted list (2000 Census), by state
RESTRICTED_ZIPS: dict[str, tuple[str, ...]] = {
    "US-WY": ("82190", "82301", "83001", "83101"),
    "US-NM": ("87820", "87901", "88401"),
    "US-NV": ("89001", "89301"),
}
_WEIGHTED_REGIONS = (
    ("US-CA", 0.55),
    ("EU-DE", 0.07),
    ("EU-FR", 0.05),
    ("EU-NL", 0.03),
    ("EU-IT", 0.03),
    ("EU-ES", 0.03),
    ("GB", 0.07),
    ("CH", 0.04),
    ("JP", 0.06),
    ("CN", 0.05),
    ("US-WY", 0.02),
)
ANCESTRY_LABEL = {Population.AFR: "African", Population.EUR: "European", Population.EAS: "East Asian"}
DIAGNOSES = (
    "I42.1 obstructive hypertrophic cardiomyopathy",
    "E78.01 familial hypercholesterolemia",
    "E84.0 cystic fibrosis with pulmonary manifestations",
    "C50.912 malignant neoplasm of left breast",
    "G71.01 Duchenne muscular dystrophy",
    "G10 Huntington disease",
    "Q87.40 Marfan syndrome",
    "Z13.79 encounter for other genetic screening",
    "Z13.79 encounter for other genetic screening",
    "I45.81 long QT syndrome",
)
SEQUENCING_CENTERS = (
    "Bay Area Clinical Genomics Core, Oakland CA",
    "UC Genome Sequencing Facility, Sacramento CA",
    "Pacific Precision Medicine Lab, San Diego CA",
)
PARTNERS = ("ch-zurich-genomics", "jp-tokyo-medgen", "cn-shanghai-seq")


@dataclass(frozen=True, slots=True)
class Person:
    """One identified participant and the sample taken from them (one row of the manifest)."""

    sample_id: str
    subject_id: str
    full_name: str
    name_in_path: str  # the ASCII form a file path on the lab's servers would carry
    email: str
    phone: str
    street_address: str
    city: str
    ssn: str
    mrn: str
    health_plan_id: str
    device_id: str
    ip_address: str
    url: str
    date_of_birth: dt.date
    zip: str
    state: str
    country: str
    residence_region: str
    sex: str
    population: Population
    diagnosis: str
    collection_date: dt.date
    sequencing_date: dt.date
    sequencing_center: str
    notes: str
    consent_research: bool
    consent_transfer: str
    consent_revoked_at: dt.date | None
    guardian_consent: bool | None
    edge_cases: tuple[str, ...] = field(default=())

    @property
    def male(self) -> bool:
        """True for a male participant (one chrX, carries chrY)."""
        return self.sex == "male"

    @property
    def age_at_collection(self) -> int:
        """Whole years of age on the collection date."""
        born, then = self.date_of_birth, self.collection_date
        return then.year - born.year - ((then.month, then.day) < (born.month, born.day))


# The slots every cohort holds, whatever its size: (edge case, residence_region)
EDGE_CASE_SLOTS: tuple[tuple[str, str], ...] = (
    ("revoked", "US-CA"),
    ("no_research_consent", "EU-DE"),
    ("minor_without_guardian_consent", "US-CA"),
    ("minor_with_guardian_consent", "GB"),
    ("over_89", "US-CA"),
    ("over_89", "JP"),
    ("restricted_zip", "US-WY"),
    ("restricted_zip", "US-NM"),
    ("", "CH"),
    ("", "CN"),
    ("", "EU-FR"),
    ("", "EU-NL"),
)
MIN_SAMPLES = len(EDGE_CASE_SLOTS)


def make_people(n: int, seed: int) -> list[Person]:
    """Make n participants (n >= MIN_SAMPLES), deterministic for a seed, edge cases shuffled in."""
    if n < MIN_SAMPLES:
        raise ValueError(f"a cohort needs at least {MIN_SAMPLES} samples to hold every edge case")
    rng = np.random.default_rng([seed, 101])
    slots = list(EDGE_CASE_SLOTS)
    names, weights = zip(*_WEIGHTED_REGIONS, strict=True)
    p = np.array(weights) / sum(weights)
    slots += [("", str(r)) for r in rng.choice(names, size=n - len(slots), p=p)]
    order = rng.permutation(n)
    fakers = {loc: Faker(loc) for loc, _ in REGIONS.values()}
    for i, loc in enumerate(sorted(fakers)):
        fakers[loc].seed_instance(seed * 1009 + i)
    serials = rng.choice(90_000_000, size=n, replace=False) + 10_000_000
    year_code = 17 + int(rng.integers(0, 8))
    people = []
    for i in range(n):
        edge, region = slots[int(order[i])]
        people.append(_person(i, edge, region, fakers, rng, str(serials[i]), year_code))
    return _add_relatives(people, rng)


def _person(
    index: int,
    edge: str,
    region: str,
    fakers: dict[str, Faker],
    rng: np.random.Generator,
    mrn: str,
    year_code: int,
) -> Person:
    locale, country = REGIONS[region]
    fake = fakers[locale]
    male = bool(rng.random() < 0.5)
    full_name, name_in_path = _name(fake, locale, male)
    collection = dt.date(2016, 1, 1) + dt.timedelta(days=int(rng.integers(0, 9 * 365)))
    age = _age(edge, rng)
    born = collection - dt.timedelta(days=int(age * 365.25 + rng.integers(1, 360)))
    us = country == "US"
    state = region.split("-")[1] if us else ""
    zip_code = ""
    if region in RESTRICTED_ZIPS:
        zip_code = str(rng.choice(RESTRICTED_ZIPS[region]))
    elif us:
        zip_code = fake.zipcode_in_state(state)
    minor = edge.startswith("minor")
    pop = _population(region, rng)
    sex = "male" if male else "female"
    return Person(
        sample_id=f"GG{year_code}-{index + 1:05d}",
        subject_id=f"SUBJ-{rng.integers(100_000, 999_999)}",
        full_name=full_name,
        name_in_path=name_in_path,
        email=fake.email(),
        phone=fake.phone_number(),
        street_address=fake.street_address().replace("\n", ", "),
        city=fake.city(),
        ssn=fake.ssn() if us else "",
        mrn=mrn,
        health_plan_id=f"HP{rng.integers(10**9, 10**10)}" if us else "",
        device_id=f"SN-{rng.integers(10**7, 10**8)}-ICD" if rng.random() < 0.1 else "",
        ip_address=fake.ipv4_public(),
        url=f"https://portal.{fake.domain_name()}/u/{rng.integers(10**5, 10**6)}",
        date_of_birth=born,
        zip=zip_code,
        state=state,
        country=country,
        residence_region=region,
        sex=sex,
        population=pop,
        diagnosis=str(rng.choice(DIAGNOSES)),
        collection_date=collection,
        sequencing_date=collection + dt.timedelta(days=int(rng.integers(5, 120))),
        sequencing_center=str(rng.choice(SEQUENCING_CENTERS)),
        notes="",
        consent_research=edge != "no_research_consent",
        consent_transfer=_consent_transfer(rng),
        consent_revoked_at=(
            collection + dt.timedelta(days=int(rng.integers(200, 700))) if edge == "revoked" else None
        ),
        guardian_consent=(edge == "minor_with_guardian_consent") if minor else None,
        edge_cases=_edge_cases(edge, zip_code),
    )


def _edge_cases(edge: str, zip_code: str) -> tuple[str, ...]:
    """The slot's edge case, plus restricted_zip for anyone whose ZIP prefix is restricted."""
    cases = [edge] if edge else []
    restricted = {z[:3] for zips in RESTRICTED_ZIPS.values() for z in zips}
    if zip_code[:3] in restricted and "restricted_zip" not in cases:
        cases.append("restricted_zip")
    return tuple(cases)


def _name(fake: Faker, locale: str, male: bool) -> tuple[str, str]:
    if locale == "ja_JP":
        last = fake.last_name_pair()
        given = fake.first_name_male_pair() if male else fake.first_name_female_pair()
        return f"{last[0]} {given[0]}", f"{last[2]}_{given[2]}"
    if locale == "zh_CN":
        return (fake.name_male() if male else fake.name_female()), ""
    first = fake.first_name_male() if male else fake.first_name_female()
    name = f"{first} {fake.last_name()}"
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return name, "_".join(ascii_name.replace("-", " ").split())


def _age(edge: str, rng: np.random.Generator) -> int:
    if edge == "over_89":
        return int(rng.integers(90, 101))
    if edge.startswith("minor"):
        return int(rng.integers(2, 16))
    return int(rng.integers(18, 86))


def _population(region: str, rng: np.random.Generator) -> Population:
    if region in ("JP", "CN"):
        probs = (0.02, 0.03, 0.95)
    elif region.startswith("US"):
        probs = (0.2, 0.55, 0.25)
    else:
        probs = (0.08, 0.85, 0.07)
    return list(Population)[int(rng.choice(3, p=probs))]


def _consent_transfer(rng: np.random.Generator) -> str:
    roll = rng.random()
    if roll < 0.35:
        return "*"
    if roll < 0.5:
        return ""
    chosen = [p for p in PARTNERS if rng.random() < 0.5] or [PARTNERS[0]]
    return ";".join(chosen)


def _add_relatives(people: Sequence[Person], rng: np.random.Generator) -> list[Person]:
    """Write the notes: each names its participant; some name a relative also in the cohort."""
    out = []
    for i, p in enumerate(people):
        text = (
            f"Pt {p.full_name} (MRN {p.mrn}), DOB {p.date_of_birth.isoformat()}; call {p.phone} or {p.email}."
        )
        if rng.random() < 0.25:
            other = people[int(rng.integers(0, len(people)))]
            if other is not p:
                text += f" Sibling of {other.full_name}, also enrolled."
        if p.guardian_consent is not None:
            text += " Guardian consent on file." if p.guardian_consent else " Guardian form missing."
        if i % 7 == 3:
            text += f" Lives at {p.street_address}, {p.city}."
        out.append(replace(p, notes=text))
    return out


def region_country(region: str) -> str:
    """The ISO country of a residence region."""
    return REGIONS[region][1]


def ancestry(person: Person) -> str:
    """The ancestry label of the manifest for a person's simulated population."""
    return ANCESTRY_LABEL[person.population]
