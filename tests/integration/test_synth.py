"""deid.synth end to end: build real cohorts on disk and read every file back through htslib (pysam).

Each cohort is built once per module (module-scoped fixtures under tmp_path_factory) and kept small
(14 samples) so the module stays well under a minute.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pysam
import pysam.bcftools
import pysam.samtools
import pytest

import deid.synth.cohort
from deid.errors import OutputExists
from deid.synth import (
    IDENTIFIER_COLUMNS,
    MANIFEST_COLUMNS,
    MIN_SAMPLES,
    CohortSpec,
    CohortSummary,
    synthesize_cohort,
)
from deid.synth.genome import Contig, Inheritance

pytestmark = pytest.mark.slow

SEED = 20240
SAMPLES = 14
VCF = "genotypes/cohort.vcf.gz"
FASTA = "reference/GRCh38-synthetic.fa"
CONTIGS = ["chr20", "chr21", "chr22", "chrX", "chrY", "chrM"]
# HHS Safe Harbor: three-digit ZIP prefixes with under 20,000 people (2000 Census)
RESTRICTED_ZIP3 = {
    "036",
    "059",
    "063",
    "102",
    "203",
    "556",
    "692",
    "790",
    "821",
    "823",
    "830",
    "831",
    "878",
    "879",
    "884",
    "890",
    "893",
}
# a shorter genome with every inheritance, for builds that only exercise code paths
SMALL_GENOME = (
    Contig("chr20", 200_000, Inheritance.AUTOSOMAL),
    Contig("chrX", 100_000, Inheritance.X_LINKED),
    Contig("chrY", 50_000, Inheritance.Y_LINKED),
    Contig("chrM", 16_569, Inheritance.MITOCHONDRIAL),
)
ILLUMINA_NAME = re.compile(r"^[A-Z0-9]+:\d+:[A-Z0-9]+:\d:\d{4}:\d+:\d+$")
READ_KINDS = {"flowcell", "barcode", "instrument_run"}
# secrets that do not come from a manifest column: they must be planted in the data files themselves
DATA_ONLY_KINDS = {"name_in_path", "patient_path", "library"} | READ_KINDS


@dataclass(frozen=True)
class Cohort:
    """A synthesised cohort on disk and what it says about itself."""

    out: Path
    summary: CohortSummary
    columns: list[str]
    manifest: list[dict[str, str]]
    secrets: list[tuple[str, str, str]]
    meta: dict[str, Any]

    @property
    def sample_ids(self) -> list[str]:
        """Manifest sample ids in row order."""
        return [row["sample_id"] for row in self.manifest]

    @property
    def by_id(self) -> dict[str, dict[str, str]]:
        """Manifest rows by sample id."""
        return {row["sample_id"]: row for row in self.manifest}

    def secret(self, kind: str, sample_id: str) -> str:
        """The single secret of a kind for a sample."""
        values = [v for k, s, v in self.secrets if k == kind and s == sample_id]
        assert 1 == len(values), (kind, sample_id, values)
        return values[0]

    def targets(self) -> list[tuple[str, int, int]]:
        """Capture windows from cohort.json, 0-based half-open."""
        return [(t["contig"], t["start"], t["end"]) for t in self.meta["targets"]]


def _load(out: Path, summary: CohortSummary) -> Cohort:
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        columns = list(reader.fieldnames or [])
    with (out / "secrets.tsv").open(newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh, delimiter="\t"))
    assert ["kind", "sample_id", "value"] == table[0]
    meta = json.loads((out / "cohort.json").read_text(encoding="utf-8"))
    return Cohort(out, summary, columns, rows, [(r[0], r[1], r[2]) for r in table[1:]], meta)


def _build(out: Path, **kwargs: Any) -> Cohort:
    spec = CohortSpec(out=out, **kwargs)
    return _load(out, synthesize_cohort(spec))


def _text(output: str | list[str]) -> str:
    """A pysam tool's captured stdout (a str unless split_lines was asked for)."""
    assert isinstance(output, str)
    return output


def _match(pattern: str, text: str) -> re.Match[str]:
    m = re.fullmatch(pattern, text, re.DOTALL)
    assert m is not None, (pattern, text)
    return m


def _alt(rec: pysam.VariantRecord) -> str:
    assert rec.alts is not None
    assert 1 == len(rec.alts)
    return rec.alts[0]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _vcf_text(path: Path) -> str:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return fh.read()


def _vcf_header(path: Path) -> list[str]:
    return [line for line in _vcf_text(path).splitlines() if line.startswith("#")]


def _alignment_header(path: Path) -> str:
    with pysam.AlignmentFile(str(path)) as aln:
        return str(aln.header)


def _flagstat(path: Path) -> dict[str, int]:
    out = {}
    for line in _text(pysam.samtools.flagstat(str(path))).splitlines():
        passed, _, rest = line.partition(" + ")
        _failed, _, label = rest.partition(" ")
        out[label.split(" (")[0]] = int(passed)
    return out


def _age(born: str, then: str) -> int:
    b, t = dt.date.fromisoformat(born), dt.date.fromisoformat(then)
    return t.year - b.year - ((t.month, t.day) < (b.month, b.day))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    """The main cohort: BAMs, FASTQs, VCF, reference."""
    return _build(tmp_path_factory.mktemp("bam") / "cohort", samples=SAMPLES, seed=SEED)


@pytest.fixture(scope="module")
def cram_cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    """The same cohort (same seed and size) written as CRAM."""
    return _build(tmp_path_factory.mktemp("cram") / "cohort", samples=SAMPLES, seed=SEED, cram=True)


