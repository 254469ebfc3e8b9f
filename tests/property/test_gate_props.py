"""Properties of the transfer gate over random recipients, bases, dates and release facts.

0 false allows: whenever the gate allows, an independent check of every rule's precondition
(written here from SPEC 6.1 and legal.md, not from the gate's code) holds. Every failing rule is
named in the reasons, all rules always run, and a decision is a pure function of its inputs.
The strategies live here: they build keys/transfer values that tests/property/strategies.py
(the envelope and manifest strategies) does not cover.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import find, given, settings
from hypothesis import strategies as st

from keys import Basis, BasisType, Recipient, RecipientId, SecretKey
from transfer import (
    AssessmentStatus,
    Decision,
    ReleaseClass,
    ReleaseFacts,
    RuleId,
    SubjectFacts,
    decide_transfer,
    load_law_tables,
)

TABLES = load_law_tables()
KEY = SecretKey.generate().public_key()
RID = "partner"
DAY0 = dt.date(2025, 6, 1)
REGIONS = ["EU-DE", "EU-FR", "NO", "GB", "CH", "JP", "CN", "US-CA", "US-NY", "BR", None]
OFFSETS = [-900, -400, -200, -30, -1, 0, 1, 30]  # days relative to the decision day
PLACES = [("CH", "eu-central-2"), ("US", "us-east-1"), ("GB", "eu-west-2"), ("JP", "ap-northeast-1"),
          ("CN", "cn-north-1"), ("DE", "eu-central-1"), ("BR", "sa-east-1"), ("CA", "ca-central-1"),
          ("KR", "ap-northeast-2"), ("HK", "ap-east-1"), ("RU", None), ("CH", "us-east-1"), ("CH", None),
          ("US", "mars-1")]  # fmt: skip
USES = [("DUO:0000042",), ("DUO:0000042",), ("DUO:0000006",), ("DUO:0000007",), ("DUO:0000004",),
        ("DUO:0000042", "DUO:0000021"), ("DUO:0000042", "DUO:0000044"), (), ("DUO:9999999",)]  # fmt: skip
PURPOSES = [("DUO:0000042",), ("DUO:0000006",), ("DUO:0000007",), ("DUO:0000011",),
            ("DUO:0000042", "DUO:0000021"), ()]  # fmt: skip


def around(today: dt.date) -> st.SearchStrategy[dt.date]:
    """A date near the decision day: long past, recent, today or in the future."""
    return st.sampled_from(OFFSETS).map(lambda n: today + dt.timedelta(days=n))


@st.composite
def subject_facts(draw: st.DrawFn, n: int) -> SubjectFacts:
    """One subject with random region and consent facts (mostly consenting adults)."""
    return SubjectFacts(
        code=f"GGP{n:012d}",
        residence_region=draw(st.sampled_from(REGIONS)),
        consent_transfer=draw(st.sampled_from([("*",), (RID,), (RID,), (), ("other",)])),
        minor_at_collection=draw(st.sampled_from([False, False, False, True])),
        guardian_consent=draw(st.sampled_from([None, True, False])),
        received_opt_out=draw(st.sampled_from([False, False, True])),
    )


TEST_IDS = ("T01_header_leak_scan", "T02_read_name_tag_scan", "T03_forbidden_regions", "T05_genotype_linkage",
            "T11_demographic_k_risk")  # fmt: skip


@st.composite
def release_facts(draw: st.DrawFn) -> ReleaseFacts:
    """A release of 0-4 random subjects, sometimes padded to 100 or 101 US persons."""
    people = [draw(subject_facts(i)) for i in range(draw(st.integers(0, 4)))]
    if draw(st.integers(0, 4)) == 0:
        extra = draw(st.sampled_from([100, 101]))
        people += [
            SubjectFacts(f"GGP{1000 + i:012d}", "US-CA", ("*",), False, None, False) for i in range(extra)
        ]
    return ReleaseFacts(
        release_id="rel-p",
        release_class=draw(st.sampled_from(list(ReleaseClass))),
        assessment=draw(st.sampled_from([AssessmentStatus.PASSED] * 4 + list(AssessmentStatus))),
        data_use=draw(st.sampled_from(USES)),
        release_sha256="cd" * 32,
        summary_only=False,
        genomic=draw(st.booleans()),
        vault_domain="cgipa",
        subjects=tuple(people),
        blocking_failed=tuple(draw(st.lists(st.sampled_from(TEST_IDS), max_size=3, unique=True))),
    )


@st.composite
def bases(draw: st.DrawFn, today: dt.date) -> Basis:
    """A basis of any type with random (possibly missing, expired or future) evidence."""
    return Basis(
        type=draw(st.sampled_from(list(BasisType))),
        ref="REF-1",
        signed=draw(around(today)),
        expires=draw(st.none() | around(today)),
        module=draw(st.sampled_from([None, 1, 2, 3, 4, 5])),
        tia_ref="TIA-1",
        tia_date=draw(st.none() | around(today)),
        consent_ref=draw(st.sampled_from([None, "C-1"])),
        filing=draw(st.sampled_from([None, "F-1"])),
    )


@st.composite
def recipients(draw: st.DrawFn, today: dt.date) -> Recipient | None:
    """A recipient (sometimes none) with random place, purposes, contract, key validity and bases."""
    if draw(st.integers(0, 19)) == 0:
        return None
    contract = draw(st.sampled_from([None, "NRC-1", "NRC-1"]))
    country, region = draw(st.sampled_from(PLACES))
    return Recipient(
        id=RecipientId(RID),
        name="P",
        country=country,
        public_key=KEY,
        key_format="crypt4gh",
        destination=draw(st.sampled_from(["s3://b/p", "s3://b/p", "file:///srv/outbox"])),
        region=region,
        valid_from=draw(around(today)),
        valid_until=draw(st.none() | around(today)),
        purposes=draw(st.sampled_from(PURPOSES)),
        contract_ref=contract,
        contract_signed=draw(around(today)) if contract else None,
        bases=tuple(draw(st.lists(bases(today), max_size=4))),
        revoked_at=draw(st.sampled_from([None, None, None, "2025-05-01T00:00:00+00:00"])),
    )


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[ReleaseFacts, Recipient | None, str, dt.date, int | None, bool, bool]:
    """Release facts, a recipient, the lab's jurisdiction, the day, transfer history, schedule, a revocation."""
    today = DAY0 + dt.timedelta(days=draw(st.integers(-400, 400)))
    return (
        draw(release_facts()),
        draw(recipients(today)),
        draw(st.sampled_from(["US-CA", "US-CA", "EU-DE", "GB", "CH", "JP", "CN", "US-TX", "XX"])),
        today,
        draw(st.sampled_from([None, 0, 0, 3])),
        draw(st.sampled_from([False, False, True])),
        draw(st.sampled_from([False, False, False, True])),
    )


