"""BGZF at the block level for VCF/BCF: swap the header, copy the body blocks, move the index.

What `bcftools reheader` does for a VCF.gz, for VCF and BCF alike: the blocks that hold the header
are inflated, the new header is deflated into blocks of its own, the rest of the block in which the
old header ended is deflated again as one block, and every later block is copied byte for byte
(each block's framing is checked; none is inflated). Each copied block keeps its size and moves by
a constant, so a tabix (.tbi) or CSI (.csi) index of the source is carried over by moving its
virtual offsets (`move_index`): the index htslib would build from the new file, without reading
the body. (deid/bgzf.py does the BAM splice; this module adds VCF/BCF header ends and index
moving.)

A BGZF block is a gzip member whose extra field holds BSIZE (block size - 1); a file ends with the
28-byte empty block (EOF marker). SAM/VCF spec, section 4.1; index layouts: htslib hts.c.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from deid.bgzf import EOF_BLOCK, compress_blocks, copy_range
from deid.errors import MalformedInput

EOF_MARKER = EOF_BLOCK
_HEADER = struct.Struct("<4BI2BH2BH")  # ID1 ID2 CM FLG MTIME XFL OS XLEN SI1 SI2 SLEN (BSIZE follows)
_MAX_INPUT = 0xFF00  # bytes of data per block, as htslib writes them
_BCF_MAGIC = b"BCF\x02"
Buffer = mmap.mmap | bytes


@dataclass(frozen=True, slots=True)
class Block:
    """One BGZF block: where it starts, its size on disk, its inflated size."""

    offset: int
    size: int
    isize: int


@dataclass(frozen=True, slots=True)
class Splice:
    """How a spliced file's offsets relate to its source's (for moving an index)."""

    split_offset: int  # source block in which the old header ended
    header_in_split: int  # uncompressed bytes of that block that belonged to the header
    tail_offset: int  # where the re-deflated rest of that block starts in the new file (-1: none)
    body_offset: int  # first block copied as is, in the source
    shift: int  # new offset - source offset, for every copied block


def _truncated(path: str, offset: int) -> MalformedInput:
    return MalformedInput(path, f"BGZF block at byte {offset} is truncated; re-copy or re-compress the file")


def _block_at(buf: Buffer, offset: int, path: str) -> Block:
    if offset + _HEADER.size + 2 > len(buf):
        raise _truncated(path, offset)
    fields = _HEADER.unpack_from(buf, offset)
    if fields[:4] != (31, 139, 8, 4) or fields[8:10] != (66, 67):
        raise MalformedInput(path, f"byte {offset} is not a BGZF block; compress the file with bgzip")
    size = struct.unpack_from("<H", buf, offset + _HEADER.size)[0] + 1
    if offset + size > len(buf):
        raise _truncated(path, offset)
    isize = struct.unpack_from("<I", buf, offset + size - 4)[0]
    return Block(offset, size, isize)


def _inflate(buf: Buffer, block: Block, path: str) -> bytes:
    start = block.offset + _HEADER.size + 2
    try:
        data = zlib.decompress(buf[start : block.offset + block.size - 8], -15)
    except zlib.error as exc:
        raise MalformedInput(path, f"BGZF block at byte {block.offset} is corrupt; re-copy the file") from exc
    if len(data) != block.isize:
        raise MalformedInput(path, f"BGZF block at byte {block.offset} is corrupt; re-copy the file")
    return data


def walk(buf: Buffer, start: int, path: str) -> Iterator[Block]:
    """Every block from start to the end; refuse a file that does not end with the EOF marker."""
    if len(buf) < len(EOF_MARKER) or bytes(buf[-len(EOF_MARKER) :]) != EOF_MARKER:
        raise MalformedInput(
            path, "no BGZF end-of-file marker (truncated, or not bgzipped); re-copy the file"
        )
    offset = start
    while offset < len(buf):
        block = _block_at(buf, offset, path)
        yield block
        offset += block.size


def header_end(data: bytes) -> int | None:
    """Length of the VCF or BCF header at the start of data; None if data does not hold all of it yet,
    -1 if data is neither."""
    if data.startswith(_BCF_MAGIC):
        if len(data) < 9:
            return None
        end = 9 + struct.unpack_from("<I", data, 5)[0]
        return end if len(data) >= end else None
    if not data.startswith(b"##fileformat=VCF"[: len(data)]):
        return -1
    position = data.find(b"\n#CHROM")
    if position < 0:
        return None
    end = data.find(b"\n", position + 1)
    return end + 1 if end >= 0 else None


def read_header(path: Path) -> tuple[bytes, list[Block], int]:
    """The inflated start of a BGZF VCF or BCF up to the end of its header block, the blocks, the
    header's length."""
    name = str(path)
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            data, blocks = b"", []
            for block in walk(buf, 0, name):
                blocks.append(block)
                data += _inflate(buf, block, name)
                end = header_end(data)
                if end == -1:
                    raise MalformedInput(name, "not a VCF or BCF (no ##fileformat line or BCF magic)")
                if end is not None:
                    return data, blocks, end
    except (OSError, ValueError) as exc:  # an empty file cannot be mapped
        raise MalformedInput(name, f"cannot read the file ({type(exc).__name__}); check the path") from exc
    raise MalformedInput(name, "the header has no #CHROM line; check that the file is a whole VCF or BCF")


