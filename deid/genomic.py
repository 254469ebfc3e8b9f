"""The genomic files of a release: which input becomes which released file, and running the jobs.

A manifest row names its files (SPEC.md 2.1): `vcf` + `vcf_sample` (a column of a joint VCF),
`alignment` (BAM or CRAM) and `fastq` (";"-separated: one file, a pair, or lane pairs). Relative
paths are read from the manifest's folder. `plan_files` turns the included rows into jobs, each
naming its released file by counter or pseudonym only (`genotypes/genotypes-1.vcf.gz`,
`alignments/GGS….bam`, `reads/GGS…_R1.fastq.gz`), never by an input name; `run_jobs` runs them,
two at a time on the machine's two cores, and returns counts for release.json.

Another runner (a flow's task runner, Dask workers) runs them through `job_specs` and
`run_job_spec`: a job holds each input's sample names beside their pseudonyms — an identity
link — so it is written lab-side, one private file per job outside the release, and a worker is
handed only (folder, index). Workers read the files, the inputs and the release's work folder
at the same paths: they need the lab's filesystem (shared storage).

A joint VCF stays one file: every included sample of one input VCF goes into one output, renamed
to its pseudonym; the others are dropped. A summary release (`summary_only`) writes, instead of
any individual-level file, `summary/allele_frequencies.parquet` from the one joint VCF.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
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
SPEC_FORMAT = 1
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


JobRunner = Callable[[Sequence[Job], Path, GenomicRules], dict[str, Any]]
Progress = Callable[[str, int, int], None]  # (stage, done, total), as deid.synth reports it
"""Runs the jobs into work/ and returns job_totals; raises the first failure (the caller then
discards work/, so it returns only once no job writes there). run_jobs is the default."""


def run_jobs(
    jobs: Sequence[Job], work: Path, rules: GenomicRules, progress: Progress | None = None
) -> dict[str, Any]:
    """Run the jobs into work/ (two at a time); counts per kind for release.json. Fails on the first error.
    progress, if given, hears ("genomic files", done, total) as each job ends."""
    if not jobs:
        return {}
    workers = min(_CORES, len(jobs))
    threads = max(1, _CORES // workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_job, job, work, rules, threads) for job in jobs]
        for done, future in enumerate(as_completed(futures), start=1):
            if future.exception() is not None:
                for other in futures:
                    other.cancel()
                break
            if progress is not None:
                progress("genomic files", done, len(jobs))
    errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
    if errors:
        raise errors[0]  # type: ignore[misc]  # the first failure; the caller discards work/
    return job_totals(jobs, [f.result() for f in futures])


def job_totals(jobs: Sequence[Job], counts: Sequence[Mapping[str, int]]) -> dict[str, Any]:
    """The counts of each job (run_job's, in job order) summed per kind, with the outputs written."""
    totals: dict[str, dict[str, int]] = {}
    for job, job_counts in zip(jobs, counts, strict=True):
        kind = totals.setdefault(job.kind, {"outputs": 0})
        kind["outputs"] += len(job.outputs)
        for name, value in job_counts.items():
            kind[name] = kind.get(name, 0) + int(value)
    return totals


def run_job(job: Job, work: Path, rules: GenomicRules, threads: int = 1) -> dict[str, int]:
    """Run one job into work/ (creating its folders there); its counts for job_totals."""
    outputs = [work / o for o in job.outputs]
    for output in outputs:
        output.parent.mkdir(parents=True, exist_ok=True)
    match job.kind:
        case "vcf":
            stats: Any = deidentify_vcf(job.sources[0], outputs[0], job.rename, rules, threads=threads)
        case "summary":
            populations = dict(job.populations)
            stats = allele_frequencies(
                job.sources[0], outputs[0], job.rename, populations, rules, threads=threads
            )
        case "alignment":
            stats = deidentify_alignment(job.sources[0], outputs[0], dict(job.rename), rules, threads=threads)
        case "fastq":
            stats = deidentify_fastq(job.sources, outputs, threads=threads)
        case _:
            raise DeidError(f"unknown genomic job kind {job.kind}")
    return {k: int(v) for k, v in dataclasses.asdict(stats).items()}  # counts (header_only: 0/1)


@contextmanager
def job_specs(jobs: Sequence[Job], work: Path, rules: GenomicRules, *, threads: int = 1) -> Iterator[Path]:
    """The jobs written for a runner in other processes; yields the folder that holds them.

    The folder is private (0700) and beside work/, never inside the release; each job is one
    file (0600, `<index>.json`, with work/, the rules and threads), so a worker reads only its
    own. The folder is removed on exit: leave the block only once no job runs.
    """
    folder = Path(tempfile.mkdtemp(prefix=f"{work.name}.jobs-", dir=work.parent))
    try:
        common = {
            "format": SPEC_FORMAT,
            "work": str(work),
            "threads": threads,
            "rules": dataclasses.asdict(rules),
        }
        for index, job in enumerate(jobs):
            fd = os.open(folder / f"{index}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({**common, "job": _job_json(job)}, fh)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def read_job_spec(folder: Path, index: int) -> tuple[Job, Path, GenomicRules, int]:
    """Job index of a job_specs folder: (job, work, rules, threads). Raises a plain DeidError."""
    path = folder / f"{index}.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DeidError(
            f"{path}: no such job spec; the job folder was removed, or this worker does not share "
            "the flow's filesystem (mount it at the same path)"
        ) from exc
    except (OSError, ValueError) as exc:
        raise DeidError(f"{path}: unreadable job spec; run the release again") from exc
    try:
        if doc["format"] != SPEC_FORMAT:
            raise KeyError("format")
        raw = doc["job"]
        job = Job(
            str(raw["kind"]),
            tuple(Path(p) for p in raw["sources"]),
            tuple(str(o) for o in raw["outputs"]),
            tuple((str(a), str(b)) for a, b in raw["rename"]),
            tuple((str(a), str(b)) for a, b in raw["populations"]),
        )
        fields = {f.name: _field(doc["rules"][f.name]) for f in dataclasses.fields(GenomicRules)}
        return job, Path(doc["work"]), GenomicRules(**fields), int(doc["threads"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DeidError(
            f"{path}: not a job spec of this genegate version; run flows and workers on one version"
        ) from exc


def run_job_spec(folder: Path, index: int) -> dict[str, int]:
    """Run job index of a job_specs folder into its work/; its counts (run_job).

    Raises a plain DeidError (it crosses process boundaries by pickle, where MalformedInput's
    two-argument constructor does not) naming the job by its released file, never by its input
    path: an input's name may hold a sample name, and a runner stores the message (Prefect's
    database). "the input" stands for it; the lab finds the file from the pseudonym.
    """
    job, work, rules, threads = read_job_spec(folder, index)
    try:
        return run_job(job, work, rules, threads)
    except (DeidError, OSError) as exc:
        text = str(exc)
        for source in job.sources:
            text = text.replace(str(source), "the input")
        raise DeidError(f"{job.outputs[0]} ({job.kind} job {index}): {text}") from exc


def _job_json(job: Job) -> dict[str, Any]:
    return {
        "kind": job.kind,
        "sources": [str(p) for p in job.sources],
        "outputs": list(job.outputs),
        "rename": [list(pair) for pair in job.rename],
        "populations": [list(pair) for pair in job.populations],
    }


def _field(value: Any) -> Any:
    """A GenomicRules field from JSON: lists back to tuples."""
    return tuple(value) if isinstance(value, list) else value


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
