"""De-identify a VCF/BCF (`deidentify_vcf`) and summarise it as allele frequencies (`allele_frequencies`).

htslib does the record work, in-process through pysam.bcftools, with threads; Python never loops over
records. The full path is two or three passes through uncompressed BCF in a temporary directory
beside dst:

1. `bcftools view -S samples -t ^dropped-contigs -c N:nonmajor [-q F:nonmajor] -a`: keeps the released
   samples in release order, drops sites on dropped contigs and sites under the floor, trims ALT
   alleles no released sample carries, and recomputes INFO/AC and INFO/AN for the released samples.
2. if AF is kept: `bcftools query` of AC/AN, AF = AC/AN per ALT in polars, as a tabix'd table
   (the wheel's bcftools has no plugins, so there is no +fill-tags).
3. `bcftools annotate -x ID,^INFO/..,^FORMAT/.. [-a af -c CHROM,POS,REF,ALT,INFO/AF] -W`: the
   allow-lists, the ID column emptied (rsIDs are harmless, but a lab's own variant IDs can carry
   sample or run identifiers, so none is released), the fresh AF, and the index, in the same pass.
Then the released header (deid.vcf_header) replaces htslib's by a block splice (deid.vcf_blocks) and the
index's offsets are moved to match. A .bcf output is written by one more pass (`bcftools view -Ob -W`)
from the spliced VCF: a BCF header cannot lose a contig line without leaving a hole in the contig
numbers its records use, which htslib accepts and pysam's header does not.
If the source has no index, htslib builds one in the work directory first (to count sites per contig).

The site floor: a site's minor-allele count is the number of called alleles among released samples
that are not its most frequent allele (bcftools' "nonmajor"; for a biallelic site, the minor allele's
count). Sites with a count below max(1, min_minor_allele_count), i.e. also those monomorphic among
released samples, or a frequency below min_minor_allele_frequency, are dropped. A policy with
both floors at 0 that releases every sample asks for no site filter at all: nothing was removed
that could make a site monomorphic.

Fast path (header_only): taken when the policy can change only the header, judged without reading
records: a bgzipped VCF to a .vcf.gz, every sample released in input order, both floors at 0, the
index counts no record on a dropped contig, and the header declares no INFO/FORMAT key outside the
allow-lists. Records are then trusted to use only declared keys, and their ID column is copied as
it is. The header is replaced and every later BGZF block copied byte for byte; the source's .tbi is
moved rather than rebuilt.
"""

from __future__ import annotations

import contextlib
import struct
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pysam.bcftools
import pysam.utils

from deid import vcf_blocks
from deid.errors import DeidError, MalformedInput, OutputExists
from deid.policy import GenomicRules
from deid.vcf_header import HeaderError, VcfHeader, parse_header, released_header, removed_keys

_AF_LINE = '##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency among released samples">'
_UNDECLARED = "is not defined in the header"


@dataclass(frozen=True, slots=True)
class VcfStats:
    """What a de-identification kept and dropped (counts only)."""

    samples_in: int
    samples_out: int
    sites_in: int
    sites_out: int
    dropped_contig: int  # sites on dropped contigs
    dropped_rare: int  # sites below the minor-allele count/frequency floor, or monomorphic after subsetting
    header_only: bool  # True when the fast path (BGZF block copy) was taken


@dataclass(frozen=True, slots=True)
class _Source:
    path: Path
    header: VcfHeader
    bcf: bool
    contig_sites: Mapping[str, int]  # records per contig, from the index
    index: Path | None  # a tabix index not older than the file

    @property
    def sites(self) -> int:
        return sum(self.contig_sites.values())


def deidentify_vcf(
    src: Path, dst: Path, rename: Sequence[tuple[str, str]], rules: GenomicRules, *, threads: int = 2
) -> VcfStats:
    """Write dst (.vcf.gz + .tbi, or .bcf + .csi): released samples renamed, header and records per rules."""
    bcf_out = _output_kind(dst, (".vcf.gz", ".bcf"))
    with _staging(dst, ".csi" if bcf_out else ".tbi") as work:
        source = _open_source(src, rename, work, threads)
        if _header_only(source, rename, rules, bcf_out):
            return _fast_path(source, dst, rename, rules, threads)
        return _full_path(source, dst, rename, rules, work, bcf_out, threads)