inputs = scenarios()


def _decide(args: tuple[ReleaseFacts, Recipient | None, str, dt.date, int | None, bool, bool]) -> Decision:
    facts, recipient, lab, today, prior, scheduled, revoke_one = args
    revoked = frozenset({facts.subjects[0].code}) if revoke_one and facts.subjects else frozenset()
    return decide_transfer(
        facts,
        recipient,
        TABLES,
        lab,
        today,
        revoked,
        recipient_id=RID,
        prior_deliveries=prior,
        scheduled=scheduled,
    )


def _basis_in_force(b: Basis, today: dt.date) -> bool:
    return b.signed <= today and (b.expires is None or b.expires >= today)


def _route_exists(regime: str, r: Recipient, today: dt.date) -> bool:
    """Independent check: the destination is inside, unconditionally adequate, or some accepted basis is in force."""
    spec = TABLES.regimes[regime]  # type: ignore[index]
    if not spec.restricts_transfers or r.country in spec.territory:
        return True
    entry = spec.adequacy_for(r.country, today)
    if entry is not None and entry.condition is None:
        return True
    accepted = set(spec.accepts) | (
        {BasisType.DPF} if entry is not None and entry.condition == "dpf" else set()
    )
    return any(b.type in accepted and _basis_in_force(b, today) for b in r.bases)


