"""Breach impact: what a compromised recipient, key, release or period exposed, and who must be told.

Pure: transfer-log entries (TransferLog.entries) and the lab's ledgers in, a BreachImpact value
out. An ImpactFilter selects the delivery entries (`transfer.delivered`, or the older `delivered`)
by recipient, recipient key fingerprint, release and first day; every filter given must hold.
From them: the transfers (delivery entries), the copies held (one per release and recipient: the
files its deliveries listed, each counted once, and their bytes), the releases and recipients,
the subjects those releases hold by residence region (distinct vault codes, read from the
ledgers; a subject in two vault domains has two codes and counts twice, which only errs high),
and the notification duties that follow (transfer/law/breach.toml): those of each regime where an
impacted subject resides, and of the lab's own regime, as each duty's `applies_by` allows. A duty
"applies" when an impacted release's class is one it covers outright, else the reviewer must
"assess" it (a HIPAA duty for a release certified de-identified, for instance).

Counts only: never a subject id or code. A region with fewer than five subjects is still shown,
because the lab must know it; the output is lab-side. `render_impact` draws the HTML report in
the page style of `genegate audit report` (transfer/log_report.py).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transfer.facts import DELIVERED_EVENTS, Ledger
from transfer.law.tables import BreachDuty, BreachTable, LawTables, Regime, Trigger
from transfer.log import LogVerification
from transfer.log_report import (
    bars_svg,
    entry_country,
    escape_html,
    html_page,
    html_table,
    human_size,
    verification_banner,
)

UNKNOWN_CLASS = "pseudonymised"  # a delivery that names no class is read as the stricter one


class DutyStatus(enum.StrEnum):
    """Whether a duty applies outright or needs the reviewer's assessment."""

    APPLIES = "applies"
    ASSESS = "assess"


@dataclass(frozen=True, slots=True)
class ImpactFilter:
    """What was breached: a recipient, a recipient key, a release, deliveries since a day (all given)."""

    recipient: str | None = None
    key: str | None = None
    release: str | None = None
    since: dt.date | None = None

    def is_empty(self) -> bool:
        """No filter given (the whole log would match)."""
        return self.recipient is None and self.key is None and self.release is None and self.since is None

    def matches(self, entry: Mapping[str, Any]) -> bool:
        """entry is a delivery that every given filter selects."""
        if entry.get("event") not in DELIVERED_EVENTS:
            return False
        if self.recipient is not None and entry.get("recipient_id") != self.recipient:
            return False
        if self.release is not None and entry.get("release_id") != self.release:
            return False
        if self.since is not None and str(entry.get("timestamp", ""))[:10] < self.since.isoformat():
            return False
        return self.key is None or _fingerprint(self.key) in recipient_keys(entry)

    def to_json(self) -> dict[str, str | None]:
        """The filter as given."""
        since = self.since.isoformat() if self.since else None
        return {"recipient": self.recipient, "key": self.key, "release": self.release, "since": since}


@dataclass(frozen=True, slots=True)
class HeldCopy:
    """One release as one recipient holds it, from the deliveries the filter selected."""

    release_id: str
    recipient_id: str
    release_class: str
    country: str | None
    transfers: int
    files: int
    bytes: int
    first: str | None
    last: str | None


@dataclass(frozen=True, slots=True)
class RegionCount:
    """Impacted subjects of one residence region (None: the ledger records none; the lab's applies)."""

    region: str | None
    regime: Regime | None  # None: no legal table covers the region
    subjects: int


@dataclass(frozen=True, slots=True)
class DutyFinding:
    """A notification duty that the impact brings, with why."""

    duty: BreachDuty
    status: DutyStatus
    reasons: tuple[str, ...]
    above: bool  # more impacted subjects of the duty's regimes than duty.above


