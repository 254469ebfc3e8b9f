"""Breach impact over log entries and ledgers: filters, copies held, subjects by region, notification duties."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from transfer import LawTableError, LogVerification, load_law_tables
from transfer.facts import Ledger, SubjectFacts
from transfer.impact import DutyStatus, ImpactFilter, assess_impact, held_copies, render_impact
from transfer.law.tables import load_breach_table, parse_breach_table

SHA = "ab" * 32
KEYS = {"ch-zurich": "SHA256:" + "1" * 64, "jp-osaka": "SHA256:" + "2" * 64}


def delivery(release: str, recipient: str, day: str, files: dict[str, int], **over: Any) -> dict[str, Any]:
    """A transfer.delivered entry as transfer/send.py writes it (with the log's timestamp)."""
    entry = {
        "event": "transfer.delivered",
        "release_id": release,
        "recipient_id": recipient,
        "release_class": "pseudonymised",
        "timestamp": f"{day}T10:00:00.000Z",
        "destination": {"country": recipient[:2].upper(), "uri": f"file:///outbox/{recipient}"},
        "key_fingerprints": {
            "recipient": KEYS.get(recipient, "SHA256:" + "9" * 64),
            "signing": "SHA256:" + "f" * 64,
        },
        "files": [
            {"name": n, "plaintext_sha256": SHA, "ciphertext_sha256": SHA, "bytes": b}
            for n, b in files.items()
        ],
    }
    return entry | over


def ledger(release: str, regions: dict[str, str | None], domain: str = "cgipa") -> Ledger:
    """A ledger holding subjects by code -> residence region."""
    subjects = tuple(
        SubjectFacts(code, region, ("*",), False, None, False) for code, region in regions.items()
    )
    return Ledger(release, domain, SHA, True, subjects)


ENTRIES = [
    delivery("rel-1", "ch-zurich", "2026-01-05", {"a.vcf.gz.c4gh": 100, "release.json.c4gh": 10}),
    delivery("rel-1", "ch-zurich", "2026-01-06", {"a.vcf.gz.c4gh": 100, "release.json.c4gh": 10, "b.c4gh": 5}),
    delivery("rel-2", "ch-zurich", "2026-02-01", {"c.c4gh": 1000}, release_class="deidentified"),
    delivery("rel-2", "jp-osaka", "2026-02-03", {"c.c4gh": 1000}, release_class="deidentified"),
    {"event": "transfer.denied", "release_id": "rel-3", "recipient_id": "ch-zurich", "timestamp": "2026-03-01T00:00:00Z"},
    {"event": "transfer.unchanged", "release_id": "rel-1", "recipient_id": "ch-zurich", "timestamp": "2026-03-02T0:00Z"},
    {"event": "assessment.destroyed", "release_id": "rel-1", "timestamp": "2026-03-03T00:00:00Z"},
]  # fmt: skip
LEDGERS = [
    ledger("rel-1", {"GGP000000000001": "EU-DE", "GGP000000000002": "US-CA", "GGP000000000003": None}),
    ledger("rel-2", {"GGP000000000001": "EU-DE", "GGP000000000004": "JP", "GGP000000000005": "AQ"}),
]


def _impact(selected: ImpactFilter, lab: str = "US-CA", entries: list[dict[str, Any]] = ENTRIES) -> Any:
    return assess_impact(entries, LEDGERS, selected, load_law_tables(), load_breach_table(), lab)


@pytest.mark.parametrize(
    ("selected", "expected"),
    [
        (ImpactFilter(recipient="ch-zurich"), (3, ["rel-1", "rel-2"], ["ch-zurich"])),
        (ImpactFilter(key="sha256:" + "2" * 64), (1, ["rel-2"], ["jp-osaka"])),
        (ImpactFilter(key="2" * 64), (1, ["rel-2"], ["jp-osaka"])),
        (ImpactFilter(release="rel-2"), (2, ["rel-2"], ["ch-zurich", "jp-osaka"])),
        (ImpactFilter(since=dt.date(2026, 2, 1)), (2, ["rel-2"], ["ch-zurich", "jp-osaka"])),
        (
            ImpactFilter(recipient="ch-zurich", since=dt.date(2026, 1, 6)),
            (2, ["rel-1", "rel-2"], ["ch-zurich"]),
        ),
        (ImpactFilter(release="rel-3"), (0, [], [])),
    ],
)
def test_filters_select_deliveries_only(
    selected: ImpactFilter, expected: tuple[int, list[str], list[str]]
) -> None:
    """Each filter (and their conjunction) selects delivery entries; denials and other events never count."""
    found = _impact(selected)
    assert expected == (found.transfers, list(found.releases), list(found.recipients))


def test_a_copy_counts_each_file_once_across_re_deliveries() -> None:
    """Two deliveries of rel-1 to one recipient: 2 transfers, 3 distinct files, their bytes once."""
    copies = held_copies(ENTRIES[:2])
    assert [
        ("rel-1", "ch-zurich", 2, 3, 115, "2026-01-05T10:00:00.000Z", "2026-01-06T10:00:00.000Z", "CH")
    ] == [
        (c.release_id, c.recipient_id, c.transfers, c.files, c.bytes, c.first, c.last, c.country)
        for c in copies
    ]
    found = _impact(ImpactFilter(recipient="ch-zurich"))
    assert (3, 4, 1115) == (found.transfers, found.files, found.bytes)


def test_subjects_by_region_count_distinct_codes_with_the_lab_region_for_none() -> None:
    """A code in two releases of one domain counts once; no region takes the lab's regime; AQ has no table."""
    found = _impact(ImpactFilter(recipient="ch-zurich"), lab="EU-FR")
    assert 5 == found.subjects
    assert [
        ("AQ", None, 1),
        ("EU-DE", "eu_eea", 1),
        ("JP", "jp", 1),
        ("US-CA", "us_ca", 1),
        (None, "eu_eea", 1),
    ] == [(r.region, r.regime.value if r.regime else None, r.subjects) for r in found.regions]


def test_a_release_without_a_ledger_is_named_not_guessed() -> None:
    """A delivered release with no ledger is listed as missing; its subjects are not invented."""
    entries = [delivery("rel-9", "ch-zurich", "2026-01-01", {"x": 1})]
    found = _impact(ImpactFilter(recipient="ch-zurich"), entries=entries)
    assert (("rel-9",), 0, ()) == (found.missing_ledgers, found.subjects, found.regions)


def test_duties_follow_residence_establishment_and_release_class() -> None:
    """EU residents bring GDPR 33/34; a CA lab brings HIPAA by establishment; a deidentified-only release
    leaves the duties that cover only pseudonymised data to assessment."""
    pseud = {f.duty.id: f.status for f in _impact(ImpactFilter(release="rel-1"), lab="US-CA").duties}
    assert {"gdpr-33": DutyStatus.APPLIES, "gdpr-34": DutyStatus.APPLIES, "ca-1798-82": DutyStatus.ASSESS,
            "cgipa": DutyStatus.ASSESS, "hipaa-404": DutyStatus.APPLIES, "hipaa-406-408": DutyStatus.APPLIES} == pseud  # fmt: skip
    deid = {f.duty.id: f.status for f in _impact(ImpactFilter(recipient="jp-osaka"), lab="CH").duties}
    assert {"gdpr-33": DutyStatus.APPLIES, "gdpr-34": DutyStatus.ASSESS, "fadp-24-1": DutyStatus.APPLIES,
            "fadp-24-4": DutyStatus.ASSESS, "appi-26-1": DutyStatus.APPLIES, "appi-26-2": DutyStatus.APPLIES} == deid  # fmt: skip


def test_the_californian_attorney_general_above_500_residents() -> None:
    """501 impacted US-CA residents add the Attorney General's copy to 1798.82; 500 do not."""
    for n, flagged in ((500, False), (501, True)):
        many = ledger("rel-ca", {f"GGP{i:012d}": "US-CA" for i in range(n)})
        entries = [delivery("rel-ca", "ch-zurich", "2026-01-01", {"x": 1})]
        tables, breach = load_law_tables(), load_breach_table()
        found = assess_impact(entries, [many], ImpactFilter(release="rel-ca"), tables, breach, "CH")
        ca = next(f for f in found.duties if f.duty.id == "ca-1798-82")
        notify = next(d["notify"] for d in found.to_json()["duties"] if d["id"] == "ca-1798-82")
        assert (flagged, flagged, (f"{n} impacted subject(s) reside under us_ca",)) == (
            ca.above,
            "Attorney General" in notify,
            ca.reasons,
        )


def test_nothing_delivered_brings_no_duty() -> None:
    """No matching delivery: zero everywhere and no duty listed."""
    found = _impact(ImpactFilter(recipient="nobody"))
    assert (0, 0, 0, (), ()) == (found.transfers, found.files, found.subjects, found.copies, found.duties)


def test_json_holds_counts_and_never_a_code() -> None:
    """The JSON form names releases, recipients and counts; no subject code appears in it."""
    doc = _impact(ImpactFilter(recipient="ch-zurich")).to_json()
    assert (3, 1115, ["rel-1", "rel-2"]) == (doc["transfers"], doc["bytes"], doc["releases"])
    assert [] == re.findall(r"GGP[0-9A-Z]{12}", repr(doc))


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:  # noqa: ARG002
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_report_is_self_contained_escaped_and_says_when_unverified() -> None:
    """One page, no script or remote resource, a hostile release id escaped, the failed verification shown."""
    entries = [delivery("<script>x</script>", "ch-zurich", "2026-01-01", {"x": 5})]
    found = assess_impact(
        entries, LEDGERS, ImpactFilter(recipient="ch-zurich"), load_law_tables(), load_breach_table(), "CH"
    )
    page = render_impact(found, LogVerification(False, 3, 4, "line 4: its signature does not verify"), "/log")
    parser = _Collect()
    parser.feed(page)
    assert (
        "script" not in parser.tags,
        "http" not in page,
        "<script>x</script>" in "".join(parser.text),
    ) == (True, True, True)
    assert "VERIFICATION FAILED at entry 4" in page
    assert "No ledger for &lt;script&gt;x&lt;/script&gt;" in page


BREACH_HEAD = '[table]\nname = "t"\nversion = "1"\nsource = "s"\neffective_from = 2026-01-01\n'


def _duty(regime: str, **over: Any) -> str:
    fields = {"id": f'"{regime}-1"', "regimes": f'["{regime}"]', "applies_by": '["residence"]', "law": '"L"',
              "notify": '"N"', "deadline": '"D"', "condition": '"C"', "covers": '["pseudonymised"]', "evidence": '"U"'}  # fmt: skip
    fields |= over
    return "[[duties]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items())


@pytest.mark.parametrize(
    ("duties", "message"),
    [
        ([_duty(r) for r in ("eu_eea", "uk", "ch", "jp", "cn", "us_ca")], r"no duty for regime\(s\) us"),
        (
            [_duty(r) for r in ("eu_eea", "uk", "ch", "jp", "cn", "us_ca", "us")] + [_duty("us")],
            "appears twice",
        ),
        ([_duty(r, covers='["anonymous"]') for r in ("eu_eea",)], "covers must name release classes"),
        ([_duty("eu_eea", above="5")], "needs both above and above_notify"),
        ([_duty("eu_eea", evidence='"maybe"')], "lacks a field or has a wrong type"),
    ],
)
def test_a_breach_table_that_is_incomplete_is_refused(duties: list[str], message: str) -> None:
    """Every regime needs a duty; ids are unique; covers name release classes; above comes with whom."""
    with pytest.raises(LawTableError, match=message):
        parse_breach_table(BREACH_HEAD + "\n".join(duties))


def test_the_shipped_breach_table_names_its_version_and_evidence() -> None:
    """breach.toml loads with name, version, source and date; each duty is marked V, S or U."""
    table = load_breach_table()
    assert ("Breach notification duties", dt.date(2026, 4, 1)) == (table.info.name, table.info.effective_from)
    assert {"V", "S", "U"} == {d.evidence.value for d in table.duties}
    assert 72 == next(d for d in table.duties if d.id == "gdpr-33").deadline_hours
