"""Simulate a participant's sequencing run: paired reads from their own haplotypes.

Reads come from a capture panel (target windows shared by the cohort) on the participant's
haplotypes, so every read carries the participant's alleles at the variant sites it covers.
The run looks like a clinical exome run: Illumina-style read names with instrument, run and
flowcell, binned NovaSeq qualities, a dual-index barcode, and a BAM/CRAM header whose @RG,
@PG and @CO lines name the patient. Sequences are cut from the haplotypes with numpy slicing;
htslib (pysam.samtools) turns the SAM text into BAM or CRAM and indexes it.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pysam

from deid.synth.genome import Contig
from deid.synth.people import Person
from deid.synth.vcf_writer import patient_path

READ_LENGTH = 100
_COMPLEMENT = np.zeros(256, dtype=np.uint8)
for _a, _b in zip(b"ACGTN", b"TGCAN", strict=True):
    _COMPLEMENT[_a] = _b
_QUALITIES = np.frombuffer(b"F:,", dtype=np.uint8)  # NovaSeq binned Q37, Q25, Q11
_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class Target:
    """A capture window on a contig, with the variant sites inside it."""

    contig: Contig
    start: int
    end: int
    positions: npt.NDArray[np.int64]  # 0-based
    alts: npt.NDArray[np.uint8]  # ALT base (ASCII) per position
    alleles: npt.NDArray[np.int8]  # sites x haplotypes of the contig


@dataclass(frozen=True, slots=True)
class RunInfo:
    """Sequencing-run facts that end up in read names, @RG and barcodes."""

    instrument: str
    run: int
    flowcell: str
    lane: int
    barcode: str  # i7+i5

    @property
    def read_group(self) -> str:
        """The @RG ID: flowcell.lane, as most pipelines write it."""
        return f"{self.flowcell}.{self.lane}"


def run_info(rng: np.random.Generator) -> RunInfo:
    """A plausible Illumina run for one sample."""
    letters = np.array(list("ABCDEFGHJKLMNPRSTVWXY0123456789"))
    flowcell = "H" + "".join(rng.choice(letters, 4)) + "DSX" + str(rng.integers(2, 8))
    barcode = "".join(rng.choice(list("ACGT"), 8)) + "+" + "".join(rng.choice(list("ACGT"), 8))
    return RunInfo(
        instrument=f"A{rng.integers(100, 1000):05d}",
        run=int(rng.integers(10, 900)),
        flowcell=flowcell,
        lane=int(rng.integers(1, 5)),
        barcode=barcode,
    )


def choose_targets(
    contigs: Sequence[Contig], rng: np.random.Generator, width: int = 2_000
) -> list[tuple[Contig, int, int]]:
    """Non-overlapping capture windows in contig and position order (chrM whole)."""
    per_contig = {"autosomal": 6, "x": 4, "y": 2}
    windows = []
    for contig in contigs:
        if contig.inheritance.value == "mt":
            windows.append((contig, 0, contig.length))
            continue
        n = per_contig[contig.inheritance.value]
        slots = rng.choice(contig.length // width - 1, size=n, replace=False)
        windows += [(contig, int(s) * width, int(s) * width + width) for s in sorted(slots)]
    return windows


def sam_header(person: Person, run: RunInfo, contigs: Sequence[Contig]) -> str:
    """The identified header a clinical pipeline leaves on the BAM."""
    home = patient_path(person)
    ref = "/data/reference/GRCh38_full_analysis_set_plus_decoy_hla.fa"
    rg = (
        f"@RG\tID:{run.read_group}\tSM:{person.sample_id}\tLB:LIB-{person.mrn}-1\tPL:ILLUMINA"
        f"\tPU:{run.flowcell}.{run.lane}.{run.barcode}\tDS:WES {person.full_name} DOB "
        f"{person.date_of_birth.isoformat()}\tCN:{person.sequencing_center}"
        f"\tDT:{person.sequencing_date.isoformat()}"
    )
    lines = ["@HD\tVN:1.6\tSO:coordinate"]
    lines += [f"@SQ\tSN:{c.name}\tLN:{c.length}\tAS:GRCh38\tUR:file://{ref}" for c in contigs]
    lines += [
        rg,
        f"@PG\tID:bwa\tPN:bwa\tVN:0.7.17-r1188\tCL:bwa mem -t 16 -R @RG\\tID:{run.read_group}"
        f"\\tSM:{person.sample_id} {ref} {home}/{person.sample_id}_R1.fastq.gz "
        f"{home}/{person.sample_id}_R2.fastq.gz",
        f"@PG\tID:samtools\tPN:samtools\tPP:bwa\tVN:1.21\tCL:samtools sort -@8 -o "
        f"{home}/{person.sample_id}.sorted.bam",
        f"@PG\tID:MarkDuplicates\tPN:MarkDuplicates\tPP:samtools\tVN:3.1.1\tCL:MarkDuplicates "
        f"INPUT={home}/{person.sample_id}.sorted.bam OUTPUT={home}/{person.sample_id}.bam",
        f"@CO\tPatient {person.full_name}, MRN {person.mrn}, referred for {person.diagnosis}",
        f"@CO\tcontact {person.email}; sequenced {person.sequencing_date.isoformat()}",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Fragments:
    """Read pairs of one window, as aligned (left, right) sequences and sequencing qualities."""

    left_pos: npt.NDArray[np.int64]
    right_pos: npt.NDArray[np.int64]
    length: npt.NDArray[np.int64]
    forward: npt.NDArray[np.bool_]  # True: read 1 is the left (forward-strand) read
    left: npt.NDArray[np.uint8]
    right: npt.NDArray[np.uint8]
    qual1: npt.NDArray[np.uint8]  # read 1 qualities in sequencing order
    qual2: npt.NDArray[np.uint8]


def haplotypes(
    target: Target, reference: npt.NDArray[np.uint8], first: int, count: int
) -> list[npt.NDArray[np.uint8]]:
    """The person's haplotype sequences over a window (reference with their ALT alleles)."""
    window = reference[target.start : target.end]
    haps = []
    for h in range(count):
        seq = window.copy()
        carried = target.alleles[:, first + h] == 1
        seq[target.positions[carried] - target.start] = target.alts[carried]
        haps.append(seq)
    return haps


