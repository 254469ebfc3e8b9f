"""The genomic files of a release: which input becomes which released file, and running the jobs.

A manifest row names its files (SPEC.md 2.1): `vcf` + `vcf_sample` (a column of a joint VCF),
`alignment` (BAM or CRAM) and `fastq` (";"-separated: one file, a pair, or lane pairs). Relative
paths are read from the manifest's folder. `plan_files` turns the included rows into jobs, each
naming its released file by counter or pseudonym only (`genotypes/genotypes-1.vcf.gz`,
`alignments/GGS….bam`, `reads/GGS…_R1.fastq.gz`), never by an input name; `run_jobs` runs them,
two at a time on the machine's two cores, and returns counts for release.json.

A joint VCF stays one file: every included sample of one input VCF goes into one output, renamed
to its pseudonym; the others are dropped. A summary release (`summary_only`) writes, instead of
any individual-level file, `summary/allele_frequencies.parquet` from the one joint VCF.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from deid.alignment import deidentify_alignment
from deid.errors import DeidError, MalformedInput
from deid.fastq import deidentify_fastq
from deid.policy import GenomicRules
from deid.vcf import allele_frequencies, deidentify_vcf

GENOMIC_COLUMNS = ("vcf", "alignment", "fastq")
SUMMARY_FILE = "summary/allele_frequencies.parquet"
_CORES = 2


@dataclass(frozen=True, slots=True)
class Job:
    """One released file (or pair) and the inputs it comes from."""

    kind: str  # "vcf", "summary", "alignment" or "fastq"
    sources: tuple[Path, ...]
    outputs: tuple[str, ...]  # paths inside the release
    rename: tuple[tuple[str, str], ...] = ()  # (name in the input, pseudonym)
    populations: tuple[tuple[str, str], ...] = ()  # (pseudonym, population) for a summary


def plan_files(
    included: pl.DataFrame,
    sample_codes: pl.Series,
    base: Path,
    source: str,
    *,
    summary_only: bool = False,
    min_population: int = 5,
) -> list[Job]:
    """The jobs for the included rows; sample_codes holds each row's sample pseudonym, in row order.

    Raises MalformedInput naming the row and column for a file that does not exist, a fastq cell
    with an odd number of files, or (summary_only) rows without a VCF or in more than one VCF.
    A summary breaks frequencies down only by populations of min_population or more released
    samples: a smaller group's frequencies would reveal its members' genotypes (one member: the
    genotype itself). Members of smaller groups count in the overall AC/AN/AF only.
    """
    if included.height != sample_codes.len():
        raise DeidError("plan genomic files: one sample code per included row is needed")
    named = [
        pl.col(c).is_not_null() & (pl.col(c).cast(pl.String) != "") for c in GENOMIC_COLUMNS if c in included
    ]
    with_code = included.with_columns(sample_codes.alias("_code"))
    rows = (with_code.filter(pl.any_horizontal(named)) if named else with_code.clear()).to_dicts()
    jobs: list[Job] = []
    joint: dict[Path, list[tuple[str, str, str]]] = {}  # vcf -> (column, code, population), row order
    for row in rows:
        number, code = row.get("_row", "?"), row["_code"]
        vcf = _cell(row, "vcf")
        if vcf:
            path = _existing(base, vcf, source, number, "vcf")
            column = _cell(row, "vcf_sample") or str(row["sample_id"])
            joint.setdefault(path, []).append((column, code, _population(_cell(row, "ancestry"))))
        if summary_only:
            continue
        alignment = _cell(row, "alignment")
        if alignment:
            path = _existing(base, alignment, source, number, "alignment")
            suffix = ".cram" if _is_cram(path) else ".bam"
            names = {str(row["sample_id"]), _cell(row, "vcf_sample")} - {""}
            jobs.append(
                Job(
                    "alignment",
                    (path,),
                    (f"alignments/{code}{suffix}",),
                    tuple((n, code) for n in sorted(names)),
                )
            )
        fastq = _cell(row, "fastq")
        if fastq:
            jobs += _fastq_jobs(fastq, code, base, source, number)
    if summary_only:
        if len(joint) != 1 or sum(len(v) for v in joint.values()) != included.height:
            raise MalformedInput(
                source,
                "a summary release needs every included sample in one joint VCF (column vcf); "
                "merge the files with bcftools merge first",
            )
        [(path, members)] = joint.items()
        sizes = Counter(pop for _, _, pop in members)
        return [
            Job(
                "summary",
                (path,),
                (SUMMARY_FILE,),
                tuple((c, code) for c, code, _ in members),
                tuple((code, pop) for _, code, pop in members if sizes[pop] >= min_population),
            )
        ]
    for number, (path, members) in enumerate(joint.items(), start=1):
        columns = [c for c, _, _ in members]
        if len(set(columns)) != len(columns):
            raise MalformedInput(
                source, "two rows name the same vcf_sample of one VCF; give each row its own"
            )
        jobs.insert(
            number - 1,
            Job(
                "vcf",
                (path,),
                (f"genotypes/genotypes-{number}.vcf.gz",),
                tuple((c, code) for c, code, _ in members),
            ),
        )
    return jobs


def run_jobs(jobs: Sequence[Job], work: Path, rules: GenomicRules) -> dict[str, Any]:
    """Run the jobs into work/ (two at a time); counts per kind for release.json. Fails on the first error."""
    if not jobs:
        return {}
    for job in jobs:
        for output in job.outputs:
            (work / output).parent.mkdir(parents=True, exist_ok=True)
    workers = min(_CORES, len(jobs))
    threads = max(1, _CORES // workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_runner(job, work, rules, threads)) for job in jobs]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
    errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
    if errors:
        raise errors[0]  # type: ignore[misc]  # the first failure; the caller discards work/
    totals: dict[str, dict[str, int]] = {}
    for job, future in zip(jobs, futures, strict=True):
        kind = totals.setdefault(job.kind, {"outputs": 0})
        kind["outputs"] += len(job.outputs)
        for name, value in future.result().items():
            kind[name] = kind.get(name, 0) + int(value)
    return totals


def _runner(job: Job, work: Path, rules: GenomicRules, threads: int) -> Callable[[], dict[str, int]]:
    outputs = [work / o for o in job.outputs]

    def run() -> dict[str, int]:
        match job.kind:
            case "vcf":
                stats: Any = deidentify_vcf(job.sources[0], outputs[0], job.rename, rules, threads=threads)
            case "summary":
                populations = dict(job.populations)
                stats = allele_frequencies(
                    job.sources[0], outputs[0], job.rename, populations, rules, threads=threads
                )
            case "alignment":
                stats = deidentify_alignment(
                    job.sources[0], outputs[0], dict(job.rename), rules, threads=threads
                )
            case "fastq":
                stats = deidentify_fastq(job.sources, outputs, threads=threads)
            case _:
                raise DeidError(f"unknown genomic job kind {job.kind}")
        return {k: int(v) for k, v in dataclasses.asdict(stats).items()}  # counts (header_only: 0/1)

    return run


def _fastq_jobs(cell: str, code: str, base: Path, source: str, number: object) -> list[Job]:
    files = [_existing(base, p.strip(), source, number, "fastq") for p in cell.split(";") if p.strip()]
    if len(files) == 1:
        return [Job("fastq", (files[0],), (f"reads/{code}.fastq.gz",))]
    if len(files) % 2:
        raise MalformedInput(
            source, f"row {number}: column fastq lists {len(files)} files; give one file or R1;R2 pairs"
        )
    pairs = [files[i : i + 2] for i in range(0, len(files), 2)]
    if len(pairs) == 1:
        return [Job("fastq", tuple(files), (f"reads/{code}_R1.fastq.gz", f"reads/{code}_R2.fastq.gz"))]
    return [
        Job("fastq", tuple(pair), (f"reads/{code}_L{lane}_R1.fastq.gz", f"reads/{code}_L{lane}_R2.fastq.gz"))
        for lane, pair in enumerate(pairs, start=1)
    ]


def _population(ancestry: str) -> str:
    """A population label for column names: "East Asian" -> "East_Asian"; empty -> "unknown"."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", ancestry).strip("_")[:40] or "unknown"