@settings(max_examples=1000, deadline=None)
@given(inputs)
def test_never_allows_without_every_precondition(args: tuple) -> None:  # type: ignore[type-arg]
    """0 false allows: an allowed decision satisfies every precondition, checked independently of the gate."""
    decision = _decide(args)
    if not decision.allowed:
        return
    facts, r, lab, today, _prior, _scheduled, revoke_one = args
    assert r is not None
    assert not r.revoked_at
    assert r.valid_from <= today
    assert r.valid_until is None or today <= r.valid_until
    assert facts.assessment is AssessmentStatus.PASSED or (
        facts.assessment is AssessmentStatus.FAILED
        and facts.release_class is ReleaseClass.PSEUDONYMISED
        and facts.blocking_failed
        and not any(t.split("_")[0] in ("T01", "T02", "T03") for t in facts.blocking_failed)
    )
    if facts.release_class is ReleaseClass.DEIDENTIFIED:
        assert r.contract_ref is not None
        assert r.contract_signed is not None
        assert r.contract_signed <= today
    else:
        assert all(RID in s.consent_transfer or "*" in s.consent_transfer for s in facts.subjects)
    assert all(s.guardian_consent is True for s in facts.subjects if s.minor_at_collection)
    assert not (revoke_one and facts.subjects)
    regions = [s.residence_region or lab for s in facts.subjects] + [lab]
    regimes = {TABLES.regime_of(x) for x in regions}
    assert None not in regimes
    assert all(_route_exists(g, r, today) for g in regimes if g is not None)
    us = sum(1 for x in regions[:-1] if x == "US" or x.startswith("US-"))
    storage = TABLES.storage_country(r.region) if r.region else None
    if facts.genomic and us > 100:
        assert r.country not in TABLES.concern_countries
        assert storage not in TABLES.concern_countries
    assert (r.region is None and r.destination.startswith("file:")) or storage == r.country
    assert facts.data_use
    assert all(t in TABLES.duo.permissions or t in TABLES.duo.modifiers for t in facts.data_use)
    assert any(p in TABLES.duo.purposes for p in r.purposes)


def test_the_strategies_reach_allowed_decisions() -> None:
    """The generator is not vacuous: it finds scenarios the gate allows (so the property above bites)."""
    found = find(inputs, lambda a: _decide(a).allowed, settings=settings(max_examples=3000, database=None))
    assert _decide(found).allowed


@settings(max_examples=300, deadline=None)
@given(inputs)
def test_every_rule_runs_and_every_failure_is_named(args: tuple) -> None:  # type: ignore[type-arg]
    """All rules are evaluated in order; allowed iff none failed; each failing rule has a reason naming it."""
    decision = _decide(args)
    assert list(RuleId) == [r.rule for r in decision.rules]
    failing = [r.rule for r in decision.rules if not r.passed]
    assert (not failing) == decision.allowed
    assert [f"{rule}:" for rule in failing] == [
        reason[: len(rule) + 1] for rule, reason in zip(failing, decision.reasons, strict=True)
    ]
    assert all(r.reason for r in decision.rules)
    assert [rule.value for rule in failing] == decision.to_json()["failed_rules"]


@settings(max_examples=150, deadline=None)
@given(inputs)
def test_decision_is_a_pure_function(args: tuple) -> None:  # type: ignore[type-arg]
    """The same inputs give byte-identical decision JSON and digest; no subject code appears in it."""
    first, second = _decide(args), _decide(args)
    assert first.canonical() == second.canonical()
    assert first.digest == second.digest
    text = first.canonical().decode()
    assert [] == [s.code for s in args[0].subjects if s.code in text]
