"""De-identify FASTQ files: read names become a counter, comments and `+` repeats are dropped.

An Illumina read name `@INSTR:RUN:FLOWCELL:LANE:TILE:X:Y 1:N:0:BARCODE` names the instrument
serial, the run, the flowcell and the sample's index sequences (research/reid.md 3.10). Here every
header becomes `@<n>`, n counting records from 1, and every third line becomes `+`. Sequences and
qualities are kept byte for byte. In a pair both mates get the same `@<n>` in R1 and R2, with no
`/1` `/2` suffix (as Casava 1.8+ writes pairs; bwa, minimap2, STAR and samtools take it), and the
pair is checked first: same number of records, same template name (up to the first whitespace,
a trailing `/1` or `/2` ignored) record by record.

Input is gzip (one member, several, or BGZF) or plain text. Output is BGZF: valid gzip that
htslib can index (`samtools fqidx`), compressed in 64 KiB blocks by a pool of threads (zlib
releases the GIL), written to a hidden sibling and renamed into place only when every file is
whole. Memory is bounded: records go through in batches, with a fixed number of batches in flight.

Per-record work stays in C: lines come from `bytes.split`, names are rewritten by slice
assignment over the line list, and the checks are `map` over bytes methods. `check_records`,
`check_mates` and `rename_records` are the pure core (with `deid.bgzf.compress_blocks`);
`deidentify_fastq` is the adapter that reads and writes.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO

from deid.bgzf import EOF_BLOCK, compress_blocks
from deid.errors import DeidError, MalformedInput, OutputExists

BATCH_RECORDS = 16_384  # ~4-6 MB of text per batch for 100-150 bp reads
_READ_SIZE = 1 << 20  # compressed bytes read at a time
_MAX_TEXT = 8 << 20  # decompressed bytes produced at a time (bounds a highly compressible input)
_MAX_LINE = 64 << 20  # longer than any read; past it the input is not FASTQ and memory stays bounded
_BLOCK = 0xFF00  # BGZF input block size, as htslib uses: its deflate always fits a 64 KiB block
_BGZF_HEAD = struct.Struct("<4BI2BH2BHH")
_BGZF_TAIL = struct.Struct("<II")
BGZF_EOF = EOF_BLOCK
_GZIP_MAGIC = b"\x1f\x8b"
_OTHER_FORMATS = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
_MATE_SUFFIXES = (b"/1", b"/2")


@dataclass(frozen=True, slots=True)
class FastqStats:
    """Files written and records read and written, summed over the files (a pair counts twice)."""

    files: int
    reads_in: int
    reads_out: int


# --- pure core --------------------------------------------------------------------------------


def check_records(lines: list[bytes], first: int, source: str) -> None:
    """Raise MalformedInput unless `lines` are whole FASTQ records, the first numbered `first`.

    Checks: a multiple of 4 lines, headers start with `@`, separators with `+`, each sequence as
    long as its quality. The message names `source` and the 1-based record number of the first bad
    record; never a name, sequence or quality.
    """
    if len(lines) % 4:
        raise MalformedInput(
            source,
            f"record {first + len(lines) // 4}: truncated record (the line count is not a multiple "
            "of 4); re-transfer the file or trim the incomplete record",
        )
    headers, seqs, pluses, quals = lines[0::4], lines[1::4], lines[2::4], lines[3::4]
    if not all(map(bytes.startswith, headers, repeat(b"@"))):
        bad = _first_false(map(bytes.startswith, headers, repeat(b"@")))
        raise MalformedInput(
            source, f"record {first + bad}: header line does not start with '@'; the file is not FASTQ"
        )
    if not all(map(bytes.startswith, pluses, repeat(b"+"))):
        bad = _first_false(map(bytes.startswith, pluses, repeat(b"+")))
        raise MalformedInput(
            source, f"record {first + bad}: the '+' separator line is missing; the file is not FASTQ"
        )
    seq_lengths, qual_lengths = list(map(len, seqs)), list(map(len, quals))
    if seq_lengths != qual_lengths:
        bad = _first_false(map(int.__eq__, seq_lengths, qual_lengths))
        raise MalformedInput(
            source, f"record {first + bad}: sequence and quality lengths differ; the record is corrupt"
        )


def rename_records(lines: list[bytes], first: int) -> bytes:
    """FASTQ text of checked records with headers `@first`, `@first+1`, ... and bare `+` lines.

    Consumes `lines` (rewritten in place); sequences and qualities are kept byte for byte.
    """
    n = len(lines) // 4
    lines[0::4] = list(map(b"@%d".__mod__, range(first, first + n)))
    lines[2::4] = [b"+"] * n
    lines.append(b"")
    return b"\n".join(lines)


def check_mates(r1: list[bytes], r2: list[bytes], first: int, source: str) -> None:
    """Raise MalformedInput unless record i of R1 and of R2 name the same template, for every i.

    Names are compared up to the first whitespace; a trailing `/1` or `/2` is ignored.
    """
    names1, names2 = _names(r1[0::4]), _names(r2[0::4])
    if names1 == names2:
        return
    keys1, keys2 = _template_keys(names1), _template_keys(names2)
    if keys1 != keys2:
        bad = _first_false(map(bytes.__eq__, keys1, keys2))
        raise MalformedInput(
            source,
            f"record {first + bad}: mate names differ between R1 and R2; "
            "files are not a pair or are out of order",
        )


def _names(headers: list[bytes]) -> list[bytes]:
    """The name of each header: up to the first whitespace."""
    return list(map(itemgetter(0), map(bytes.split, headers, repeat(None), repeat(1))))


def _template_keys(names: list[bytes]) -> list[bytes]:
    """Names without a trailing mate suffix `/1` or `/2`."""
    return [name[:-2] if name.endswith(_MATE_SUFFIXES) else name for name in names]


def _first_false(flags: Iterable[bool]) -> int:
    """Index of the first false flag (the caller knows there is one; error path only)."""
    return next(i for i, flag in enumerate(flags) if not flag)


# --- adapters ---------------------------------------------------------------------------------


class _Records:
    """Whole records of one input, `take(n)` at a time, from a decompressed text stream."""

    def __init__(self, path: Path, raw: BinaryIO) -> None:
        self.path = str(path)
        self._chunks = _text_chunks(self.path, raw)
        self._lines: list[bytes] = []
        self._partial = b""
        self._eof = False

    def take(self, records: int) -> list[bytes]:
        """The lines of the next `records` records; fewer only at the end of the file."""
        want = 4 * records
        while len(self._lines) < want and not self._eof:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._eof = True
                if self._partial:
                    self._lines.append(self._partial)
                break
            if b"\0" in chunk:
                raise MalformedInput(self.path, "contains NUL bytes; this is not FASTQ text")
            parts = (self._partial + chunk).split(b"\n")
            self._partial = parts.pop()
            self._lines += parts
            if len(self._partial) > _MAX_LINE:
                raise MalformedInput(self.path, "has a line longer than 64 MiB; this is not FASTQ text")
        taken = self._lines[:want]
        del self._lines[:want]
        return taken


def _text_chunks(path: str, raw: BinaryIO) -> Iterator[bytes]:
    """Decompressed text of a gzip (any number of members) or plain file, in bounded chunks."""
    data = raw.read(_READ_SIZE)
    if not data:
        return
    if not data.startswith(_GZIP_MAGIC):
        for magic, name in _OTHER_FORMATS.items():
            if data.startswith(magic):
                raise MalformedInput(path, f"is {name}-compressed; recompress it with gzip or bgzip")
        if not data.startswith(b"@"):
            raise MalformedInput(path, "is neither gzip nor FASTQ text (it does not start with '@')")
        while data:
            yield data
            data = raw.read(_READ_SIZE)
        return
    inflater = zlib.decompressobj(31)
    while True:
        try:
            text = inflater.decompress(data, _MAX_TEXT)
        except zlib.error as exc:
            raise MalformedInput(path, f"gzip data is corrupt ({exc}); re-transfer the file") from exc
        if text:
            yield text
        if inflater.eof:
            data = inflater.unused_data or raw.read(_READ_SIZE)
            if not data:
                return
            inflater = zlib.decompressobj(31)
            continue
        data = inflater.unconsumed_tail or raw.read(_READ_SIZE)
        if not data:
            raise MalformedInput(path, "gzip stream is truncated (it ends inside a member); re-transfer it")


def deidentify_fastq(
    srcs: Sequence[Path], dsts: Sequence[Path], *, threads: int = 2, level: int = 6
) -> FastqStats:
    """Write de-identified BGZF copies of one FASTQ file or of a pair (R1, R2).

    Raises MalformedInput for a bad input (nothing is written), OutputExists if a destination
    is taken, DeidError for wrong arguments or a failed write.
    """
    if len(srcs) not in (1, 2) or len(dsts) != len(srcs):
        raise DeidError(
            "deidentify FASTQ: give one source (single-end) or two (R1, R2) and as many destinations"
        )
    if threads < 1 or not 0 <= level <= 9:
        raise DeidError("deidentify FASTQ: threads must be >= 1 and level between 0 and 9")
    for dst in dsts:
        if dst.exists():
            raise OutputExists(str(dst))
    partials = [dst.with_name(f".{dst.name}.partial") for dst in dsts]
    ours: list[Path] = []  # partials we created and destinations we renamed them to
    try:
        with ExitStack() as stack:
            readers = [_Records(src, stack.enter_context(_open_source(src))) for src in srcs]
            sinks = [stack.enter_context(_create(part, ours)) for part in partials]
            pool = stack.enter_context(ThreadPoolExecutor(threads, thread_name_prefix="fastq-bgzf"))
            records = _stream(readers, sinks, pool, threads, level)
            for sink in sinks:
                _write(sink, BGZF_EOF)
        for part, dst in zip(partials, dsts, strict=True):
            part.rename(dst)
            ours.append(dst)
    except BaseException:
        for path in ours:
            path.unlink(missing_ok=True)
        raise
    return FastqStats(files=len(srcs), reads_in=records * len(srcs), reads_out=records * len(srcs))


def _stream(
    readers: list[_Records], sinks: list[BinaryIO], pool: ThreadPoolExecutor, threads: int, level: int
) -> int:
    """Read, check, rewrite and compress batch by batch; return the records per file."""
    in_flight: deque[tuple[Future[bytes], BinaryIO]] = deque()
    first = 1
    while True:
        batches = [reader.take(BATCH_RECORDS) for reader in readers]
        for reader, batch in zip(readers, batches, strict=True):
            check_records(batch, first, reader.path)
        counts = [len(batch) // 4 for batch in batches]
        if len(batches) == 2:
            _check_pair(readers, batches, counts, first)
        for batch, sink in zip(batches, sinks, strict=True):
            text = rename_records(batch, first)
            in_flight.append((pool.submit(compress_blocks, text, level), sink))
        while len(in_flight) > 2 * threads:
            future, sink = in_flight.popleft()
            _write(sink, future.result())
        first += counts[0]
        if counts[0] < BATCH_RECORDS:
            break
    while in_flight:
        future, sink = in_flight.popleft()
        _write(sink, future.result())
    return first - 1


def _check_pair(readers: list[_Records], batches: list[list[bytes]], counts: list[int], first: int) -> None:
    """Same record count and template names in both mates of this batch."""
    if counts[0] != counts[1]:
        shorter = readers[0] if counts[0] < counts[1] else readers[1]
        raise MalformedInput(
            shorter.path,
            f"record {first + min(counts)}: the file ends before its mate (R1 and R2 must have the "
            "same number of records); files are not a pair or one is truncated",
        )
    check_mates(batches[0], batches[1], first, readers[1].path)


def _open_source(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise MalformedInput(str(path), f"cannot be opened ({exc.strerror}); check the path") from exc


def _create(path: Path, ours: list[Path]) -> BinaryIO:
    """A new file, refused if it exists (a stale partial from a crash must be removed by hand)."""
    try:
        sink = path.open("xb")
    except FileExistsError as exc:
        raise OutputExists(str(path)) from exc
    except OSError as exc:
        raise DeidError(f"{path}: cannot be created ({exc.strerror}); check the directory") from exc
    ours.append(path)
    return sink


def _write(sink: BinaryIO, data: bytes) -> None:
    try:
        sink.write(data)
    except OSError as exc:
        raise DeidError(f"{sink.name}: write failed ({exc.strerror}); free disk space and retry") from exc
