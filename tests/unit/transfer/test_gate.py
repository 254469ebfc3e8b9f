"""The transfer gate: the legal cases of legal.md 6(a), one per rule, each naming exactly the rule that fails."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

import pytest

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

TODAY = dt.date(2026, 5, 1)
KEY = SecretKey.generate().public_key()
GRU, HMB, DS = "DUO:0000042", "DUO:0000006", "DUO:0000007"
R = RuleId


def subjects(
    region: str | None, n: int = 3, consent: tuple[str, ...] = ("*",), **kw: object
) -> list[SubjectFacts]:
    """n subjects of one region (codes are well-formed vault subject codes)."""
    base = SubjectFacts("GGP000000000000", region, consent, False, None, False)
    return [replace(base, code=f"GGP{i:012d}", **kw) for i in range(n)]  # type: ignore[arg-type]


def release(
    people: list[SubjectFacts],
    cls: ReleaseClass = ReleaseClass.DEIDENTIFIED,
    status: AssessmentStatus = AssessmentStatus.PASSED,
    data_use: tuple[str, ...] = (GRU,),
    genomic: bool = True,
) -> ReleaseFacts:
    """Release facts around the given subjects."""
    return ReleaseFacts(
        "rel-1", cls, status, data_use, "ab" * 32, not genomic, genomic, "cgipa", tuple(people)
    )


def basis(kind: str, signed: dt.date = dt.date(2026, 1, 10), **kw: object) -> Basis:
    """A basis of a type with its evidence."""
    return Basis(type=BasisType(kind), ref=f"{kind.upper()}-1", signed=signed, **kw)  # type: ignore[arg-type]


def recipient(
    country: str = "CH",
    region: str | None = "eu-central-2",
    bases: tuple[Basis, ...] = (),
    purposes: tuple[str, ...] = (GRU,),
    contract: bool = True,
    **kw: object,
) -> Recipient:
    """A registered recipient (key valid from 2026-01-01, no-reidentification contract signed)."""
    r = Recipient(
        id=RecipientId("partner"),
        name="Partner Institute",
        country=country,
        public_key=KEY,
        key_format="crypt4gh",
        destination="s3://partner-inbox/genegate",
        region=region,
        valid_from=dt.date(2026, 1, 1),
        valid_until=None,
        purposes=purposes,
        contract_ref="NRC-1" if contract else None,
        contract_signed=dt.date(2026, 1, 5) if contract else None,
        bases=bases,
    )
    return replace(r, **kw)  # type: ignore[arg-type]


def decide(
    facts: ReleaseFacts,
    to: Recipient | None,
    lab: str = "US-CA",
    today: dt.date = TODAY,
    revoked: frozenset[str] = frozenset(),
    prior: int | None = 0,
    scheduled: bool = False,
) -> Decision:
    """The gate with the shipped tables."""
    return decide_transfer(
        facts, to, load_law_tables(), lab, today, revoked, prior_deliveries=prior, scheduled=scheduled
    )


SCC: dict[str, object] = {"module": 1, "tia_ref": "TIA-1", "tia_date": dt.date(2026, 1, 5)}
EU = subjects("EU-DE")
PSEUDO = ReleaseClass.PSEUDONYMISED

CASES = [
    # (case id, release facts, recipient, lab jurisdiction, today, expected failing rules)
    ("eu-to-ch-adequate", release(EU), recipient(), "US-CA", TODAY, []),
    ("eu-to-us-no-dpf-no-scc", release(EU), recipient("US", "us-east-1"), "US-CA", TODAY, [R.ORIGIN_EU_EEA]),
    ("eu-to-us-scc-module1-tia-fresh", release(EU), recipient("US", "us-east-1", (basis("scc_eu_2021", **SCC),)), "US-CA", TODAY, []),
    ("eu-to-us-scc-tia-overdue", release(EU), recipient("US", "us-east-1", (basis("scc_eu_2021", **(SCC | {"tia_date": dt.date(2025, 4, 20)})),)), "US-CA", TODAY, [R.ORIGIN_EU_EEA]),
    ("eu-to-us-scc-expired", release(EU), recipient("US", "us-east-1", (basis("scc_eu_2021", expires=dt.date(2026, 4, 30), **SCC),)), "US-CA", TODAY, [R.ORIGIN_EU_EEA]),
    ("eu-to-us-scc-without-tia", release(EU), recipient("US", "us-east-1", (basis("scc_eu_2021", module=2),)), "US-CA", TODAY, [R.ORIGIN_EU_EEA]),
    ("eu-to-us-dpf-checked-today", release(EU), recipient("US", "us-east-1", (basis("dpf", signed=TODAY),)), "US-CA", TODAY, []),
    ("eu-to-us-dpf-check-stale", release(EU), recipient("US", "us-east-1", (basis("dpf", signed=dt.date(2026, 4, 1)),)), "US-CA", TODAY, [R.ORIGIN_EU_EEA]),
    ("eu-to-br-after-adequacy", release(EU), recipient("BR", "sa-east-1"), "US-CA", TODAY, []),
    ("eu-to-br-before-adequacy", release(EU), recipient("BR", "sa-east-1"), "US-CA", dt.date(2026, 1, 26), [R.ORIGIN_EU_EEA]),
    ("eu-to-ca-pipeda-not-recorded", release(EU), recipient("CA", "ca-central-1"), "US-CA", TODAY, [R.ORIGIN_EU_EEA]),
    ("eu-to-us-art49-occasional", release(subjects("EU-FR", consent=("partner",)), PSEUDO), recipient("US", "us-east-1", (basis("gdpr_49_1_a", consent_ref="C-1"),)), "US-CA", TODAY, []),
    ("eu-to-us-art49-blanket-consent", release(subjects("EU-FR"), PSEUDO), recipient("US", "us-east-1", (basis("gdpr_49_1_a", consent_ref="C-1"),)), "US-CA", TODAY, [R.ORIGIN_EU_EEA]),
    ("jp-to-gb-whitelist", release(subjects("JP")), recipient("GB", "eu-west-2"), "US-CA", TODAY, []),
    ("jp-to-us-no-consent-no-equivalent", release(subjects("JP")), recipient("US", "us-east-1"), "US-CA", TODAY, [R.ORIGIN_JP]),
    ("jp-to-us-appi-consent", release(subjects("JP")), recipient("US", "us-east-1", (basis("appi_consent", consent_ref="C-9"),)), "US-CA", TODAY, []),
    ("jp-opt-out-received-no-consent", release(subjects("JP", consent=(), received_opt_out=True)), recipient("GB", "eu-west-2"), "US-CA", TODAY, [R.APPI_OPT_OUT]),
    ("jp-opt-out-received-consented", release(subjects("JP", consent=("partner",), received_opt_out=True)), recipient("GB", "eu-west-2"), "US-CA", TODAY, []),
    ("uk-to-us-no-basis", release(subjects("GB")), recipient("US", "us-east-1"), "US-CA", TODAY, [R.ORIGIN_UK]),
    ("uk-to-us-idta-with-tra", release(subjects("GB")), recipient("US", "us-east-1", (basis("idta", tia_ref="TRA-1", tia_date=dt.date(2026, 2, 1)),)), "US-CA", TODAY, []),
    ("ch-to-jp-not-adequate-for-ch", release(subjects("CH")), recipient("JP", "ap-northeast-1"), "US-CA", TODAY, [R.ORIGIN_CH]),
    ("cn-genomic-without-hgr-filing", release(subjects("CN")), recipient("DE", "eu-central-1", (basis("pipl_contract", consent_ref="SC-1"),)), "US-CA", TODAY, [R.CN_HGR]),
    ("cn-genomic-with-hgr-filing", release(subjects("CN")), recipient("DE", "eu-central-1", (basis("pipl_contract", consent_ref="SC-1"), basis("hgr_filing", filing="NHC-2026-1"))), "US-CA", TODAY, []),
    ("us-ca-101-persons-to-cn-deidentified", release(subjects("US-CA", 101)), recipient("CN", "cn-north-1"), "US-CA", TODAY, [R.DOJ_BULK]),
    ("us-ca-100-persons-to-cn", release(subjects("US-CA", 100)), recipient("CN", "cn-north-1"), "US-CA", TODAY, []),
    ("unknown-residence-at-us-lab-counts-as-us", release(subjects(None, 101)), recipient("CN", "cn-north-1"), "US-CA", TODAY, [R.DOJ_BULK]),
    ("storage-region-outside-declared-country", release(EU), recipient("CH", "us-east-1"), "US-CA", TODAY, [R.STORAGE_REGION]),
    ("s3-destination-without-region", release(EU), recipient("CH", None), "US-CA", TODAY, [R.STORAGE_REGION]),
    ("revoked-recipient", release(EU), recipient(revoked_at="2026-04-01T10:00:00+00:00"), "US-CA", TODAY, [R.RECIPIENT_NOT_REVOKED]),
    ("expired-key", release(EU), recipient(valid_until=dt.date(2026, 4, 30)), "US-CA", TODAY, [R.RECIPIENT_KEY_VALID]),
    ("missing-no-reidentification-contract", release(EU), recipient(contract=False), "US-CA", TODAY, [R.CGIPA_CONTRACT]),
    ("missing-named-consent", release(subjects("EU-DE", consent=("someone-else",)), PSEUDO), recipient(), "US-CA", TODAY, [R.CONSENT_NAMED]),
    ("named-consent-present", release(subjects("EU-DE", consent=("partner",)), PSEUDO), recipient(), "US-CA", TODAY, []),
    ("minor-without-guardian-consent", release(subjects("EU-DE", 1, minor_at_collection=True)), recipient(), "US-CA", TODAY, [R.CONSENT_GUARDIAN]),
    ("not-assessed", release(EU, status=AssessmentStatus.NOT_ASSESSED), recipient(), "US-CA", TODAY, [R.RELEASE_ASSESSED]),
    ("ds-release-to-gru-recipient", release(EU, data_use=(DS,)), recipient(purposes=(GRU,)), "US-CA", TODAY, [R.DUO_PURPOSE]),
    ("ds-release-to-ds-recipient", release(EU, data_use=(DS,)), recipient(purposes=(DS,)), "US-CA", TODAY, []),
    ("gru-release-with-irb-condition-not-accepted", release(EU, data_use=(GRU, "DUO:0000021")), recipient(purposes=(HMB,)), "US-CA", TODAY, [R.DUO_PURPOSE]),
    ("region-without-legal-table", release(subjects("BR")), recipient(), "US-CA", TODAY, [R.ORIGIN_KNOWN]),
    ("eu-lab-to-us-without-basis", release(subjects("US-CA")), recipient("US", "us-east-1"), "EU-DE", TODAY, [R.ORIGIN_EU_EEA]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("facts", "to", "lab", "today", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_legal_case(
    facts: ReleaseFacts, to: Recipient, lab: str, today: dt.date, expected: list[RuleId]
) -> None:
    """Each case fails exactly the expected rule(s) and passes every other; allowed iff none fails."""
    decision = decide(facts, to, lab, today)
    assert expected == list(decision.failed)
    assert (expected == []) == decision.allowed
    assert list(RuleId) == [r.rule for r in decision.rules]


def test_art49_repetitive_or_scheduled_transfer_is_denied() -> None:
    """Art 49(1)(a) consent does not cover a transfer after earlier deliveries, a scheduled one, or an unknown history."""
    facts = release(subjects("EU-FR", consent=("partner",)), PSEUDO)
    to = recipient("US", "us-east-1", (basis("gdpr_49_1_a", consent_ref="C-1"),))
    assert () == decide(facts, to, prior=0).failed
    for kwargs in ({"prior": 2}, {"scheduled": True}, {"prior": None}):
        decision = decide(facts, to, **kwargs)  # type: ignore[arg-type]
        assert (R.ORIGIN_EU_EEA,) == decision.failed
        assert "repetitive" in decision.reasons[0] or "history is unknown" in decision.reasons[0]


def test_revoked_subject_denies_an_older_release() -> None:
    """A release holding a subject whose code is in the revoked set is denied by consent.not_revoked."""
    people = subjects("EU-DE", consent=("partner",))
    decision = decide(
        release(people, PSEUDO), recipient(), revoked=frozenset({people[1].code, "GGP999999999999"})
    )
    assert (R.CONSENT_NOT_REVOKED,) == decision.failed
    assert 1 == decision.outcome(R.CONSENT_NOT_REVOKED).evidence["subjects_revoked"]
    assert people[1].code not in json.dumps(decision.to_json())


def test_unknown_recipient_is_denied_naming_the_fix() -> None:
    """No recipient: recipient.registered fails with the command that registers one; nothing is allowed."""
    decision = decide_transfer(
        release(EU), None, load_law_tables(), "US-CA", TODAY, frozenset(), recipient_id="nobody"
    )
    assert not decision.allowed
    assert R.RECIPIENT_REGISTERED in decision.failed
    assert "genegate keys add-recipient" in decision.outcome(R.RECIPIENT_REGISTERED).reason
    assert "nobody" == decision.to_json()["recipient_id"]


def test_deny_reasons_name_every_failing_rule() -> None:
    """Several failures at once: all are evaluated and each is named in the reasons (no short-circuit)."""
    facts = release(subjects("EU-DE", consent=()), PSEUDO, AssessmentStatus.FAILED, data_use=(DS,))
    to = recipient("US", "eu-central-1", revoked_at="2026-04-01T00:00:00+00:00")
    decision = decide(facts, to)
    expected = [
        R.RECIPIENT_NOT_REVOKED, R.RELEASE_ASSESSED, R.CONSENT_NAMED, R.ORIGIN_EU_EEA, R.STORAGE_REGION, R.DUO_PURPOSE,
    ]  # fmt: skip
    assert expected == list(decision.failed)
    assert [str(r) for r in expected] == [reason.split(":")[0] for reason in decision.reasons]


def test_decision_is_reproducible_and_carries_the_tables_digest() -> None:
    """Same inputs, same tables: byte-identical JSON and digest; the digest of the tables is recorded."""
    facts, to = release(EU), recipient("US", "us-east-1", (basis("scc_eu_2021", **SCC),))
    first, second = decide(facts, to), decide(facts, to)
    assert first.canonical() == second.canonical()
    assert first.digest == second.digest
    doc = first.to_json()
    assert load_law_tables().digest == doc["tables"]["digest"]
    assert {"regimes", "bases", "concern", "countries", "storage_regions", "duo"} == set(
        doc["tables"]["versions"]
    )
    assert "scc_eu_2021" == first.outcome(R.ORIGIN_EU_EEA).evidence["basis"]
    assert first.digest != decide(facts, to, today=dt.date(2026, 5, 2)).digest


def test_summary_only_release_is_outside_the_bulk_genomic_rule() -> None:
    """A release without individual-level genomic data does not trigger 28 CFR 202's genomic threshold."""
    decision = decide(release(subjects("US-CA", 150), genomic=False), recipient("CN", "cn-north-1"))
    assert () == decision.failed
    assert not decision.outcome(R.DOJ_BULK).applies