@pytest.fixture(scope="module")
def genotypes_only(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cohort, Cohort, Cohort]:
    """Two --no-reads cohorts with the main seed (same directory name) and one with another seed."""
    a = _build(tmp_path_factory.mktemp("nr_a") / "cohort", samples=SAMPLES, seed=SEED, reads=False)
    b = _build(tmp_path_factory.mktemp("nr_b") / "cohort", samples=SAMPLES, seed=SEED, reads=False)
    c = _build(tmp_path_factory.mktemp("nr_c") / "cohort", samples=SAMPLES, seed=SEED + 1, reads=False)
    return a, b, c


@dataclass(frozen=True)
class SampleReads:
    """What one sample's alignment file holds, read once."""

    header: dict[str, Any]
    read1: dict[str, tuple[str, str]]  # name -> (sequence, qualities) in sequencing orientation
    read2: dict[str, tuple[str, str]]
    tags: Counter[tuple[str, str]]  # (RG, BC) per record
    off_target: int
    unsorted: int
    bad_names: int


def _scan(path: Path, targets: list[tuple[str, int, int]]) -> SampleReads:
    windows: dict[str, list[tuple[int, int]]] = {}
    for contig, start, end in targets:
        windows.setdefault(contig, []).append((start, end))
    read1: dict[str, tuple[str, str]] = {}
    read2: dict[str, tuple[str, str]] = {}
    tags: Counter[tuple[str, str]] = Counter()
    off_target = unsorted = bad_names = 0
    last = (-1, -1)
    with pysam.AlignmentFile(str(path)) as aln:
        header = aln.header.to_dict()
        for r in aln:
            key = (r.reference_id, r.reference_start)
            unsorted += key < last
            last = key
            inside = any(
                s <= r.reference_start and (r.reference_end or -1) <= e
                for s, e in windows.get(str(r.reference_name), [])
            )
            off_target += not inside
            bad_names += ILLUMINA_NAME.match(str(r.query_name)) is None
            tags[(str(r.get_tag("RG")), str(r.get_tag("BC")))] += 1
            seq = str(r.get_forward_sequence())
            qual = str(pysam.qualities_to_qualitystring(r.get_forward_qualities() or []))
            (read1 if r.is_read1 else read2)[str(r.query_name)] = (seq, qual)
    return SampleReads(header, read1, read2, tags, off_target, unsorted, bad_names)


@pytest.fixture(scope="module")
def bam_reads(cohort: Cohort) -> dict[str, SampleReads]:
    """Every sample's BAM, scanned once."""
    return {s: _scan(cohort.out / f"alignments/{s}.bam", cohort.targets()) for s in cohort.sample_ids}


@dataclass(frozen=True)
class FastqRecord:
    """One FASTQ record."""

    name: str
    comment: str
    sequence: str
    quality: str


def _fastq(path: Path) -> list[FastqRecord]:
    with pysam.FastxFile(str(path)) as fx:
        return [FastqRecord(str(r.name), str(r.comment), str(r.sequence), str(r.quality)) for r in fx]


@pytest.fixture(scope="module")
def fastqs(cohort: Cohort) -> dict[str, tuple[list[FastqRecord], list[FastqRecord]]]:
    """Every sample's FASTQ pair, parsed once with htslib."""
    return {
        s: (_fastq(cohort.out / f"reads/{s}_R1.fastq.gz"), _fastq(cohort.out / f"reads/{s}_R2.fastq.gz"))
        for s in cohort.sample_ids
    }


# --- layout and summary -------------------------------------------------------------------------


def test_cohort_writes_every_file_the_summary_lists(cohort: Cohort) -> None:
    """The summary and cohort.json list exactly the files on disk (plus cohort.json itself)."""
    expected = [
        "cohort.json",
        "genotypes/cohort.vcf.gz",
        "genotypes/cohort.vcf.gz.tbi",
        "manifest.csv",
        "secrets.tsv",
        FASTA,
        FASTA + ".fai",
    ]
    for s in cohort.sample_ids:
        expected += [
            f"alignments/{s}.bam",
            f"alignments/{s}.bam.bai",
            f"reads/{s}_R1.fastq.gz",
            f"reads/{s}_R2.fastq.gz",
        ]
    assert sorted(expected) == _files(cohort.out)
    assert sorted(expected) == sorted(cohort.summary.files)
    assert list(cohort.summary.files) == cohort.meta["files"]
    assert (SAMPLES, SEED, True, False) == (
        cohort.meta["samples"],
        cohort.meta["seed"],
        cohort.meta["reads"],
        cohort.meta["cram"],
    )
    assert cohort.out == cohort.summary.out


def test_summary_counts_edge_cases_regions_and_secrets(cohort: Cohort) -> None:
    """The summary's edge-case, region and secret counts match the manifest and secrets.tsv."""
    assert {
        "minor_with_guardian_consent": 1,
        "minor_without_guardian_consent": 1,
        "no_research_consent": 1,
        "over_89": 2,
        "restricted_zip": 2,
        "revoked": 1,
    } == cohort.summary.edge_cases
    assert dict(Counter(r["residence_region"] for r in cohort.manifest)) == cohort.summary.regions
    assert len(cohort.secrets) == cohort.summary.secrets
    assert cohort.summary.as_dict()["sites"] == cohort.meta["sites"]


# --- VCF ----------------------------------------------------------------------------------------


def test_vcf_parses_with_bcftools_and_is_all_biallelic_snps(cohort: Cohort) -> None:
    """bcftools reads every record; bcftools stats sees only biallelic SNPs, as many as the summary says."""
    vcf = str(cohort.out / VCF)
    total = sum(cohort.summary.sites.values())
    body = _text(pysam.bcftools.view("-H", vcf)).splitlines()
    assert total == len(body)
    stats = {}
    for line in _text(pysam.bcftools.stats(vcf)).splitlines():
        if line.startswith("SN\t"):
            _, _, key, value = line.split("\t")
            stats[key] = int(value)
    assert {
        "number of samples:": SAMPLES,
        "number of records:": total,
        "number of no-ALTs:": 0,
        "number of SNPs:": total,
        "number of MNPs:": 0,
        "number of indels:": 0,
        "number of others:": 0,
        "number of multiallelic sites:": 0,
        "number of multiallelic SNP sites:": 0,
    } == stats


