"""Retention on the lab's disk: exactly what is due goes (dry run: nothing), each removal is logged.

A lab built for each test from one synthetic cohort: two staging batches, a release made from each
(r-old 400 days before the fixed `now`, r-new 10 days before), both assessed, both delivered to a
file:// outbox (100 and 20 days before), and the inventory `genegate deid` records. Under
staging 30, release 365, outbox 90 and assessment 180 days, everything of r-old is due and nothing
of r-new.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from deid import assess, deidentify, load_policy
from deid.retention import RetentionPolicy
from deid.synth import CohortSpec, synthesize_cohort
from keys import Keystore, Passphrase, Vault
from transfer.facts import TRANSFER_LOG
from transfer.holdings import staging_items
from transfer.inventory import INVENTORY_FILE, Inventory, RetentionFailed, record_release
from transfer.log import TransferLog
from transfer.retention import apply_retention, purge_certified

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
SECRET = Passphrase("correct horse battery staple")
POLICY = RetentionPolicy(staging_days=30, release_days=365, outbox_days=90, assessment_days=180)
AGES = {"r-old": 400, "r-new": 10}  # days before NOW each release was made
DELIVERED = {"r-old": 100, "r-new": 20}  # days before NOW each was delivered
OLD_DUE = [("staging", "r-old"), ("release", "r-old"), ("assessment", "r-old"), ("outbox", "r-old")]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-sample synthetic identified cohort (manifest + joint VCF), copied into each lab."""
    out = tmp_path_factory.mktemp("retention") / "cohort"
    synthesize_cohort(CohortSpec(out=out, samples=12, seed=3, reads=False))
    return out


@dataclass(frozen=True)
class Lab:
    root: Path
    store: Keystore

    @property
    def log(self) -> TransferLog:
        return TransferLog(self.store.home / TRANSFER_LOG)

    def staged(self, name: str) -> list[Path]:
        """The inputs of a staging batch that deid reads (manifest, VCF and its index)."""
        batch = self.root / "staging" / name
        return [
            batch / "manifest.csv",
            batch / "genotypes" / "cohort.vcf.gz",
            batch / "genotypes" / "cohort.vcf.gz.tbi",
        ]

    def files(self) -> dict[str, int]:
        """Every file under the lab but the keystore, with its size."""
        return {
            p.relative_to(self.root).as_posix(): p.stat().st_size
            for p in self.root.rglob("*")
            if p.is_file() and "ks" not in p.relative_to(self.root).parts
        }


def _make_release(
    lab: Lab, release_id: str, batch: str, *, summary_only: bool = True, purge: bool = False
) -> Path:
    shutil.copytree(lab.root.parent / "cohort-source", lab.root / "staging" / batch, dirs_exist_ok=True)
    policy = load_policy("cgipa")
    vault = Vault(lab.store.home, policy.vault_domain, lab.store.vault_wrapper(SECRET))
    result = deidentify(
        lab.root / "staging" / batch / "manifest.csv",
        policy,
        lab.root / "releases",
        vault,
        release_id=release_id,
        now=NOW - dt.timedelta(days=AGES.get(release_id, 5)),
        summary_only=summary_only,
        ledger=lab.store.home / "ledger",
    )
    inputs = lab.staged(batch)[:2]  # the index beside the VCF is found by record_release
    record_release(lab.store.home, lab.store.vault_wrapper(SECRET), result.path, inputs, purge=purge)
    return result.path


def _deliver(lab: Lab, release_id: str, when: dt.datetime) -> Path:
    folder = lab.root / "outbox" / "ch-partner" / release_id
    (folder / ".partial" / "t-1").mkdir(parents=True)
    (folder / "samples.parquet.c4gh").write_bytes(b"c" * 300)
    (folder / "delivery-manifest.json").write_bytes(b"{}")
    (folder / ".partial" / "t-1" / "left.c4gh").write_bytes(b"p" * 7)
    event = {
        "event": "transfer.delivered",
        "release_id": release_id,
        "recipient_id": "ch-partner",
        "destination": {"country": "CH", "uri": folder.as_uri()},
        "files": [{"name": "samples.parquet.c4gh", "bytes": 300}],
    }
    TransferLog(lab.store.home / TRANSFER_LOG, clock=lambda: when).append(
        event, lab.store.signing_key(SECRET)
    )
    return folder