def _output_kind(dst: Path, suffixes: tuple[str, ...]) -> bool:
    if not dst.name.endswith(suffixes):
        raise DeidError(f"{dst}: output name must end in {' or '.join(suffixes)}; rename the output")
    return dst.name.endswith(".bcf")


@contextlib.contextmanager
def _staging(dst: Path, index_suffix: str | None) -> Iterator[Path]:
    """A temporary directory beside dst; on failure remove dst and its index (nothing partial left)."""
    outputs = [dst, *([dst.with_name(dst.name + index_suffix)] if index_suffix else [])]
    for path in outputs:
        if path.exists():
            raise OutputExists(str(path))
    try:
        with tempfile.TemporaryDirectory(prefix=".deid-vcf-", dir=dst.parent) as work:
            yield Path(work)
    except BaseException:
        for path in outputs:
            path.unlink(missing_ok=True)
        raise


def _bcftools(src: Path, command: str, *args: str, **kwargs: object) -> str:
    """Run a bcftools command in-process; its messages can hold sample names, so none is passed on."""
    tool = getattr(pysam.bcftools, command)
    try:
        out: str = tool(*args, **kwargs)
    except pysam.utils.SamtoolsError as exc:
        text = str(exc)
        if _UNDECLARED in text:
            raise _undeclared(src) from None
        what = "is truncated or corrupt" if "EOF" in text or "truncat" in text else "cannot be processed"
        raise MalformedInput(
            str(src), f"bcftools {command}: the file {what}; check it with `bcftools view`"
        ) from None
    messages = "\n".join(tool.get_messages() or ())
    if _UNDECLARED in messages:
        raise _undeclared(src)
    if "EOF marker is absent" in messages or "truncat" in messages:
        raise MalformedInput(str(src), f"bcftools {command}: the file is truncated; re-copy it")
    return out


def _undeclared(src: Path) -> MalformedInput:
    return MalformedInput(
        str(src), "a record is on a contig the header does not declare; add its ##contig line and re-index"
    )


def _open_source(src: Path, rename: Sequence[tuple[str, str]], work: Path, threads: int) -> _Source:
    """Parse the header, check the named samples, count records per contig from an index."""
    data, _, end = vcf_blocks.read_header(src)
    bcf = data.startswith(b"BCF")
    text = data[9:end] if bcf else data[:end]
    try:
        header = parse_header(text.rstrip(b"\0").decode("utf-8"))
    except (HeaderError, UnicodeDecodeError) as exc:
        raise MalformedInput(str(src), f"header: {exc}; fix the header (bcftools reheader)") from exc
    names = [name for name, _ in rename]
    if len(set(names)) != len(names) or len({p for _, p in rename}) != len(rename):
        raise DeidError(f"{src}: rename lists a sample or a pseudonym twice; give each once")
    missing = len(set(names) - set(header.samples))
    if missing:
        raise MalformedInput(
            str(src), f"lacks {missing} sample(s) the manifest names; check the vcf_sample column"
        )
    index = _fresh_index(src, (".csi",) if bcf else (".tbi", ".csi"))
    if index is None:  # one decode pass, by htslib, into the work directory
        index = work / ("source.csi" if bcf else "source.tbi")
        _bcftools(src, "index", "--threads", str(threads), "-c" if bcf else "-t", "-o", str(index), str(src))
    counts = _contig_counts(src, index, header)
    return _Source(src, header, bcf, counts, index if index.suffix == ".tbi" else None)


