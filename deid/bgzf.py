"""BGZF, shared by every writer in deid: blocks, the EOF marker, and swapping a BAM header.

`compress_blocks` writes data as BGZF blocks (the VCF splice, its index, FASTQ output and BAM
headers all use it); `read_block` reads one; `copy_range` copies compressed bytes in the kernel.

`reheader` swaps the header of a BAM file and copies the rest of its blocks byte for byte,

What `samtools reheader` does for BAM (bam_reheader.c), without its @PG line: read the blocks
that hold the old header, write the new header in fresh blocks, recompress the tail of the last
header block (the records that share it, if any), then copy every later compressed block as it is.
Only the header blocks are inflated; the body is never decompressed here (indexing the output
afterwards reads it, which is where a corrupt body shows up).

Block layout (SAM spec 4.1): a gzip member with FEXTRA holding the `BC` subfield (BSIZE, the
block size minus 1), then raw deflate data, CRC32 and ISIZE. Each block holds at most 64 KiB.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

EOF_BLOCK = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_MAGIC = b"\x1f\x8b\x08\x04"
_MAX_INPUT = 0xFF00  # htslib's BGZF_BLOCK_SIZE: input bytes per block, so the deflated block fits
_LEVEL = 6


class BgzfError(ValueError):
    """The file is not BGZF, or a block is damaged or cut short (detail never holds file content)."""


def has_eof_block(path: Path) -> bool:
    """True when the file ends with the 28-byte BGZF end-of-file marker (what quickcheck looks for)."""
    size = path.stat().st_size
    if size < len(EOF_BLOCK):
        return False
    with path.open("rb") as f:
        f.seek(size - len(EOF_BLOCK))
        return f.read() == EOF_BLOCK


def read_block(f: BinaryIO) -> tuple[bytes, int] | None:
    """The next block's inflated data and its compressed size; None at the end of the file."""
    head = f.read(18)
    if not head:
        return None
    if len(head) < 18 or head[:4] != _MAGIC:
        raise BgzfError("not a BGZF block")
    (xlen,) = struct.unpack_from("<H", head, 10)
    if xlen != 6 or head[12:14] != b"BC":
        raise BgzfError("BGZF block without the BC subfield in the place htslib writes it")
    (bsize,) = struct.unpack_from("<H", head, 16)
    rest = f.read(bsize + 1 - 18)
    if len(rest) != bsize + 1 - 18:
        raise BgzfError("BGZF block cut short")
    try:
        data = zlib.decompress(rest[:-8], wbits=-15)
    except zlib.error as exc:
        raise BgzfError("BGZF block does not inflate") from exc
    crc, isize = struct.unpack_from("<II", rest, len(rest) - 8)
    if isize != len(data) or crc != zlib.crc32(data):
        raise BgzfError("BGZF block fails its CRC or size check")
    return data, bsize + 1


def compress_blocks(data: bytes | bytearray | memoryview, level: int = _LEVEL) -> bytes:
    """`data` as BGZF blocks of at most 0xff00 input bytes each (no EOF marker). Releases the GIL
    while deflating, so threads compress in parallel."""
    view = memoryview(data)
    out = []
    for start in range(0, len(view), _MAX_INPUT):
        chunk = view[start : start + _MAX_INPUT]
        deflated = zlib.compress(chunk, level, wbits=-15)
        bsize = 18 + len(deflated) + 8 - 1
        out += [
            _MAGIC,
            b"\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00",
            struct.pack("<H", bsize),
            deflated,
            struct.pack("<II", zlib.crc32(chunk), len(chunk)),
        ]
    return b"".join(out)


def reheader(src: Path, dst: Path, new_header: bytes, header_length: Callable[[bytes], int | None]) -> int:
    """Write dst as src with its header replaced; returns the offset in src where block copying began.

    `header_length(data)` tells the length of the old header at the start of the inflated
    stream, or None while `data` is too short to tell (deid.sam_header.bam_header_length).
    """
    inflated = bytearray()
    with src.open("rb") as fin:
        length = None
        while length is None:
            block = read_block(fin)
            if block is None:
                raise BgzfError("file ends inside its header")
            inflated += block[0]
            length = header_length(bytes(inflated))
        copy_from = fin.tell()
        tail = bytes(inflated[length:])
        with dst.open("wb") as fout:
            fout.write(compress_blocks(new_header))
            if tail:
                fout.write(compress_blocks(tail))
            fout.flush()
            copy_range(fin, fout, copy_from, os.fstat(fin.fileno()).st_size - copy_from)
    return copy_from


def copy_range(fin: BinaryIO, fout: BinaryIO, offset: int, count: int) -> None:
    """Copy `count` bytes from fin at `offset` to fout's position, in the kernel where it can."""
    in_fd, out_fd = fin.fileno(), fout.fileno()
    in_pos = offset
    while count > 0:
        try:
            sent = os.copy_file_range(in_fd, out_fd, min(count, 1 << 30), in_pos)
        except OSError:
            sent = 0
        if sent == 0:  # not supported across these files, or nothing copied: plain reads
            fin.seek(in_pos)
            while count > 0:
                chunk = fin.read(min(count, 1 << 20))
                if not chunk:
                    raise BgzfError("file shorter than its size")
                fout.write(chunk)
                count -= len(chunk)
            return
        in_pos += sent
        count -= sent
