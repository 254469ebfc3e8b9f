"""Measure commands the way benchmarks/README.md reports them: wall time and peak RSS per run.

Each case runs as a child process (so peak memory is the child's own, from getrusage), a few
times, and the median wall time is kept. Ratios are taken against a reference command of the
field (bcftools, samtools, crypt4gh, openssl) in the same run, never against a remembered figure.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Measurement:
    """One case: median wall seconds over its runs and the peak RSS of any run, in MiB."""

    name: str
    seconds: float
    peak_mib: float
    runs: int


def measure(name: str, argv: list[str], runs: int = 3, prepare: list[str] | None = None) -> Measurement:
    """Run argv `runs` times (after `prepare` each time, untimed); report the median and the peak."""
    times, peaks = [], []
    for _ in range(runs):
        if prepare:
            subprocess.run(prepare, check=True, capture_output=True)
        pid_start = time.perf_counter()
        pid = os.posix_spawnp(argv[0], argv, os.environ)
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - pid_start
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"benchmark case {name!r} failed: {' '.join(argv)}")
        times.append(elapsed)
        peaks.append(usage.ru_maxrss / 1024)  # Linux reports KiB
    return Measurement(name, statistics.median(times), max(peaks), runs)


def self_peak_mib() -> float:
    """Peak RSS of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def markdown(rows: list[Measurement], baseline: str | None = None) -> str:
    """A markdown table; with a baseline name, a ratio column (case time / baseline time)."""
    base = next((r.seconds for r in rows if r.name == baseline), None)
    head = "| case | median s | peak MiB | runs |" + (" x baseline |" if base else "")
    sep = "|---|---:|---:|---:|" + ("---:|" if base else "")
    lines = [head, sep]
    for r in rows:
        cells = f"| {r.name} | {r.seconds:.2f} | {r.peak_mib:.0f} | {r.runs} |"
        if base:
            cells += f" {r.seconds / base:.2f} |"
        lines.append(cells)
    return "\n".join(lines)


def workdir() -> Path:
    """benchmarks/work/, ignored by git, emptied by the cases that use it."""
    path = Path(__file__).resolve().parent / "work"
    path.mkdir(exist_ok=True)
    return path
