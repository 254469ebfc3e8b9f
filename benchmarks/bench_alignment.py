"""BAM de-identification (deid.alignment) against samtools, on generated coordinate-sorted BAMs.

Input: paired 100 bp reads on chr1, chr2, chrX, chrY, chrM (8% on chrY, 2% on chrM), Illumina-style
names, RG/BC/NM/XN tags; the large file is over 1 GiB uncompressed (the table title gives sizes).
SAM text is written with numpy (random bases and qualities, so BGZF does real work) and turned into
BAM by `samtools view -b -@2`, then indexed; the files live under benchmarks/work/ and are removed.

Table 1, header only (`rewrite_read_names = false`, `aux_tags_keep = ["*"]`, no dropped contig):
genegate against `samtools reheader` (baseline; body blocks copied by both) and reheader + index
(genegate indexes its output, which decompresses the body once).
Table 2, full rewrite (cgipa rules: names to a counter, tags to the allow-list, chrY/chrM removed,
2 threads): genegate against `samtools view -b -@2` (baseline: the same decode/encode with no
change), a plain pysam read/write loop, and genegate on a file a quarter the size (peak RSS must
not grow with the input). samtools runs in-process through pysam, as genegate does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from benchmarks.harness import Measurement, measure, workdir

CONTIGS = (
    ("chr1", 60_000_000),
    ("chr2", 50_000_000),
    ("chrX", 40_000_000),
    ("chrY", 20_000_000),
    ("chrM", 16_569),
)
SHARES = (0.4, 0.3, 0.2, 0.08, 0.02)
LARGE_PAIRS = 1_900_000  # 3.8 M reads, about 1.1 GiB of uncompressed BAM
SMALL_PAIRS = LARGE_PAIRS // 4
READ = 100
THREADS = 2
ROOT = Path(__file__).resolve().parent.parent
if TYPE_CHECKING:
    import numpy as np
BASELINE_REHEADER = "samtools reheader -P (body blocks copied)"
BASELINE_VIEW = "samtools view -b -@2 --no-PG (decode + encode, no change)"


def run() -> list[tuple[str, list[Measurement], str | None]]:
    """Both tables."""
    work = workdir() / "alignment"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        large, small = work / "large.bam", work / "small.bam"
        for path, pairs, seed in ((large, LARGE_PAIRS, 1), (small, SMALL_PAIRS, 2)):
            # in a child: a spawned case's peak RSS cannot read below this process's high-water mark
            code = (
                f"from benchmarks.bench_alignment import make_bam; make_bam({str(path)!r}, {pairs}, {seed})"
            )
            subprocess.run(_python(code), check=True, cwd=ROOT)
        inflated, packed = _inflated_size(large) / 2**30, large.stat().st_size / 2**20
        sizes = f"{inflated:.2f} GiB uncompressed, {packed:.0f} MiB BAM"
        header_rows = _header_only_rows(work, large)
        full_rows = _full_rows(work, large, small)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    reads = 2 * LARGE_PAIRS
    return [
        (
            f"BAM header-only de-identification, {reads / 1e6:.1f} M reads ({sizes})",
            header_rows,
            BASELINE_REHEADER,
        ),
        (f"BAM full de-identification, {reads / 1e6:.1f} M reads ({sizes})", full_rows, BASELINE_VIEW),
    ]


def _header_only_rows(work: Path, bam: Path) -> list[Measurement]:
    out, header = work / "out.bam", work / "header.sam"
    header.write_text("@HD\tVN:1.6\tSO:coordinate\n" + "".join(f"@SQ\tSN:{n}\tLN:{k}\n" for n, k in CONTIGS))
    rules = (
        "replace(load_policy('cgipa').genomic, rewrite_read_names=False, aux_tags_keep=('*',), "
        "drop_contigs=())"
    )
    clean = ["sh", "-c", f"rm -f {out} {out}.bai && sync"]
    samtools_reheader = (
        f"pysam.samtools.reheader('-P', {str(header)!r}, {str(bam)!r}, save_stdout={str(out)!r})"
    )
    return [
        measure(BASELINE_REHEADER, _python(f"import pysam; {samtools_reheader}"), runs=3, prepare=clean),
        measure(
            "samtools reheader -P + samtools index",
            _python(f"import pysam; {samtools_reheader}; pysam.samtools.index({str(out)!r})"),
            runs=3,
            prepare=clean,
        ),
        measure(
            "genegate header-only (checks + block copy + index)",
            _deid(bam, out, rules),
            runs=3,
            prepare=clean,
        ),
    ]


def _full_rows(work: Path, large: Path, small: Path) -> list[Measurement]:
    out = work / "out.bam"
    clean = ["sh", "-c", f"rm -f {out} {out}.bai && sync"]
    rules = "load_policy('cgipa').genomic"
    view = (
        f"pysam.samtools.view('-b', '-@', '{THREADS}', '--no-PG', '-o', {str(out)!r}, {str(large)!r}, "
        "catch_stdout=False)"
    )
    loop = (
        f"import pysam\ninp = pysam.AlignmentFile({str(large)!r}, threads={THREADS})\n"
        f"out = pysam.AlignmentFile({str(out)!r}, 'wb', template=inp, threads={THREADS})\n"
        "for r in inp:\n    out.write(r)\nout.close()"
    )
    return [
        measure(BASELINE_VIEW, _python(f"import pysam; {view}"), runs=2, prepare=clean),
        measure(
            "samtools view -b -@2 + samtools index",
            _python(f"import pysam; {view}; pysam.samtools.index({str(out)!r})"),
            runs=2,
            prepare=clean,
        ),
        measure("pysam read/write loop, threads=2 (no change)", _python(loop), runs=2, prepare=clean),
        measure(
            "genegate full rewrite (incl. checks + index)", _deid(large, out, rules), runs=2, prepare=clean
        ),
        measure("genegate full rewrite, 1/4 size input", _deid(small, out, rules), runs=2, prepare=clean),
    ]


def _deid(src: Path, dst: Path, rules: str) -> list[str]:
    return _python(
        "from dataclasses import replace; from pathlib import Path\n"
        "from deid.alignment import deidentify_alignment\nfrom deid.policy import load_policy\n"
        f"deidentify_alignment(Path({str(src)!r}), Path({str(dst)!r}), {{'PATIENT-0001': 'PSN0001'}}, "
        f"{rules}, threads={THREADS})"
    )


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def make_bam(path: Path | str, pairs: int, seed: int) -> None:
    """A coordinate-sorted, indexed BAM of `pairs` read pairs (SAM text with numpy, BAM by samtools)."""
    import numpy as np
    import pysam

    path = Path(path)
    sam = path.with_suffix(".sam")
    rng = np.random.default_rng(seed)
    with sam.open("w", encoding="ascii") as out:
        out.write(_sam_header())
        serial = 0
        for (name, length), share in zip(CONTIGS, SHARES, strict=True):
            serial = _write_contig(out, rng, name, length, int(pairs * share), serial)
    pysam.samtools.view("-b", "-@", "2", "--no-PG", "-o", str(path), str(sam), catch_stdout=False)
    sam.unlink()
    pysam.samtools.index(str(path))


def _sam_header() -> str:
    lines = ["@HD\tVN:1.6\tSO:coordinate"]
    lines += [f"@SQ\tSN:{n}\tLN:{k}\tAS:GRCh38\tUR:file:///data/ref/GRCh38.fa" for n, k in CONTIGS]
    lines += [
        "@RG\tID:HXXXXDSX3.1\tSM:PATIENT-0001\tLB:LIB-1\tPL:ILLUMINA\tPU:HXXXXDSX3.1.ACGT\tDS:John Doe",
        "@PG\tID:bwa\tPN:bwa\tCL:bwa mem /home/john/r1.fq",
        "@CO\tpatient John Doe",
    ]
    return "\n".join(lines) + "\n"


def _write_contig(
    out: TextIO, rng: np.random.Generator, contig: str, length: int, pairs: int, serial: int
) -> int:
    """Write one contig's pairs in coordinate order, in chunks; returns the running name serial."""
    import numpy as np

    bases, quals = np.frombuffer(b"ACGT", np.uint8), np.frombuffer(b"F:,", np.uint8)
    starts = np.sort(rng.integers(0, length - 600, pairs)) + 1
    pending: list[tuple[int, str]] = []  # right mates beyond the current chunk
    chunk = 200_000
    tags = "RG:Z:HXXXXDSX3.1\tBC:Z:ACGTACGT-TTGACCAA\tNM:i:0"
    for first in range(0, pairs, chunk):
        left = starts[first : first + chunk]
        n = len(left)
        insert = rng.integers(250, 450, n)
        right = left + insert - READ
        seqs = bases[rng.integers(0, 4, (2 * n, READ))].tobytes().decode("ascii")
        qual = quals[rng.choice(3, (2 * n, READ), p=(0.86, 0.1, 0.04))].tobytes().decode("ascii")
        rows = pending
        for i in range(n):
            serial += 1
            name = f"A00524:776:HJ8K7DSX7:3:{1101 + serial % 78}:{serial % 31000}:{serial // 31000}"
            a, b, t = int(left[i]), int(right[i]), int(insert[i])
            s1, s2 = seqs[2 * i * READ : (2 * i + 1) * READ], seqs[(2 * i + 1) * READ : (2 * i + 2) * READ]
            q1, q2 = qual[2 * i * READ : (2 * i + 1) * READ], qual[(2 * i + 1) * READ : (2 * i + 2) * READ]
            rows.append(
                (a, f"{name}\t99\t{contig}\t{a}\t60\t100M\t=\t{b}\t{t}\t{s1}\t{q1}\t{tags}\tXN:Z:{name}")
            )
            rows.append(
                (b, f"{name}\t147\t{contig}\t{b}\t60\t100M\t=\t{a}\t{-t}\t{s2}\t{q2}\t{tags}\tXN:Z:{name}")
            )
        rows.sort(key=lambda r: r[0])
        limit = int(left[-1]) if first + chunk < pairs else sys.maxsize
        out.write("".join(f"{r[1]}\n" for r in rows if r[0] <= limit))
        pending = [r for r in rows if r[0] > limit]
    return serial


def _inflated_size(path: Path) -> int:
    """Sum of the BGZF blocks' ISIZE fields (the uncompressed BAM size), without inflating."""
    total = 0
    with path.open("rb") as f:
        while head := f.read(18):
            bsize = int.from_bytes(head[16:18], "little")
            f.seek(bsize + 1 - 18 - 4, 1)
            total += int.from_bytes(f.read(4), "little")
    return total