@dataclass(frozen=True, slots=True)
class BreachImpact:
    """Counts of what the filtered deliveries exposed, and the duties they bring."""

    filter: ImpactFilter
    transfers: int
    files: int
    bytes: int
    copies: tuple[HeldCopy, ...]
    subjects: int
    regions: tuple[RegionCount, ...]
    missing_ledgers: tuple[str, ...]
    duties: tuple[DutyFinding, ...]
    lab_jurisdiction: str
    table_version: str

    @property
    def releases(self) -> tuple[str, ...]:
        """The impacted release ids."""
        return tuple(sorted({c.release_id for c in self.copies}))

    @property
    def recipients(self) -> tuple[str, ...]:
        """The recipients that hold an impacted copy."""
        return tuple(sorted({c.recipient_id for c in self.copies}))

    def to_json(self) -> dict[str, Any]:
        """The JSON form `genegate audit impact --json` prints (counts only)."""
        return {
            "filter": self.filter.to_json(),
            "transfers": self.transfers,
            "files": self.files,
            "bytes": self.bytes,
            "releases": list(self.releases),
            "recipients": list(self.recipients),
            "copies": [
                {
                    "release_id": c.release_id,
                    "recipient_id": c.recipient_id,
                    "class": c.release_class,
                    "country": c.country,
                    "transfers": c.transfers,
                    "files": c.files,
                    "bytes": c.bytes,
                    "first_delivered": c.first,
                    "last_delivered": c.last,
                }
                for c in self.copies
            ],
            "subjects": self.subjects,
            "subjects_by_region": [
                {"region": r.region, "regime": r.regime.value if r.regime else None, "subjects": r.subjects}
                for r in self.regions
            ],
            "missing_ledgers": list(self.missing_ledgers),
            "lab_jurisdiction": self.lab_jurisdiction,
            "duties": [_duty_json(f) for f in self.duties],
            "breach_table": self.table_version,
        }


def recipient_keys(entry: Mapping[str, Any]) -> frozenset[str]:
    """The recipient key fingerprints an entry records (normalised: lowercase hex, no prefix)."""
    found = entry.get("key_fingerprints")
    if isinstance(found, dict):
        value = found.get("recipient")
        return frozenset({_fingerprint(value)} if isinstance(value, str) else ())
    if isinstance(found, list):
        return frozenset(_fingerprint(v) for v in found if isinstance(v, str))
    return frozenset()


def held_copies(deliveries: Iterable[Mapping[str, Any]]) -> tuple[HeldCopy, ...]:
    """One HeldCopy per (release, recipient) of the deliveries, by release then recipient."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for entry in deliveries:
        key = (str(entry.get("release_id")), str(entry.get("recipient_id")))
        groups.setdefault(key, []).append(entry)
    copies = []
    for (release, recipient), entries in sorted(groups.items()):
        files: dict[str, int] = {}
        for entry in entries:
            files |= _file_sizes(entry)
        stamps = sorted(str(e["timestamp"]) for e in entries if e.get("timestamp"))
        classes = {str(e["release_class"]) for e in entries if e.get("release_class")}
        copies.append(
            HeldCopy(
                release_id=release,
                recipient_id=recipient,
                release_class=min(classes) if len(classes) == 1 else UNKNOWN_CLASS,
                country=next((c for e in reversed(entries) if (c := entry_country(e))), None),
                transfers=len(entries),
                files=len(files),
                bytes=sum(files.values()),
                first=stamps[0] if stamps else None,
                last=stamps[-1] if stamps else None,
            )
        )
    return tuple(copies)


def assess_impact(
    entries: Iterable[Mapping[str, Any]],
    ledgers: Iterable[Ledger],
    selected: ImpactFilter,
    tables: LawTables,
    breach: BreachTable,
    lab_jurisdiction: str,
) -> BreachImpact:
    """The impact of the deliveries selected from entries (see the module doc)."""
    deliveries = [e for e in entries if selected.matches(e)]
    copies = held_copies(deliveries)
    by_release = {led.release_id: led for led in ledgers}
    impacted = sorted({c.release_id for c in copies})
    lab = lab_jurisdiction.strip().upper()
    region_of: dict[tuple[str, str], str | None] = {}
    for release in impacted:
        if release in by_release:
            led = by_release[release]
            for s in led.subjects:
                region_of.setdefault((led.vault_domain, s.code), s.residence_region)
    counts: dict[str | None, int] = {}
    for region in region_of.values():
        counts[region] = counts.get(region, 0) + 1
    regions = tuple(
        RegionCount(region, tables.regime_of(region or lab), n)
        for region, n in sorted(counts.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    )
    classes = {c.release_class for c in copies}
    return BreachImpact(
        filter=selected,
        transfers=len(deliveries),
        files=sum(c.files for c in copies),
        bytes=sum(c.bytes for c in copies),
        copies=copies,
        subjects=len(region_of),
        regions=regions,
        missing_ledgers=tuple(r for r in impacted if r not in by_release),
        duties=notification_duties(regions, tables.regime_of(lab), lab, classes, breach) if copies else (),
        lab_jurisdiction=lab,
        table_version=breach.info.version,
    )


def notification_duties(
    regions: Sequence[RegionCount],
    lab_regime: Regime | None,
    lab_region: str,
    classes: Iterable[str],
    breach: BreachTable,
) -> tuple[DutyFinding, ...]:
    """The duties of the regimes the impacted subjects reside in and of the lab's, in table order."""
    residents: dict[Regime, int] = {}
    for r in regions:
        if r.regime is not None:
            residents[r.regime] = residents.get(r.regime, 0) + r.subjects
    held = set(classes)
    found = []
    for duty in breach.duties:
        reasons = [
            f"{residents[g]} impacted subject(s) reside under {g.value}"
            for g in duty.regimes
            if Trigger.RESIDENCE in duty.applies_by and residents.get(g)
        ]
        if Trigger.ESTABLISHMENT in duty.applies_by and lab_regime in duty.regimes:
            reasons.append(f"the lab is established in {lab_region} ({lab_regime})")
        if not reasons:
            continue
        status = DutyStatus.APPLIES if held & duty.covers else DutyStatus.ASSESS
        count = sum(residents.get(g, 0) for g in duty.regimes)
        found.append(DutyFinding(duty, status, tuple(reasons), duty.above is not None and count > duty.above))
    return tuple(found)