def test_vcf_tabix_index_answers_region_queries(cohort: Cohort) -> None:
    """The .tbi index returns exactly the records of a contig and of a sub-region."""
    vcf = str(cohort.out / VCF)
    with pysam.VariantFile(vcf) as vf:
        per_contig = {c: sum(1 for _ in vf.fetch(c)) for c in CONTIGS}
    assert cohort.summary.sites == per_contig
    body = [line.split("\t") for line in _text(pysam.bcftools.view("-H", vcf)).splitlines()]
    expected = [f[:2] for f in body if f[0] == "chr21" and int(f[1]) <= 500_000]
    with pysam.TabixFile(vcf) as tbx:
        got = [line.split("\t")[:2] for line in tbx.fetch("chr21", 0, 500_000)]
    assert expected == got
    assert 0 < len(got) < per_contig["chr21"]


def test_vcf_samples_match_manifest_order(cohort: Cohort) -> None:
    """The VCF's sample columns are the manifest's sample ids, in manifest order."""
    with pysam.VariantFile(str(cohort.out / VCF)) as vf:
        assert cohort.sample_ids == list(vf.header.samples)
    assert cohort.sample_ids == [r["vcf_sample"] for r in cohort.manifest]
    assert [VCF] * SAMPLES == [r["vcf"] for r in cohort.manifest]


def test_vcf_header_carries_the_identifying_lines(cohort: Cohort) -> None:
    """The header has fileDate (last sequencing date), source, commandline, merge command and a ##SAMPLE per sample."""
    header = _vcf_header(cohort.out / VCF)

    def lines(prefix: str) -> list[str]:
        return [h for h in header if h.startswith(prefix)]

    last = max(dt.date.fromisoformat(r["sequencing_date"]) for r in cohort.manifest)
    assert [f"##fileDate={last:%Y%m%d}"] == lines("##fileDate=")
    assert 1 == len(lines("##source="))
    assert 1 == len(lines("##commandline="))
    (merge,) = lines("##bcftools_mergeCommand=")
    paths = [cohort.secret("patient_path", s) + f"/{s}.g.vcf.gz" for s in cohort.sample_ids]
    assert paths == re.findall(r"/data/clinical/patients/\S+\.g\.vcf\.gz", merge)
    samples = lines("##SAMPLE=")
    assert cohort.sample_ids == [_match(r"##SAMPLE=<ID=([^,]+),.*", h).group(1) for h in samples]
    expected = [
        f'##SAMPLE=<ID={r["sample_id"]},Individual="{r["full_name"]}",DOB={r["date_of_birth"]},'
        f'MRN={r["mrn"]},Description="{r["diagnosis"]}">'
        for r in cohort.manifest
    ]
    assert expected == samples


def test_vcf_contigs_are_the_human_shaped_set(cohort: Cohort) -> None:
    """The header declares chr20-22, chrX, chrY and chrM with the lengths cohort.json reports."""
    with pysam.VariantFile(str(cohort.out / VCF)) as vf:
        declared = {name: c.length for name, c in vf.header.contigs.items()}
    expected = {c["name"]: c["length"] for c in cohort.meta["contigs"]}
    assert CONTIGS == list(declared)
    assert expected == declared


def test_genotype_ploidy_follows_sex_and_contig(cohort: Cohort) -> None:
    """chrY: males haploid, females missing; chrX: males haploid, females diploid; chrM haploid; autosomes diploid."""
    sex = {r["sample_id"]: r["sex"] for r in cohort.manifest}
    males = sum(1 for v in sex.values() if v == "male")
    assert 0 < males < SAMPLES
    expected_shape: dict[str, dict[str, int | None]] = {
        "chr20": {"male": 2, "female": 2},
        "chr21": {"male": 2, "female": 2},
        "chr22": {"male": 2, "female": 2},
        "chrX": {"male": 1, "female": 2},
        "chrY": {"male": 1, "female": None},
        "chrM": {"male": 1, "female": 1},
    }
    expected_an = {
        "chr20": 2 * SAMPLES,
        "chr21": 2 * SAMPLES,
        "chr22": 2 * SAMPLES,
        "chrX": males + 2 * (SAMPLES - males),
        "chrY": males,
        "chrM": SAMPLES,
    }
    wrong: Counter[str] = Counter()
    with pysam.VariantFile(str(cohort.out / VCF)) as vf:
        for rec in vf:
            contig = rec.chrom
            ac = 0
            for s in cohort.sample_ids:
                gt = rec.samples[s]["GT"]
                ploidy = expected_shape[contig][sex[s]]
                if ploidy is None:
                    wrong[contig] += gt != (None,)
                    continue
                wrong[contig] += len(gt) != ploidy or any(a not in (0, 1) for a in gt)
                ac += sum(a for a in gt if a is not None)
            wrong[contig + ":AN"] += rec.info["AN"] != expected_an[contig]
            wrong[contig + ":AC"] += rec.info["AC"] != (ac,)
    assert {} == {k: v for k, v in wrong.items() if v}
    assert cohort.summary.sites["chrY"] > 0


