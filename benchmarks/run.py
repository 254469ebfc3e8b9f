"""`make bench`: run every benchmark module and print its markdown table.

Results are also written to benchmarks/results/latest.md; the figures quoted in
benchmarks/README.md come from such a run on the project's 2-core machine.
"""

from __future__ import annotations

import datetime as dt
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import (
    bench_alignment,
    bench_crypt4gh,
    bench_fastq,
    bench_manifest,
    bench_reid,
    bench_reid_genotypes,
    bench_synth,
    bench_transfer,
    bench_vcf,
)
from benchmarks.harness import markdown

# Each module's run() returns its tables: (title, rows, baseline row name or None).
MODULES = (
    bench_synth,
    bench_crypt4gh,
    bench_manifest,
    bench_vcf,
    bench_alignment,
    bench_fastq,
    bench_reid,
    bench_reid_genotypes,
    bench_transfer,
)


def main() -> None:
    """Run the benchmarks and print/write the tables."""
    parts = [f"# benchmark run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.platform()}\n"]
    chosen = sys.argv[
        1:
    ]  # e.g. `python benchmarks/run.py manifest` runs bench_manifest only ("genotypes": bench_reid_genotypes)
    for module in [m for m in MODULES if not chosen or m.__name__.rsplit("_", 1)[-1] in chosen]:
        for title, rows, baseline in module.run():
            parts.append(f"## {title}\n\n{markdown(rows, baseline)}\n")
            print(parts[-1], flush=True)
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    name = "latest.md" if not chosen else f"latest-{'-'.join(chosen)}.md"
    (results / name).write_text("\n".join(parts), encoding="utf-8")


if __name__ == "__main__":
    main()
