"""T11-T14 on a 1,000,000-row released samples table: seconds and peak memory per test.

The table has the cgipa quasi-identifiers (birth_year, age, sex, zip3, state, country, ancestry)
and diagnosis, drawn uniformly from realistic ranges (seeded), plus an identified roll of the same
million people for T13. Each test runs in its own child process (`python -c`), which builds the
inputs it needs from the Parquet files made once under benchmarks/work/reid/ and times only the
test's pure core; the peak RSS is the child's. No baseline: there is no offline reference tool
(ARX needs a JVM and is not on the registries).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import Measurement, workdir

ROWS = 1_000_000
_MAKE = """
import datetime as dt, numpy as np, polars as pl
rng = np.random.default_rng(7)
n = {rows}
born = pl.Series(rng.integers(1930, 2008, n))
zips = pl.Series([f"{{z:05d}}" for z in rng.integers(1000, 99999, 2000)])[rng.integers(0, 2000, n)]
frame = pl.DataFrame({{
    "birth_year": born, "age": (2026 - born).cast(pl.String),
    "sex": pl.Series(["F", "M"])[rng.integers(0, 2, n)], "zip": zips, "zip3": zips.str.slice(0, 3),
    "state": pl.Series(["CA", "NY", "TX", "WA"])[rng.integers(0, 4, n)], "country": "US",
    "ancestry": pl.Series(["EUR", "AFR", "EAS", "SAS", "AMR"])[rng.integers(0, 5, n)],
    "diagnosis": pl.Series(["none", "asthma", "diabetes", "cancer", "cardio", "rare"])[rng.integers(0, 6, n)],
}})
days = pl.duration(days=pl.Series(rng.integers(0, 28000, n)))
frame = frame.with_columns((pl.lit(dt.date(1930, 1, 1)) + days).alias("date_of_birth"))
frame.write_parquet("{work}/table.parquet")
"""
_PRELUDE = """
import time, resource, polars as pl
from deid.policy import load_policy
t = pl.read_parquet("{work}/table.parquet")
QIS = ["birth_year", "age", "sex", "zip3", "state", "country", "ancestry"]
start = time.perf_counter()
"""
_CASES = {
    "T11 k-anonymity + prosecutor risk": "from deid.reid.t11_k_anonymity import class_sizes\n"
    "from deid.reid.t11_k_anonymity import prosecutor_risk\n"
    "prosecutor_risk(class_sizes(t, QIS))",
    "T12 Zayatz/Pitman/SNB/Dankar": "from deid.reid.t11_k_anonymity import class_sizes\n"
    "from deid.reid.t12_uniqueness import dankar_uniques, histogram\n"
    "dankar_uniques(histogram(class_sizes(t, QIS)), 331_449_281)",
    "T13 linkage (generalise roll + unique join)": "import datetime as dt\n"
    "from deid.reid.t13_linkage import generalise, unique_links, exact_dates\n"
    "roll = t.select('date_of_birth', 'zip', 'sex', 'state', 'country', 'ancestry')\n"
    "ref = generalise(roll, load_policy('cgipa'), dt.date(2026, 1, 1))\n"
    "keys = [q for q in QIS if q in ref.columns]\n"
    "unique_links(t, ref, keys); exact_dates(t.drop('date_of_birth'), roll)",
    "T14 l-diversity + t-closeness (diagnosis)": "from deid.reid.t14_diversity import class_counts\n"
    "from deid.reid.t14_diversity import diversity\n"
    "diversity(class_counts(t, QIS, 'diagnosis'), 2, numeric=False)",
}
_REPORT = "\nprint(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"


def run() -> list[tuple[str, list[Measurement], str | None]]:
    """One table: each test's core on 1M rows (median of 3 child runs; peak RSS of the child)."""
    work = workdir() / "reid"
    work.mkdir(exist_ok=True)
    try:
        subprocess.run([sys.executable, "-c", _MAKE.format(rows=ROWS, work=work)], check=True)
        rows = [_case(name, body, work) for name, body in _CASES.items()]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [
        (f"re-identification tests T11-T14 on {ROWS:,} rows (core only; table load excluded)", rows, None)
    ]


def _case(name: str, body: str, work: Path, runs: int = 3) -> Measurement:
    seconds, peaks = [], []
    for _ in range(runs):
        code = _PRELUDE.format(work=work) + body + _REPORT
        done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        elapsed, peak = (float(x) for x in done.stdout.split()[-2:])
        seconds.append(elapsed)
        peaks.append(peak)
    seconds.sort()
    return Measurement(name, seconds[len(seconds) // 2], max(peaks), runs)
