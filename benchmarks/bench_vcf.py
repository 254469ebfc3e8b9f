"""VCF de-identification on a 1,000-sample x 300,000-site cohort (~1.2 GB of VCF text, bgzipped).

Table 1, header only (every sample renamed, header scrubbed, no record changed); baseline
`bcftools reheader -h new_header -s names` of the bcftools bundled in pysam (1.24, run in-process
by a `python -c` child: there is no Debian bcftools on this machine). genegate writes the index
too (it moves the source .tbi's offsets), so the table also shows reheader followed by
`bcftools index -t`, the same output as genegate's.
Table 2, record level (900 of the 1,000 samples, cgipa rules: MAC >= 3, chrY/chrM dropped, INFO and
FORMAT allow-lists, AC/AN/AF recomputed, ID emptied, header scrubbed, .tbi written); baseline
`bcftools view -s ... -c 3:minor -Oz --threads 2` (no index, no AF, no header scrub).

The input is written by numpy (genotype text from a lookup table) and deflated into BGZF blocks on
two threads with deid.vcf_blocks; it is removed at the end. Every row is a child process, so its
peak RSS is its own.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.harness import Measurement, measure, workdir

N_SAMPLES = 1000
N_SITES = 300_000
HEADER_RUNS = 5
RECORD_RUNS = 2  # a record-level case takes about a minute per run on two cores
REHEADER = "bcftools reheader -h -s (pysam 1.24)"
VIEW = "bcftools view -s -c 3:minor -Oz --threads 2 (pysam 1.24)"


def _header(names: list[str]) -> str:
    lines = [
        "##fileformat=VCFv4.2",
        "##fileDate=20240131",
        "##source=GATK GenotypeGVCFs 4.5.0.0",
        "##reference=file:///data/clinical/reference/GRCh38.fa",
        '##commandline="gatk GenotypeGVCFs -V gendb:///data/clinical/cohorts/joint_2024"',
        "##contig=<ID=chr20,length=64444167,assembly=GRCh38>",
        "##contig=<ID=chrY,length=57227415,assembly=GRCh38>",
        '##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count">',
        '##INFO=<ID=AN,Number=1,Type=Integer,Description="Allele number">',
        '##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        *(f'##SAMPLE=<ID={n},Individual="Person {i}">' for i, n in enumerate(names)),
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *names]),
    ]
    return "\n".join(lines) + "\n"


def write_cohort(path: Path, names: list[str], n_sites: int, seed: int = 1) -> int:
    """Write a bgzipped VCF; return its uncompressed size. A third of the sites are rare."""
    import numpy as np

    from deid.bgzf import EOF_BLOCK, compress_blocks

    table = np.frombuffer(b"0/0\t0/1\t1/1\t", dtype=np.uint8).reshape(3, 4)

    rng = np.random.default_rng(seed)
    size = 0
    with path.open("wb") as out, ThreadPoolExecutor(2) as pool:
        pending = bytearray(_header(names).encode())
        positions = np.sort(rng.choice(np.arange(1, 64_000_000), size=n_sites, replace=False))
        for start in range(0, n_sites, 2000):
            pos = positions[start : start + 2000]
            p = np.where(
                rng.random(len(pos)) < 0.33, rng.uniform(0, 0.002, len(pos)), rng.uniform(0, 0.5, len(pos))
            )
            codes = rng.binomial(2, p[:, None], size=(len(pos), len(names)))
            cells = table[codes].reshape(len(pos), -1)
            cells[:, -1] = ord("\n")
            ac, an = codes.sum(axis=1), 2 * len(names)
            for i in range(len(pos)):
                info = f"AC={ac[i]};AN={an};AF={ac[i] / an:.4g}"
                pending += f"chr20\t{pos[i]}\t.\tA\tG\t50\tPASS\t{info}\tGT\t".encode()
                pending += cells[i].tobytes()
            size += len(pending) - len(pending) % 0xFF00
            whole = len(pending) - len(pending) % 0xFF00
            pieces = [bytes(pending[k : k + 0xFF00]) for k in range(0, whole, 0xFF00)]
            del pending[:whole]
            for block in pool.map(compress_blocks, pieces):
                out.write(block)
        size += len(pending)
        out.write(compress_blocks(bytes(pending)) + EOF_BLOCK)
    return size


def run() -> list[tuple[str, list[Measurement], str | None]]:
    """Both tables, each with its baseline row name."""
    work = workdir() / "vcf"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        names = [f"LAB{i:05d}-PATIENT" for i in range(N_SAMPLES)]
        src = work / "cohort.vcf.gz"
        code = "from benchmarks.bench_vcf import write_cohort as w; from pathlib import Path; "
        code += f"print(w(Path({str(src)!r}), {names!r}, {N_SITES}))"
        text_bytes = int(_child(code))
        _child(f"import pysam; pysam.tabix_index({str(src)!r}, preset='vcf', force=True)")
        (work / "names.txt").write_text("".join(f"{n}\tP{i:05d}\n" for i, n in enumerate(names)))
        (work / "new_header.txt").write_text(_scrubbed(names))
        header_rows = _header_rows(work, src)
        record_rows = _record_rows(work, src, names)
        size = src.stat().st_size
    finally:
        shutil.rmtree(work, ignore_errors=True)
    what = f"{N_SAMPLES:,} samples x {N_SITES:,} sites, {size / 1e6:.0f} MB bgzipped"
    what += f", {text_bytes / 1e9:.2f} GB text"
    return [
        (f"VCF header-only de-identification, {what} (x bcftools reheader)", header_rows, REHEADER),
        (f"VCF record-level de-identification, {what} (x bcftools view -s -c 3:minor)", record_rows, VIEW),
    ]


def _scrubbed(names: list[str]) -> str:
    keep = ("##fileformat", "##contig", "##INFO", "##FORMAT", "#CHROM")
    return "\n".join(line for line in _header(names).splitlines() if line.startswith(keep)) + "\n"


_DEID = """
import dataclasses
from pathlib import Path
from deid.policy import load_policy
from deid.vcf import deidentify_vcf
rules = dataclasses.replace(load_policy('cgipa').genomic, {changes})
names = [line.split('\\t') for line in Path({names!r}).read_text().splitlines()]
rename = [(a, b) for a, b in names][{samples}]
stats = deidentify_vcf(Path({src!r}), Path({dst!r}), rename, rules, threads=2)
assert stats.header_only == {header_only}, stats
"""


def _header_rows(work: Path, src: Path) -> list[Measurement]:
    out = work / "out.vcf.gz"
    clean = ["sh", "-c", f"rm -f {out} {out}.tbi && sync"]
    reheader = (
        f"import pysam.bcftools as b; b.reheader('-h', {str(work / 'new_header.txt')!r}, '-s', "
        f"{str(work / 'names.txt')!r}, '-o', {str(out)!r}, {str(src)!r}, catch_stdout=False)"
    )
    index = f"; b.index('-t', '--threads', '2', {str(out)!r})"
    names = str(work / "names.txt")
    deid = _DEID.format(
        changes="min_minor_allele_count=0",
        names=names,
        samples=":",
        src=str(src),
        dst=str(out),
        header_only=True,
    )
    return [
        measure(REHEADER, _python(reheader), runs=HEADER_RUNS, prepare=clean),
        measure(
            "bcftools reheader + bcftools index -t",
            _python(reheader + index),
            HEADER_RUNS,
            clean,
        ),
        measure("python start-up + imports only", _python("import pysam.bcftools, deid.vcf"), HEADER_RUNS),
        measure("genegate deidentify_vcf, header only, + .tbi", _python(deid), HEADER_RUNS, clean),
        _in_process(
            "bcftools reheader, in-process call",
            "import pysam.bcftools as b",
            reheader.split("; ")[1],
            HEADER_RUNS,
            clean,
        ),
        _in_process(
            "genegate deidentify_vcf, header only, + .tbi, in-process call", *_split(deid), HEADER_RUNS, clean
        ),
    ]


def _record_rows(work: Path, src: Path, names: list[str]) -> list[Measurement]:
    out = work / "out.vcf.gz"
    clean = ["sh", "-c", f"rm -f {out} {out}.tbi && sync"]
    samples = ",".join(names[:900])
    view = (
        f"import pysam.bcftools as b; b.view('-s', {samples!r}, '-c', '3:minor', '-Oz', '--threads', '2', "
        f"'-o', {str(out)!r}, {str(src)!r}, catch_stdout=False)"
    )
    deid = _DEID.format(
        changes="",
        names=str(work / "names.txt"),
        samples=":900",
        src=str(src),
        dst=str(out),
        header_only=False,
    )
    return [
        measure(VIEW, _python(view), runs=RECORD_RUNS, prepare=clean),
        measure("genegate deidentify_vcf, cgipa, + AF + .tbi", _python(deid), RECORD_RUNS, clean),
        _in_process("genegate deidentify_vcf, in-process call", *_split(deid), RECORD_RUNS, clean),
    ]


def _split(code: str) -> tuple[str, str]:
    """(setup, call) of a _DEID script: the call is the deidentify_vcf line."""
    head, call, tail = code.partition("stats = deidentify_vcf")
    return head, call + tail


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _child(code: str) -> str:
    """Run code in a child (so this process stays small: a child's peak RSS reads no lower than ours)."""
    return subprocess.run(_python(code), check=True, capture_output=True, text=True).stdout


def _in_process(name: str, setup: str, call: str, runs: int, clean: list[str]) -> Measurement:
    """The library call alone, timed inside a child that has done its imports; peak is the child's VmHWM."""
    times, peak = [], 0.0
    for _ in range(runs):
        subprocess.run(clean, check=True)
        timed = f"{setup}\nimport time\nt = time.perf_counter()\n{call}\nprint(time.perf_counter() - t)\n"
        timed += "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
        seconds, hwm = _child(timed).split()
        times.append(float(seconds))
        peak = max(peak, float(hwm) / 1024)
    return Measurement(name, statistics.median(times), peak, runs)
