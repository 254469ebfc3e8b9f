"""Breach impact equals a hand count over a generated log of a few hundred transfers.

The hand count below is written independently of transfer/impact.py: plain loops over the
entries and the ledgers, no shared helper. One log is also written for real (signed, chained,
read back through TransferLog.entries) so the property holds on what the log actually stores.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keys import SigningKey
from transfer import TransferLog, load_law_tables
from transfer.facts import Ledger, SubjectFacts
from transfer.impact import ImpactFilter, assess_impact
from transfer.law.tables import load_breach_table

RECIPIENTS = ("ch-zurich", "jp-osaka", "uk-oxford", "us-boston", "de-berlin")
RELEASES = tuple(f"rel-{n}" for n in range(6))
REGIONS = ("EU-DE", "EU-FR", "US-CA", "US-NY", "JP", "GB", "CH", "CN", None)
NAMES = ("release.json.c4gh", "samples.parquet.c4gh", "genotypes/a.vcf.gz.c4gh", "reads/b.fastq.gz.c4gh")
EVENTS = ("transfer.delivered",) * 5 + (
    "delivered",
    "transfer.denied",
    "transfer.failed",
    "transfer.unchanged",
)
START = dt.date(2026, 1, 1)
SHA = "cd" * 32


def key_of(recipient: str, rotated: bool) -> str:
    """Each recipient's key; one of them rotated its key halfway (a second fingerprint)."""
    n = RECIPIENTS.index(recipient) + (10 if rotated else 0)
    return f"SHA256:{n:064x}"


def size_of(release: str, name: str) -> int:
    """A release is immutable: a file of it has one size whichever delivery lists it."""
    return 1000 * RELEASES.index(release) + 7 * NAMES.index(name) + 13


def code_region(n: int) -> tuple[str, str | None]:
    """Subject n's code and residence region (a code keeps its region across releases)."""
    return f"GGP{n:012d}", REGIONS[n % len(REGIONS)]


def random_ledgers(seed: int) -> list[Ledger]:
    """Ledgers for five of the six releases (one stays without a ledger), in two vault domains."""
    rng = random.Random(seed)
    found = []
    for release in RELEASES[:-1]:
        members = sorted(rng.sample(range(60), rng.randint(1, 25)))
        domain = "partner" if release == "rel-4" else "cgipa"
        subjects = tuple(SubjectFacts(c, r, ("*",), False, None, False) for c, r in map(code_region, members))
        found.append(Ledger(release, domain, SHA, True, subjects))
    return found


def random_log(seed: int, size: int) -> list[dict[str, Any]]:
    """`size` log entries: deliveries (both event names) and other events, over sixty days."""
    rng = random.Random(seed)
    out = []
    for _ in range(size):
        recipient, release = rng.choice(RECIPIENTS), rng.choice(RELEASES)
        day = START + dt.timedelta(days=rng.randrange(60))
        names = sorted(rng.sample(NAMES, rng.randint(0, len(NAMES))))
        out.append(
            {
                "event": rng.choice(EVENTS),
                "release_id": release,
                "recipient_id": recipient,
                "release_class": rng.choice(("pseudonymised", "deidentified")),
                "timestamp": f"{day.isoformat()}T12:00:00.000Z",
                "key_fingerprints": {
                    "recipient": key_of(recipient, day.day > 15),
                    "signing": "SHA256:" + "f" * 64,
                },
                "files": [{"name": n, "bytes": size_of(release, n)} for n in names],
            }
        )
    return out


SEEDS = st.integers(0, 2**32 - 1)  # logs are expanded from a drawn seed, as strategies.payloads does


def filters() -> st.SearchStrategy[ImpactFilter]:
    """A breached recipient, key, release or first day, alone or together."""
    return st.builds(
        ImpactFilter,
        recipient=st.one_of(st.none(), st.sampled_from(RECIPIENTS)),
        key=st.one_of(st.none(), st.builds(key_of, st.sampled_from(RECIPIENTS), st.booleans())),
        release=st.one_of(st.none(), st.sampled_from(RELEASES)),
        since=st.one_of(st.none(), st.builds(lambda d: START + dt.timedelta(days=d), st.integers(0, 60))),
    ).filter(lambda f: not f.is_empty())


