"""Read the legal tables of transfer/law/*.toml into typed, immutable values.

`parse_law_tables` is pure (TOML texts in, LawTables out) so tests can vary a table;
`load_law_tables` reads the tables shipped with the package. The digest is the SHA-256 of the
canonical JSON of every table's parsed content (comments do not count, any value does), so two
decisions made with the same digest applied the same law. Lookups that are pure table reads
(region -> regime, storage region -> country, adequacy in force on a day) live here; the rules
that combine them live in transfer/gate.py.

The breach-notification table (breach.toml: per regime, whom to notify and by when) follows the
same conventions but is loaded on its own (`load_breach_table`): it is not part of the gate's
digest, so adding a duty does not change what a transfer decision applied.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

from keys import BasisType
from transfer.errors import LawTableError

TABLE_FILES = ("regimes", "bases", "concern", "countries", "storage_regions", "duo")
BREACH_FILE = "breach"
RELEASE_CLASSES = frozenset({"pseudonymised", "deidentified"})  # transfer.facts.ReleaseClass values
EEA_GROUP = "@EEA"
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_DUO = re.compile(r"^DUO:\d{7}$")


class Regime(enum.StrEnum):
    """An origin regime whose transfer rules the gate applies."""

    EU_EEA = "eu_eea"
    UK = "uk"
    CH = "ch"
    JP = "jp"
    CN = "cn"
    US_CA = "us_ca"
    US = "us"


class Requirement(enum.StrEnum):
    """A check a basis must pass beyond being in force (bases.toml `needs`)."""

    MODULE = "module"
    TIA = "tia"
    RECENT_CHECK = "recent_check"
    PERIODIC_CHECK = "periodic_check"
    CONSENT_REF = "consent_ref"
    FILING = "filing"
    NON_REPETITIVE = "non_repetitive"
    NAMED_CONSENT = "named_consent"


class Condition(enum.StrEnum):
    """A condition on an adequacy entry (regimes.toml)."""

    DPF = "dpf"
    PIPEDA = "pipeda"


class ModifierEffect(enum.StrEnum):
    """What a DUO modifier asks of a recipient (duo.toml)."""

    NONE = "none"
    ACCEPT = "accept"
    EXCLUDES = "excludes"


@dataclass(frozen=True, slots=True)
class TableInfo:
    """A table's name, version, source and effective date."""

    key: str
    name: str
    version: str
    source: str
    effective_from: dt.date


@dataclass(frozen=True, slots=True)
class Adequacy:
    """A destination adequate for a regime, from a decision, possibly only under a condition."""

    country: str
    decision: str
    effective_from: dt.date
    valid_until: dt.date | None
    condition: Condition | None

    def in_force(self, today: dt.date) -> bool:
        """True when the decision applies on today (valid through valid_until)."""
        return self.effective_from <= today and (self.valid_until is None or today <= self.valid_until)


@dataclass(frozen=True, slots=True)
class RegimeRules:
    """One origin regime: its territory, adequate destinations and accepted bases."""

    regime: Regime
    name: str
    territory: frozenset[str]
    restricts_transfers: bool
    accepts: tuple[BasisType, ...]
    adequate: tuple[Adequacy, ...]
    note: str

    def adequacy_for(self, country: str, today: dt.date) -> Adequacy | None:
        """The adequacy entry for country in force on today, if any."""
        return next((a for a in self.adequate if a.country == country and a.in_force(today)), None)


@dataclass(frozen=True, slots=True)
class BasisRules:
    """What a basis type needs before the gate counts it."""

    type: BasisType
    name: str
    needs: tuple[Requirement, ...]
    modules: tuple[int, ...] = ()
    max_tia_age_days: int | None = None
    max_check_age_days: int | None = None
    countries: frozenset[str] | None = None
    security_review_above: int | None = None


@dataclass(frozen=True, slots=True)
class DuoModifier:
    """A DUO modifier term and its effect on who may use the data."""

    label: str
    effect: ModifierEffect
    excludes: frozenset[str]