@pytest.fixture
def lab(cohort: Path, tmp_path: Path) -> Lab:
    """The two-release lab of the module docstring."""
    shutil.copytree(cohort, tmp_path / "cohort-source")
    built = Lab(tmp_path / "lab", Keystore.init(tmp_path / "lab" / "ks", SECRET))
    for release_id, batch in (("r-old", "old"), ("r-new", "new")):
        release = _make_release(built, release_id, batch)
        assess(release, built.staged(batch)[0], built.root / "results", seed=7)
        made = (NOW - dt.timedelta(days=AGES[release_id] if release_id == "r-new" else 200)).timestamp()
        for run in (built.root / "results" / f"release_id={release_id}").glob("run-*.parquet"):
            os.utime(run, (made, made))
        _deliver(built, release_id, NOW - dt.timedelta(days=DELIVERED[release_id]))
    return built


def _apply(
    lab: Lab, policy: RetentionPolicy = POLICY, *, dry_run: bool, environ: dict[str, str] | None = None
) -> list[tuple[str, str, str, int, int]]:
    report = apply_retention(
        lab.store,
        policy,
        lab.store.vault_wrapper(SECRET),
        now=NOW,
        releases=[lab.root / "releases"],
        results=[lab.root / "results"],
        signer=None if dry_run else lab.store.signing_key(SECRET),
        environ=environ or {},
    )
    return [(str(o.item.holding), o.item.release_id, o.status, o.files, o.bytes) for o in report.outcomes]


def _expected(lab: Lab, status: str) -> list[tuple[str, str, str, int, int]]:
    """The four items of r-old as they are on disk now."""
    sizes = lab.files()
    staging = [sizes[p.relative_to(lab.root).as_posix()] for p in lab.staged("old")]
    release = [n for p, n in sizes.items() if p.startswith("releases/r-old/")]
    results = [n for p, n in sizes.items() if p.startswith("results/release_id=r-old/")]
    outbox = [n for p, n in sizes.items() if p.startswith("outbox/ch-partner/r-old/")]
    return [
        ("staging", "r-old", status, 3, sum(staging)),
        ("release", "r-old", status, len(release), sum(release)),
        ("assessment", "r-old", status, len(results), sum(results)),
        ("outbox", "r-old", status, len(outbox), sum(outbox)),
    ]


def test_dry_run_lists_exactly_what_is_due_and_writes_nothing(lab: Lab) -> None:
    """A dry run lists r-old's staging inputs, release, results and outbox copy; nothing changes."""
    before, log_before = lab.files(), lab.log.path.read_bytes()
    assert _expected(lab, "due") == _apply(lab, dry_run=True)
    assert (before, log_before) == (lab.files(), lab.log.path.read_bytes())


def test_real_run_removes_exactly_what_is_due_and_logs_each_removal(lab: Lab) -> None:
    """r-old's four items go, r-new's stay; one signed entry per removal; a re-run removes nothing."""
    expected = _expected(lab, "removed")
    before = lab.files()
    entries_before = len(lab.log.entries())
    assert expected == _apply(lab, dry_run=False)
    gone = {p for p in before if p not in lab.files()}
    assert {p for p in before if p.startswith(("releases/r-old/", "results/release_id=r-old/", "outbox/ch-partner/r-old/"))} | {
        "staging/old/manifest.csv", "staging/old/genotypes/cohort.vcf.gz", "staging/old/genotypes/cohort.vcf.gz.tbi"
    } == gone  # fmt: skip
    assert not (lab.root / "releases" / "r-old").exists()
    assert not (lab.root / "outbox" / "ch-partner" / "r-old").exists()
    entries = lab.log.entries()[entries_before:]
    assert [
        ("retention.removed", c, r, {"files": f, "bytes": b, "held": 0}) for c, r, _, f, b in expected
    ] == [(e["event"], e["receipt"]["class"], e["release_id"], e["counts"]) for e in entries]
    assert lab.log.verify(lab.store.verify_key()).ok
    assert [] == _apply(lab, dry_run=False)
    assert len(lab.log.entries()) == entries_before + 4


