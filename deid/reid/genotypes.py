"""Genotype matrices and allele frequencies for the genomic re-identification tests (T05, T07).

A GenotypeMatrix holds alternate-allele dosages as int8, samples x sites, -1 where a genotype is
missing, haploid or not a plain biallelic call; its sites are keyed "chrom:pos:ref:alt" so that a
release and the identified reference join on the same variant. Only biallelic records are read
(`bcftools query -i 'N_ALT=1'`): a multi-allelic record has no single dosage.

htslib decodes the records, in-process through pysam.bcftools, into a text file in a work
directory; numpy then turns whole chunks of that text into dosages at once (a separator mask, a
cumulative sum and `np.add.reduceat` count each field's '1' and '.' characters and its length):
Python touches a site key per record, never a genotype. Memory is samples x sites bytes for the
matrix plus about 20 times one 16 MiB chunk of text.

Adapters here read files; `parse_query`, `alt_frequencies`, `common_sites` and `combine` are pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pysam.bcftools
import pysam.utils

from deid.errors import MalformedInput

MISSING = -1
_QUERY = "%CHROM:%POS:%REF:%ALT[\t%GT]\n"
_BIALLELIC = "N_ALT=1"
_CHUNK = 16 << 20  # bytes of query text parsed at once (peak about 20 x this)
_TAB, _NEWLINE, _ONE, _DOT = ord("\t"), ord("\n"), ord("1"), ord(".")
_DIPLOID = 3  # "0/1", "1|1", "./.": a diploid biallelic call is three characters


@dataclass(frozen=True, slots=True, eq=False)
class GenotypeMatrix:
    """Alternate-allele dosages (0, 1, 2; -1 missing), samples x sites, sites keyed chrom:pos:ref:alt.

    samples are the VCF's column names (pseudonyms in a release, the lab's names in the reference):
    they stay in memory and are never logged or written.
    """

    samples: tuple[str, ...]
    sites: npt.NDArray[np.str_]  # unique keys, in file order
    dosages: npt.NDArray[np.int8]

    def __post_init__(self) -> None:
        if self.dosages.shape != (len(self.samples), len(self.sites)):
            raise ValueError("dosages must be samples x sites")

    def select(self, rows: Sequence[int] | npt.NDArray[np.intp]) -> GenotypeMatrix:
        """The matrix of the given sample rows, in that order."""
        index = np.asarray(rows, dtype=np.intp)
        return GenotypeMatrix(tuple(self.samples[i] for i in index), self.sites, self.dosages[index])


@dataclass(frozen=True, slots=True, eq=False)
class SiteFrequencies:
    """Released alternate-allele frequencies per site key (summary release)."""

    sites: npt.NDArray[np.str_]
    frequencies: npt.NDArray[np.float64]


def parse_query(text: bytes, samples: int) -> tuple[list[str], npt.NDArray[np.int8]]:
    """Site keys and a sites x samples dosage block from `bcftools query -f _QUERY` text (whole lines)."""
    if not text:
        return [], np.zeros((0, samples), dtype=np.int8)
    raw = np.frombuffer(text, dtype=np.uint8)
    separator = (raw == _TAB) | (raw == _NEWLINE)
    ends = np.flatnonzero(separator)  # each field ends at its separator
    fields = samples + 1
    lines = int(np.count_nonzero(raw == _NEWLINE))
    if raw[-1] != _NEWLINE or ends.size != lines * fields:
        raise ValueError("query text is not whole lines of one key and one genotype per sample")
    starts = np.concatenate(([0], ends[:-1] + 1))
    ones = np.add.reduceat(raw == _ONE, starts, dtype=np.int32)
    dots = np.add.reduceat(raw == _DOT, starts, dtype=np.int32)
    length = ends - starts
    dosage = np.where((length == _DIPLOID) & (dots == 0), ones, MISSING).astype(np.int8)
    keys = [text[s:e].decode("utf-8") for s, e in zip(starts[::fields], ends[::fields], strict=True)]
    return keys, dosage.reshape(lines, fields)[:, 1:]


def read_genotypes(path: Path, work: Path) -> GenotypeMatrix:
    """Every sample's dosages at the biallelic records of a VCF/BCF (work: a directory for the text)."""
    samples = _samples(path)
    text = work / "genotypes.tsv"
    _bcftools(path, "-i", _BIALLELIC, "-f", _QUERY, "-o", str(text), catch_stdout=False)
    keys: list[str] = []
    blocks: list[npt.NDArray[np.int8]] = []
    try:
        with text.open("rb") as fh:
            rest = b""
            while chunk := fh.read(_CHUNK):
                chunk = rest + chunk
                cut = chunk.rfind(b"\n") + 1
                rest = chunk[cut:]
                part_keys, block = parse_query(chunk[:cut], len(samples))
                keys += part_keys
                blocks.append(block)
            if rest:
                raise ValueError("query text does not end in a newline")
    except ValueError as exc:
        raise MalformedInput(
            str(path), "genotypes cannot be read; check the file with `bcftools view`"
        ) from exc
    finally:
        text.unlink(missing_ok=True)
    by_site = np.concatenate(blocks) if blocks else np.zeros((0, len(samples)), dtype=np.int8)
    sites = np.array(keys, dtype=np.str_)
    _, first = np.unique(sites, return_index=True)
    first.sort()  # a key seen twice (a duplicated record) keeps its first record
    return GenotypeMatrix(samples, sites[first], np.ascontiguousarray(by_site[first].T))