@dataclass(frozen=True, slots=True)
class DuoRules:
    """DUO permissions (what purposes each admits) and modifiers."""

    purposes: frozenset[str]
    permissions: Mapping[str, frozenset[str]]
    modifiers: Mapping[str, DuoModifier]
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class LawTables:
    """Every legal table, typed, with the digest of their content."""

    info: tuple[TableInfo, ...]
    regimes: Mapping[Regime, RegimeRules]
    bases: Mapping[BasisType, BasisRules]
    concern_countries: frozenset[str]
    bulk_genomic_us_persons: int
    eu_eea: frozenset[str]
    aliases: Mapping[str, str]
    region_regimes: Mapping[str, Regime]
    storage_regions: Mapping[str, str]
    duo: DuoRules
    digest: str
    content: Mapping[str, Any]

    @property
    def versions(self) -> dict[str, str]:
        """Table key -> version."""
        return {t.key: t.version for t in self.info}

    def regime_of(self, region: str) -> Regime | None:
        """The regime of a region code (countries.toml explains the order), or None if no table has it."""
        code = region.strip().upper()
        if code in self.region_regimes:
            return self.region_regimes[code]
        head, _, tail = code.partition("-")
        if head == "EU" and self.aliases.get(tail, tail) in self.eu_eea:
            return Regime.EU_EEA
        country = self.aliases.get(head, head)
        if country in self.region_regimes:
            return self.region_regimes[country]
        return Regime.EU_EEA if country in self.eu_eea else None

    def country_of(self, region: str) -> str:
        """The ISO country of a region code: EU-DE -> DE, US-CA -> US, UK -> GB."""
        head, _, tail = region.strip().upper().partition("-")
        country = tail if head == "EU" and tail else head
        return self.aliases.get(country, country)

    def territory(self, regime: Regime) -> frozenset[str]:
        """The countries where a regime's data is not leaving (EEA group expanded)."""
        return self.regimes[regime].territory

    def storage_country(self, region: str) -> str | None:
        """The country of a cloud storage region, or None if the table lacks it."""
        return self.storage_regions.get(region.strip().lower())

    def to_json(self) -> dict[str, Any]:
        """Versions, digest and content, for `genegate law show --json`."""
        return {
            "digest": self.digest,
            "tables": [
                {
                    "key": t.key,
                    "name": t.name,
                    "version": t.version,
                    "source": t.source,
                    "effective_from": t.effective_from.isoformat(),
                    "content": _jsonable({k: v for k, v in self.content[t.key].items() if k != "table"}),
                }
                for t in self.info
            ],
        }


@functools.cache
def load_law_tables() -> LawTables:
    """The tables shipped in transfer/law/."""
    root = resources.files("transfer.law")
    return parse_law_tables({k: root.joinpath(f"{k}.toml").read_text(encoding="utf-8") for k in TABLE_FILES})


class Evidence(enum.StrEnum):
    """How far a duty of breach.toml was checked (see its header)."""

    VERIFIED = "V"
    SECONDARY = "S"
    UNVERIFIED = "U"


class Trigger(enum.StrEnum):
    """What brings a regime's duty: a subject residing there, or the lab being established there."""

    RESIDENCE = "residence"
    ESTABLISHMENT = "establishment"


@dataclass(frozen=True, slots=True)
class BreachDuty:
    """One notification duty: whom to notify, by when and when, for the regimes it belongs to."""

    id: str
    regimes: tuple[Regime, ...]
    applies_by: frozenset[Trigger]
    law: str
    notify: str
    deadline: str
    deadline_hours: int | None
    condition: str
    covers: frozenset[str]  # release classes for which the duty applies outright
    evidence: Evidence
    above: int | None = None
    above_notify: str | None = None


@dataclass(frozen=True, slots=True)
class BreachTable:
    """The notification duties, with the table's name, version, source and digest."""

    info: TableInfo
    duties: tuple[BreachDuty, ...]
    digest: str

    def for_regime(self, regime: Regime) -> tuple[BreachDuty, ...]:
        """The duties a regime's data brings, in table order."""
        return tuple(d for d in self.duties if regime in d.regimes)


@functools.cache
def load_breach_table() -> BreachTable:
    """breach.toml as shipped in transfer/law/."""
    return parse_breach_table(
        resources.files("transfer.law").joinpath(f"{BREACH_FILE}.toml").read_text("utf-8")
    )


