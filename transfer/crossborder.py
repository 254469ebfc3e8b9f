"""The gate's cross-border rules: origin regimes, the evidence of transfer bases, HGR and APPI. Pure.

For each origin regime that applies to a release (a subject resides there, or the lab is
established there), the destination passes when it lies inside the regime, is adequate on the
day (an adequacy entry in force whose condition the recipient's evidence meets), or the
recipient holds a basis of a type the regime accepts whose evidence holds (bases.toml). A
basis's problems are listed in the reason, so an operator sees what to renew. transfer/gate.py
calls these rules; the tables they read are transfer/law/*.toml.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from keys import Basis, BasisType
from transfer.decision import (
    NO_RECIPIENT,
    ORIGIN_RULES,
    Case,
    Evidence,
    EvidenceValue,
    RuleId,
    RuleOutcome,
    failed,
    iso,
    passed,
)
from transfer.facts import SubjectFacts
from transfer.law.tables import Adequacy, BasisRules, Condition, Regime, RegimeRules, Requirement


def origin_known(case: Case) -> RuleOutcome:
    """Every subject's region (the lab's when empty) and the lab's own have a legal table."""
    problems = [f"{region} ({n} subject(s))" for region, n in case.unknown_regions.items()]
    if case.lab_regime is None:
        problems.insert(0, f"the lab's jurisdiction {case.lab_region}")
    if problems:
        return failed(
            RuleId.ORIGIN_KNOWN,
            f"no legal table covers {', '.join(problems)}; add the regime to transfer/law or exclude them",
            {"unknown_regions": tuple(case.unknown_regions)},
        )
    return passed(RuleId.ORIGIN_KNOWN, "every origin region has a legal table")


def origin(case: Case, regime: Regime) -> RuleOutcome:
    """The destination is inside the regime, adequate for it today, or covered by a valid basis."""
    rule = ORIGIN_RULES[regime]
    subjects = case.by_regime.get(regime, ())
    lab = case.lab_regime is regime
    if not subjects and not lab:
        return passed(rule, "no data of this origin in the release", {"subjects": 0}, applies=False)
    spec = case.tables.regimes[regime]
    evidence: dict[str, EvidenceValue] = {"subjects": len(subjects), "lab_origin": lab}
    if not spec.restricts_transfers:
        return passed(rule, f"{spec.name}: {spec.note}", evidence)
    r = case.recipient
    if r is None:
        return failed(rule, NO_RECIPIENT, evidence)
    dest = r.country
    evidence["destination"] = dest
    if dest in spec.territory:
        return passed(rule, f"{dest} is inside {spec.name}: the data does not leave it", evidence)
    return _adequacy_or_basis(case, rule, spec, subjects, evidence)


def _adequacy_or_basis(
    case: Case, rule: RuleId, spec: RegimeRules, subjects: tuple[SubjectFacts, ...], evidence: Evidence
) -> RuleOutcome:
    r = case.recipient
    assert r is not None
    adequacy = spec.adequacy_for(r.country, case.today)
    if adequacy is not None:
        evidence = {**evidence, "adequacy_decision": adequacy.decision}
        if adequacy.condition is None:
            return passed(rule, f"{r.country} is adequate for {spec.name}: {adequacy.decision}", evidence)
    accepted = list(spec.accepts)
    if adequacy is not None and adequacy.condition is Condition.DPF:
        accepted.insert(0, BasisType.DPF)
    notes = [_adequacy_note(r.country, spec, adequacy, case)]
    candidates = [b for t in accepted for b in r.bases if b.type is t]
    for basis in candidates:
        problems = basis_problems(case, basis, subjects)
        if not problems:
            reason = f"{basis.type} {basis.ref} covers this transfer"
            return passed(rule, reason, {**evidence, **basis_evidence(basis)})
        notes.append(f"{basis.type} {basis.ref}: {'; '.join(problems)}")
    if not candidates:
        notes.append(f"the recipient holds no {' / '.join(accepted)} basis (`keys add-basis`)")
    return failed(rule, "; ".join(notes), evidence)


