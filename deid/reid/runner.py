"""Run the re-identification tests on a release: `genegate assess` as a library (SPEC.md 4).

assess loads release.json, the policy (the release's own by name, or the caller's) and the
identified manifest (canonical column names, all rows), makes a private 0700 temporary directory,
runs every test module (TEST_MODULES), appends one Parquet row per test x metric to the results
dataset, and records the outcome and the certified class in release.json (written to a temporary
name and renamed; `files` and `release_sha256` stay as they are: release.json is not in the list).

- A test that raises is reported as one row with status error, severity block: the assessment
  fails closed. Its message names the exception type only (a deid error's own message, which
  never holds a value, is kept); never a traceback, never data.
- The private directory holds what tests must compute about individuals (T05/T13 matches). It is
  destroyed when the assessment ends, also on error or interrupt; the receipt says what was
  destroyed, when, and how many files and records - no identities.
- Class: "deidentified" only when every blocking metric passed (skipped metrics do not block) and
  the policy's profile is cgipa or safe-harbor; else "pseudonymised".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib
import json
import math
import os
import platform
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from deid.errors import DeidError, MalformedInput
from deid.manifest import read_manifest
from deid.policy import Policy, Profile, load_policy
from deid.reid.model import AssessInputs, Metric, Severity, Status
from deid.reid.results import RunFacts, TestRun, results_table, write_results

TEST_MODULES = (
    "deid.reid.t01_leaks",
    "deid.reid.t02_reads",
    "deid.reid.t03_regions",
    "deid.reid.t05_linkage",
    "deid.reid.t07_membership",
    "deid.reid.t10_rare",
    "deid.reid.t11_k_anonymity",
    "deid.reid.t12_uniqueness",
    "deid.reid.t13_linkage",
    "deid.reid.t14_diversity",
)
CERTIFYING_PROFILES = (Profile.CGIPA, Profile.SAFE_HARBOR)


@dataclass(frozen=True, slots=True)
class DestructionReceipt:
    """What the private directory held when it was destroyed: counts only, no identities."""

    what: str
    destroyed_at: dt.datetime
    files: int
    bytes: int
    records: int  # rows of the Parquet match tables the tests wrote there

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for the transfer log)."""
        return {
            "what": self.what,
            "destroyed_at": self.destroyed_at.isoformat(timespec="seconds"),
            "files": self.files,
            "bytes": self.bytes,
            "records": self.records,
        }


@dataclass(frozen=True, slots=True)
class AssessmentResult:
    """The outcome of one assessment."""

    run_id: str
    release_id: str
    status: str  # "passed" | "failed"
    release_class: str  # "deidentified" | "pseudonymised"
    blocking_failed: tuple[str, ...]  # test ids
    metrics: tuple[Metric, ...]
    results_file: Path
    reference_digest: str
    receipt: DestructionReceipt

    def as_dict(self) -> dict[str, Any]:
        """The outcome as JSON-ready values (aggregates only)."""
        return {
            "run_id": self.run_id,
            "release_id": self.release_id,
            "status": self.status,
            "class": self.release_class,
            "blocking_failed": list(self.blocking_failed),
            "results": str(self.results_file),
            "reference_digest": self.reference_digest,
            "destruction_receipt": self.receipt.as_dict(),
            "metrics": [_metric_dict(m) for m in self.metrics],
        }


def assess(
    release: Path,
    identified_manifest: Path,
    results: Path,
    policy: Policy | None = None,
    *,
    seed: int = 0,
    now: dt.datetime | None = None,
    tests: Sequence[ModuleType] | None = None,
) -> AssessmentResult:
    """Assess release against identified_manifest; results appended under results/ (see the module doc).

    tests overrides TEST_MODULES (modules exposing TEST_ID, TEST_VERSION and run). now fixes every
    timestamp (for reproducible tests); otherwise the clock is read per test.
    """
    record = _load_record(release)
    chosen = policy or _release_policy(record, release)
    identified = _load_identified(identified_manifest, chosen)
    reference_digest = _file_digest(identified_manifest)
    clock: Callable[[], dt.datetime] = (lambda: now) if now is not None else (lambda: dt.datetime.now(dt.UTC))
    modules = list(tests) if tests is not None else [_module(name) for name in TEST_MODULES]
    run_id = str(uuid.uuid4())
    private = Path(tempfile.mkdtemp(prefix="genegate-assess-"))  # 0700 by construction
    try:
        inputs = AssessInputs(release, record, identified, identified_manifest.parent, chosen, private, seed)
        runs = [
            _run_one(module, name, inputs, clock)
            for module, name in zip(modules, _names(modules), strict=True)
        ]
    finally:
        receipt = _destroy(private, clock())
    metrics = tuple(m for r in runs for m in r.metrics)
    blocking = tuple(dict.fromkeys(m.test_id for m in metrics if _blocks(m)))
    status = "failed" if blocking else "passed"
    certified = "deidentified" if not blocking and chosen.profile in CERTIFYING_PROFILES else "pseudonymised"
    facts = RunFacts(
        run_id,
        str(record["release_id"]),
        str(record.get("release_sha256", "")),
        reference_digest,
        _tool_versions(),
    )
    results_file = write_results(results_table(facts, runs), results, facts.release_id, run_id)
    assessed_at = clock()
    _update_record(
        release,
        record,
        {
            "status": status,
            "run_id": run_id,
            "assessed_at": assessed_at.isoformat(timespec="seconds"),
            "results": str(results_file),
            "blocking_failed": list(blocking),
            "reference_digest": reference_digest,
            "policy": {"name": chosen.name, "profile": str(chosen.profile), "digest": chosen.digest},
        },
        certified,
    )
    return AssessmentResult(
        run_id,
        facts.release_id,
        status,
        certified,
        blocking,
        metrics,
        results_file,
        reference_digest,
        receipt,
    )