def _cell(row: Mapping[str, Any], column: str) -> str:
    value = row.get(column)
    return "" if value is None else str(value).strip()


def _existing(base: Path, value: str, source: str, number: object, column: str) -> Path:
    path = Path(value) if Path(value).is_absolute() else base / value
    if not path.is_file():
        raise MalformedInput(
            source,
            f"row {number}: column {column} names a file that does not exist; fix the path "
            f"(relative paths are read from the manifest's folder)",
        )
    return path


def _is_cram(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"CRAM"


def released_texts(work: Path) -> list[str]:
    """Text of the released genomic files that the leak guard scans: every file's path inside the
    release, every VCF and BAM/CRAM header, the first FASTQ record names and every Parquet footer.
    Read names and records are rewritten from allow-lists by construction; the assessment (T01, T02)
    scans them in full."""
    import pyarrow.parquet as pq
    import pysam

    texts = []
    for path in sorted(p for p in work.rglob("*") if p.is_file()):
        texts.append(path.relative_to(work).as_posix())
        name = path.name
        if name.endswith((".vcf.gz", ".bcf")):
            with pysam.VariantFile(str(path)) as vcf:
                texts.append(str(vcf.header))
        elif name.endswith((".bam", ".cram")):
            with pysam.AlignmentFile(str(path), check_sq=False) as aln:
                texts.append(str(aln.header))
        elif name.endswith(".fastq.gz"):
            with pysam.FastxFile(str(path)) as fastq:
                texts += [f"{r.name} {r.comment or ''}" for _, r in zip(range(1000), fastq, strict=False)]
        elif name.endswith(".parquet"):
            meta = pq.read_metadata(path)
            texts.append(
                "\n".join([str(meta.schema)] + [f"{k!r}{v!r}" for k, v in (meta.metadata or {}).items()])
            )
    return texts