def splice(src: Path, dst: Path, header: bytes) -> Splice:
    """Write dst: header in new blocks, then src's records, every block after the header copied."""
    data, blocks, end = read_header(src)
    consumed = sum(b.isize for b in blocks[:-1])
    split = blocks[-1]
    tail = data[end:]
    name = str(src)
    with src.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        body = split.offset + split.size
        for _ in walk(buf, body, name):  # every later block is whole before anything is written
            pass
        with dst.open("wb") as out:
            out.write(compress_blocks(header))
            tail_offset = out.tell() if tail else -1
            out.write(compress_blocks(tail))
            shift = out.tell() - body
            out.flush()
            copy_range(f, out, body, len(buf) - body)
    return Splice(split.offset, end - consumed, tail_offset, body, shift)


def mover(splice_: Splice) -> Callable[[int], int]:
    """Map a source virtual offset to the spliced file's; ValueError for one inside the old header."""

    def move(voffset: int) -> int:
        coffset, uoffset = voffset >> 16, voffset & 0xFFFF
        if coffset >= splice_.body_offset:
            return (coffset + splice_.shift) << 16 | uoffset
        in_tail = coffset == splice_.split_offset and uoffset >= splice_.header_in_split
        if in_tail and splice_.tail_offset >= 0:
            return splice_.tail_offset << 16 | (uoffset - splice_.header_in_split)
        raise ValueError("virtual offset inside the header")

    return move


def move_index(src_index: Path, dst_index: Path, move: Callable[[int], int]) -> None:
    """Write dst_index: src_index (.tbi or .csi) with every virtual offset moved."""
    with src_index.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        raw = b"".join(_inflate(buf, b, str(src_index)) for b in walk(buf, 0, str(src_index)))
    out = bytearray(raw)
    _IndexRewriter(out, move).run()
    dst_index.write_bytes(compress_blocks(bytes(out)) + EOF_MARKER)


class _IndexRewriter:
    """Walks a tabix or CSI index in place (htslib hts.c: hts_idx_save_core)."""

    def __init__(self, data: bytearray, move: Callable[[int], int]) -> None:
        self.data, self.move, self.pos = data, move, 0
        self.mapped: list[int] = []  # records per reference, from the pseudo-bins

    def i32(self) -> int:
        value: int = struct.unpack_from("<i", self.data, self.pos)[0]
        self.pos += 4
        return value

    def offset(self) -> None:
        value = struct.unpack_from("<Q", self.data, self.pos)[0]
        struct.pack_into("<Q", self.data, self.pos, self.move(value))
        self.pos += 8

    def run(self) -> None:
        magic = bytes(self.data[:4])
        self.pos = 4
        if magic == b"TBI\x01":
            n_ref = self.i32()
            self.pos += 24  # format, col_seq, col_beg, col_end, meta, skip
            names = self.i32()
            self.pos += names  # sequence names
            pseudo, csi = 37450, False
        elif magic == b"CSI\x01":
            self.pos += 4  # min_shift
            depth = self.i32()
            aux = self.i32()
            self.pos += aux
            n_ref = self.i32()
            pseudo, csi = ((1 << ((depth + 1) * 3)) - 1) // 7 + 1, True
        else:
            raise ValueError("not a tabix or CSI index")
        for _ in range(n_ref):
            self.mapped.append(0)
            for _ in range(self.i32()):
                bin_ = struct.unpack_from("<I", self.data, self.pos)[0]
                self.pos += 4
                if csi:
                    self.offset()  # loffset
                n_chunk = self.i32()
                if bin_ == pseudo:  # (start, end) offsets, then (mapped, unmapped) counts
                    self.offset()
                    self.offset()
                    self.mapped[-1] = struct.unpack_from("<Q", self.data, self.pos)[0]
                    self.pos += 16 * (n_chunk - 1)
                    continue
                for _ in range(2 * n_chunk):
                    self.offset()
            if not csi:
                for _ in range(self.i32()):  # linear index
                    self.offset()


def index_counts(index: Path) -> dict[str | int, int]:
    """Records per reference from an index's pseudo-bins: by name (.tbi) or by contig number (.csi)."""
    with index.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        raw = bytearray(b"".join(_inflate(buf, b, str(index)) for b in walk(buf, 0, str(index))))
    reader = _IndexRewriter(raw, lambda v: v)
    reader.run()
    names: list[str | int] = list(range(len(reader.mapped)))
    if raw[:4] == b"TBI\x01":
        l_nm = struct.unpack_from("<i", raw, 32)[0]
        names = [n.decode("utf-8") for n in bytes(raw[36 : 36 + l_nm]).split(b"\0")[: len(reader.mapped)]]
    return {name: count for name, count in zip(names, reader.mapped, strict=True) if count}