def _blocks(metric: Metric) -> bool:
    if metric.severity is not Severity.BLOCK:
        return False
    return metric.status is Status.ERROR or (metric.status is Status.OK and metric.passed is False)


def _module(name: str) -> ModuleType | str:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return name  # reported as an error row: a missing test never passes silently


def _names(modules: Sequence[ModuleType | str]) -> list[str]:
    return [m if isinstance(m, str) else str(getattr(m, "TEST_ID", m.__name__)) for m in modules]


def _run_one(
    module: ModuleType | str, name: str, inputs: AssessInputs, clock: Callable[[], dt.datetime]
) -> TestRun:
    started = clock()
    if isinstance(module, str):
        return TestRun(
            [_error(name.rsplit(".", 1)[-1], "?", "test module is not installed")], started, clock()
        )
    test_version = str(getattr(module, "TEST_VERSION", "?"))
    try:
        metrics = list(module.run(inputs))
    except Exception as exc:
        detail = str(exc) if isinstance(exc, DeidError) else f"the test raised {type(exc).__name__}"
        metrics = [_error(name, test_version, " ".join(detail.split()))]
    return TestRun(metrics, started, clock())


def _error(test_id: str, test_version: str, message: str) -> Metric:
    return Metric(
        test_id,
        test_version,
        "error",
        float("nan"),
        None,
        None,
        None,
        Status.ERROR,
        Severity.BLOCK,
        0,
        0,
        {},
        None,
        message,
    )


def _destroy(private: Path, when: dt.datetime) -> DestructionReceipt:
    files = [p for p in private.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    records = 0
    for path in files:
        if path.suffix == ".parquet":
            with contextlib.suppress(OSError, ValueError):  # a file a test left half-written counts no rows
                records += pq.read_metadata(path).num_rows
    shutil.rmtree(private, ignore_errors=True)
    if private.exists():
        raise DeidError("the assessment's private directory could not be destroyed; remove it before sharing")
    what = "private assessment directory (re-identification matches and intermediate reads)"
    return DestructionReceipt(what, when, len(files), size, records)


def _load_record(release: Path) -> dict[str, Any]:
    path = release / "release.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise MalformedInput(str(release), "is not a release (no release.json); give releases/<id>") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedInput(str(path), "cannot be read as JSON; re-run genegate deid") from exc
    if not isinstance(record, dict) or "release_id" not in record:
        raise MalformedInput(str(path), "has no release_id; re-run genegate deid")
    return record


def _release_policy(record: dict[str, Any], release: Path) -> Policy:
    name = (record.get("policy") or {}).get("name")
    if not isinstance(name, str):
        raise MalformedInput(str(release / "release.json"), "names no policy; pass --policy")
    try:
        return load_policy(name)
    except MalformedInput as exc:
        raise MalformedInput(
            str(release / "release.json"), f"policy {name} is not a built-in profile; pass it with --policy"
        ) from exc


def _load_identified(path: Path, policy: Policy) -> pl.DataFrame:
    raw = read_manifest(path)
    return raw.rename(policy.canonical_names([c for c in raw.columns if c != "_row"], str(path)))


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def _tool_versions() -> dict[str, str]:
    tools = {"python": platform.python_version()}
    for name in ("genegate", "polars", "pyarrow", "pysam", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            tools[name] = version(name)
    return tools


def _update_record(release: Path, record: dict[str, Any], assessment: dict[str, Any], certified: str) -> None:
    updated = {**record, "class": certified, "assessment": assessment}
    target = release / "release.json"
    partial = release / f".release.json.{uuid.uuid4().hex[:8]}.partial"
    try:
        partial.write_text(json.dumps(updated, indent=2) + "\n", encoding="utf-8")
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DeidError(
            f"cannot update {target} ({exc.strerror or type(exc).__name__}); check permissions"
        ) from exc


def _metric_dict(m: Metric) -> dict[str, Any]:
    value: float | str | None = m.value
    if isinstance(value, float) and not math.isfinite(value):
        value = None if math.isnan(value) else str(value)
    return {
        "test_id": m.test_id,
        "metric": m.metric,
        "value": value,
        "threshold": m.threshold,
        "comparator": None if m.comparator is None else str(m.comparator),
        "passed": m.passed,
        "status": str(m.status),
        "severity": str(m.severity),
        "message": m.message,
    }
