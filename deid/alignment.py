"""De-identify one BAM or CRAM file (SPEC.md 3: alignments/*.bam|cram + index).

The adapter around two pure cores: deid/sam_header.py decides the released header, and
deid/sam_records.py rewrites records. Two paths:

- Header-only (`AlignmentStats.header_only`): when the records need no change, only the header
  is replaced. BAM: new header blocks, then every later BGZF block copied byte for byte
  (deid/bgzf.py, what `samtools reheader` does); CRAM: `samtools reheader -i` on a copy
  (containers are not decoded). The path is taken only when ALL of these hold:
  1. `rules.rewrite_read_names` is false;
  2. `rules.aux_tags_keep` contains `*`, meaning "keep every aux tag" (genegate's built-in
     profiles never say this; a policy opts in). Without it, honouring an allow-list would need
     a scan of every record's tags, which costs as much as the rewrite;
  3. the @RG IDs can stay as they are (records carry them in RG tags): none contains its sample
     name or a value of a dropped @RG field;
  4. no record lies on a dropped contig nor has its mate there (one counting pass over the body
     by htslib, decompression only, skipped when the header declares no dropped contig), and the
     dropped @SQ lines come after every kept one, so no contig is renumbered;
  5. the output has the input's format.
  Otherwise the full path runs, whose output differs in one visible way: @RG IDs become rg1, ...
- Full: every record through htslib's SAM text (`to_string`/`fromstring`, C at both ends) and
  RecordRewriter (one split/join per record), with htslib thread pools (`threads`) for BGZF
  (de)compression on each file. Memory is flat: see sam_records.TemplateNames for the bound.

CRAM input decodes with its embedded reference or `reference`; output CRAM embeds the
reference built from its reads (`embed_ref=2`), so a recipient needs no FASTA, and no
reference path reaches the header (given a reference file, htslib would write its path as @SQ UR).
Output goes to a temporary name next to dst and is renamed with its index only when whole.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pysam

from deid import bgzf
from deid.errors import DeidError, MalformedInput, OutputExists
from deid.policy import GenomicRules
from deid.sam_header import HeaderPlan, ReadGroupIdLeaks, bam_header_bytes, bam_header_length, plan_header
from deid.sam_records import KEEP_ALL_TAGS, RecordRewriter

_SUFFIXES = {".bam": ".bai", ".cram": ".crai"}


@dataclass(frozen=True, slots=True)
class AlignmentStats:
    """What deidentify_alignment did to one file."""

    reads_in: int
    reads_out: int
    dropped_contig: int  # records removed because they lie on a dropped contig
    header_only: bool  # the header-only path was taken (body blocks copied, not re-encoded)


@dataclass(frozen=True, slots=True)
class _Input:
    path: Path
    source: str
    cram: bool
    header_text: str
    reference: Path | None


def deidentify_alignment(
    src: Path,
    dst: Path,
    samples: Mapping[str, str],
    rules: GenomicRules,
    *,
    reference: Path | None = None,
    threads: int = 2,
) -> AlignmentStats:
    """Write the de-identified copy of src (BAM or CRAM) to dst (.bam or .cram) with its index.

    `samples` maps each @RG SM value to its pseudonym; an SM it lacks is refused. `reference`
    is the FASTA a CRAM input was encoded against, when the CRAM does not embed it.
    Raises MalformedInput for unusable input (nothing is written) and OutputExists when dst or
    its index exists.
    """
    index_suffix = _SUFFIXES.get(dst.suffix)
    if index_suffix is None:
        raise DeidError(f"{dst}: the output name must end in .bam or .cram")
    index = dst.with_name(dst.name + index_suffix)
    for taken in (dst, index):
        if taken.exists():
            raise OutputExists(str(taken))
    source = _open_input(src, reference)
    plan = plan_header(source.header_text, samples, rules, source.source)
    with _partial(dst) as (tmp, tmp_index):
        stats: AlignmentStats | None = None
        header_only = False
        if _header_only_allowed(rules) and source.cram == (dst.suffix == ".cram"):
            header_only = _header_only(source, tmp, samples, rules, threads)
        if not header_only:
            stats = _rewrite(source, tmp, plan, rules, threads, cram=dst.suffix == ".cram")
        _index(tmp, tmp_index, source.source, threads)
        if stats is None:  # header-only: the body is the input's, so are its records
            total = _indexed_records(tmp) if not source.cram else _count(source, threads)
            stats = AlignmentStats(total, total, dropped_contig=0, header_only=True)
        os.replace(tmp, dst)
        os.replace(tmp_index, index)
    return stats


def _header_only_allowed(rules: GenomicRules) -> bool:
    return not rules.rewrite_read_names and KEEP_ALL_TAGS in rules.aux_tags_keep


@contextlib.contextmanager
def _partial(dst: Path) -> Iterator[tuple[Path, Path]]:
    """Temporary output and index names next to dst, removed unless the caller renamed them."""
    fd, name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=f".partial{dst.suffix}", dir=dst.parent)
    os.close(fd)
    tmp = Path(name)
    tmp_index = tmp.with_name(tmp.name + _SUFFIXES[dst.suffix])
    try:
        yield tmp, tmp_index
    finally:
        tmp.unlink(missing_ok=True)
        tmp_index.unlink(missing_ok=True)


def _open_input(src: Path, reference: Path | None) -> _Input:
    """Check src up front: a whole BAM/CRAM, sorted, decodable; its header text."""
    source = str(src)
    if not src.is_file():
        raise MalformedInput(source, "no such alignment file; check the manifest's alignment column")
    if reference is not None and not reference.is_file():
        raise MalformedInput(str(reference), "no such reference FASTA; check --reference")
    try:
        pysam.samtools.quickcheck(source)
    except pysam.utils.SamtoolsError as exc:
        detail = "missing its end-of-file marker: truncated (copy it again)"
        if "EOF" not in str(exc):
            detail = "not a BAM or CRAM file, or its header is damaged"
        raise MalformedInput(source, detail) from exc
    try:
        with _reader(src, reference, threads=1) as probe:
            if not (probe.is_bam or probe.is_cram):
                raise MalformedInput(source, "not a BAM or CRAM file (SAM text is not accepted)")
            header_text = str(probe.header)
            cram = bool(probe.is_cram)
            next(iter(probe), None)  # a CRAM that cannot find its reference fails here
    except (OSError, ValueError) as exc:
        if src.suffix == ".cram" or _looks_cram(src):
            fix = "pass its FASTA with --reference (or the manifest's reference column)"
            if reference is not None:
                fix = "the given reference does not match it; pass the FASTA it was encoded against"
            raise MalformedInput(source, f"CRAM records cannot be decoded: {fix}") from exc
        raise MalformedInput(source, "the first record cannot be read: corrupt or truncated") from exc
    sort_order = next((f[3:] for f in _hd_fields(header_text) if f.startswith("SO:")), None)
    if sort_order not in (None, "coordinate"):
        raise MalformedInput(
            source, "not coordinate-sorted (@HD SO); sort it with `samtools sort` so it can be indexed"
        )
    return _Input(src, source, cram, header_text, reference)


def _hd_fields(header_text: str) -> list[str]:
    first = header_text.split("\n", 1)[0]
    return first.split("\t")[1:] if first.startswith("@HD\t") else []


def _looks_cram(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"CRAM"


def _reader(path: Path, reference: Path | None, threads: int) -> pysam.AlignmentFile:
    ref = None if reference is None else str(reference)
    return pysam.AlignmentFile(str(path), "r", threads=threads, reference_filename=ref)


def _header_only(
    source: _Input, tmp: Path, samples: Mapping[str, str], rules: GenomicRules, threads: int
) -> bool:
    """Write tmp by the header-only path; False (tmp left empty) when its conditions do not all hold."""
    try:
        plan = plan_header(source.header_text, samples, rules, source.source, rename_read_groups=False)
    except ReadGroupIdLeaks:
        return False
    if not plan.keeps_numbering or _records_touching(source, plan, threads):
        return False
    if source.cram:
        shutil.copyfile(source.path, tmp)
        header = tmp.with_name(tmp.name + ".header.sam")
        header.write_text(plan.text, encoding="utf-8")
        try:
            pysam.samtools.reheader("-P", "-i", str(header), str(tmp))
        except pysam.utils.SamtoolsError:
            tmp.write_bytes(b"")
            return False  # the new header does not fit the CRAM's header container: rewrite
        finally:
            header.unlink()
    else:
        new_header = bam_header_bytes(plan.text, plan.contigs)
        try:
            bgzf.reheader(source.path, tmp, new_header, bam_header_length)
        except (bgzf.BgzfError, ValueError) as exc:
            raise MalformedInput(source.source, "damaged BGZF header blocks") from exc
    return True


def _indexed_records(bam: Path) -> int:
    """Records of an indexed BAM, from its index (mapped + unmapped per contig, and unplaced)."""
    lines = str(pysam.samtools.idxstats(str(bam))).splitlines()
    return sum(int(f[2]) + int(f[3]) for f in (line.split("\t") for line in lines) if len(f) == 4)


def _records_touching(source: _Input, plan: HeaderPlan, threads: int) -> bool:
    """True when any record, or its mate, lies on a dropped contig (a decompress-only htslib pass)."""
    if not plan.dropped_contigs:
        return False
    expr = " || ".join(f'rname == "{c}" || rnext == "{c}"' for c in sorted(plan.dropped_contigs))
    return _count(source, threads, "-e", expr) > 0


def _count(source: _Input, threads: int, *extra: str) -> int:
    """Records of the input (matching `extra` filters), counted by `samtools view -c`."""
    reference = ["-T", str(source.reference)] if source.reference else []
    try:
        out = pysam.samtools.view("-c", "-@", str(threads), *reference, *extra, source.source)
    except pysam.utils.SamtoolsError as exc:
        raise MalformedInput(source.source, "records cannot be read: corrupt or truncated") from exc
    return int(str(out).strip())


def _rewrite(
    source: _Input, tmp: Path, plan: HeaderPlan, rules: GenomicRules, threads: int, *, cram: bool
) -> AlignmentStats:
    """The full path: every record rewritten (names, tags, contigs, mates)."""
    rewriter = RecordRewriter(plan, rules, source.source, rename_reads=rules.rewrite_read_names)
    # embed_ref=2: the output embeds a reference built from its reads, so it needs no FASTA and
    # htslib writes no UR (given reference_filename, it would write the FASTA's path into @SQ UR)
    embed = ["embed_ref=2"] if cram else None
    header = pysam.AlignmentHeader.from_text(plan.text)
    try:
        with (
            _reader(source.path, source.reference, threads) as inp,
            pysam.AlignmentFile(
                str(tmp),
                "wc" if cram else "wb",
                header=header,
                threads=threads,
                format_options=embed,
            ) as out,
        ):
            _copy_records(inp, out, rewriter)
    except (OSError, ValueError) as exc:
        raise MalformedInput(
            source.source,
            f"record {rewriter.records_in + 1} cannot be read: corrupt, truncated, or on a contig "
            "the header does not declare",
        ) from exc
    counts = rewriter.counts
    return AlignmentStats(counts.records_in, counts.records_out, counts.dropped_contig, header_only=False)


def _copy_records(inp: pysam.AlignmentFile, out: pysam.AlignmentFile, rewriter: RecordRewriter) -> None:
    """The per-record loop, kept to C calls and one rewrite call (local names: no attribute look-ups)."""
    rewrite = rewriter.rewrite
    parse = pysam.AlignedSegment.fromstring
    header = out.header
    write = out.write
    for segment in inp:
        text = rewrite(segment.to_string())
        if text is None:
            continue
        record = parse(text, header)
        if rewriter.float_tags:  # SAM text prints floats with 6 digits: copy them exactly
            for tag in rewriter.float_tags:
                value, kind = segment.get_tag(tag, with_value_type=True)
                record.set_tag(tag, value, "f" if kind == "f" else None)
        write(record)


def _index(path: Path, index: Path, source: str, threads: int) -> None:
    """Index the output; a failure here means the body was corrupt or unsorted."""
    try:
        pysam.samtools.index("-@", str(threads), "-o", str(index), str(path))
    except pysam.utils.SamtoolsError as exc:
        raise MalformedInput(
            source,
            "the output cannot be indexed: the input body is corrupt or not coordinate-sorted "
            "(sort it with `samtools sort`)",
        ) from exc