def test_vcf_ref_matches_reference_fasta(cohort: Cohort) -> None:
    """At every VCF site REF is the reference FASTA's base and ALT differs from it."""
    mismatches = checked = 0
    with pysam.FastaFile(str(cohort.out / FASTA)) as fa, pysam.VariantFile(str(cohort.out / VCF)) as vf:
        assert CONTIGS == list(fa.references)
        lengths = {c["name"]: c["length"] for c in cohort.meta["contigs"]}
        assert [lengths[c] for c in CONTIGS] == list(fa.lengths)
        seqs = {c: fa.fetch(c) for c in CONTIGS}
        for rec in vf:
            checked += 1
            mismatches += rec.ref != seqs[rec.chrom][rec.pos - 1] or _alt(rec) == rec.ref
    assert sum(cohort.summary.sites.values()) == checked
    assert 0 == mismatches


# --- reads vs genotypes -------------------------------------------------------------------------


def test_reads_carry_each_samples_genotypes(cohort: Cohort) -> None:
    """Pileups at VCF sites in capture targets agree with the called genotype (hom-ref, het, hom/haploid alt)."""
    outcome: Counter[tuple[str, bool]] = Counter()
    with pysam.VariantFile(str(cohort.out / VCF)) as vf:
        for s in cohort.sample_ids:
            with pysam.AlignmentFile(str(cohort.out / f"alignments/{s}.bam")) as bam:
                for contig, start, end in cohort.targets():
                    cov = bam.count_coverage(contig, start, end, quality_threshold=0)
                    for rec in vf.fetch(contig, start, end):
                        gt = rec.samples[s]["GT"]
                        if None in gt:
                            continue
                        i = rec.pos - 1 - start
                        ref = cov["ACGT".index(str(rec.ref))][i]
                        alt = cov["ACGT".index(_alt(rec))][i]
                        if ref + alt < 8:
                            continue
                        fraction = alt / (ref + alt)
                        if sum(gt) == 0:
                            outcome[("ref", fraction < 0.1)] += 1
                        elif sum(gt) == len(gt):
                            outcome[("alt", fraction > 0.9)] += 1
                        else:
                            outcome[("het", 0.15 <= fraction <= 0.85)] += 1
    checked = sum(outcome.values())
    agreed = sum(n for (_, ok), n in outcome.items() if ok)
    het = outcome[("het", True)] + outcome[("het", False)]
    hom_alt = outcome[("alt", True)] + outcome[("alt", False)]
    assert het >= 20, outcome
    assert hom_alt >= 20, outcome
    assert agreed / checked >= 0.95, outcome


def test_reads_stay_inside_capture_targets_and_follow_sex(
    cohort: Cohort, bam_reads: dict[str, SampleReads]
) -> None:
    """No read leaves the capture windows; females have no chrY reads, males do."""
    sex = {r["sample_id"]: r["sex"] for r in cohort.manifest}
    assert dict.fromkeys(cohort.sample_ids, 0) == {s: r.off_target for s, r in bam_reads.items()}
    chr_y = {}
    for s in cohort.sample_ids:
        stats = _text(pysam.samtools.idxstats(str(cohort.out / f"alignments/{s}.bam")))
        counts = {f[0]: int(f[2]) for f in (line.split("\t") for line in stats.splitlines())}
        chr_y[s] = counts["chrY"] > 0
    assert {s: sex[s] == "male" for s in cohort.sample_ids} == chr_y


# --- BAM ----------------------------------------------------------------------------------------


def test_bam_files_pass_quickcheck_and_are_indexed(cohort: Cohort) -> None:
    """Every BAM passes samtools quickcheck, has a .bai, and idxstats counts every read."""
    for s in cohort.sample_ids:
        bam = cohort.out / f"alignments/{s}.bam"
        assert "" == _text(pysam.samtools.quickcheck(str(bam)))
        assert (cohort.out / f"alignments/{s}.bam.bai").is_file()
        rows = [line.split("\t") for line in _text(pysam.samtools.idxstats(str(bam))).splitlines()]
        assert [*CONTIGS, "*"] == [r[0] for r in rows]
        assert _flagstat(bam)["in total"] == sum(int(r[2]) + int(r[3]) for r in rows)


def test_bam_is_coordinate_sorted(cohort: Cohort, bam_reads: dict[str, SampleReads]) -> None:
    """@HD says SO:coordinate and records really are in coordinate order."""
    assert dict.fromkeys(cohort.sample_ids, "coordinate") == {
        s: r.header["HD"]["SO"] for s, r in bam_reads.items()
    }
    assert dict.fromkeys(cohort.sample_ids, 0) == {s: r.unsorted for s, r in bam_reads.items()}


def test_bam_flagstat_all_properly_paired(cohort: Cohort) -> None:
    """samtools flagstat: every read mapped, paired and properly paired; no secondary, duplicate or singleton."""
    for s in cohort.sample_ids:
        fs = _flagstat(cohort.out / f"alignments/{s}.bam")
        total = fs["in total"]
        assert total > 0
        assert {
            "primary": total,
            "secondary": 0,
            "supplementary": 0,
            "duplicates": 0,
            "mapped": total,
            "paired in sequencing": total,
            "read1": total // 2,
            "read2": total // 2,
            "properly paired": total,
            "with itself and mate mapped": total,
            "singletons": 0,
            "with mate mapped to a different chr": 0,
        } == {
            k: fs[k]
            for k in (
                "primary",
                "secondary",
                "supplementary",
                "duplicates",
                "mapped",
                "paired in sequencing",
                "read1",
                "read2",
                "properly paired",
                "with itself and mate mapped",
                "singletons",
                "with mate mapped to a different chr",
            )
        }


