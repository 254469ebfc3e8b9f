"""Synthetic genomes: a seeded reference and msprime genealogies with human-like parameters.

The cohort is simulated on a small human-shaped genome (real contig names, shortened lengths):
autosomes, chrX (diploid in females, haploid in males), chrY (males only, haploid) and chrM
(haploid, no recombination). Three populations split out of Africa so that ancestry shows in the
genotypes. Only biallelic sites with a single mutation are kept, and each site's REF is the
reference base at its position, so reads drawn from a haplotype agree with the VCF.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import msprime
import numpy as np
import numpy.typing as npt

NE = 10_000
MUTATION_RATE = 1.25e-8
RECOMBINATION_RATE = 1e-8
MITO_MUTATION_RATE = 5e-7  # mtDNA mutates orders of magnitude faster than the nuclear genome
BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
# transitions (A<->G, C<->T) twice as likely as transversions
_TRANSITION = {0: 2, 1: 3, 2: 0, 3: 1}


class Population(enum.StrEnum):
    """Simulated continental populations; the manifest's ancestry column follows them."""

    AFR = "AFR"
    EUR = "EUR"
    EAS = "EAS"


class Inheritance(enum.StrEnum):
    """How many copies of a contig each sex carries."""

    AUTOSOMAL = "autosomal"
    X_LINKED = "x"
    Y_LINKED = "y"
    MITOCHONDRIAL = "mt"


@dataclass(frozen=True, slots=True)
class Contig:
    """One simulated contig: its name, simulated length and inheritance."""

    name: str
    length: int
    inheritance: Inheritance

    def ploidy(self, male: bool) -> int:
        """Copies a person of this sex carries (0 for chrY in females)."""
        match self.inheritance:
            case Inheritance.AUTOSOMAL:
                return 2
            case Inheritance.X_LINKED:
                return 1 if male else 2
            case Inheritance.Y_LINKED:
                return 1 if male else 0
            case Inheritance.MITOCHONDRIAL:
                return 1

    @property
    def size_factor(self) -> float:
        """Effective-size factor relative to autosomes (copies in the population per diploid)."""
        return {
            Inheritance.AUTOSOMAL: 1.0,
            Inheritance.X_LINKED: 0.75,
            Inheritance.Y_LINKED: 0.25,
            Inheritance.MITOCHONDRIAL: 0.25,
        }[self.inheritance]


DEFAULT_CONTIGS: tuple[Contig, ...] = (
    Contig("chr20", 1_500_000, Inheritance.AUTOSOMAL),
    Contig("chr21", 1_000_000, Inheritance.AUTOSOMAL),
    Contig("chr22", 1_000_000, Inheritance.AUTOSOMAL),
    Contig("chrX", 1_000_000, Inheritance.X_LINKED),
    Contig("chrY", 400_000, Inheritance.Y_LINKED),
    Contig("chrM", 16_569, Inheritance.MITOCHONDRIAL),
)


@dataclass(frozen=True, slots=True)
class Site:
    """One biallelic variant site (0-based position) with every carrier haplotype's allele."""

    position: int
    ref: str
    alt: str
    alleles: npt.NDArray[np.int8]  # one entry per haplotype of the contig's haplotype layout


@dataclass(frozen=True, slots=True)
class HaplotypeLayout:
    """Where each person's haplotypes sit in a contig's allele arrays: start and count."""

    start: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]


def reference_sequence(contig: Contig, seed: int) -> npt.NDArray[np.uint8]:
    """A seeded random reference sequence (41% GC, as the human genome) as ASCII bytes."""
    rng = np.random.default_rng([seed, _stable_id(contig.name), 1])
    p_gc = 0.41 / 2
    codes = rng.choice(4, size=contig.length, p=[0.5 - p_gc, p_gc, p_gc, 0.5 - p_gc])
    return BASES[codes]


def _demography(size_factor: float) -> msprime.Demography:
    ne = NE * size_factor
    dem = msprime.Demography()
    for name in ("AFR", "EUR", "EAS", "OOA", "ANC"):
        dem.add_population(name=name, initial_size=ne)
    dem.add_population_split(time=900, derived=["EUR", "EAS"], ancestral="OOA")
    dem.add_population_split(time=2_500, derived=["AFR", "OOA"], ancestral="ANC")
    return dem


def haplotype_layout(
    contig: Contig, populations: Sequence[Population], males: Sequence[bool]
) -> HaplotypeLayout:
    """Haplotype slots per person: people are grouped by population, in the order of Population."""
    ploidy = np.array([contig.ploidy(m) for m in males], dtype=np.int64)
    order = sorted(range(len(populations)), key=lambda i: (list(Population).index(populations[i]), i))
    start = np.zeros(len(populations), dtype=np.int64)
    cursor = 0
    for i in order:
        start[i] = cursor
        cursor += int(ploidy[i])
    return HaplotypeLayout(start=start, count=ploidy)


def simulate_sites(
    contig: Contig,
    populations: Sequence[Population],
    males: Sequence[bool],
    reference: npt.NDArray[np.uint8],
    seed: int,
) -> Iterator[Site]:
    """Yield the contig's biallelic sites in position order, streamed from the tree sequence."""
    layout = haplotype_layout(contig, populations, males)
    sample_sets = []
    for pop in Population:
        haploids = sum(int(layout.count[i]) for i, p in enumerate(populations) if p is pop)
        if haploids:
            sample_sets.append(msprime.SampleSet(haploids, population=pop.value, ploidy=1))
    if not sample_sets:
        return
    contig_seed = _stable_id(contig.name)
    rates = (
        (MITO_MUTATION_RATE, 0.0)
        if contig.inheritance is Inheritance.MITOCHONDRIAL
        else (MUTATION_RATE, RECOMBINATION_RATE)
    )
    if contig.inheritance is Inheritance.Y_LINKED:
        rates = (MUTATION_RATE, 0.0)
    ts = msprime.sim_ancestry(
        samples=sample_sets,
        demography=_demography(contig.size_factor),
        sequence_length=contig.length,
        recombination_rate=rates[1],
        random_seed=_derive_seed(seed, contig_seed, 2),
    )
    ts = msprime.sim_mutations(
        ts,
        rate=rates[0],
        model=msprime.BinaryMutationModel(),
        discrete_genome=True,
        random_seed=_derive_seed(seed, contig_seed, 3),
    )
    rng = np.random.default_rng([seed, contig_seed, 4])
    for variant in ts.variants():
        if len(variant.site.mutations) != 1:
            continue
        position = int(variant.site.position)
        ref_code = int(np.searchsorted(BASES, reference[position]))
        alt_code = (
            _TRANSITION[ref_code]
            if rng.random() < 2 / 3
            else int(rng.choice([c for c in range(4) if c not in (ref_code, _TRANSITION[ref_code])]))
        )
        yield Site(
            position=position,
            ref=chr(BASES[ref_code]),
            alt=chr(BASES[alt_code]),
            alleles=variant.genotypes.astype(np.int8),
        )


def _stable_id(name: str) -> int:
    """A process-independent integer for a name (Python's hash() is salted per process)."""
    return int.from_bytes(name.encode("utf-8")[:8].ljust(8, b"\0"), "little")


def _derive_seed(seed: int, *parts: int) -> int:
    """A 31-bit seed for msprime derived from the cohort seed and the stage."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0] % (2**31 - 1)) + 1