def fragments(
    haps: Sequence[npt.NDArray[np.uint8]], start: int, coverage: float, rng: np.random.Generator
) -> Fragments:
    """Sample read pairs uniformly over the window, split evenly between haplotypes."""
    width = len(haps[0])
    per_hap = max(1, round(coverage * width / (2 * READ_LENGTH) / len(haps)))
    ar = np.arange(READ_LENGTH)
    parts = []
    for hap in haps:
        length = np.clip(rng.normal(320, 40, per_hap).astype(np.int64), 2 * READ_LENGTH, width)
        offset = (rng.random(per_hap) * (width - length + 1)).astype(np.int64)
        left = hap[offset[:, None] + ar]
        right = hap[(offset + length - READ_LENGTH)[:, None] + ar]
        parts.append((offset, length, left, right))
    offset = np.concatenate([p[0] for p in parts])
    length = np.concatenate([p[1] for p in parts])
    left = _with_errors(np.concatenate([p[2] for p in parts]), rng)
    right = _with_errors(np.concatenate([p[3] for p in parts]), rng)
    n = len(offset)
    quals = _QUALITIES[rng.choice(3, size=(2, n, READ_LENGTH), p=(0.86, 0.1, 0.04))]
    return Fragments(
        left_pos=start + offset,
        right_pos=start + offset + length - READ_LENGTH,
        length=length,
        forward=rng.random(n) < 0.5,
        left=left,
        right=right,
        qual1=quals[0],
        qual2=quals[1],
    )


