"""T05 genotype linkage on 10,000 released x 10,000 identified genomes x 1,000 sites, and loading genotypes.

Table 1, the linkage core (deid.reid.t05_linkage.assess_linkage) on random HWE genotypes (MAF
U(0.05, 0.5), generated with numpy in the child; the released genomes are the panel's, permuted).
Baseline: one float32 matrix product of the same shape (10,000 x 3,000 by 3,000 x 10,000), the
arithmetic floor of the vectorised LLR. "in-process" rows are timed inside the child after the
genotypes are generated; "process" rows are whole `python -c` children (imports, generation, run).

Table 2, loading: deid.reid.genotypes.read_genotypes on a bgzipped VCF of 10,000 samples x 1,000
biallelic sites, against `bcftools query` of the same fields to a file (htslib's decode and print,
the floor of this adapter).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys

from benchmarks.harness import Measurement, measure, workdir

PEOPLE = 10_000
SITES = 1_000
RUNS = 3
GEMM = f"numpy float32 matmul {PEOPLE:,} x {3 * SITES:,} x {PEOPLE:,} (floor)"
QUERY = "bcftools query -f key+GT to a file (htslib floor)"

_GENOTYPES = """
import numpy as np
rng = np.random.default_rng(1)
p = rng.uniform(0.05, 0.5, {sites})
panel = rng.binomial(2, p, size=({people}, {sites})).astype(np.int8)
released = panel[rng.permutation({people})]
"""
_CORE = (
    "import time\nfrom pathlib import Path\nfrom deid.reid.t05_linkage import assess_linkage\n"
    + _GENOTYPES
    + """
start = time.perf_counter()
result = assess_linkage(released, panel)
print('core', time.perf_counter() - start)
assert result.confident_rate == 1.0
print('VmHWM', Path('/proc/self/status').read_text().split('VmHWM:')[1].split()[0])
"""
)
_GEMM = """
import time
from pathlib import Path
import numpy as np
rng = np.random.default_rng(1)
a = rng.random(({people}, {columns}), dtype=np.float32)
b = rng.random(({people}, {columns}), dtype=np.float32)
start = time.perf_counter()
c = a @ b.T
print('gemm', time.perf_counter() - start)
print('VmHWM', Path('/proc/self/status').read_text().split('VmHWM:')[1].split()[0])
"""
_WRITE_VCF = (
    "import pysam\n"
    + _GENOTYPES
    + """
calls = np.array(['0/0', '0/1', '1/1'])[panel.T]
header = ('##fileformat=VCFv4.2\\n##contig=<ID=chr1,length=100000000>\\n'
          '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\\n'
          '#CHROM\\tPOS\\tID\\tREF\\tALT\\tQUAL\\tFILTER\\tINFO\\tFORMAT'
          + ''.join(f'\\tS{{i}}' for i in range({people})) + '\\n')
with open({text!r}, 'w') as fh:
    fh.write(header)
    for s, row in enumerate(calls):
        fh.write(f'chr1\\t{{100 * (s + 1)}}\\t.\\tA\\tG\\t.\\t.\\t.\\tGT\\t' + '\\t'.join(row) + '\\n')
pysam.tabix_compress({text!r}, {vcf!r}, force=True)
"""
)
_READ = (
    "import time\nfrom pathlib import Path\nfrom deid.reid.genotypes import read_genotypes\n"
    "start = time.perf_counter()\nm = read_genotypes(Path({vcf!r}), Path({work!r}))\n"
    "print('read', time.perf_counter() - start)\nassert m.dosages.shape == ({people}, {sites})\n"
    "print('VmHWM', Path('/proc/self/status').read_text().split('VmHWM:')[1].split()[0])\n"
)
_QUERY = (
    "import pysam.bcftools\n"
    "pysam.bcftools.query('-i', 'N_ALT=1', '-f', '%CHROM:%POS:%REF:%ALT[\\t%GT]\\n', '-o', {out!r}, {vcf!r},"
    " catch_stdout=False)\n"
)


def run() -> list[tuple[str, list[Measurement], str | None]]:
    """Both tables, each with its baseline row name."""
    work = workdir() / "reid_genotypes"
    work.mkdir(exist_ok=True)
    try:
        sizes = {"people": PEOPLE, "sites": SITES}
        core = [
            _in_process(GEMM, _GEMM.format(people=PEOPLE, columns=3 * SITES)),
            _in_process("T05 assess_linkage, in-process", _CORE.format(**sizes)),
            measure("T05 assess_linkage, process (imports + generation + run)",
                    _python(_CORE.format(**sizes)), runs=RUNS),
        ]  # fmt: skip
        vcf, text = work / "panel.vcf.gz", work / "panel.vcf"
        subprocess.run(_python(_WRITE_VCF.format(text=str(text), vcf=str(vcf), **sizes)), check=True)
        text.unlink()
        out = work / "query.tsv"
        loading = [
            measure(QUERY, _python(_QUERY.format(out=str(out), vcf=str(vcf))), runs=RUNS),
            _in_process("read_genotypes, in-process", _READ.format(vcf=str(vcf), work=str(work), **sizes)),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [
        (f"T05 linkage core, {PEOPLE:,} x {PEOPLE:,} genomes x {SITES:,} sites (x float32 GEMM)", core, GEMM),
        (f"genotype loading, {PEOPLE:,} samples x {SITES:,} sites (x bcftools query)", loading, QUERY),
    ]


def _in_process(name: str, code: str) -> Measurement:
    """The child's own timer (first number it prints) and its VmHWM, median over RUNS children."""
    times, peak = [], 0.0
    for _ in range(RUNS):
        done = subprocess.run(_python(code), capture_output=True, text=True, check=True)
        values = dict(line.split(" ", 1) for line in done.stdout.splitlines())
        peak = max(peak, float(values.pop("VmHWM")) / 1024)
        times.append(float(next(iter(values.values()))))
    return Measurement(name, statistics.median(times), peak, RUNS)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


if __name__ == "__main__":  # pragma: no cover - manual run
    from benchmarks.harness import markdown

    for title, rows, baseline in run():
        print(f"### {title}\n\n{markdown(rows, baseline)}\n")
