"""Assemble a synthetic identified cohort: manifest, joint VCF, BAM/CRAM, FASTQ, secrets list.

Everything is built in a hidden sibling directory and renamed into place at the end, so an
interrupted run never leaves a directory that looks like a complete cohort.
"""

from __future__ import annotations

import csv
import json
import os
import secrets as token
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import msprime
import numpy as np
import numpy.typing as npt
import pysam

from deid.errors import OutputExists
from deid.synth.genome import (
    DEFAULT_CONTIGS,
    Contig,
    HaplotypeLayout,
    haplotype_layout,
    reference_sequence,
    simulate_sites,
)
from deid.synth.people import Person, ancestry, make_people
from deid.synth.reads import (
    ReadWriter,
    RunInfo,
    Target,
    choose_targets,
    fragments,
    haplotypes,
    run_info,
    sam_header,
)
from deid.synth.vcf_writer import patient_path, site_row, vcf_header, write_vcf

MANIFEST_COLUMNS = (
    "sample_id",
    "subject_id",
    "full_name",
    "email",
    "phone",
    "street_address",
    "city",
    "ssn",
    "mrn",
    "health_plan_id",
    "device_id",
    "ip_address",
    "url",
    "date_of_birth",
    "zip",
    "state",
    "country",
    "residence_region",
    "sex",
    "ancestry",
    "diagnosis",
    "collection_date",
    "sequencing_date",
    "sequencing_center",
    "notes",
    "consent_research",
    "consent_transfer",
    "consent_revoked_at",
    "guardian_consent",
    "vcf",
    "vcf_sample",
    "alignment",
    "fastq",
)
# manifest columns whose values identify a person, as planted in secrets.tsv
IDENTIFIER_COLUMNS = (
    "sample_id",
    "subject_id",
    "full_name",
    "email",
    "phone",
    "street_address",
    "city",
    "ssn",
    "mrn",
    "health_plan_id",
    "device_id",
    "ip_address",
    "url",
    "date_of_birth",
    "zip",
    "collection_date",
    "sequencing_date",
)
VCF_NAME = "genotypes/cohort.vcf.gz"

Progress = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """The progress callback that shows nothing."""
    del stage, done, total


@dataclass(frozen=True, slots=True)
class CohortSpec:
    """What to synthesise."""

    out: Path
    samples: int = 24
    seed: int = 1
    reads: bool = True
    cram: bool = False
    coverage: float = 20.0
    contigs: tuple[Contig, ...] = DEFAULT_CONTIGS