def test_log_entries_name_no_input_path(lab: Lab) -> None:
    """Removal entries carry classes, counts and roots; never a staging path or a file name."""
    _apply(lab, dry_run=False)
    text = lab.log.path.read_text()
    assert "staging/old" not in text
    assert "cohort.vcf.gz" not in text
    assert "manifest.csv" not in text


def test_zero_days_is_due_at_once_and_never_keeps_everything(lab: Lab) -> None:
    """0 days: every item is due at the next run; "never": none is, however old."""
    zero = RetentionPolicy(staging_days=0, release_days=0, outbox_days=0, assessment_days=0)
    assert sorted([*OLD_DUE, *[(c, "r-new") for c, _ in OLD_DUE]]) == sorted(
        (c, r) for c, r, *_ in _apply(lab, zero, dry_run=True)
    )
    never = RetentionPolicy(staging_days=None, release_days=None, outbox_days=None, assessment_days=None)
    assert [] == _apply(lab, never, dry_run=True)


def test_a_restaged_input_is_not_taken_for_the_recorded_one(lab: Lab) -> None:
    """A file rewritten since deid read it (a new batch under the same name) is left in place."""
    manifest = lab.staged("old")[0]
    manifest.write_bytes(manifest.read_bytes() + b"\n")
    _apply(lab, dry_run=False)
    assert [True, False, False] == [p.exists() for p in lab.staged("old")]


def test_an_input_two_releases_read_stays_until_the_newer_is_due(lab: Lab) -> None:
    """Inputs read by r-old and then r-again belong to r-again: not due while it is young."""
    _make_release(lab, "r-again", "old")  # 5 days old, from the old batch
    records = Inventory(lab.store.home, lab.store.vault_wrapper(SECRET)).records()
    assert [("r-new", 3), ("r-again", 3)] == [(i.release_id, len(i.parts)) for i in staging_items(records)]
    _apply(lab, dry_run=False)
    assert all(p.exists() for p in lab.staged("old"))


def test_purge_on_certification_removes_inputs_only_after_a_pass(lab: Lab) -> None:
    """--purge-inputs: an assessment that found a leak keeps the inputs; a passed one removes them and
    logs it; an individual-level release certified pseudonymised (statistical failures only) too."""
    failing = _make_release(lab, "r-fail", "fail", summary_only=False, purge=True)
    signer = lab.store.signing_key(SECRET)
    wrapper = lab.store.vault_wrapper(SECRET)
    assert purge_certified(lab.store, wrapper, failing, signer, now=NOW) is None  # not assessed yet
    assert "failed" == assess(failing, lab.staged("fail")[0], lab.root / "results", seed=7).status
    record = json.loads((failing / "release.json").read_text(encoding="utf-8"))
    certified_as_is = dict(record)
    record["assessment"] = {**record["assessment"], "blocking_failed": ["T01_identifier_leak"]}
    (failing / "release.json").write_text(json.dumps(record), encoding="utf-8")  # as if T01 had failed
    assert purge_certified(lab.store, wrapper, failing, signer, now=NOW) is None
    assert all(p.exists() for p in lab.staged("fail"))
    (failing / "release.json").write_text(json.dumps(certified_as_is), encoding="utf-8")
    outcome = purge_certified(lab.store, wrapper, failing, signer, now=NOW)
    assert (True, False) == (outcome is not None, any(p.exists() for p in lab.staged("fail")))
    passing = _make_release(lab, "r-pass", "pass", purge=True)
    assert "passed" == assess(passing, lab.staged("pass")[0], lab.root / "results", seed=7).status
    sizes = sum(p.stat().st_size for p in lab.staged("pass"))
    outcome = purge_certified(lab.store, wrapper, passing, signer, now=NOW)
    assert outcome is not None
    assert ("removed", 3, sizes) == (outcome.status, outcome.files, outcome.bytes)
    assert not any(p.exists() for p in lab.staged("pass"))
    last = lab.log.entries()[-1]
    assert ("inputs.purged", "r-pass", {"files": 3, "bytes": sizes, "held": 0}) == (
        last["event"],
        last["release_id"],
        last["counts"],
    )
    assert purge_certified(lab.store, wrapper, passing, signer, now=NOW) is None  # nothing left


