"""The results dataset of `genegate assess`: one Parquet row per test x metric (SPEC.md 4, reid.md 6).

Layout: `<results>/release_id=<id>/run-<run_id>.parquet`, hive-partitioned by release_id, one new
file per run (append-only: a run never rewrites another's file). Each file is written under a
hidden name (".run-....parquet.partial", which dataset readers skip) and renamed when complete.
Read it with `pl.read_parquet(f"{results}/**/*.parquet", hive_partitioning=True)`,
`pyarrow.dataset.dataset(results, partitioning="hive")` or DuckDB's `read_parquet(...,
hive_partitioning=true)`. release_id lives in the directory name, as hive partitioning does.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from deid.errors import DeidError
from deid.reid.model import Metric

_TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("release_sha256", pa.string()),
        ("reference_digest", pa.string()),
        ("test_id", pa.string()),
        ("test_version", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("threshold", pa.float64()),
        ("comparator", pa.string()),
        ("passed", pa.bool_()),
        ("status", pa.string()),
        ("severity", pa.string()),
        ("n_records", pa.int64()),
        ("n_subjects", pa.int64()),
        ("parameters", pa.string()),
        ("seed", pa.int64()),
        ("started_at", _TS),
        ("finished_at", _TS),
        ("message", pa.string()),
        ("tool_versions", pa.string()),
    ]
)
PARTITION = "release_id"


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What every row of one run shares."""

    run_id: str
    release_id: str
    release_sha256: str
    reference_digest: str
    tool_versions: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class TestRun:
    """The metrics of one test and when it ran."""

    metrics: Sequence[Metric]
    started_at: dt.datetime
    finished_at: dt.datetime


def results_table(facts: RunFacts, runs: Sequence[TestRun]) -> pa.Table:
    """The rows of one run as an Arrow table of SCHEMA (release_id is the partition). Pure."""
    tools = json.dumps(dict(facts.tool_versions), sort_keys=True)
    rows: list[dict[str, Any]] = []
    for test in runs:
        for m in test.metrics:
            rows.append(
                {
                    "run_id": facts.run_id,
                    "release_sha256": facts.release_sha256,
                    "reference_digest": facts.reference_digest,
                    "test_id": m.test_id,
                    "test_version": m.test_version,
                    "metric": m.metric,
                    "value": float(m.value),
                    "threshold": m.threshold,
                    "comparator": None if m.comparator is None else str(m.comparator),
                    "passed": m.passed,
                    "status": str(m.status),
                    "severity": str(m.severity),
                    "n_records": m.n_records,
                    "n_subjects": m.n_subjects,
                    "parameters": json.dumps(_jsonable(m.parameters), sort_keys=True),
                    "seed": m.seed,
                    "started_at": test.started_at,
                    "finished_at": test.finished_at,
                    "message": m.message,
                    "tool_versions": tools,
                }
            )
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _jsonable(value: Any) -> Any:
    """JSON-safe parameters: non-finite floats become strings ("inf", "nan")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def write_results(table: pa.Table, results: Path, release_id: str, run_id: str) -> Path:
    """Append one run's file to the dataset; returns its path. Refuses to overwrite a run's file."""
    folder = results / f"{PARTITION}={release_id}"
    target = folder / f"run-{run_id}.parquet"
    partial = folder / f".run-{run_id}.parquet.partial"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if target.exists():
            raise DeidError(
                f"results file for run {run_id} already exists; a run never rewrites another's rows"
            )
        pq.write_table(table, partial, compression="zstd")
        os.rename(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DeidError(
            f"cannot write the results dataset under {results} ({exc.strerror or type(exc).__name__}); "
            "choose a writable --results directory"
        ) from exc
    return target