def test_bam_header_names_the_patient(cohort: Cohort, bam_reads: dict[str, SampleReads]) -> None:
    """@RG SM/LB/DS/DT, @PG CL and @CO carry the sample id, library, name, DOB, patient path and contact."""
    for s, row in cohort.by_id.items():
        header = bam_reads[s].header
        (rg,) = header["RG"]
        flowcell = cohort.secret("flowcell", s)
        barcode = cohort.secret("barcode", s)
        assert {
            "SM": s,
            "LB": f"LIB-{row['mrn']}-1",
            "PL": "ILLUMINA",
            "DS": f"WES {row['full_name']} DOB {row['date_of_birth']}",
            "CN": row["sequencing_center"],
            "DT": row["sequencing_date"],
        } == {k: rg[k] for k in ("SM", "LB", "PL", "DS", "CN", "DT")}
        assert re.fullmatch(re.escape(flowcell) + r"\.[1-4]", rg["ID"])
        assert f"{rg['ID']}.{barcode}" == rg["PU"]
        path = cohort.secret("patient_path", s)
        pg = {p["ID"]: p["CL"] for p in header["PG"]}
        assert ["bwa", "samtools", "MarkDuplicates"] == list(pg)
        assert [True, True, True] == [path in cl for cl in pg.values()]
        assert [
            {"CO": f"Patient {row['full_name']}, MRN {row['mrn']}, referred for {row['diagnosis']}"},
            {"CO": f"contact {row['email']}; sequenced {row['sequencing_date']}"},
        ] == [{"CO": c} for c in header["CO"]]
        lengths = {c["name"]: c["length"] for c in cohort.meta["contigs"]}
        assert [(c, lengths[c]) for c in CONTIGS] == [(q["SN"], q["LN"]) for q in header["SQ"]]


def test_bam_records_carry_read_group_barcode_and_illumina_names(
    cohort: Cohort, bam_reads: dict[str, SampleReads]
) -> None:
    """Every record has RG = the @RG ID and BC = the i7-i5 barcode, and an Illumina-style read name."""
    for s in cohort.sample_ids:
        reads = bam_reads[s]
        rg_id = reads.header["RG"][0]["ID"]
        bc = cohort.secret("barcode", s).replace("+", "-")
        total = len(reads.read1) + len(reads.read2)
        assert {(rg_id, bc): total} == dict(reads.tags)
        assert 0 == reads.bad_names
        assert total == _flagstat(cohort.out / f"alignments/{s}.bam")["in total"]


# --- FASTQ --------------------------------------------------------------------------------------


def test_fastq_pairs_match_the_bam(
    cohort: Cohort,
    bam_reads: dict[str, SampleReads],
    fastqs: dict[str, tuple[list[FastqRecord], list[FastqRecord]]],
) -> None:
    """R1 and R2 hold the same names in the same order, as many as flagstat's read1, and the BAM's read names."""
    for s in cohort.sample_ids:
        r1, r2 = fastqs[s]
        fs = _flagstat(cohort.out / f"alignments/{s}.bam")
        assert (fs["read1"], fs["read1"]) == (len(r1), len(r2))
        assert [r.name for r in r1] == [r.name for r in r2]
        assert len(r1) == len({r.name for r in r1})
        assert set(bam_reads[s].read1) == {r.name for r in r1}
        assert set(bam_reads[s].read2) == {r.name for r in r2}


def test_fastq_sequences_are_the_bam_reads_as_sequenced(
    cohort: Cohort,
    bam_reads: dict[str, SampleReads],
    fastqs: dict[str, tuple[list[FastqRecord], list[FastqRecord]]],
) -> None:
    """Each FASTQ read's bases and qualities equal its BAM record in sequencing orientation."""
    for s in cohort.sample_ids:
        r1, r2 = fastqs[s]
        assert bam_reads[s].read1 == {r.name: (r.sequence, r.quality) for r in r1}
        assert bam_reads[s].read2 == {r.name: (r.sequence, r.quality) for r in r2}


def test_fastq_comments_carry_mate_and_barcode(
    cohort: Cohort, fastqs: dict[str, tuple[list[FastqRecord], list[FastqRecord]]]
) -> None:
    """Comments read `<mate>:N:0:<i7>+<i5>` with the run's barcode; names are Illumina-style."""
    for s in cohort.sample_ids:
        barcode = cohort.secret("barcode", s)
        assert re.fullmatch(r"[ACGT]{8}\+[ACGT]{8}", barcode)
        r1, r2 = fastqs[s]
        assert {f"1:N:0:{barcode}"} == {r.comment for r in r1}
        assert {f"2:N:0:{barcode}"} == {r.comment for r in r2}
        assert [] == [r.name for r in r1 if not ILLUMINA_NAME.match(r.name)]
        prefix = cohort.secret("instrument_run", s) + ":"
        assert [] == [r.name for r in r1 if not r.name.startswith(prefix)]


# --- secrets ------------------------------------------------------------------------------------


def test_secrets_list_every_manifest_identifier(cohort: Cohort) -> None:
    """secrets.tsv holds exactly the non-empty identifier-column values of the manifest, under their column."""
    from_manifest = {(c, r["sample_id"], r[c]) for r in cohort.manifest for c in IDENTIFIER_COLUMNS if r[c]}
    listed = {t for t in cohort.secrets if t[0] in IDENTIFIER_COLUMNS}
    assert from_manifest == listed
    assert len(cohort.secrets) == len(set(cohort.secrets))
    assert [] == [t for t in cohort.secrets if not t[2]]
    assert set(cohort.sample_ids) == {t[1] for t in cohort.secrets}
    per_sample = Counter((k, s) for k, s, _ in cohort.secrets if k in DATA_ONLY_KINDS - {"name_in_path"})
    assert {(k, s): 1 for k in DATA_ONLY_KINDS - {"name_in_path"} for s in cohort.sample_ids} == dict(
        per_sample
    )