@dataclass(frozen=True, slots=True)
class CohortSummary:
    """What was written, for the CLI to print."""

    out: Path
    samples: int
    sites: dict[str, int]
    files: tuple[str, ...]
    edge_cases: dict[str, int]
    regions: dict[str, int]
    secrets: int

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view (no identifier values: counts and relative file names only)."""
        return {
            "out": str(self.out),
            "samples": self.samples,
            "sites": self.sites,
            "files": list(self.files),
            "edge_cases": self.edge_cases,
            "regions": self.regions,
            "secrets": self.secrets,
        }


def synthesize_cohort(spec: CohortSpec, progress: Progress | None = None) -> CohortSummary:
    """Write the cohort to spec.out atomically; refuse if spec.out exists."""
    out = spec.out
    if out.exists():
        raise OutputExists(str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.partial-{token.token_hex(4)}"
    work.mkdir(mode=0o700)
    try:
        summary = _build(spec, work, progress or no_progress)
        try:
            os.rename(work, out)
        except OSError as exc:  # another process created `out` while we built (ENOTEMPTY / EEXIST)
            raise OutputExists(str(out)) from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return summary


def _build(spec: CohortSpec, work: Path, progress: Progress) -> CohortSummary:
    people = make_people(spec.samples, spec.seed)
    for sub in ("genotypes", "alignments", "reads", "reference") if spec.reads else ("genotypes",):
        (work / sub).mkdir()
    rng = np.random.default_rng([spec.seed, 7])
    targets_wanted = choose_targets(spec.contigs, rng)
    references = {c.name: reference_sequence(c, spec.seed) for c in spec.contigs}
    populations = [p.population for p in people]
    males = [p.male for p in people]
    sites: dict[str, int] = {}
    targets: list[Target] = []
    layouts: dict[str, HaplotypeLayout] = {}

    def rows() -> Iterator[str]:
        for k, contig in enumerate(spec.contigs):
            progress("genotypes", k, len(spec.contigs))
            layout = layouts[contig.name] = haplotype_layout(contig, populations, males)
            row_rng = np.random.default_rng([spec.seed, 8, k])
            windows = [(s, e) for c, s, e in targets_wanted if c is contig]
            in_window: list[list[tuple[int, int, npt.NDArray[np.int8]]]] = [[] for _ in windows]
            count = 0
            for site in simulate_sites(contig, populations, males, references[contig.name], spec.seed):
                count += 1
                for w, (s, e) in enumerate(windows):
                    if s <= site.position < e:
                        in_window[w].append((site.position, ord(site.alt), site.alleles))
                yield site_row(contig, site, layout, row_rng)
            sites[contig.name] = count
            for (s, e), found in zip(windows, in_window, strict=True):
                targets.append(_target(contig, s, e, found, int(layout.count.sum())))
        progress("genotypes", len(spec.contigs), len(spec.contigs))

    file_date = max(p.sequencing_date for p in people)
    write_vcf(work / VCF_NAME, vcf_header(people, spec.contigs, file_date), rows())
    files = [VCF_NAME, VCF_NAME + ".tbi"]
    runs: dict[str, RunInfo] = {}
    if spec.reads:
        reference = work / "reference" / "GRCh38-synthetic.fa"
        _write_fasta(reference, spec.contigs, references)
        files += ["reference/GRCh38-synthetic.fa", "reference/GRCh38-synthetic.fa.fai"]
        for i, person in enumerate(people):
            progress("reads", i, len(people))
            runs[person.sample_id] = _sequence(spec, person, i, targets, layouts, references, work)
            files += _read_files(person, spec.cram)
        progress("reads", len(people), len(people))
    _write_manifest(work / "manifest.csv", people, spec)
    secrets = _secrets(people, runs)
    _write_secrets(work / "secrets.tsv", secrets)
    files += ["manifest.csv", "secrets.tsv", "cohort.json"]
    edge = Counter(e for p in people for e in p.edge_cases)
    regions = Counter(p.residence_region for p in people)
    summary = CohortSummary(
        out=spec.out,
        samples=len(people),
        sites=sites,
        files=tuple(files),
        edge_cases=dict(sorted(edge.items())),
        regions=dict(sorted(regions.items())),
        secrets=len(secrets),
    )
    meta = {
        "generator": "genegate synth",
        "seed": spec.seed,
        "reads": spec.reads,
        "cram": spec.cram,
        "coverage": spec.coverage,
        "contigs": [
            {"name": c.name, "length": c.length, "inheritance": c.inheritance.value} for c in spec.contigs
        ],
        "targets": [{"contig": t.contig.name, "start": t.start, "end": t.end} for t in targets],
        "msprime": msprime.__version__,
        "pysam": version("pysam"),
        **summary.as_dict(),
    }
    meta["out"] = spec.out.name
    (work / "cohort.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return summary


def _target(
    contig: Contig,
    start: int,
    end: int,
    found: list[tuple[int, int, npt.NDArray[np.int8]]],
    haplotype_count: int,
) -> Target:
    if found:
        positions = np.array([f[0] for f in found], dtype=np.int64)
        alts = np.array([f[1] for f in found], dtype=np.uint8)
        alleles = np.stack([f[2] for f in found])
    else:
        positions = np.zeros(0, dtype=np.int64)
        alts = np.zeros(0, dtype=np.uint8)
        alleles = np.zeros((0, haplotype_count), dtype=np.int8)
    return Target(contig, start, end, positions, alts, alleles)


def _sequence(
    spec: CohortSpec,
    person: Person,
    index: int,
    targets: list[Target],
    layouts: dict[str, HaplotypeLayout],
    references: dict[str, npt.NDArray[np.uint8]],
    work: Path,
) -> RunInfo:
    rng = np.random.default_rng([spec.seed, 13, index])
    run = run_info(rng)
    writer = ReadWriter(run, rng)
    for target in targets:
        contig = target.contig
        ploidy = contig.ploidy(person.male)
        if ploidy == 0:
            continue
        first = int(layouts[contig.name].start[index])
        haps = haplotypes(target, references[contig.name], first, ploidy)
        writer.add(contig, fragments(haps, target.start, spec.coverage, rng))
    suffix = "cram" if spec.cram else "bam"
    writer.write(
        sam_header(person, run, spec.contigs),
        work,
        work / "alignments" / f"{person.sample_id}.{suffix}",
        (
            work / "reads" / f"{person.sample_id}_R1.fastq.gz",
            work / "reads" / f"{person.sample_id}_R2.fastq.gz",
        ),
        spec.cram,
    )
    return run


def _read_files(person: Person, cram: bool) -> list[str]:
    aln = f"alignments/{person.sample_id}.{'cram' if cram else 'bam'}"
    return [
        aln,
        aln + (".crai" if cram else ".bai"),
        f"reads/{person.sample_id}_R1.fastq.gz",
        f"reads/{person.sample_id}_R2.fastq.gz",
    ]


def _write_fasta(path: Path, contigs: tuple[Contig, ...], seqs: dict[str, npt.NDArray[np.uint8]]) -> None:
    with path.open("w", encoding="ascii") as fh:
        for contig in contigs:
            text = seqs[contig.name].tobytes().decode("ascii")
            fh.write(f">{contig.name}\n")
            fh.writelines(text[i : i + 60] + "\n" for i in range(0, len(text), 60))
    pysam.faidx(str(path))


def _bool(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


def _write_manifest(path: Path, people: list[Person], spec: CohortSpec) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        for p in people:
            aln = fqs = ""
            if spec.reads:
                aln = f"alignments/{p.sample_id}.{'cram' if spec.cram else 'bam'}"
                fqs = f"reads/{p.sample_id}_R1.fastq.gz;reads/{p.sample_id}_R2.fastq.gz"
            row = {
                **{c: getattr(p, c) for c in MANIFEST_COLUMNS if hasattr(p, c)},
                "ancestry": ancestry(p),
                "date_of_birth": p.date_of_birth.isoformat(),
                "collection_date": p.collection_date.isoformat(),
                "sequencing_date": p.sequencing_date.isoformat(),
                "consent_research": _bool(p.consent_research),
                "consent_revoked_at": p.consent_revoked_at.isoformat() if p.consent_revoked_at else "",
                "guardian_consent": _bool(p.guardian_consent),
                "vcf": VCF_NAME,
                "vcf_sample": p.sample_id,
                "alignment": aln,
                "fastq": fqs,
            }
            writer.writerow([row[c] for c in MANIFEST_COLUMNS])


def _secrets(people: list[Person], runs: dict[str, RunInfo]) -> list[tuple[str, str, str]]:
    """Every identifying value planted anywhere in the cohort: (kind, sample_id, value)."""
    out: list[tuple[str, str, str]] = []
    for p in people:
        values = {c: str(getattr(p, c)) for c in IDENTIFIER_COLUMNS}
        values["date_of_birth"] = p.date_of_birth.isoformat()
        values["collection_date"] = p.collection_date.isoformat()
        values["sequencing_date"] = p.sequencing_date.isoformat()
        values["name_in_path"] = p.name_in_path
        values["patient_path"] = patient_path(p)
        values["library"] = f"LIB-{p.mrn}-1"
        run = runs.get(p.sample_id)
        if run is not None:
            values["flowcell"] = run.flowcell
            values["barcode"] = run.barcode
            values["instrument_run"] = f"{run.instrument}:{run.run}:{run.flowcell}"
        out += [(kind, p.sample_id, v) for kind, v in values.items() if v]
    return out


def _write_secrets(path: Path, rows: list[tuple[str, str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(("kind", "sample_id", "value"))
        writer.writerows(rows)