def test_a_release_recorded_without_purge_keeps_its_inputs(lab: Lab) -> None:
    """A passed assessment purges nothing when deid was not asked to (r-new passed, no --purge-inputs)."""
    release = lab.root / "releases" / "r-new"
    assert "passed" == json.loads((release / "release.json").read_text())["assessment"]["status"]
    signer = lab.store.signing_key(SECRET)
    assert purge_certified(lab.store, lab.store.vault_wrapper(SECRET), release, signer, now=NOW) is None
    assert all(p.exists() for p in lab.staged("new"))


def test_nothing_is_recorded_before_a_complete_release_exists(tmp_path: Path) -> None:
    """record_release refuses a folder without release.json, naming no input, and writes nothing."""
    store = Keystore.init(tmp_path / "ks", SECRET)
    (tmp_path / "partial").mkdir()
    (tmp_path / "Ada Lovelace.vcf.gz").write_bytes(b"x")
    with pytest.raises(RetentionFailed) as caught:
        record_release(
            store.home, store.vault_wrapper(SECRET), tmp_path / "partial", [tmp_path / "Ada Lovelace.vcf.gz"]
        )
    assert "Ada Lovelace" not in str(caught.value)
    assert not (store.home / INVENTORY_FILE).exists()


def test_the_inventory_is_sealed(lab: Lab) -> None:
    """Input paths are stored encrypted: the inventory's bytes hold none of them."""
    raw = (lab.store.home / INVENTORY_FILE).read_bytes()
    assert [] == [p for p in lab.staged("old") if str(p).encode() in raw or p.name.encode() in raw]
    assert 2 == len(Inventory(lab.store.home, lab.store.vault_wrapper(SECRET)).records())


def test_an_unreachable_bucket_fails_its_item_and_the_others_go_on(
    lab: Lab, aws_test_credentials: None
) -> None:
    """A due s3:// delivery whose endpoint refuses connections is reported failed; the local items
    are removed and logged all the same."""
    event = {
        "event": "transfer.delivered",
        "release_id": "r-old",
        "recipient_id": "ch-partner",
        "destination": {"country": "CH", "uri": "s3://lab-outbox/outbox/r-old/"},
    }
    when = NOW - dt.timedelta(days=DELIVERED["r-old"])
    TransferLog(lab.store.home / TRANSFER_LOG, clock=lambda: when).append(
        event, lab.store.signing_key(SECRET)
    )
    closed = {"GENEGATE_S3_ENDPOINT_URL": "http://127.0.0.1:9", "GENEGATE_S3_MAX_ATTEMPTS": "1"}
    expected = _expected(lab, "removed")
    assert [*expected, ("outbox", "r-old", "failed", 0, 0)] == sorted(
        _apply(lab, dry_run=False, environ=closed), key=lambda o: o[2] == "failed"
    )
    assert 4 == len([e for e in lab.log.entries() if e["event"] == "retention.removed"])