def test_secrets_list_every_identifier_planted_in_headers(
    cohort: Cohort,
    bam_reads: dict[str, SampleReads],
    fastqs: dict[str, tuple[list[FastqRecord], list[FastqRecord]]],
) -> None:
    """Every identifier in @RG/@PG/@CO, the VCF ##SAMPLE/merge lines and FASTQ names/comments is in secrets.tsv."""
    planted: set[tuple[str, str, str]] = set()
    for s in cohort.sample_ids:
        header = bam_reads[s].header
        rg = header["RG"][0]
        name, dob = _match(r"WES (.+) DOB (\d{4}-\d\d-\d\d)", rg["DS"]).groups()
        planted |= {
            ("sample_id", s, rg["SM"]),
            ("library", s, rg["LB"]),
            ("full_name", s, name),
            ("date_of_birth", s, dob),
            ("flowcell", s, rg["ID"].rsplit(".", 1)[0]),
            ("barcode", s, rg["PU"].rsplit(".", 1)[1]),
            ("sequencing_date", s, rg["DT"]),
        }
        for pg in header["PG"]:
            for path in re.findall(r"(/data/clinical/patients/[^/\s]+)/", pg["CL"]):
                planted.add(("patient_path", s, path))
        co = "\n".join(header["CO"])
        patient, mrn, email = _match(r"Patient (.+), MRN (\d+), .*\ncontact (\S+); .*", co).groups()
        planted |= {("full_name", s, patient), ("mrn", s, mrn), ("email", s, email)}
        r1, _ = fastqs[s]
        planted |= {("instrument_run", s, n.rsplit(":", 4)[0]) for n in (r.name for r in r1)}
        planted |= {("barcode", s, c.split(":", 3)[3]) for c in (r.comment for r in r1)}
    for line in _vcf_header(cohort.out / VCF):
        m = re.fullmatch(r'##SAMPLE=<ID=([^,]+),Individual="([^"]+)",DOB=([^,]+),MRN=(\d+),.*', line)
        if m:
            s = m.group(1)
            planted |= {
                ("sample_id", s, s),
                ("full_name", s, m.group(2)),
                ("date_of_birth", s, m.group(3)),
                ("mrn", s, m.group(4)),
            }
        if line.startswith("##bcftools_mergeCommand="):
            for path, s in re.findall(r"(/data/clinical/patients/[^/\s]+)/([^/\s]+)\.g\.vcf\.gz", line):
                planted.add(("patient_path", s, path))
    assert len(planted) > 10 * SAMPLES
    assert set() == planted - set(cohort.secrets)


def test_every_secret_was_planted_somewhere(
    cohort: Cohort,
    bam_reads: dict[str, SampleReads],
    fastqs: dict[str, tuple[list[FastqRecord], list[FastqRecord]]],
) -> None:
    """Each secret value occurs in a generated file; those not from the manifest occur in that sample's data files."""
    vcf_header = "\n".join(_vcf_header(cohort.out / VCF))
    data: dict[str, str] = {}
    for s in cohort.sample_ids:
        r1, r2 = fastqs[s]
        fastq_tokens = {r.name.rsplit(":", 4)[0] for r in r1 + r2} | {r.comment for r in r1 + r2}
        data[s] = "\n".join(
            [vcf_header, _alignment_header(cohort.out / f"alignments/{s}.bam"), *sorted(fastq_tokens)]
        )
    everything = "\n".join(
        [
            (cohort.out / "manifest.csv").read_text(encoding="utf-8"),
            (cohort.out / "cohort.json").read_text(encoding="utf-8"),
            *data.values(),
        ]
    )
    assert [] == [t for t in cohort.secrets if t[2] not in everything]
    assert [] == [t for t in cohort.secrets if t[0] in DATA_ONLY_KINDS and t[2] not in data[t[1]]]


# --- manifest -----------------------------------------------------------------------------------


def test_manifest_columns_and_unique_ids(cohort: Cohort) -> None:
    """manifest.csv has exactly MANIFEST_COLUMNS, one row per sample with unique sample ids and file paths."""
    assert list(MANIFEST_COLUMNS) == cohort.columns
    assert SAMPLES == len(cohort.manifest)
    assert SAMPLES == len(set(cohort.sample_ids))
    assert [f"alignments/{s}.bam" for s in cohort.sample_ids] == [r["alignment"] for r in cohort.manifest]
    assert [f"reads/{s}_R1.fastq.gz;reads/{s}_R2.fastq.gz" for s in cohort.sample_ids] == [
        r["fastq"] for r in cohort.manifest
    ]
    assert [] == [
        r["sample_id"]
        for r in cohort.manifest
        if not all((cohort.out / p).is_file() for p in [r["alignment"], *r["fastq"].split(";")])
    ]


def test_manifest_holds_every_consent_and_privacy_edge_case(cohort: Cohort) -> None:
    """The manifest has revoked, no-research, both guardian cases, two over-89s, restricted ZIPs, all regions."""
    rows = cohort.manifest
    age = {r["sample_id"]: _age(r["date_of_birth"], r["collection_date"]) for r in rows}
    revoked = [r for r in rows if r["consent_revoked_at"]]
    assert 1 == len(revoked)
    assert revoked[0]["consent_revoked_at"] > revoked[0]["collection_date"]
    assert 1 == sum(r["consent_research"] == "false" for r in rows)
    assert {"true", "false"} == {r["consent_research"] for r in rows}
    minors = sorted((r["guardian_consent"], r["residence_region"]) for r in rows if age[r["sample_id"]] < 16)
    assert [("false", "US-CA"), ("true", "GB")] == minors
    assert {""} == {r["guardian_consent"] for r in rows if age[r["sample_id"]] >= 16}
    assert 2 == sum(a >= 90 for a in age.values())
    restricted = {r["sample_id"] for r in rows if r["zip"][:3] in RESTRICTED_ZIP3}
    assert {r["sample_id"] for r in rows if r["residence_region"] in ("US-WY", "US-NM")} == restricted
    assert len(restricted) >= 2
    regions = {r["residence_region"] for r in rows}
    assert {"US-CA", "GB", "CH", "JP", "CN"} <= regions
    assert len({g for g in regions if g.startswith("EU-")}) >= 2


