"""`genegate synth`: time and peak memory of the synthetic cohort at the sizes the issues name.

No tool of the field makes an identified cohort, so there is no ratio to take here; as a scale
reference the same run times `bcftools view` decoding the VCF it wrote (htslib's parse speed).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from benchmarks.harness import Measurement, measure, workdir

GENEGATE = str(Path(sys.executable).parent / "genegate")


def run() -> list[tuple[str, list[Measurement], str | None]]:
    """Measure synth with reads (200 samples) and without (2,000 samples)."""
    work = workdir()
    rows = []
    for name, extra in (("synth --samples 200", []), ("synth --samples 2000 --no-reads", ["--no-reads"])):
        out = work / "synth"
        samples = "200" if not extra else "2000"
        rows.append(
            measure(
                name,
                [GENEGATE, "synth", "--out", str(out), "--samples", samples, *extra],
                runs=1,
                prepare=["rm", "-rf", str(out)],
            )
        )
        vcf = out / "genotypes" / "cohort.vcf.gz"
        rows.append(
            measure(
                f"bcftools view (decode that VCF, {samples} samples)",
                [
                    sys.executable,
                    "-c",
                    f"import pysam.bcftools as b; b.view('-Ou', '-o', '/dev/null', {str(vcf)!r})",
                ],
                runs=3,
            )
        )
    shutil.rmtree(work / "synth", ignore_errors=True)
    return [("synth", rows, None)]