def _adequacy_note(country: str, spec: RegimeRules, adequacy: Adequacy | None, case: Case) -> str:
    if adequacy is None:
        return f"{country} is not adequate for {spec.name} on {case.today}"
    if adequacy.condition is Condition.DPF:
        return f"{country} is adequate for {spec.name} only for DPF-certified recipients"
    return f"{country} is adequate for {spec.name} only for PIPEDA commercial organisations (not recorded)"


def basis_problems(case: Case, basis: Basis, subjects: tuple[SubjectFacts, ...]) -> list[str]:
    """Why a basis does not count today for these subjects (empty: it counts)."""
    rules = case.tables.bases[basis.type]
    problems: list[str] = []
    if basis.signed > case.today:
        problems.append(f"signed {basis.signed}, after today")
    if basis.expires is not None and basis.expires < case.today:
        problems.append(f"expired on {basis.expires}")
    country = case.recipient.country if case.recipient is not None else None
    if rules.countries is not None and country not in rules.countries:
        problems.append(f"covers only destinations in {', '.join(sorted(rules.countries))}")
    for need in rules.needs:
        problems += _requirement(case, basis, need, subjects)
    return problems


@dataclass(frozen=True, slots=True)
class _Claim:
    """A basis put forward for a regime's subjects, with the rules its type must meet."""

    case: Case
    basis: Basis
    rules: BasisRules
    subjects: tuple[SubjectFacts, ...]


def _requirement(
    case: Case, basis: Basis, need: Requirement, subjects: tuple[SubjectFacts, ...]
) -> list[str]:
    return _CHECKS[need](_Claim(case, basis, case.tables.bases[basis.type], subjects))


def _module(c: _Claim) -> list[str]:
    if c.basis.module in c.rules.modules:
        return []
    return [f"module {c.basis.module} is not one of {', '.join(map(str, c.rules.modules))}"]


def _dated(what: str, limit: int | None, case: Case, basis: Basis) -> list[str]:
    if basis.tia_date is None:
        return [f"no {what} recorded (--tia-ref, --tia-date)"]
    age = (case.today - basis.tia_date).days
    if age < 0:
        return [f"{what} dated {basis.tia_date}, after today"]
    if limit is not None and age > limit:
        return [f"{what} of {basis.tia_date} is {age} days old (limit {limit}); review it and record it"]
    return []


def _tia(c: _Claim) -> list[str]:
    return _dated("transfer impact assessment", c.rules.max_tia_age_days, c.case, c.basis)


def _periodic(c: _Claim) -> list[str]:
    return _dated("periodic check", c.rules.max_check_age_days, c.case, c.basis)


def _recent(c: _Claim) -> list[str]:
    limit = c.rules.max_check_age_days
    if limit is not None and (c.case.today - c.basis.signed).days > limit:
        return [f"last checked {c.basis.signed}, more than {limit} day(s) ago; check and record it again"]
    return []


def _consent_ref(c: _Claim) -> list[str]:
    return [] if c.basis.consent_ref else ["no consent records referenced (--consent-ref)"]


def _filing(c: _Claim) -> list[str]:
    return [] if c.basis.filing else ["no filing number (--filing)"]


def _occasional(c: _Claim) -> list[str]:
    case = c.case
    if case.scheduled:
        return ["a scheduled transfer is repetitive; Art 49(1)(a) covers occasional transfers only"]
    if case.prior_deliveries is None:
        return ["the transfer history is unknown, so the transfer cannot be shown to be occasional"]
    if case.prior_deliveries > 0:
        return [
            f"{case.prior_deliveries} earlier delivery(ies) to this recipient: the transfer is repetitive"
        ]
    return []


def _named(c: _Claim) -> list[str]:
    rid = c.case.recipient.id if c.case.recipient is not None else ""
    missing = sum(1 for s in c.subjects if not s.names(rid))
    return [f'{missing} subject(s) did not name {rid} explicitly ("*" is not explicit)'] if missing else []