def test_too_few_samples_is_refused_without_leftovers(tmp_path: Path) -> None:
    """A cohort smaller than MIN_SAMPLES raises ValueError and leaves nothing behind."""
    parent = tmp_path / "parent"
    with pytest.raises(ValueError, match=str(MIN_SAMPLES)):
        synthesize_cohort(CohortSpec(out=parent / "cohort", samples=MIN_SAMPLES - 1, seed=1, reads=False))
    assert [] == os.listdir(parent)


# --- determinism --------------------------------------------------------------------------------


def test_same_seed_gives_identical_manifest_and_genotypes(
    genotypes_only: tuple[Cohort, Cohort, Cohort],
) -> None:
    """Two --no-reads builds with one seed give a byte-identical manifest and identical VCF text."""
    a, b, _ = genotypes_only
    assert (a.out / "manifest.csv").read_bytes() == (b.out / "manifest.csv").read_bytes()
    assert _vcf_text(a.out / VCF) == _vcf_text(b.out / VCF)


def test_same_seed_gives_byte_identical_files(genotypes_only: tuple[Cohort, Cohort, Cohort]) -> None:
    """Every file of two --no-reads builds with one seed is byte-identical."""
    a, b, _ = genotypes_only
    assert _files(a.out) == _files(b.out)
    assert {f: (a.out / f).read_bytes() for f in _files(a.out)} == {
        f: (b.out / f).read_bytes() for f in _files(b.out)
    }


def test_other_seed_gives_other_cohort(genotypes_only: tuple[Cohort, Cohort, Cohort]) -> None:
    """A different seed gives different people and different genotypes."""
    a, _, c = genotypes_only
    assert (a.out / "manifest.csv").read_bytes() != (c.out / "manifest.csv").read_bytes()
    assert set() == {r["full_name"] for r in a.manifest} & {r["full_name"] for r in c.manifest}
    body = [line for line in _vcf_text(a.out / VCF).splitlines() if not line.startswith("#")]
    other = [line for line in _vcf_text(c.out / VCF).splitlines() if not line.startswith("#")]
    assert body != other


def test_no_reads_writes_only_genotypes_and_tables(genotypes_only: tuple[Cohort, Cohort, Cohort]) -> None:
    """--no-reads writes the VCF, manifest, secrets and cohort.json only, with empty file columns and no run secrets."""
    a, _, _ = genotypes_only
    assert ["cohort.json", VCF, VCF + ".tbi", "manifest.csv", "secrets.tsv"] == _files(a.out)
    assert ([""] * SAMPLES, [""] * SAMPLES) == (
        [r["alignment"] for r in a.manifest],
        [r["fastq"] for r in a.manifest],
    )
    assert set() == {k for k, _, _ in a.secrets} & READ_KINDS
    assert (False, False) == (a.meta["reads"], a.meta["cram"])


def test_no_reads_cohort_has_the_same_people_and_genotypes(
    cohort: Cohort, genotypes_only: tuple[Cohort, Cohort, Cohort]
) -> None:
    """For one seed and size, --no-reads gives the full cohort's VCF and manifest minus the file columns."""
    a, _, _ = genotypes_only
    assert _vcf_text(cohort.out / VCF) == _vcf_text(a.out / VCF)

    def strip(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k not in ("alignment", "fastq")} for r in rows]

    assert strip(cohort.manifest) == strip(a.manifest)
    assert [t for t in cohort.secrets if t[0] not in READ_KINDS] == a.secrets


@pytest.mark.parametrize("cram", [False, True], ids=["bam", "cram"])
def test_same_seed_gives_byte_identical_alignments(
    tmp_path_factory: pytest.TempPathFactory, cram: bool
) -> None:
    """Two low-coverage builds with reads and one seed are byte-identical, alignments and FASTQs included."""
    spec = {"samples": MIN_SAMPLES, "seed": 7, "coverage": 2.0, "cram": cram, "contigs": SMALL_GENOME}
    a = _build(tmp_path_factory.mktemp("det_a") / "cohort", **spec)
    b = _build(tmp_path_factory.mktemp("det_b") / "cohort", **spec)
    assert _files(a.out) == _files(b.out)
    differ = [f for f in _files(a.out) if (a.out / f).read_bytes() != (b.out / f).read_bytes()]
    assert [] == differ


# --- CRAM ---------------------------------------------------------------------------------------


def test_cram_cohort_writes_indexed_crams_only(cram_cohort: Cohort) -> None:
    """cram=True writes one .cram and .crai per sample and no BAM."""
    expected = sorted(f"{s}.cram{x}" for s in cram_cohort.sample_ids for x in ("", ".crai"))
    assert expected == sorted(os.listdir(cram_cohort.out / "alignments"))
    assert [f"alignments/{s}.cram" for s in cram_cohort.sample_ids] == [
        r["alignment"] for r in cram_cohort.manifest
    ]
    assert True is cram_cohort.meta["cram"]


def _isolated(cram: Path, into: Path) -> Path:
    """Copy a CRAM and its index where no reference FASTA lies next to it."""
    into.mkdir(parents=True, exist_ok=True)
    shutil.copy(cram, into / cram.name)
    shutil.copy(cram.with_name(cram.name + ".crai"), into / (cram.name + ".crai"))
    return into / cram.name


def _records(aln: pysam.AlignmentFile) -> Iterator[tuple[object, ...]]:
    for r in aln:
        yield (
            r.query_name,
            r.flag,
            r.reference_name,
            r.reference_start,
            r.cigarstring,
            r.next_reference_start,
            r.template_length,
            r.query_sequence,
            pysam.qualities_to_qualitystring(r.query_qualities or []),
            sorted(r.get_tags()),
        )