def parse_breach_table(text: str) -> BreachTable:
    """Parse and check breach.toml; every regime needs a duty, so none is silently left out."""
    where = f"{BREACH_FILE}.toml"
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LawTableError(where, f"not valid TOML ({exc})") from exc
    try:
        duties = tuple(_duty(d, where) for d in doc["duties"])
    except (KeyError, TypeError, ValueError) as exc:
        raise LawTableError(where, f"a duty lacks a field or has a wrong type ({exc!r})") from exc
    ids = [d.id for d in duties]
    if len(set(ids)) != len(ids):
        raise LawTableError(where, "a duty id appears twice")
    missing = [r.value for r in Regime if not any(r in d.regimes for d in duties)]
    if missing:
        raise LawTableError(where, f"no duty for regime(s) {', '.join(missing)}; add one (even 'none known')")
    return BreachTable(
        _info(BREACH_FILE, doc), duties, "sha256:" + hashlib.sha256(_canonical(doc)).hexdigest()
    )


def _duty(d: dict[str, Any], where: str) -> BreachDuty:
    covers = frozenset(str(c) for c in d["covers"])
    if not covers <= RELEASE_CLASSES:
        raise LawTableError(
            where, f"[{d['id']}] covers must name release classes ({', '.join(sorted(RELEASE_CLASSES))})"
        )
    hours = d.get("hours")
    days = d.get("days")
    if (d.get("above") is None) != (d.get("above_notify") is None):
        raise LawTableError(where, f"[{d['id']}] needs both above and above_notify, or neither")
    return BreachDuty(
        id=str(d["id"]),
        regimes=tuple(Regime(r) for r in d["regimes"]),
        applies_by=frozenset(Trigger(t) for t in d["applies_by"]),
        law=str(d["law"]),
        notify=str(d["notify"]),
        deadline=str(d["deadline"]),
        deadline_hours=int(hours) if hours is not None else (int(days) * 24 if days is not None else None),
        condition=str(d["condition"]),
        covers=covers,
        evidence=Evidence(d["evidence"]),
        above=_opt_int(d.get("above")),
        above_notify=str(d["above_notify"]) if d.get("above_notify") is not None else None,
    )


def parse_law_tables(texts: Mapping[str, str]) -> LawTables:
    """Parse and check the six tables (keys as in TABLE_FILES); LawTableError names the table and field."""
    docs: dict[str, dict[str, Any]] = {}
    for key in TABLE_FILES:
        if key not in texts:
            raise LawTableError(f"{key}.toml", "the table is missing; reinstall genegate")
        try:
            docs[key] = tomllib.loads(texts[key])
        except tomllib.TOMLDecodeError as exc:
            raise LawTableError(f"{key}.toml", f"not valid TOML ({exc})") from exc
    try:
        return _build(docs)
    except (KeyError, TypeError, ValueError) as exc:
        raise LawTableError("transfer/law", f"a table lacks a field or has a wrong type ({exc!r})") from exc


def _build(docs: dict[str, dict[str, Any]]) -> LawTables:
    info = tuple(_info(k, docs[k]) for k in TABLE_FILES)
    countries = docs["countries"]
    eu_eea = frozenset(_countries(countries["eu_eea"], "countries.toml eu_eea"))
    aliases = {str(k): str(v) for k, v in countries.get("aliases", {}).items()}
    region_regimes = {str(k).upper(): Regime(v) for k, v in countries["regions"].items()}
    regimes = {Regime(k): _regime(Regime(k), v, eu_eea) for k, v in docs["regimes"]["regimes"].items()}
    missing = [r.value for r in Regime if r not in regimes]
    if missing:
        raise LawTableError("regimes.toml", f"no entry for regime(s) {', '.join(missing)}")
    bases = {BasisType(k): _basis(BasisType(k), v) for k, v in docs["bases"]["bases"].items()}
    if [b for b in BasisType if b not in bases]:
        raise LawTableError("bases.toml", "every basis type of keys.BasisType needs an entry")
    concern = docs["concern"]
    storage: dict[str, str] = {}
    for provider, table in docs["storage_regions"].items():
        if provider == "table":
            continue
        for region, country in table.items():
            if region in storage:
                raise LawTableError("storage_regions.toml", f"region {region} appears twice")
            storage[str(region).lower()] = _countries([country], f"storage_regions.toml {region}")[0]
    return LawTables(
        info=info,
        regimes=MappingProxyType(regimes),
        bases=MappingProxyType(bases),
        concern_countries=frozenset(_countries(concern["countries"], "concern.toml countries")),
        bulk_genomic_us_persons=int(concern["bulk_genomic_us_persons"]),
        eu_eea=eu_eea,
        aliases=MappingProxyType(aliases),
        region_regimes=MappingProxyType(region_regimes),
        storage_regions=MappingProxyType(storage),
        duo=_duo(docs["duo"]),
        digest="sha256:" + hashlib.sha256(_canonical(docs)).hexdigest(),
        content=MappingProxyType(docs),
    )