def hand_count(log: list[dict[str, Any]], books: list[Ledger], f: ImpactFilter) -> tuple[Any, ...]:
    """What a reviewer would count by hand: the same answer, by loops."""
    transfers = 0
    held: dict[tuple[str, str, str], int] = {}
    releases: set[str] = set()
    recipients: set[str] = set()
    for e in log:
        if e["event"] not in ("transfer.delivered", "delivered"):
            continue
        if f.recipient is not None and e["recipient_id"] != f.recipient:
            continue
        if f.key is not None and e["key_fingerprints"]["recipient"] != f.key:
            continue
        if f.release is not None and e["release_id"] != f.release:
            continue
        if f.since is not None and dt.date.fromisoformat(e["timestamp"][:10]) < f.since:
            continue
        transfers += 1
        releases.add(e["release_id"])
        recipients.add(e["recipient_id"])
        for file in e["files"]:
            held[(e["release_id"], e["recipient_id"], file["name"])] = file["bytes"]
    people: set[tuple[str, str]] = set()
    by_region: dict[str | None, int] = {}
    for book in books:
        if book.release_id not in releases:
            continue
        for s in book.subjects:
            if (book.vault_domain, s.code) not in people:
                people.add((book.vault_domain, s.code))
                by_region[s.residence_region] = by_region.get(s.residence_region, 0) + 1
    return (
        transfers,
        len(held),
        sum(held.values()),
        sorted(releases),
        sorted(recipients),
        len(people),
        by_region,
    )


def counted(log: list[dict[str, Any]], books: list[Ledger], f: ImpactFilter) -> tuple[Any, ...]:
    """The same figures from assess_impact."""
    found = assess_impact(log, books, f, load_law_tables(), load_breach_table(), "US-CA")
    regions = {r.region: r.subjects for r in found.regions}
    return (found.transfers, found.files, found.bytes, list(found.releases), list(found.recipients),
            found.subjects, regions)  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(log_seed=SEEDS, book_seed=SEEDS, size=st.integers(200, 400), selected=filters())
def test_impact_equals_a_hand_count(log_seed: int, book_seed: int, size: int, selected: ImpactFilter) -> None:
    """For any breach filter over a generated log of 200-400 entries, the impact's counts are the hand count's."""
    log, books = random_log(log_seed, size), random_ledgers(book_seed)
    assert hand_count(log, books, selected) == counted(log, books, selected)


@functools.cache
def _signed_log() -> tuple[list[dict[str, Any]], list[Ledger]]:
    """Three hundred entries appended to a real signed log (one clock tick a day), read back."""
    plain, books = random_log(7, 300), random_ledgers(7)
    stamps: Iterator[dt.datetime] = (
        dt.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) for e in plain
    )
    log = TransferLog(
        Path(tempfile.mkdtemp(prefix="genegate-impact-")) / "transfer-log.jsonl", clock=lambda: next(stamps)
    )
    key = SigningKey.generate()
    for e in plain:
        files = [{"name": f["name"], "bytes": f["bytes"], "plaintext_sha256": SHA} for f in e["files"]]
        event = (
            "transfer.delivered" if e["event"] == "delivered" else e["event"]
        )  # the log takes dotted names
        body = {k: v for k, v in e.items() if k != "timestamp"} | {"files": files, "event": event}
        log.append(body, key)
    assert log.verify(key.verify_key()).ok
    return log.entries(), books


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(selected=filters())
def test_impact_on_a_real_signed_log_equals_a_hand_count(selected: ImpactFilter) -> None:
    """Read back from the signed log (canonical JSON, the log's timestamps), the counts still agree."""
    log, books = _signed_log()
    assert 300 == len(log)
    assert hand_count(log, books, selected) == counted(log, books, selected)