def test_file_outbox_without_region_is_local() -> None:
    """A file:// outbox has no cloud region: the storage rule does not apply."""
    to = recipient(region=None, destination="file:///srv/outbox/partner")
    decision = decide(release(EU), to)
    assert () == decision.failed
    assert not decision.outcome(R.STORAGE_REGION).applies


@pytest.mark.parametrize(
    ("cls", "failed_tests", "allowed"),
    [
        (ReleaseClass.PSEUDONYMISED, ("T05_genotype_linkage", "T11_demographic_k_risk"), True),
        (ReleaseClass.PSEUDONYMISED, ("T05_genotype_linkage", "T01_header_leak_scan"), False),
        (ReleaseClass.PSEUDONYMISED, ("T03_forbidden_regions",), False),
        (ReleaseClass.PSEUDONYMISED, (), False),
        (ReleaseClass.DEIDENTIFIED, ("T11_demographic_k_risk",), False),
    ],
)
def test_a_failed_assessment_passes_only_for_statistical_tests_of_a_pseudonymised_release(
    cls: ReleaseClass, failed_tests: tuple[str, ...], allowed: bool
) -> None:
    """Individual-level data fails T05 by nature and goes on consent; a leak-scan failure (T01-T03) never goes."""
    people = subjects("EU-DE", consent=("*",))
    facts = replace(release(people, cls, AssessmentStatus.FAILED), blocking_failed=failed_tests)
    decision = decide_transfer(facts, recipient(), load_law_tables(), "US-CA", TODAY, frozenset())
    assessed = next(r for r in decision.rules if r.rule == R.RELEASE_ASSESSED)
    assert allowed == assessed.passed