def read_frequencies(path: Path) -> SiteFrequencies:
    """Overall AF per site key from a summary release's allele_frequencies.parquet (null AF dropped)."""
    try:
        frame = pl.read_parquet(path, columns=["chrom", "pos", "ref", "alt", "AF"])
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise MalformedInput(
            str(path), "allele frequencies cannot be read; it needs columns chrom, pos, ref, alt, AF"
        ) from exc
    frame = frame.drop_nulls("AF").unique(["chrom", "pos", "ref", "alt"], keep="first", maintain_order=True)
    key = pl.concat_str([pl.col("chrom"), pl.col("pos").cast(pl.String), "ref", "alt"], separator=":")
    keys = frame.select(key).to_series().to_numpy().astype(np.str_)
    return SiteFrequencies(keys, frame["AF"].cast(pl.Float64).to_numpy())


def alt_frequencies(dosages: npt.NDArray[np.int8]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Per site: the alternate-allele frequency among called genotypes (NaN if none) and called alleles."""
    called = dosages >= 0
    alleles = 2 * called.sum(axis=0, dtype=np.int64)
    alt = np.where(called, dosages, 0).sum(axis=0, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        frequency = np.where(alleles > 0, alt / np.maximum(alleles, 1), np.nan)
    return frequency, alleles


def common_sites(
    left: npt.NDArray[np.str_], right: npt.NDArray[np.str_]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Indices into left and right of the site keys both hold (unique keys), in sorted key order."""
    _, in_left, in_right = np.intersect1d(left, right, assume_unique=True, return_indices=True)
    return in_left.astype(np.intp), in_right.astype(np.intp)


def combine(matrices: Sequence[GenotypeMatrix]) -> GenotypeMatrix:
    """All samples of several matrices over the union of their sites (-1 where a file lacks a site)."""
    if len(matrices) == 1:
        return matrices[0]
    sites = np.unique(np.concatenate([m.sites for m in matrices])) if matrices else np.array([], np.str_)
    samples = tuple(s for m in matrices for s in m.samples)
    out = np.full((len(samples), len(sites)), MISSING, dtype=np.int8)
    row = 0
    for m in matrices:
        columns = np.searchsorted(sites, m.sites)
        out[row : row + len(m.samples), columns] = m.dosages
        row += len(m.samples)
    return GenotypeMatrix(samples, sites.astype(np.str_), out)


def read_many(paths: Sequence[Path], work: Path) -> GenotypeMatrix:
    """combine() of read_genotypes() over several files."""
    return combine([read_genotypes(p, work) for p in paths])


@dataclass(frozen=True, slots=True, eq=False)
class Panel:
    """The identified genotypes: one row per manifest row that names a VCF column found in its file."""

    genotypes: GenotypeMatrix
    rows: npt.NDArray[np.intp]  # the identified frame's row index of each matrix row


def read_panel(identified: pl.DataFrame, base: Path, work: Path) -> Panel:
    """The identified manifest's genotypes (columns vcf, vcf_sample or sample_id), every row.

    Raises MalformedInput naming the column when a named VCF does not exist or lacks a named sample.
    """
    empty = GenotypeMatrix((), np.array([], dtype=np.str_), np.zeros((0, 0), dtype=np.int8))
    if "vcf" not in identified.columns:
        return Panel(empty, np.zeros(0, dtype=np.intp))
    names = identified["vcf_sample"] if "vcf_sample" in identified.columns else identified["sample_id"]
    fallback = identified["sample_id"].cast(pl.String)
    wanted: dict[Path, list[tuple[int, str]]] = {}
    for index, (vcf, name, sample) in enumerate(zip(identified["vcf"], names, fallback, strict=True)):
        if vcf is None or not str(vcf).strip():
            continue
        path = Path(str(vcf).strip())
        path = path if path.is_absolute() else base / path
        column = str(name).strip() if name is not None and str(name).strip() else str(sample)
        wanted.setdefault(path, []).append((index, column))
    parts: list[GenotypeMatrix] = []
    rows: list[int] = []
    for path, members in wanted.items():
        if not path.is_file():
            raise MalformedInput(
                "identified manifest", "column vcf names a file that does not exist; fix the path"
            )
        matrix = read_genotypes(path, work)
        position = {s: i for i, s in enumerate(matrix.samples)}
        if any(column not in position for _, column in members):
            raise MalformedInput(
                str(path), "lacks a sample the identified manifest names; check the vcf_sample column"
            )
        parts.append(matrix.select([position[column] for _, column in members]))
        rows += [index for index, _ in members]
    if not parts:
        return Panel(empty, np.zeros(0, dtype=np.intp))
    return Panel(combine(parts), np.array(rows, dtype=np.intp))


def _samples(path: Path) -> tuple[str, ...]:
    """The VCF's sample columns, from the #CHROM line of its header."""
    try:
        header = str(pysam.bcftools.view("--no-version", "-h", str(path)))
    except pysam.utils.SamtoolsError:
        raise MalformedInput(
            str(path), "not a readable VCF/BCF; check the file with `bcftools view`"
        ) from None
    columns = header.rstrip("\n").rsplit("\n", 1)[-1].split("\t")
    return tuple(columns[9:])


def _bcftools(path: Path, *args: str, **kwargs: object) -> str:
    """`bcftools query` in-process; its messages can hold sample names, so none is passed on."""
    try:
        out = str(pysam.bcftools.query(*args, str(path), **kwargs))
    except pysam.utils.SamtoolsError:
        raise MalformedInput(
            str(path), "bcftools query cannot read the genotypes; check the file with `bcftools view`"
        ) from None
    return out