def _info(key: str, doc: dict[str, Any]) -> TableInfo:
    head = doc.get("table")
    if not isinstance(head, dict) or not isinstance(head.get("effective_from"), dt.date):
        raise LawTableError(f"{key}.toml", "needs a [table] with name, version, source and effective_from")
    return TableInfo(
        key, str(head["name"]), str(head["version"]), str(head["source"]), head["effective_from"]
    )


def _regime(regime: Regime, d: dict[str, Any], eu_eea: frozenset[str]) -> RegimeRules:
    where = f"regimes.toml [{regime}]"
    territory = _expand(d["territory"], eu_eea, where)
    adequate: list[Adequacy] = []
    for entry in d["adequate"]:
        until = entry.get("valid_until")
        condition = entry.get("condition")
        for country in _expand([entry["country"]], eu_eea, where):
            adequate.append(
                Adequacy(
                    country=country,
                    decision=str(entry["decision"]),
                    effective_from=_date(entry["effective_from"], where),
                    valid_until=_date(until, where) if until is not None else None,
                    condition=Condition(condition) if condition is not None else None,
                )
            )
    return RegimeRules(
        regime=regime,
        name=str(d["name"]),
        territory=frozenset(territory),
        restricts_transfers=bool(d["restricts_transfers"]),
        accepts=tuple(BasisType(b) for b in d["accepts"]),
        adequate=tuple(adequate),
        note=str(d.get("note", "")),
    )


def _basis(basis: BasisType, d: dict[str, Any]) -> BasisRules:
    countries = d.get("countries")
    return BasisRules(
        type=basis,
        name=str(d["name"]),
        needs=tuple(Requirement(n) for n in d["needs"]),
        modules=tuple(int(m) for m in d.get("modules", ())),
        max_tia_age_days=_opt_int(d.get("max_tia_age_days")),
        max_check_age_days=_opt_int(d.get("max_check_age_days")),
        countries=frozenset(_countries(countries, f"bases.toml [{basis}]")) if countries else None,
        security_review_above=_opt_int(d.get("security_review_above")),
    )


def _duo(d: dict[str, Any]) -> DuoRules:
    terms = [*d["purposes"], *d["permissions"], *d["modifiers"]]
    for permission in d["permissions"].values():
        terms += permission["admits"]
    bad = [t for t in terms if not _DUO.match(str(t))]
    if bad:
        raise LawTableError("duo.toml", f"{bad[0]!r} is not a DUO code such as DUO:0000042")
    labels = {k: str(v["label"]) for k, v in (d["permissions"] | d["modifiers"]).items()}
    return DuoRules(
        purposes=frozenset(d["purposes"]),
        permissions=MappingProxyType({k: frozenset(v["admits"]) for k, v in d["permissions"].items()}),
        modifiers=MappingProxyType(
            {
                k: DuoModifier(str(v["label"]), ModifierEffect(v["effect"]), frozenset(v.get("excludes", ())))
                for k, v in d["modifiers"].items()
            }
        ),
        labels=MappingProxyType(labels),
    )


def _expand(codes: list[str], eu_eea: frozenset[str], where: str) -> list[str]:
    out: list[str] = []
    for code in codes:
        out.extend(sorted(eu_eea) if code == EEA_GROUP else _countries([code], where))
    return out


def _countries(codes: list[Any], where: str) -> list[str]:
    bad = [c for c in codes if not isinstance(c, str) or not _COUNTRY.match(c)]
    if bad:
        raise LawTableError(where, f"{bad[0]!r} is not an ISO 3166-1 alpha-2 code such as CH")
    return [str(c) for c in codes]


def _date(value: Any, where: str) -> dt.date:
    if not isinstance(value, dt.date):
        raise LawTableError(where, f"{value!r} is not a TOML date (YYYY-MM-DD)")
    return value


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _canonical(docs: dict[str, dict[str, Any]]) -> bytes:
    return json.dumps(_jsonable(docs), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
