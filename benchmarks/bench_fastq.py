"""De-identify a gzipped FASTQ pair: genegate's `deidentify_fastq` against a gzip recompress.

Input: a synthetic NovaSeq-like pair made with numpy (150 bp reads, binned qualities F : , #,
Illumina names with instrument, run, flowcell, tile, x, y and a dual-index barcode comment),
gzipped once with `gzip -6`. Baseline: `gzip -dc R | gzip -6 > out`, both single-threaded, run
on R1 then R2 (the two gzip processes of the pipe overlap, so it uses both cores too).
genegate reads both files in lockstep (pair check), rewrites names and writes BGZF at level 6
on two compression threads. Each case is timed as a whole process (`python -c`), start-up
included. Peak RSS is reported at two sizes to show that memory does not grow with the input.
The inputs are made in a child process (so the harness stays small, see benchmarks/README.md) and
removed at the end; a whole run takes about 20 minutes (three runs of each case; gzip -6 is slow).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.harness import Measurement, measure, workdir

RECORDS = 1_600_000  # per file: ~ 580 MB of text per file, ~ 1.16 GB the pair
SMALL = RECORDS // 4
RUNS = 3
READ_LENGTH = 150
BASELINE = "gzip -dc | gzip -6, R1 then R2"
_CHUNK = 50_000
_PREFIX = b"@A00524:776:HJ8K7DSX7:"


def run() -> list[tuple[str, list[Measurement], str | None]]:
    """One table: both tools on the full pair, and genegate on a quarter of it (memory)."""
    work = workdir() / "fastq"
    work.mkdir(exist_ok=True)
    try:
        big, small = _make_in_child(work, "big", RECORDS), _make_in_child(work, "small", SMALL)
        rows = [
            _case(BASELINE, _gzip_pipeline(big, work), work),
            _case(f"genegate deidentify_fastq, pair, {RECORDS:,} reads each", _genegate(big, work), work),
            _case(
                f"genegate deidentify_fastq, pair, {SMALL:,} reads each (memory check)",
                _genegate(small, work),
                work,
            ),
            _case("genegate deidentify_fastq, R1 only (single-end)", _genegate(big[:1], work), work),
            _case("gzip -dc | gzip -6, R1 only", _gzip_pipeline(big[:1], work), work),
            _case(
                "gzip -dc R1 > /dev/null (decompression floor)", _sh(f"gzip -dc {big[0]} > /dev/null"), work
            ),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mb = sum(_text_size(RECORDS) for _ in range(2)) / 1e6
    return [(f"FASTQ de-identification, pair of {mb:,.0f} MB text (x gzip pipeline)", rows, BASELINE)]


def make_pair(work: Path, stem: str, records: int) -> tuple[Path, Path]:
    """R1 and R2 of `records` reads each, gzipped with `gzip -6` (both files at once, one per core)."""
    paths = (work / f"{stem}_R1.fastq", work / f"{stem}_R2.fastq")
    rng = np.random.default_rng(7)
    with paths[0].open("wb") as r1, paths[1].open("wb") as r2:
        for start in range(0, records, _CHUNK):
            n = min(_CHUNK, records - start)
            names = _names(rng, start, n)
            r1.write(_records(rng, names, b" 1:N:0:"))
            r2.write(_records(rng, names, b" 2:N:0:"))
    gzips = [subprocess.Popen(["gzip", "-6", "-f", str(p)]) for p in paths]
    for proc in gzips:
        if proc.wait() != 0:
            raise RuntimeError("gzip of the benchmark FASTQ failed")
    return (paths[0].with_suffix(".fastq.gz"), paths[1].with_suffix(".fastq.gz"))


def _make_in_child(work: Path, stem: str, records: int) -> tuple[Path, Path]:
    """make_pair in a child: the harness stays small, so children's peak RSS is their own."""
    code = (
        "from pathlib import Path; from benchmarks.bench_fastq import make_pair; "
        f"make_pair(Path({str(work)!r}), {stem!r}, {records})"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    return (work / f"{stem}_R1.fastq.gz", work / f"{stem}_R2.fastq.gz")


def _names(rng: np.random.Generator, start: int, n: int) -> np.ndarray:
    """Fixed-width `LANE:TILE:X:Y` fields as an (n, 18) uint8 array, in sequencing order."""
    k = np.arange(start, start + n)
    fields = [
        (1 + k // 400_000 % 4, 1),
        (1101 + k // 5_000 % 78, 4),
        (rng.integers(1000, 32000, n), 5),
        (1000 + k % 5_000 * 6 + rng.integers(0, 6, n), 5),
    ]
    columns = []
    for values, width in fields:
        powers = 10 ** np.arange(width - 1, -1, -1)
        columns.append((values[:, None] // powers % 10 + 48).astype(np.uint8))
        columns.append(np.full((n, 1), ord(":"), np.uint8))
    return np.hstack(columns[:-1])


def _records(rng: np.random.Generator, names: np.ndarray, mate: bytes) -> bytes:
    """Four-line records: name + mate comment + barcode, 150 random bases, binned qualities."""
    n = len(names)
    bases = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, (n, READ_LENGTH), dtype=np.uint8)]
    qualities = np.frombuffer(b"F:,#", np.uint8)[rng.choice(4, (n, READ_LENGTH), p=[0.86, 0.09, 0.04, 0.01])]
    comment = mate + b"AAAGCGGC+ACCCACAC\n"

    def column(text: bytes) -> np.ndarray:
        return np.tile(np.frombuffer(text, np.uint8), (n, 1))

    newline = column(b"\n")
    table = np.hstack(
        [column(_PREFIX), names, column(comment), bases, newline, column(b"+\n"), qualities, newline]
    )
    return table.tobytes()


def _text_size(records: int) -> int:
    return records * (len(_PREFIX) + 18 + 25 + 2 * READ_LENGTH + 4)


def _genegate(srcs: tuple[Path, ...], work: Path) -> list[str]:
    outs = [str(work / f"out_R{i + 1}.fastq.gz") for i in range(len(srcs))]
    code = (
        "from pathlib import Path; from deid.fastq import deidentify_fastq; "
        f"deidentify_fastq([Path(p) for p in {[str(s) for s in srcs]!r}], [Path(p) for p in {outs!r}])"
    )
    return [sys.executable, "-c", code]


def _gzip_pipeline(srcs: tuple[Path, ...], work: Path) -> list[str]:
    steps = [f"gzip -dc {src} | gzip -6 > {work / f'out_R{i + 1}.fastq.gz'}" for i, src in enumerate(srcs)]
    return _sh(" && ".join(steps))


def _sh(command: str) -> list[str]:
    return ["sh", "-c", command]


def _case(name: str, argv: list[str], work: Path) -> Measurement:
    """Time argv; before each run (untimed) remove the outputs and flush dirty pages."""
    return measure(name, argv, runs=RUNS, prepare=["sh", "-c", f"rm -f {work}/out_R* && sync"])
