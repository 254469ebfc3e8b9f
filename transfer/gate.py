"""The transfer gate: may this release go to this recipient today? Pure: no I/O, no clock.

`decide_transfer` evaluates every rule below, always all of them (never short-circuits), and
allows only when every rule passes: deny by default. A rule that does not apply to the release
(no subject of that origin, say) passes and says so. Each outcome carries a reason and the
evidence it used (document references, counts, dates; never a subject id or code), and the
decision carries the digest of the legal tables it applied (transfer/law/).

    recipient.registered      the recipient exists in the registry
    recipient.not_revoked     it is not revoked
    recipient.key_valid       its key is valid today
    release.assessed          the release was assessed: passed, or failed only the statistical tests
                              of an individual-level release certified pseudonymised (never a leak
                              scan: T01-T03)
    cgipa.no_reidentification_contract
                              a deidentified release: the recipient signed the no-reidentification
                              contract (CGIPA deidentified-data limb 3)
    consent.named_recipient   a pseudonymised release: every subject's express consent names this
                              recipient or "*" (CGIPA § 56.181(a)(2)(D))
    consent.guardian          every subject who was a minor at collection has guardian consent
                              (either class: a policy choice stricter than SPEC 6.1)
    consent.not_revoked       no subject in the release has revoked consent (consent register)
    origin.known              every subject's region (the lab's when empty) has a legal table
    origin.<regime>           for each origin regime (eu_eea, uk, ch, jp, cn, us_ca, us): the
                              destination is inside it, adequate today, or covered by a valid
                              basis of a type the regime accepts (regimes.toml, bases.toml)
    cn.hgr_filing             Chinese-origin genetic data leaving China: an HGR filing (NHC)
    appi.opt_out_onward       Japanese-origin data the lab received on an opt-out basis goes on only
                              with the subject's consent (APPI Art 27(2): no opt-out onward)
    doj.bulk_us_genomic       genomic data on more than 100 US persons never goes to a country of
                              concern, whatever its class (28 CFR 202.303, 202.206)
    storage.region_in_country the destination's storage region lies in the recipient's country
    duo.purpose               the release's DUO terms admit every purpose the recipient declared

The cross-border rules (origin.*, cn.hgr_filing, appi.opt_out_onward) are in
transfer/crossborder.py; the decision value in transfer/decision.py.

GDPR Art 49(1)(a) consent counts only for an occasional transfer (not scheduled, nothing
delivered to this recipient before, per the transfer log) in which every EU/EEA subject named the
recipient explicitly (bases.toml explains). A subject with no residence region takes the lab's.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from keys import Recipient
from transfer.crossborder import appi_opt_out, hgr, origin, origin_known
from transfer.decision import (
    NO_RECIPIENT,
    Case,
    Decision,
    EvidenceValue,
    RuleId,
    RuleOutcome,
    failed,
    iso,
    passed,
)
from transfer.facts import AssessmentStatus, ReleaseClass, ReleaseFacts, SubjectFacts
from transfer.law.tables import LawTables, ModifierEffect, Regime


def decide_transfer(
    facts: ReleaseFacts,
    recipient: Recipient | None,
    tables: LawTables,
    lab_jurisdiction: str,
    today: dt.date,
    revoked_subjects: frozenset[str],
    *,
    recipient_id: str | None = None,
    prior_deliveries: int | None = None,
    scheduled: bool = False,
) -> Decision:
    """Evaluate every rule and decide; deny unless all pass.

    recipient: None when no recipient has the requested id (recipient_id records it).
    revoked_subjects: vault codes (in facts.vault_domain) of subjects who revoked consent.
    prior_deliveries: deliveries to this recipient already in the transfer log (None: unknown).
    scheduled: the transfer runs on a schedule (a recurring deployment), so it is repetitive.
    """
    case = _case(
        facts, recipient, tables, lab_jurisdiction, today, revoked_subjects, prior_deliveries, scheduled
    )
    outcomes = (
        _registered(case, recipient_id),
        _not_revoked(case),
        _key_valid(case),
        _assessed(case),
        _contract(case),
        _named_consent(case),
        _guardian(case),
        _consent_not_revoked(case),
        origin_known(case),
        *(origin(case, regime) for regime in Regime),
        hgr(case),
        appi_opt_out(case),
        _doj(case),
        _storage(case),
        _duo(case),
    )
    complete = [o.rule for o in outcomes] == list(RuleId)
    regimes = {r.value for r in case.by_regime} | ({case.lab_regime.value} if case.lab_regime else set())
    return Decision(
        allowed=complete and all(o.passed for o in outcomes),
        release_id=facts.release_id,
        release_sha256=facts.release_sha256,
        release_class=facts.release_class.value,
        recipient_id=recipient.id if recipient is not None else recipient_id,
        destination_country=recipient.country if recipient is not None else None,
        decided_on=today,
        lab_jurisdiction=case.lab_region,
        origin_regimes=tuple(sorted(regimes)),
        rules=outcomes,
        tables_digest=tables.digest,
        table_versions=tuple(sorted(tables.versions.items())),
        context=(
            ("prior_deliveries", prior_deliveries),
            ("revocations_checked", len(revoked_subjects)),
            ("scheduled", scheduled),
            ("subjects", len(facts.subjects)),
        ),
    )


def _case(
    facts: ReleaseFacts,
    recipient: Recipient | None,
    tables: LawTables,
    lab_jurisdiction: str,
    today: dt.date,
    revoked: frozenset[str],
    prior_deliveries: int | None,
    scheduled: bool,
) -> Case:
    """Group the subjects by origin regime (a subject without a region takes the lab's)."""
    lab_region = lab_jurisdiction.strip().upper()
    groups: dict[Regime, list[SubjectFacts]] = {}
    unknown: Counter[str] = Counter()
    us_persons = 0
    for subject in facts.subjects:
        region = subject.residence_region or lab_region
        regime = tables.regime_of(region)
        if regime is None:
            unknown[region] += 1
        else:
            groups.setdefault(regime, []).append(subject)
        us_persons += tables.country_of(region) == "US"
    return Case(
        facts=facts,
        recipient=recipient,
        tables=tables,
        today=today,
        lab_region=lab_region,
        lab_regime=tables.regime_of(lab_region),
        revoked=revoked,
        prior_deliveries=prior_deliveries,
        scheduled=scheduled,
        by_regime={k: tuple(v) for k, v in sorted(groups.items())},
        unknown_regions=dict(sorted(unknown.items())),
        us_persons=us_persons,
    )


# recipient and release ------------------------------------------------------------------------


def _registered(case: Case, requested: str | None) -> RuleOutcome:
    r = case.recipient
    if r is None:
        reason = "no recipient with this id is registered; register it with `genegate keys add-recipient`"
        return failed(RuleId.RECIPIENT_REGISTERED, reason, {"recipient_id": requested})
    reason = f"{r.id} is registered ({r.name}, {r.country})"
    return passed(RuleId.RECIPIENT_REGISTERED, reason, {"key_fingerprint": r.fingerprint})


def _not_revoked(case: Case) -> RuleOutcome:
    r = case.recipient
    if r is None:
        return failed(RuleId.RECIPIENT_NOT_REVOKED, NO_RECIPIENT)
    if r.revoked_at:
        reason = f"the recipient was revoked on {r.revoked_at[:10]}"
        return failed(RuleId.RECIPIENT_NOT_REVOKED, reason, {"revoked_at": r.revoked_at})
    return passed(RuleId.RECIPIENT_NOT_REVOKED, "the recipient is not revoked")


def _key_valid(case: Case) -> RuleOutcome:
    r = case.recipient
    if r is None:
        return failed(RuleId.RECIPIENT_KEY_VALID, NO_RECIPIENT)
    evidence: dict[str, EvidenceValue] = {"valid_from": iso(r.valid_from), "valid_until": iso(r.valid_until)}
    if case.today < r.valid_from:
        return failed(
            RuleId.RECIPIENT_KEY_VALID, f"the recipient's key is valid only from {r.valid_from}", evidence
        )
    if r.valid_until is not None and case.today > r.valid_until:
        reason = f"the recipient's key expired on {r.valid_until}; register its new key under a new id"
        return failed(RuleId.RECIPIENT_KEY_VALID, reason, evidence)
    return passed(RuleId.RECIPIENT_KEY_VALID, "the recipient's key is valid today", evidence)


# a failure of these means identifiers or forbidden regions are in the files: never sent, whatever the class
LEAK_TESTS = ("T01_", "T02_", "T03_")


def certified(facts: ReleaseFacts) -> bool:
    """The assessment certifies the release for its class: it passed, or (pseudonymised, individual-level
    data) it failed only the statistical tests, never a leak test. The gate's release.assessed rule
    and retention's purge-on-certification both ask this one question."""
    if facts.assessment is AssessmentStatus.PASSED:
        return True
    leaks = any(t.startswith(LEAK_TESTS) for t in facts.blocking_failed)
    return (
        facts.assessment is AssessmentStatus.FAILED
        and facts.release_class is ReleaseClass.PSEUDONYMISED
        and bool(facts.blocking_failed)
        and not leaks
    )


def _assessed(case: Case) -> RuleOutcome:
    status = case.facts.assessment
    evidence: dict[str, EvidenceValue] = {"status": status.value, "class": case.facts.release_class.value}
    if status is AssessmentStatus.PASSED:
        return passed(RuleId.RELEASE_ASSESSED, f"assessed: certified {case.facts.release_class}", evidence)
    if status is AssessmentStatus.FAILED:
        leaks = sorted(t for t in case.facts.blocking_failed if t.startswith(LEAK_TESTS))
        evidence["blocking_failed"] = ", ".join(case.facts.blocking_failed) or "-"
        if certified(case.facts):
            # individual-level data fails the statistical tests by nature (T05: a genome identifies its
            # owner); the assessment then certifies it pseudonymised and the consent rules govern it
            reason = "assessed: pseudonymised (re-identifiable by design); the named-consent rule applies"
            return passed(RuleId.RELEASE_ASSESSED, reason, evidence)
        reason = (
            f"the assessment found identifiers or forbidden regions in the files ({', '.join(leaks)}); "
            "fix the release and assess it again"
            if leaks
            else "a blocking re-identification test failed; fix the release and assess it again"
        )
        return failed(RuleId.RELEASE_ASSESSED, reason, evidence)
    return failed(
        RuleId.RELEASE_ASSESSED, "the release was not assessed; run `genegate assess` first", evidence
    )


def _contract(case: Case) -> RuleOutcome:
    if case.facts.release_class is not ReleaseClass.DEIDENTIFIED:
        reason = "not a deidentified release: the named-consent rule applies instead"
        return passed(RuleId.CGIPA_CONTRACT, reason, applies=False)
    r = case.recipient
    if r is None:
        return failed(RuleId.CGIPA_CONTRACT, NO_RECIPIENT)
    if r.contract_ref is None or r.contract_signed is None:
        reason = (
            "a deidentified release needs the recipient's signed no-reidentification contract "
            "(`keys add-recipient --contract --contract-signed`)"
        )
        return failed(RuleId.CGIPA_CONTRACT, reason)
    evidence: dict[str, EvidenceValue] = {"contract_ref": r.contract_ref, "signed": iso(r.contract_signed)}
    if r.contract_signed > case.today:
        return failed(
            RuleId.CGIPA_CONTRACT, f"the contract is dated {r.contract_signed}, after today", evidence
        )
    return passed(RuleId.CGIPA_CONTRACT, f"no-reidentification contract {r.contract_ref} signed", evidence)


# consent --------------------------------------------------------------------------------------


def _named_consent(case: Case) -> RuleOutcome:
    evidence: dict[str, EvidenceValue] = {"subjects": len(case.facts.subjects)}
    if case.facts.release_class is not ReleaseClass.PSEUDONYMISED:
        reason = "not a pseudonymised release: the contract rule applies instead"
        return passed(RuleId.CONSENT_NAMED, reason, evidence, applies=False)
    r = case.recipient
    if r is None:
        return failed(RuleId.CONSENT_NAMED, NO_RECIPIENT, evidence)
    missing = sum(1 for s in case.facts.subjects if not s.consents_to(r.id))
    if missing:
        reason = f'{missing} subject(s) gave no express consent naming {r.id} (or "*")'
        return failed(RuleId.CONSENT_NAMED, reason, evidence | {"subjects_without_consent": missing})
    return passed(RuleId.CONSENT_NAMED, f"every subject consented to transfer to {r.id}", evidence)


def _guardian(case: Case) -> RuleOutcome:
    minors = [s for s in case.facts.subjects if s.minor_at_collection]
    missing = sum(1 for s in minors if s.guardian_consent is not True)
    evidence: dict[str, EvidenceValue] = {"minors": len(minors)}
    if missing:
        reason = f"{missing} subject(s) who were minors at collection have no guardian consent"
        return failed(
            RuleId.CONSENT_GUARDIAN, reason, evidence | {"minors_without_guardian_consent": missing}
        )
    reason = f"{len(minors)} minor(s), each with guardian consent"
    return passed(RuleId.CONSENT_GUARDIAN, reason, evidence, applies=bool(minors))


def _consent_not_revoked(case: Case) -> RuleOutcome:
    revoked = sum(1 for s in case.facts.subjects if s.code in case.revoked)
    if revoked:
        reason = (
            f"{revoked} subject(s) in this release revoked consent; make a new release (it excludes "
            "them) and see `genegate consent impact`"
        )
        return failed(RuleId.CONSENT_NOT_REVOKED, reason, {"subjects_revoked": revoked})
    return passed(RuleId.CONSENT_NOT_REVOKED, "no subject in the release has revoked consent")


# destination ----------------------------------------------------------------------------------


def _doj(case: Case) -> RuleOutcome:
    limit = case.tables.bulk_genomic_us_persons
    evidence: dict[str, EvidenceValue] = {"us_persons": case.us_persons, "threshold": limit}
    if not case.facts.genomic:
        reason = "no individual-level genomic data in the release"
        return passed(RuleId.DOJ_BULK, reason, evidence, applies=False)
    r = case.recipient
    if r is None:
        return failed(RuleId.DOJ_BULK, NO_RECIPIENT, evidence)
    storage = case.tables.storage_country(r.region) if r.region else None
    places = sorted({r.country} | ({storage} if storage else set()))
    concern = [p for p in places if p in case.tables.concern_countries]
    evidence["destination_countries"] = tuple(places)
    if case.us_persons > limit and concern:
        reason = (
            f"genomic data on {case.us_persons} US persons (more than {limit}) may not go to a country of "
            f"concern ({', '.join(concern)}), whatever its de-identification (28 CFR 202.303, 202.206)"
        )
        return failed(RuleId.DOJ_BULK, reason, evidence)
    why = "not bulk" if case.us_persons <= limit else "not a country of concern"
    return passed(RuleId.DOJ_BULK, f"{case.us_persons} US person(s) to {', '.join(places)}: {why}", evidence)


def _storage(case: Case) -> RuleOutcome:
    r = case.recipient
    if r is None:
        return failed(RuleId.STORAGE_REGION, NO_RECIPIENT)
    if r.region is None:
        if r.destination.startswith("file:"):
            reason = "a local outbox on the lab's own storage; no cloud region"
            return passed(RuleId.STORAGE_REGION, reason, applies=False)
        reason = "the destination declares no storage region; register the recipient with --region"
        return failed(RuleId.STORAGE_REGION, reason)
    country = case.tables.storage_country(r.region)
    evidence: dict[str, EvidenceValue] = {
        "region": r.region,
        "region_country": country,
        "declared_country": r.country,
    }
    if country is None:
        reason = f"storage region {r.region} is not in the storage-region table (transfer/law)"
        return failed(RuleId.STORAGE_REGION, reason, evidence)
    if country != r.country:
        reason = (
            f"storage region {r.region} is in {country}, not in the recipient's declared country {r.country}"
        )
        return failed(RuleId.STORAGE_REGION, reason, evidence)
    return passed(RuleId.STORAGE_REGION, f"storage region {r.region} is in {country}", evidence)


def _duo(case: Case) -> RuleOutcome:
    duo = case.tables.duo
    terms = case.facts.data_use
    permissions = [t for t in terms if t in duo.permissions]
    modifiers = [t for t in terms if t in duo.modifiers]
    unknown = [t for t in terms if t not in duo.permissions and t not in duo.modifiers]
    evidence: dict[str, EvidenceValue] = {"data_use": tuple(terms)}
    problems: list[str] = []
    if unknown:
        problems.append(f"data-use term(s) {', '.join(unknown)} are not in the DUO table")
    if len(permissions) != 1:
        problems.append(f"the release needs exactly one DUO permission term (it has {len(permissions)})")
    r = case.recipient
    if r is None:
        return failed(RuleId.DUO_PURPOSE, "; ".join([*problems, NO_RECIPIENT]), evidence)
    evidence["purposes"] = tuple(r.purposes)
    declared = [p for p in r.purposes if p in duo.purposes]
    if not declared:
        problems.append("the recipient declares no research purpose (`keys add-recipient --purpose`)")
    if len(permissions) == 1:
        excluded: set[str] = set().union(*(duo.modifiers[m].excludes for m in modifiers))
        refused = [p for p in declared if p not in duo.permissions[permissions[0]] - excluded]
        if refused:
            label = duo.labels[permissions[0]]
            problems.append(f"{permissions[0]} ({label}) does not admit the purpose(s) {', '.join(refused)}")
    accept = ModifierEffect.ACCEPT
    unaccepted = [m for m in modifiers if duo.modifiers[m].effect is accept and m not in r.purposes]
    if unaccepted:
        problems.append(f"the recipient has not accepted the condition(s) {', '.join(unaccepted)}")
    if problems:
        return failed(RuleId.DUO_PURPOSE, "; ".join(problems), evidence)
    return passed(RuleId.DUO_PURPOSE, f"{', '.join(terms)} admit(s) {', '.join(declared)}", evidence)