_Check = Callable[[_Claim], list[str]]
_CHECKS: Mapping[Requirement, _Check] = {
    Requirement.MODULE: _module,
    Requirement.TIA: _tia,
    Requirement.PERIODIC_CHECK: _periodic,
    Requirement.RECENT_CHECK: _recent,
    Requirement.CONSENT_REF: _consent_ref,
    Requirement.FILING: _filing,
    Requirement.NON_REPETITIVE: _occasional,
    Requirement.NAMED_CONSENT: _named,
}


def basis_evidence(basis: Basis) -> dict[str, EvidenceValue]:
    """The references of the basis a rule relied on."""
    return {
        "basis": basis.type.value,
        "basis_ref": basis.ref,
        "basis_signed": basis.signed.isoformat(),
        "basis_expires": iso(basis.expires),
        "basis_module": basis.module,
        "basis_tia_ref": basis.tia_ref,
        "basis_tia_date": iso(basis.tia_date),
        "basis_consent_ref": basis.consent_ref,
        "basis_filing": basis.filing,
    }


def hgr(case: Case) -> RuleOutcome:
    """Chinese-origin genetic data leaving China needs an HGR filing (HGR Regulation Art 28)."""
    subjects = case.by_regime.get(Regime.CN, ())
    evidence: dict[str, EvidenceValue] = {"subjects": len(subjects)}
    if not subjects:
        return passed(RuleId.CN_HGR, "no Chinese-origin genetic data in the release", evidence, applies=False)
    r = case.recipient
    if r is None:
        return failed(RuleId.CN_HGR, NO_RECIPIENT, evidence)
    if r.country in case.tables.territory(Regime.CN):
        return passed(RuleId.CN_HGR, "the data stays in China", evidence)
    limit = case.tables.bases[BasisType.HGR_FILING].security_review_above
    if case.facts.genomic and limit is not None and len(subjects) > limit:
        return failed(
            RuleId.CN_HGR,
            f"genome/exome data on more than {limit} Chinese-origin subjects needs an NHC security "
            "review, which genegate does not record yet; split the release",
            evidence,
        )
    notes: list[str] = []
    for basis in (b for b in r.bases if b.type is BasisType.HGR_FILING):
        problems = basis_problems(case, basis, subjects)
        if not problems:
            return passed(
                RuleId.CN_HGR, f"HGR filing {basis.filing} recorded", evidence | basis_evidence(basis)
            )
        notes.append(f"hgr_filing {basis.ref}: {'; '.join(problems)}")
    if not notes:
        notes.append("genetic data leaving China needs an HGR filing (`keys add-basis --type hgr_filing`)")
    return failed(RuleId.CN_HGR, "; ".join(notes), evidence)


def appi_opt_out(case: Case) -> RuleOutcome:
    """Japanese-origin data received by opt-out goes on only with the subject's consent (APPI 27(2))."""
    received = [s for s in case.by_regime.get(Regime.JP, ()) if s.received_opt_out]
    evidence: dict[str, EvidenceValue] = {"subjects": len(received)}
    if not received:
        reason = "no Japanese-origin data received on an opt-out basis"
        return passed(RuleId.APPI_OPT_OUT, reason, evidence, applies=False)
    r = case.recipient
    if r is None:
        return failed(RuleId.APPI_OPT_OUT, NO_RECIPIENT, evidence)
    missing = sum(1 for s in received if not s.consents_to(r.id))
    if missing:
        return failed(
            RuleId.APPI_OPT_OUT,
            f"{missing} subject(s) whose data the lab received on an opt-out basis have not consented to "
            f"provision to {r.id}; APPI Art 27(2) bars passing it on by opt-out",
            evidence | {"subjects_without_consent": missing},
        )
    return passed(RuleId.APPI_OPT_OUT, f"all {len(received)} opt-out-received subject(s) consented", evidence)