def test_cram_decodes_without_external_reference(
    cohort: Cohort, cram_cohort: Cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With REF_PATH=':' and no reference file, every CRAM decodes to the same records as the BAM of the same seed."""
    monkeypatch.setenv("REF_PATH", ":")
    cache = tmp_path / "empty-ref-cache"
    cache.mkdir()
    monkeypatch.setenv("REF_CACHE", str(cache))
    for s in cram_cohort.sample_ids:
        cram = _isolated(cram_cohort.out / f"alignments/{s}.cram", tmp_path / s)
        assert "" == _text(pysam.samtools.quickcheck(str(cram)))
        assert "embedded_ref" in _text(pysam.samtools.cram_size(str(cram)))
        # decode_md=0: htslib would otherwise add MD/NM tags the CRAM does not store
        with (
            pysam.AlignmentFile(str(cram), "rc", format_options=["decode_md=0"]) as c,
            pysam.AlignmentFile(str(cohort.out / f"alignments/{s}.bam")) as b,
        ):
            assert list(_records(b)) == list(_records(c))
        assert [] == os.listdir(cache)


def test_cram_read_count_equals_fastq_count(cram_cohort: Cohort, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each CRAM holds exactly the reads of its FASTQ pair (2 x the R1 count), all properly paired."""
    monkeypatch.setenv("REF_PATH", ":")
    for s in cram_cohort.sample_ids:
        fastq = sum(len(_fastq(cram_cohort.out / f"reads/{s}_{m}.fastq.gz")) for m in ("R1", "R2"))
        fs = _flagstat(cram_cohort.out / f"alignments/{s}.cram")
        assert (fastq, fastq) == (fs["in total"], fs["properly paired"])


def test_cram_header_is_the_bam_header(cohort: Cohort, cram_cohort: Cohort) -> None:
    """The CRAM header equals the BAM header (bar @SQ M5 digests): no build paths leak into it."""

    def without_m5(text: str) -> list[str]:
        return [re.sub(r"\tM5:[0-9a-f]{32}", "", line) for line in text.splitlines()]

    for s in cram_cohort.sample_ids:
        cram = _alignment_header(cram_cohort.out / f"alignments/{s}.cram")
        bam = _alignment_header(cohort.out / f"alignments/{s}.bam")
        assert without_m5(bam) == without_m5(cram)
        assert ".partial-" not in cram


def test_no_file_names_the_hidden_build_directory(cohort: Cohort, cram_cohort: Cohort) -> None:
    """No table, VCF header or BAM/CRAM header mentions the .partial build directory or the output's parent."""
    texts = {
        "manifest.csv": (cohort.out / "manifest.csv").read_text(encoding="utf-8"),
        "secrets.tsv": (cohort.out / "secrets.tsv").read_text(encoding="utf-8"),
        "cohort.json": (cohort.out / "cohort.json").read_text(encoding="utf-8"),
        VCF: "\n".join(_vcf_header(cohort.out / VCF)),
    }
    for s in cohort.sample_ids:
        texts[f"{s}.bam"] = _alignment_header(cohort.out / f"alignments/{s}.bam")
        texts[f"{s}.cram"] = _alignment_header(cram_cohort.out / f"alignments/{s}.cram")
    parents = (str(cohort.out.parent), str(cram_cohort.out.parent))
    leaks = {name for name, text in texts.items() if ".partial-" in text or any(p in text for p in parents)}
    assert set() == leaks


# --- atomicity ----------------------------------------------------------------------------------


def test_existing_output_is_refused_and_untouched(tmp_path: Path) -> None:
    """An existing output path raises OutputExists and is left exactly as it was, with no partial sibling."""
    out = tmp_path / "cohort"
    out.mkdir()
    (out / "keep.txt").write_text("earlier release\n", encoding="utf-8")
    with pytest.raises(OutputExists) as err:
        synthesize_cohort(CohortSpec(out=out, samples=MIN_SAMPLES, seed=1, reads=False))
    assert str(out) == err.value.path
    assert ["cohort"] == os.listdir(tmp_path)
    assert ["keep.txt"] == os.listdir(out)
    assert "earlier release\n" == (out / "keep.txt").read_text(encoding="utf-8")
    taken = tmp_path / "file"
    taken.write_bytes(b"x")
    with pytest.raises(OutputExists):
        synthesize_cohort(CohortSpec(out=taken, samples=MIN_SAMPLES, seed=1, reads=False))
    assert b"x" == taken.read_bytes()


def test_failed_build_leaves_no_partial_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When a late stage fails, the error propagates and neither the output nor a .partial directory remains."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(deid.synth.cohort, "_write_manifest", broken)
    parent = tmp_path / "parent"
    with pytest.raises(RuntimeError, match="disk full"):
        synthesize_cohort(
            CohortSpec(out=parent / "cohort", samples=MIN_SAMPLES, seed=1, reads=False, contigs=SMALL_GENOME)
        )
    assert [] == os.listdir(parent)


def test_interrupted_build_leaves_no_partial_directory(tmp_path: Path) -> None:
    """A KeyboardInterrupt while reads are simulated propagates and leaves nothing in the parent."""
    stages: list[str] = []

    def progress(stage: str, done: int, total: int) -> None:
        stages.append(stage)
        if stage == "reads":
            raise KeyboardInterrupt

    spec = CohortSpec(out=tmp_path / "cohort", samples=MIN_SAMPLES, seed=1, contigs=SMALL_GENOME)
    with pytest.raises(KeyboardInterrupt):
        synthesize_cohort(spec, progress)
    assert ["genotypes"] * 5 + ["reads"] == stages
    assert [] == os.listdir(tmp_path)