def _contig_counts(src: Path, index: Path, header: VcfHeader) -> dict[str, int]:
    """Records per contig name; refuse records on a contig the header does not declare."""
    try:
        raw = vcf_blocks.index_counts(index)
    except (ValueError, struct.error) as exc:
        raise MalformedInput(str(index), "not a tabix or CSI index; remove it or re-index the file") from exc
    declared = header.ids("contig")
    numbers: dict[int, str] = dict(enumerate(declared))
    for line in header.lines:  # a BCF header pins contig numbers with IDX
        for key, value in line.attributes or ():
            if line.key == "contig" and key == "IDX" and line.id is not None:
                numbers[int(value)] = line.id
    counts: dict[str, int] = {}
    for ref, count in raw.items():
        name = ref if isinstance(ref, str) else numbers.get(ref)
        if name is None or name not in declared:
            raise _undeclared(src)
        counts[name] = count
    return counts


def _fresh_index(src: Path, suffixes: tuple[str, ...]) -> Path | None:
    for suffix in suffixes:
        index = src.with_name(src.name + suffix)
        if index.is_file() and index.stat().st_mtime >= src.stat().st_mtime:
            return index
    return None


def _no_site_filter(source: _Source, rename: Sequence[tuple[str, str]], rules: GenomicRules) -> bool:
    every_sample = {name for name, _ in rename} == set(source.header.samples)
    return every_sample and rules.min_minor_allele_count == 0 and rules.min_minor_allele_frequency == 0


def _header_only(
    source: _Source, rename: Sequence[tuple[str, str]], rules: GenomicRules, bcf_out: bool
) -> bool:
    """The cheap, honest criterion for the fast path (see the module docstring)."""
    in_order = tuple(name for name, _ in rename) == source.header.samples
    on_dropped = any(source.contig_sites.get(c, 0) for c in rules.drop_contigs)
    return (
        not source.bcf
        and not bcf_out
        and in_order
        and _no_site_filter(source, rename, rules)
        and not on_dropped
        and not removed_keys(source.header, rules)
    )


def _fast_path(
    source: _Source, dst: Path, rename: Sequence[tuple[str, str]], rules: GenomicRules, threads: int
) -> VcfStats:
    text = released_header(source.header, [p for _, p in rename], rules, bcf=False)
    splice = vcf_blocks.splice(source.path, dst, text.encode("utf-8"))
    _place_index(source.path, source.index, dst, splice, threads, bcf=False)
    n = len(rename)
    return VcfStats(n, n, source.sites, source.sites, 0, 0, header_only=True)


def _place_index(
    src: Path, index: Path | None, dst: Path, splice: vcf_blocks.Splice, threads: int, *, bcf: bool
) -> None:
    """Move index's offsets onto dst; build one with htslib if there is none or it does not fit."""
    target = dst.with_name(dst.name + (".csi" if bcf else ".tbi"))
    if index is not None:
        try:
            vcf_blocks.move_index(index, target, vcf_blocks.mover(splice))
        except (ValueError, struct.error, MalformedInput):
            target.unlink(missing_ok=True)
        else:
            return
    _bcftools(src, "index", "--threads", str(threads), "-c" if bcf else "-t", "-o", str(target), str(dst))


def _view_args(
    source: _Source, rename: Sequence[tuple[str, str]], rules: GenomicRules, work: Path
) -> list[str]:
    """bcftools view options that subset samples and apply the contig and site filters."""
    samples = work / "samples.txt"
    samples.write_text("".join(f"{name}\n" for name, _ in rename), encoding="utf-8")
    args = ["--no-version", "-a", "-S", str(samples)]
    if rules.drop_contigs:
        args += ["-t", "^" + ",".join(rules.drop_contigs)]
    if not _no_site_filter(source, rename, rules):
        args += ["-c", f"{max(1, rules.min_minor_allele_count)}:nonmajor"]
    if rules.min_minor_allele_frequency > 0:
        args += ["-q", f"{rules.min_minor_allele_frequency!r}:nonmajor"]
    return args


def _removal(header: VcfHeader, rules: GenomicRules) -> str:
    """bcftools annotate -x: the ID column, and every INFO/FORMAT key outside the allow-lists."""
    parts = ["ID"]
    parts.append("^" + ",".join(f"INFO/{k}" for k in rules.info_keep) if rules.info_keep else "INFO")
    parts.append("^" + ",".join(f"FORMAT/{k}" for k in rules.format_keep) if rules.format_keep else "FORMAT")
    if "GT" not in rules.format_keep and "GT" in header.ids("FORMAT"):
        parts.append("FORMAT/GT")
    return ",".join(parts)