def render_impact(impact: BreachImpact, verification: LogVerification, source: str) -> str:
    """The self-contained HTML report of a breach impact (the page style of `audit report`)."""
    given = ", ".join(f"{k} {v}" for k, v in impact.filter.to_json().items() if v is not None)
    summary = (
        f"{impact.transfers} transfer(s), {impact.files} file(s), {human_size(impact.bytes)}; "
        f"{len(impact.releases)} release(s) at {len(impact.recipients)} recipient(s); "
        f"{impact.subjects} subject(s)"
    )
    regions = [(_region_label(r, impact.lab_jurisdiction), r.subjects) for r in impact.regions]
    body = [
        f"<p>Log: <code>{escape_html(source)}</code>. Breach: {escape_html(given)}. Lab jurisdiction: "
        f"{escape_html(impact.lab_jurisdiction)}. Breach table {escape_html(impact.table_version)}.</p>",
        verification_banner(verification),
        f'<p id="summary">{escape_html(summary)}</p>',
        *_missing_html(impact),
        '<section id="copies"><h2>Copies held</h2>',
        html_table(
            ("release", "class", "recipient", "country", "transfers", "files", "bytes", "first", "last"),
            [
                (
                    c.release_id,
                    c.release_class,
                    c.recipient_id,
                    c.country,
                    c.transfers,
                    c.files,
                    human_size(c.bytes),
                    c.first,
                    c.last,
                )
                for c in impact.copies
            ],
        ),
        '</section><section id="regions"><h2>Subjects by residence region (counts)</h2>',
        bars_svg(regions, "subjects", str),
        '</section><section id="duties"><h2>Notification duties</h2>',
        html_table(
            ("duty", "law", "status", "notify", "deadline", "condition", "why", "evidence"),
            [
                (
                    f.duty.id,
                    f.duty.law,
                    f.status.value,
                    _notify(f),
                    f.duty.deadline,
                    f.duty.condition,
                    "; ".join(f.reasons),
                    f.duty.evidence.value,
                )
                for f in impact.duties
            ],
        ),
        "<p>Evidence: V read in the law's text, S secondary sources, U not verified offline "
        "(transfer/law/breach.toml). Not legal advice.</p></section>",
    ]
    return html_page("Breach impact report", body)


def _missing_html(impact: BreachImpact) -> list[str]:
    if not impact.missing_ledgers:
        return []
    text = f"No ledger for {', '.join(impact.missing_ledgers)}: their subjects are not counted."
    return [f'<p class="bad" id="missing-ledgers">{escape_html(text)}</p>']


def _notify(finding: DutyFinding) -> str:
    extra = f"; also {finding.duty.above_notify}" if finding.above and finding.duty.above_notify else ""
    return finding.duty.notify + extra


def _region_label(r: RegionCount, lab: str) -> str:
    name = r.region if r.region is not None else f"(not recorded: {lab})"
    return f"{name} [{r.regime.value if r.regime else 'no table'}]"


def _duty_json(f: DutyFinding) -> dict[str, Any]:
    d = f.duty
    return {
        "id": d.id,
        "law": d.law,
        "regimes": [g.value for g in d.regimes],
        "status": f.status.value,
        "notify": _notify(f),
        "deadline": d.deadline,
        "deadline_hours": d.deadline_hours,
        "condition": d.condition,
        "why": list(f.reasons),
        "evidence": d.evidence.value,
    }


def _file_sizes(entry: Mapping[str, Any]) -> dict[str, int]:
    files = entry.get("files")
    if not isinstance(files, list):
        return {}
    return {
        str(f["name"]): f["bytes"] if isinstance(f.get("bytes"), int) else 0
        for f in files
        if isinstance(f, dict) and isinstance(f.get("name"), str)
    }


def _fingerprint(value: str) -> str:
    text = value.strip().lower()
    return text.removeprefix("sha256:")
