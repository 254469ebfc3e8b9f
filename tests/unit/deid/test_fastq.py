"""deid.fastq: read names become counters, identifiers vanish, sequences and qualities survive, bad input fails closed."""

from __future__ import annotations

import bz2
import gzip
import random
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pysam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deid import fastq
from deid.errors import DeidError, MalformedInput, OutputExists
from deid.fastq import FastqStats, deidentify_fastq

INSTRUMENT, RUN, FLOWCELL, BARCODE = "A00524", "776", "HJ8K7DSX7", "TTGACCAG+GGATTCAA"
PLANTED = ("A00524", "HJ8K7DSX7", "TTGACCAG", "GGATTCAA", "JANE-DOE", "MRN48151623", "12508")
Record = tuple[str, str, str, str]  # header, sequence, separator, quality
Pair = tuple[list[Path], list[Path], list[Record], list[Record]]  # sources, destinations, R1, R2
Drawn = tuple[list[str], list[str], str, tuple[str, str], tuple[str, str]]


def illumina_records(n: int, mate: int, seed: int = 3) -> list[Record]:
    """Illumina-named records with a barcode comment, a patient note and the name repeated on '+'."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        name = f"{INSTRUMENT}:{RUN}:{FLOWCELL}:3:{1101 + i}:12508:{11088 + i}"
        length = rng.randint(30, 90)
        # no planted token can occur in a sequence or a quality: bases A C G only, qualities F : ,
        seq = "".join(rng.choice("ACG") for _ in range(length))
        qual = "".join(rng.choice("F:,") for _ in range(length))
        comment = f"{mate}:N:0:{BARCODE}\tpatient=JANE-DOE;MRN48151623"
        records.append((f"@{name} {comment}", seq, f"+{name}", qual))
    return records


def text(records: list[Record]) -> bytes:
    return "".join(f"{h}\n{s}\n{p}\n{q}\n" for h, s, p, q in records).encode()


def write_gzip(path: Path, records: list[Record]) -> Path:
    path.write_bytes(gzip.compress(text(records)))
    return path


def read_fastx(path: Path) -> list[tuple[str, str, str]]:
    """(name, sequence, quality) of every record, read by htslib (kseq)."""
    with pysam.FastxFile(str(path)) as f:
        return [(str(r.name), str(r.sequence), str(r.quality)) for r in f]


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    """A gzipped Illumina pair of 25 records with identifiers in names, comments and '+' lines."""
    r1, r2 = illumina_records(25, 1), illumina_records(25, 2, seed=4)
    srcs = [write_gzip(tmp_path / "S1_R1.fastq.gz", r1), write_gzip(tmp_path / "S1_R2.fastq.gz", r2)]
    (tmp_path / "out").mkdir()
    return srcs, [tmp_path / "out" / "R1.fastq.gz", tmp_path / "out" / "R2.fastq.gz"], r1, r2


def test_pair_names_become_the_same_counter_and_sequences_survive(pair: Pair) -> None:
    """R1 and R2 records are named 1..n in both files; sequences and qualities are unchanged."""
    srcs, dsts, r1, r2 = pair
    stats = deidentify_fastq(srcs, dsts)
    assert FastqStats(files=2, reads_in=50, reads_out=50) == stats
    for dst, records in zip(dsts, (r1, r2), strict=True):
        expected = [(str(i), s, q) for i, (_, s, _, q) in enumerate(records, start=1)]
        assert expected == read_fastx(dst)


def test_output_text_is_counter_sequence_plus_quality(pair: Pair) -> None:
    """The whole decompressed output is `@n`, sequence, `+`, quality: no comment, no repeated name."""
    srcs, dsts, r1, _ = pair
    deidentify_fastq(srcs, dsts)
    expected = "".join(f"@{i}\n{s}\n+\n{q}\n" for i, (_, s, _, q) in enumerate(r1, start=1))
    assert expected.encode() == gzip.decompress(dsts[0].read_bytes())


def test_no_planted_identifier_survives(pair: Pair) -> None:
    """Instrument, flowcell, barcodes, tile coordinates and the patient note appear in neither text nor bytes."""
    srcs, dsts, _, _ = pair
    deidentify_fastq(srcs, dsts)
    for dst in dsts:
        raw = dst.read_bytes()
        plain = gzip.decompress(raw)
        assert [] == [t for t in PLANTED if t.encode() in plain or t.encode() in raw]


def test_output_is_bgzf_that_gzip_and_htslib_accept(pair: Pair, tmp_path: Path) -> None:
    """`gzip -t` passes and `samtools fqidx` (BGZF only) indexes the output and fetches a read by counter."""
    srcs, dsts, r1, _ = pair
    deidentify_fastq(srcs, dsts)
    assert 0 == subprocess.run(["gzip", "-t", str(dsts[0])], check=False).returncode
    fetched = tmp_path / "read7.fq"
    pysam.samtools.fqidx("-o", str(fetched), str(dsts[0]), "7")
    assert f"@7\n{r1[6][1]}\n+\n{r1[6][3]}\n" == fetched.read_text()
    assert Path(f"{dsts[0]}.gzi").exists()


def test_single_end_plain_text(tmp_path: Path) -> None:
    """One uncompressed file is read as text and written as gzip, names 1..n."""
    records = illumina_records(9, 1)
    src = tmp_path / "S1.fastq"
    src.write_bytes(text(records))
    dst = tmp_path / "S1.deid.fastq.gz"
    assert FastqStats(files=1, reads_in=9, reads_out=9) == deidentify_fastq([src], [dst])
    assert [(str(i), s, q) for i, (_, s, _, q) in enumerate(records, start=1)] == read_fastx(dst)


def test_bgzf_and_multi_member_gzip_inputs(tmp_path: Path) -> None:
    """A BGZF input (htslib) and a gzip of several members are read across their member boundaries."""
    records = illumina_records(30, 1)
    plain = tmp_path / "plain.fastq"
    plain.write_bytes(text(records))
    bgzf = tmp_path / "in.fastq.gz"
    pysam.tabix_compress(str(plain), str(bgzf))
    multi = tmp_path / "multi.fastq.gz"
    body = text(records)
    multi.write_bytes(
        gzip.compress(body[:1001]) + gzip.compress(body[1001:2500]) + gzip.compress(body[2500:])
    )
    expected = [(str(i), s, q) for i, (_, s, _, q) in enumerate(records, start=1)]
    for src in (bgzf, multi):
        dst = tmp_path / f"out-{src.name}"
        deidentify_fastq([src], [dst])
        assert expected == read_fastx(dst)


def test_counters_continue_across_batches(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """With batches of 4 records and tiny reads, 25 records still number 1..25 in both mates."""
    monkeypatch.setattr(fastq, "BATCH_RECORDS", 4)
    monkeypatch.setattr(fastq, "_READ_SIZE", 97)
    monkeypatch.setattr(fastq, "_MAX_TEXT", 211)
    srcs, dsts, _, r2 = pair
    deidentify_fastq(srcs, dsts)
    assert [str(i) for i in range(1, 26)] == [n for n, _, _ in read_fastx(dsts[0])]
    assert [(s, q) for _, s, _, q in r2] == [(s, q) for _, s, q in read_fastx(dsts[1])]


def test_mate_suffixes_are_ignored_in_the_pair_check(tmp_path: Path) -> None:
    """Old-style names `x/1` and `x/2` pair up; both mates become `@1`, `@2`."""
    r1 = [(f"@{name}/1", "ACGT", "+", "FFFF") for name in ("spot9876", "spot9877")]
    r2 = [(f"@{name}/2", "TTGC", "+", "FF:F") for name in ("spot9876", "spot9877")]
    srcs = [write_gzip(tmp_path / "a.fq.gz", r1), write_gzip(tmp_path / "b.fq.gz", r2)]
    dsts = [tmp_path / "a.out.gz", tmp_path / "b.out.gz"]
    deidentify_fastq(srcs, dsts)
    assert b"@1\nTTGC\n+\nFF:F\n@2\nTTGC\n+\nFF:F\n" == gzip.decompress(dsts[1].read_bytes())


def test_empty_input_gives_an_empty_valid_gzip(tmp_path: Path) -> None:
    """An empty FASTQ is zero reads; the output is the BGZF end-of-file block alone."""
    src = tmp_path / "empty.fastq.gz"
    src.write_bytes(gzip.compress(b""))
    dst = tmp_path / "out.fastq.gz"
    assert FastqStats(files=1, reads_in=0, reads_out=0) == deidentify_fastq([src], [dst])
    assert b"" == gzip.decompress(dst.read_bytes())


def _lines(records: list[Record]) -> list[str]:
    return text(records).decode().splitlines()


def _gz(lines: list[str]) -> bytes:
    return gzip.compress(("\n".join(lines) + "\n").encode())


def _with_line(index: int, value: str) -> bytes:
    lines = _lines(illumina_records(25, 2, seed=4))
    lines[index] = value
    return _gz(lines)


def _truncated_gzip() -> bytes:
    data = gzip.compress(text(illumina_records(25, 2, seed=4)))
    return data[: len(data) - 40]


def _corrupt_gzip() -> bytes:
    data = bytearray(gzip.compress(text(illumina_records(25, 2, seed=4))))
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


def _swapped() -> bytes:
    records = illumina_records(25, 2, seed=4)
    records[11], records[12] = records[12], records[11]
    return gzip.compress(text(records))


BAD_R2: dict[str, tuple[Callable[[], bytes], str]] = {
    "odd line count": (
        lambda: _gz(_lines(illumina_records(25, 2, seed=4))[:-2]),
        "record 25: truncated record",
    ),
    "header without @": (lambda: _with_line(4 * 9, "A00524:776:HJ8K7DSX7:3:1110"), "record 10: header line"),
    "'+' line missing": (
        lambda: _with_line(4 * 3 + 2, "ACGT"),
        "record 4: the '+' separator line is missing",
    ),
    "length mismatch": (lambda: _with_line(4 * 5 + 3, "FF"), "record 6: sequence and quality lengths differ"),
    "truncated gzip": (_truncated_gzip, "gzip stream is truncated"),
    "corrupt gzip": (_corrupt_gzip, "gzip data is corrupt"),
    "not gzip, not text": (lambda: bytes(range(256)) * 4, "is neither gzip nor FASTQ text"),
    "bzip2": (lambda: bz2.compress(text(illumina_records(3, 2))), "is bzip2-compressed"),
    "NUL bytes": (lambda: _gz([*_lines(illumina_records(3, 2))[:-1], "FF\0F"]), "contains NUL bytes"),
    "mates out of order": (
        _swapped,
        "record 12: mate names differ between R1 and R2; files are not a pair or are out of order",
    ),
    "one record short": (
        lambda: gzip.compress(text(illumina_records(24, 2, seed=4))),
        "record 25: the file ends",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_R2))
@pytest.mark.parametrize("batch", [16_384, 5])
def test_bad_mate_fails_closed_and_writes_nothing(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, case: str, batch: int
) -> None:
    """Each malformed R2 raises MalformedInput naming the record and no protected value; neither output exists."""
    monkeypatch.setattr(fastq, "BATCH_RECORDS", batch)
    srcs, dsts, _, _ = pair
    make, expected = BAD_R2[case]
    srcs[1].write_bytes(make())
    with pytest.raises(MalformedInput) as caught:
        deidentify_fastq(srcs, dsts)
    assert expected in caught.value.detail
    assert str(srcs[1]) == caught.value.path
    assert [] == [t for t in PLANTED if t in str(caught.value)]
    assert [] == list(dsts[0].parent.iterdir())


def test_existing_destination_is_never_overwritten(pair: Pair) -> None:
    """A taken destination raises OutputExists and keeps its bytes; the other output is not written."""
    srcs, dsts, _, _ = pair
    dsts[1].write_bytes(b"keep me")
    with pytest.raises(OutputExists):
        deidentify_fastq(srcs, dsts)
    assert b"keep me" == dsts[1].read_bytes()
    assert not dsts[0].exists()


@pytest.mark.parametrize(("n_src", "n_dst"), [(0, 0), (3, 3), (2, 1)])
def test_wrong_file_counts_are_refused(tmp_path: Path, n_src: int, n_dst: int) -> None:
    """One or two sources, and as many destinations."""
    with pytest.raises(DeidError, match="one source"):
        deidentify_fastq(
            [tmp_path / f"s{i}" for i in range(n_src)], [tmp_path / f"d{i}" for i in range(n_dst)]
        )


# --- property ---------------------------------------------------------------------------------

_TOKENS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=9)
_READS = st.integers(0, 40).flatmap(
    lambda n: st.tuples(
        st.text(alphabet="ACGTN", min_size=n, max_size=n),
        st.text(alphabet=[chr(c) for c in range(33, 75)], min_size=n, max_size=n),
    )
)
_RECORDS = st.lists(
    st.tuples(
        st.lists(_TOKENS, min_size=1, max_size=5),  # name tokens, joined by ':'
        st.lists(_TOKENS, max_size=3),  # comment tokens
        st.sampled_from(["", "/1"]),
        _READS,
        _READS,
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(
    records=_RECORDS,
    paired=st.booleans(),
    gzipped=st.booleans(),
    batch=st.sampled_from([1, 3, 16_384]),
    read_size=st.sampled_from([5, 64, 1 << 20]),
)
def test_property_names_are_1_to_n_and_reads_survive(
    records: list[Drawn], paired: bool, gzipped: bool, batch: int, read_size: int
) -> None:
    """Random names, comments and reads: output names are exactly 1..n in order, reads unchanged, no name token of 4+ letters left."""
    mates: list[tuple[bytes, list[tuple[str, str]]]] = []
    for mate in (1, 2)[: 1 + paired]:
        lines = []
        for tokens, comment, slash, read1, read2 in records:
            seq, qual = read1 if mate == 1 else read2
            suffix = slash.replace("1", str(mate))
            lines.append(
                f"@{':'.join(tokens)}{suffix} {' '.join(comment)}\n{seq}\n+{':'.join(tokens)}\n{qual}\n"
            )
        mates.append(("".join(lines).encode(), [r[3] if mate == 1 else r[4] for r in records]))
    secrets = {t for tokens, comment, *_ in records for t in (*tokens, *comment) if len(t) >= 4}
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch.object(fastq, "BATCH_RECORDS", batch),
        mock.patch.object(fastq, "_READ_SIZE", read_size),
    ):
        srcs, dsts = [], []
        for i, (body, _) in enumerate(mates):
            srcs.append(Path(tmp, f"in{i}.fq"))
            srcs[-1].write_bytes(gzip.compress(body) if gzipped else body)
            dsts.append(Path(tmp, f"out{i}.fq.gz"))
        stats = deidentify_fastq(srcs, dsts)
        outputs = [gzip.decompress(d.read_bytes()).decode() for d in dsts]
    assert FastqStats(len(mates), len(records) * len(mates), len(records) * len(mates)) == stats
    for output, (_, reads) in zip(outputs, mates, strict=True):
        expected = "".join(f"@{i}\n{seq}\n+\n{qual}\n" for i, (seq, qual) in enumerate(reads, start=1))
        assert expected == output
        assert set() == {t for t in secrets if t in output}