def _full_path(
    source: _Source,
    dst: Path,
    rename: Sequence[tuple[str, str]],
    rules: GenomicRules,
    work: Path,
    bcf_out: bool,
    threads: int,
) -> VcfStats:
    subset = work / "subset.bcf"
    src, t = source.path, str(threads)
    _bcftools(src, "view", *_view_args(source, rename, rules, work), "--threads", t, "-Ou", "-o", str(subset),
              str(src), catch_stdout=False)  # fmt: skip
    annotate = ["--no-version", "-x", _removal(source.header, rules)]
    if "AF" in rules.info_keep:
        from deid.vcf_frequencies import af_annotation

        table = af_annotation(subset, work, lambda *a, **k: _bcftools(src, "query", *a, **k))
        if "AF" not in source.header.ids("INFO"):
            annotate += ["-H", _AF_LINE]
        if table is not None:
            annotate += ["-a", str(table), "-c", "CHROM,POS,REF,ALT,INFO/AF"]
    # BCF output goes through VCF first (module docstring); level 0 BGZF costs no deflate
    staged = work / "staged.vcf.gz"
    compression = ["-O", "z0"] if bcf_out else ["-O", "z", "-W=tbi"]
    _bcftools(src, "annotate", *annotate, "--threads", t, *compression, "-o", str(staged), str(subset),
              catch_stdout=False)  # fmt: skip
    subset.unlink()
    data, _, end = vcf_blocks.read_header(staged)
    text = released_header(parse_header(data[:end].decode("utf-8")), [p for _, p in rename], rules, bcf=False)
    if bcf_out:
        released = work / "released.vcf.gz"
        vcf_blocks.splice(staged, released, text.encode("utf-8"))
        staged.unlink()
        _bcftools(src, "view", "--no-version", "--threads", t, "-O", "b", "-W=csi", "-o", str(dst),
                  str(released), catch_stdout=False)  # fmt: skip
    else:
        splice = vcf_blocks.splice(staged, dst, text.encode("utf-8"))
        _place_index(staged, Path(f"{staged}.tbi"), dst, splice, threads, bcf=False)
    index_kind = "csi" if bcf_out else "tbi"
    sites_out = sum(vcf_blocks.index_counts(dst.with_name(f"{dst.name}.{index_kind}")).values())
    on_dropped = sum(source.contig_sites.get(c, 0) for c in rules.drop_contigs)
    return VcfStats(
        samples_in=len(source.header.samples),
        samples_out=len(rename),
        sites_in=source.sites,
        sites_out=sites_out,
        dropped_contig=on_dropped,
        dropped_rare=source.sites - on_dropped - sites_out,
        header_only=False,
    )


def allele_frequencies(
    src: Path,
    dst: Path,
    rename: Sequence[tuple[str, str]],
    populations: Mapping[str, str],
    rules: GenomicRules,
    *,
    threads: int = 2,
) -> VcfStats:
    """Write dst (.parquet): AC/AN/AF overall and per population at the sites deidentify_vcf releases."""
    from deid.vcf_frequencies import frequency_table

    _output_kind(dst, (".parquet",))
    with _staging(dst, None) as work:
        source = _open_source(src, rename, work, threads)
        subset = work / "subset.bcf"
        _bcftools(src, "view", *_view_args(source, rename, rules, work), "--threads", str(threads), "-Ou",
                  "-o", str(subset), str(src), catch_stdout=False)  # fmt: skip
        sites = frequency_table(
            subset, dst, rename, populations, work, lambda command, *a, **k: _bcftools(src, command, *a, **k)
        )
        on_dropped = sum(source.contig_sites.get(c, 0) for c in rules.drop_contigs)
        return VcfStats(
            samples_in=len(source.header.samples),
            samples_out=len(rename),
            sites_in=source.sites,
            sites_out=sites,
            dropped_contig=on_dropped,
            dropped_rare=source.sites - on_dropped - sites,
            header_only=False,
        )


__all__ = ["VcfStats", "allele_frequencies", "deidentify_vcf"]