def _with_errors(reads: npt.NDArray[np.uint8], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """Substitute ~0.1% of bases, as a sequencer does."""
    mask = rng.random(reads.shape) < 1e-3
    out = reads.copy()
    out[mask] = _BASES[rng.integers(0, 4, int(mask.sum()))]
    return out


def _rows(matrix: npt.NDArray[np.uint8]) -> list[str]:
    text = np.ascontiguousarray(matrix).tobytes().decode("ascii")
    width = matrix.shape[1]
    return [text[i : i + width] for i in range(0, len(text), width)]


def revcomp(matrix: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Reverse-complement every row."""
    return _COMPLEMENT[matrix][:, ::-1]


class ReadWriter:
    """Collects one sample's reads: SAM records (coordinate order) and FASTQ pairs."""

    def __init__(self, run: RunInfo, rng: np.random.Generator) -> None:
        self.run = run
        self.rng = rng
        self.sam: list[str] = []
        self.fastq1: list[str] = []
        self.fastq2: list[str] = []
        self._counter = 0

    def add(self, contig: Contig, frags: Fragments) -> None:
        """Add a window's fragments; windows must arrive in coordinate order."""
        n = len(frags.left_pos)
        names = self._names(n)
        left, right = _rows(frags.left), _rows(frags.right)
        right_rc = _rows(revcomp(frags.right))
        q1, q2 = _rows(frags.qual1), _rows(frags.qual2)
        q1r, q2r = _rows(frags.qual1[:, ::-1]), _rows(frags.qual2[:, ::-1])
        records: list[tuple[int, str]] = []
        tags = f"RG:Z:{self.run.read_group}\tBC:Z:{self.run.barcode.replace('+', '-')}"
        cigar = f"{READ_LENGTH}M"
        for i in range(n):
            lp, rp, tl = int(frags.left_pos[i]) + 1, int(frags.right_pos[i]) + 1, int(frags.length[i])
            if frags.forward[i]:  # read 1 = left, forward; read 2 = right, reverse
                lflag, rflag, lq, rq = 99, 147, q1[i], q2r[i]
                self.fastq1.append(self._fastq(names[i], 1, left[i], q1[i]))
                self.fastq2.append(self._fastq(names[i], 2, right_rc[i], q2[i]))
            else:  # read 1 = right, reverse; read 2 = left, forward
                lflag, rflag, lq, rq = 163, 83, q2[i], q1r[i]
                self.fastq1.append(self._fastq(names[i], 1, right_rc[i], q1[i]))
                self.fastq2.append(self._fastq(names[i], 2, left[i], q2[i]))
            records.append(
                (
                    lp,
                    f"{names[i]}\t{lflag}\t{contig.name}\t{lp}\t60\t{cigar}\t=\t{rp}"
                    f"\t{tl}\t{left[i]}\t{lq}\t{tags}",
                )
            )
            records.append(
                (
                    rp,
                    f"{names[i]}\t{rflag}\t{contig.name}\t{rp}\t60\t{cigar}\t=\t{lp}"
                    f"\t{-tl}\t{right[i]}\t{rq}\t{tags}",
                )
            )
        records.sort(key=lambda r: r[0])
        self.sam.extend(r[1] for r in records)

    def _names(self, n: int) -> list[str]:
        k = self._counter + np.arange(n)
        self._counter += n
        tile = 1101 + (k // 900) % 78
        x = 1000 + self.rng.integers(0, 31000, n)
        y = 1000 + (k % 900) * 35 + self.rng.integers(0, 35, n)
        r = self.run
        prefix = f"{r.instrument}:{r.run}:{r.flowcell}:{r.lane}"
        return [f"{prefix}:{t}:{a}:{b}" for t, a, b in zip(tile, x, y, strict=True)]

    def _fastq(self, name: str, mate: int, seq: str, qual: str) -> str:
        return f"@{name} {mate}:N:0:{self.run.barcode}\n{seq}\n+\n{qual}\n"

    def write(
        self,
        header: str,
        work: Path,
        alignment: Path,
        fastqs: tuple[Path, Path],
        cram: bool,
    ) -> None:
        """Write the FASTQ pair (gzip, in sequencing order) and the indexed BAM or CRAM."""
        order = self.rng.permutation(len(self.fastq1))
        for path, reads in zip(fastqs, (self.fastq1, self.fastq2), strict=True):
            # no file name and mtime 0 in the gzip header: the file is deterministic for a seed
            with open(path, "wb") as raw, gzip.GzipFile("", "wb", 4, raw, mtime=0) as gz:
                gz.write("".join(reads[i] for i in order).encode("ascii"))
        sam = work / f"{alignment.name}.sam"
        sam.write_text(header + "\n".join(self.sam) + "\n", encoding="utf-8")
        # BAM: htslib threads. CRAM: single-threaded (threaded codec trials pick methods in a racy
        # order, so bytes would differ run to run) with embed_ref=2, a reference embedded from the
        # reads; not -T, which makes htslib rewrite every @SQ UR to the FASTA's path in the hidden
        # build directory, a path that no longer exists and differs run to run.
        fmt = ["-C", "--output-fmt-option", "embed_ref=2"] if cram else ["-b", "-@", "2"]
        args = [*fmt, "--no-PG", "-o", str(alignment)]
        pysam.samtools.view(*args, str(sam), catch_stdout=False)
        pysam.samtools.index(str(alignment), catch_stdout=False)
        sam.unlink()
