"""deid.alignment: de-identified BAM/CRAM, checked with htslib (pysam.samtools) on adversarial SAM fixtures."""

from __future__ import annotations

import dataclasses
import gzip
import random
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import pysam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deid import bgzf
from deid.alignment import AlignmentStats, deidentify_alignment
from deid.errors import DeidError, MalformedInput, OutputExists
from deid.policy import GenomicRules, load_policy
from deid.sam_header import bam_header_length
from deid.sam_records import TemplateNames

NAME = "INST001:42:FCSECRET1:1:1101:{}:2000"
PLANTED = (
    "INST001", "FCSECRET", "SAMPLE-JANE", "SAMPLE-JOHN", "LIB-JANEDOE", "Jane Doe", "Saint Secret Hospital",
    "2024-01-02", "/home/jane_doe", "GATTACAGATTACA", "COSECRET", "PUSECRET", "bwa mem",
)  # fmt: skip
SAMPLES = {"SAMPLE-JANE": "PSN7Q2", "SAMPLE-JOHN": "PSN9K4"}
HEADER = (
    "@HD\tVN:1.6\tSO:coordinate\n"
    "@SQ\tSN:chr1\tLN:1000\tUR:file:///home/jane_doe/ref.fa\tAS:GRCh38\n"
    "@SQ\tSN:chr2\tLN:1000\tUR:file:///home/jane_doe/ref.fa\n"
    "@SQ\tSN:chrY\tLN:1000\n"
    "@SQ\tSN:chrM\tLN:200\tDS:Jane Doe mito\n"
    "@RG\tID:FCSECRET1.1\tSM:SAMPLE-JANE\tLB:LIB-JANEDOE\tPL:ILLUMINA\tPU:PUSECRET.1\tDS:Jane Doe 1970"
    "\tCN:Saint Secret Hospital\tDT:2024-01-02\tPI:350\tPM:NovaSeq\tKS:ACGT\tFO:ACGT\tBC:GATTACAGATTACA\n"
    "@RG\tID:FCSECRET2.2\tSM:SAMPLE-JOHN\tPL:ILLUMINA\tLB:LIB-JANEDOE-2\n"
    "@PG\tID:bwa\tPN:bwa\tCL:bwa mem /home/jane_doe/r1.fq\n"
    "@CO\tpatient Jane Doe, Saint Secret Hospital\n"
)
SEQ, QUAL = "ACGTACGTAC", "FFFFFFFFFF"


def _rec(n: int, flag: int, rname: str, pos: int, rnext: str, pnext: int, tlen: int, *tags: str) -> str:
    rg = "FCSECRET2.2" if n == 3 else "FCSECRET1.1"
    cigar = "*" if flag & 0x4 else "5S5M" if flag & 0x800 else "10M"
    common = (f"RG:Z:{rg}", "BC:Z:GATTACAGATTACA", "CO:Z:COSECRET note", f"XN:Z:{NAME.format(n)}", "NM:i:0")
    fields = [
        NAME.format(n),
        str(flag),
        rname,
        str(pos),
        "0" if flag & 0x4 else "60",
        cigar,
        rnext,
        str(pnext),
        str(tlen),
        SEQ,
        QUAL,
    ]
    return "\t".join([*fields, *common, *tags])


# Coordinate-sorted; templates 1-7: 1 pair with a secondary first, 2 mate on chrY, 3 second read group,
# 4 chimeric (SA) with supplementaries on chr2 and chrY, 5 on chrY, 6 on chrM, 7 unmapped pair.
RECORDS = [
    _rec(1, 355, "chr1", 50, "chr1", 300, 0),
    _rec(1, 99, "chr1", 100, "=", 300, 210, "MD:Z:10", "XF:f:0.123456789"),
    _rec(2, 97, "chr1", 150, "chrY", 500, 0, "MC:Z:10M", "MQ:i:60"),
    _rec(4, 99, "chr1", 200, "=", 400, 210, "SA:Z:chr2,400,+,5S5M,60,0;chrY,800,+,5S5M,60,0;"),
    _rec(1, 147, "chr1", 300, "=", 100, -210),
    _rec(4, 147, "chr1", 400, "=", 200, -210),
    _rec(3, 99, "chr2", 100, "=", 300, 210),
    _rec(3, 147, "chr2", 300, "=", 100, -210),
    _rec(4, 2145, "chr2", 400, "chr1", 400, 0, "SA:Z:chr1,200,+,10M,60,0;"),
    _rec(2, 145, "chrY", 500, "chr1", 150, 0),
    _rec(5, 99, "chrY", 600, "=", 700, 110),
    _rec(5, 147, "chrY", 700, "=", 600, -110),
    _rec(4, 2145, "chrY", 800, "chr1", 400, 0, "SA:Z:chr1,200,+,10M,60,0;"),
    _rec(6, 99, "chrM", 50, "=", 90, 50),
    _rec(6, 147, "chrM", 90, "=", 50, -50),
    _rec(7, 77, "*", 0, "*", 0, 0),
    _rec(7, 141, "*", 0, "*", 0, 0),
]
DROP = ("chrY", "Y", "chrM", "MT")


def _rules(**changes: object) -> GenomicRules:
    return dataclasses.replace(load_policy("cgipa").genomic, **changes)  # type: ignore[arg-type]


def _bam(path: Path, header: str = HEADER, records: list[str] = RECORDS, *args: str) -> Path:
    sam = path.with_suffix(".sam")
    sam.write_text(header + "".join(f"{r}\n" for r in records), encoding="utf-8")
    fmt = list(args) or ["-b"]
    pysam.samtools.view(*fmt, "--no-PG", "-o", str(path), str(sam), catch_stdout=False)
    sam.unlink()
    return path


def _view(path: Path, *args: str) -> list[list[str]]:
    text = str(pysam.samtools.view("--no-PG", *args, str(path)))
    return [line.split("\t") for line in text.splitlines()]


def _header(path: Path) -> str:
    return str(pysam.samtools.view("-H", "--no-PG", str(path)))


@pytest.fixture
def released(tmp_path: Path) -> tuple[Path, AlignmentStats]:
    src = _bam(tmp_path / "in.bam")
    dst = tmp_path / "out" / "released.bam"
    dst.parent.mkdir()
    return dst, deidentify_alignment(src, dst, SAMPLES, _rules())


def test_no_planted_value_survives(released: tuple[Path, AlignmentStats]) -> None:
    """No identifier planted in the header, read names or tags occurs in the output, decoded or raw."""
    dst, _ = released
    text = str(pysam.samtools.view("-h", "--no-PG", str(dst)))
    raw = dst.read_bytes() + dst.with_name(dst.name + ".bai").read_bytes()
    inflated = gzip.decompress(dst.read_bytes())
    found = [v for v in PLANTED if v in text or v.encode() in raw or v.encode() in inflated]
    assert [] == found
    assert [] == [n for n in range(1, 8) if NAME.format(n) in text]


def test_output_is_whole_and_indexed(released: tuple[Path, AlignmentStats]) -> None:
    """quickcheck passes, the index exists and answers region queries, and only dst and its index are written."""
    dst, _ = released
    assert "" == pysam.samtools.quickcheck(str(dst))
    assert ["released.bam", "released.bam.bai"] == sorted(p.name for p in dst.parent.iterdir())
    with pysam.AlignmentFile(str(dst)) as f:
        assert 6 == f.count("chr1")
        assert 3 == f.count("chr2")


def test_counts_follow_the_policy(released: tuple[Path, AlignmentStats]) -> None:
    """Records on dropped contigs are removed and counted; every other record is kept."""
    dst, stats = released
    on_dropped = sum(1 for r in RECORDS if r.split("\t")[2] in DROP)
    expected = AlignmentStats(len(RECORDS), len(RECORDS) - on_dropped, on_dropped, header_only=False)
    assert expected == stats
    assert len(RECORDS) - on_dropped == len(_view(dst))
    assert [] == [r for r in _view(dst) if r[2] in DROP or r[6] in DROP]


def test_header_is_reduced(released: tuple[Path, AlignmentStats]) -> None:
    """@SQ keeps SN/LN without dropped contigs; @RG keeps ID (counter), SM (pseudonym), PL; @PG/@CO go."""
    dst, _ = released
    expected = (
        "@HD\tVN:1.6\tSO:coordinate\n@SQ\tSN:chr1\tLN:1000\n@SQ\tSN:chr2\tLN:1000\n"
        "@RG\tID:rg1\tSM:PSN7Q2\tPL:ILLUMINA\n@RG\tID:rg2\tSM:PSN9K4\tPL:ILLUMINA\n"
    )
    assert expected == _header(dst)


def test_templates_share_one_new_name(released: tuple[Path, AlignmentStats]) -> None:
    """Both mates, a secondary and a supplementary of one template share a name; templates differ."""
    dst, _ = released
    out = _view(dst)
    kept = [r.split("\t") for r in RECORDS if r.split("\t")[2] not in DROP]
    groups_in: dict[str, list[int]] = defaultdict(list)
    groups_out: dict[str, list[int]] = defaultdict(list)
    for i, (old, new) in enumerate(zip(kept, out, strict=True)):
        groups_in[old[0]].append(i)
        groups_out[new[0]].append(i)
    assert sorted(groups_in.values()) == sorted(groups_out.values())
    rg = {r[0]: next(t for t in r[11:] if t.startswith("RG:")) for r in out}
    assert {"RG:Z:rg1", "RG:Z:rg2"} == set(rg.values())
    third = out[next(i for i, r in enumerate(kept) if r[0] == NAME.format(3))]
    assert "RG:Z:rg2" == rg[third[0]]


def test_mates_stay_consistent(released: tuple[Path, AlignmentStats]) -> None:
    """Mate fields point at the mate; a read whose mate was on chrY becomes mate-unmapped without MC/MQ."""
    dst, _ = released
    out = _view(dst)
    primaries = [r for r in out if not int(r[1]) & 0x900]
    by_name: dict[str, list[list[str]]] = defaultdict(list)
    for r in primaries:
        by_name[r[0]].append(r)
    orphans = [rs[0] for rs in by_name.values() if len(rs) == 1]
    assert 1 == len(orphans)
    assert (97 | 0x8) & ~0x20 == int(orphans[0][1])
    assert ["*", "0", "0"] == orphans[0][6:9]
    assert [] == [t for t in orphans[0][11:] if t[:2] in ("MC", "MQ")]
    for pair in (rs for rs in by_name.values() if len(rs) == 2):
        a, b = pair
        if int(a[1]) & 0x4:
            continue
        assert (a[3], b[3]) == (b[7], a[7])
        assert int(a[8]) == -int(b[8])
    stats = str(pysam.samtools.flagstat(str(dst)))
    assert "1 + 0 singletons" in stats or "0 + 0 singletons" in stats
    assert "with itself and mate mapped" in stats


def test_aux_tags_reduced_to_the_allow_list(released: tuple[Path, AlignmentStats]) -> None:
    """BC, CO, XN, XF and SA go; RG, NM, MD, MC, MQ stay (MC/MQ only where the mate is kept)."""
    dst, _ = released
    tags = Counter(t[:2] for r in _view(dst) for t in r[11:])
    assert {"RG": 11, "NM": 11, "MD": 1} == dict(tags)


def test_float_tag_is_kept_exactly(tmp_path: Path) -> None:
    """A kept float tag keeps its binary value (SAM text would round it to 6 digits)."""
    src = _bam(tmp_path / "in.bam")
    dst = tmp_path / "out.bam"
    deidentify_alignment(src, dst, SAMPLES, _rules(aux_tags_keep=("RG", "XF", "SA")))
    with pysam.AlignmentFile(str(src)) as f:
        expected = next(r.get_tag("XF") for r in f if r.has_tag("XF"))
    with pysam.AlignmentFile(str(dst)) as f:
        actual = next(r.get_tag("XF") for r in f if r.has_tag("XF"))
        sa = [r.get_tag("SA") for r in f.fetch(until_eof=True) if r.has_tag("SA")]
    assert expected == actual
    assert ["chr2,400,+,5S5M,60,0;", "chr1,200,+,10M,60,0;"] == sa


def test_names_kept_when_the_policy_says_so(tmp_path: Path) -> None:
    """rewrite_read_names = false keeps names (tags still filtered, so the full path runs)."""
    src = _bam(tmp_path / "in.bam")
    dst = tmp_path / "out.bam"
    stats = deidentify_alignment(src, dst, SAMPLES, _rules(rewrite_read_names=False))
    assert False is stats.header_only
    assert {NAME.format(n) for n in (1, 2, 3, 4, 7)} == {r[0] for r in _view(dst)}


def _no_dropped_records() -> list[str]:
    return [r for r in RECORDS if r.split("\t")[2] not in DROP and r.split("\t")[6] not in DROP]


def test_header_only_path_copies_body_blocks(tmp_path: Path) -> None:
    """Names kept and tags `*`: only the header changes; body blocks are byte-identical to the input's."""
    header = HEADER.replace("ID:FCSECRET1.1", "ID:A.1").replace("ID:FCSECRET2.2", "ID:B.2")
    records = [
        r.replace("RG:Z:FCSECRET1.1", "RG:Z:A.1").replace("RG:Z:FCSECRET2.2", "RG:Z:B.2")
        for r in _no_dropped_records()
    ]
    src = _bam(tmp_path / "in.bam", header, records)
    dst = tmp_path / "out.bam"
    stats = deidentify_alignment(src, dst, SAMPLES, _rules(rewrite_read_names=False, aux_tags_keep=("*",)))
    assert AlignmentStats(len(records), len(records), 0, header_only=True) == stats
    assert _body(src) == _body(dst)
    assert _view(src) == _view(dst)
    assert "@RG\tID:A.1\tSM:PSN7Q2\tPL:ILLUMINA\n@RG\tID:B.2\tSM:PSN9K4\tPL:ILLUMINA\n" in _header(dst)
    assert "chrY" not in _header(dst)
    assert "" == pysam.samtools.quickcheck(str(dst))


def test_header_only_path_for_cram(tmp_path: Path) -> None:
    """A CRAM is reheadered in place on a copy (containers not decoded); records are unchanged."""
    header = HEADER.replace("ID:FCSECRET1.1", "ID:A.1").replace("ID:FCSECRET2.2", "ID:B.2")
    records = [
        r.replace("RG:Z:FCSECRET1.1", "RG:Z:A.1").replace("RG:Z:FCSECRET2.2", "RG:Z:B.2")
        for r in _no_dropped_records()
    ]
    src = _bam(tmp_path / "in.cram", header, records, "-C", "--output-fmt-option", "embed_ref=2")
    dst = tmp_path / "out.cram"
    stats = deidentify_alignment(src, dst, SAMPLES, _rules(rewrite_read_names=False, aux_tags_keep=("*",)))
    assert AlignmentStats(len(records), len(records), 0, header_only=True) == stats
    assert _view(src) == _view(dst)
    text = _header(dst)
    assert [] == [v for v in PLANTED if v in text]
    assert "@RG\tID:A.1\tSM:PSN7Q2\tPL:ILLUMINA\n" in text
    assert "" == pysam.samtools.quickcheck(str(dst))


def _body(path: Path) -> bytes:
    """The compressed bytes after the blocks that hold the BAM header."""
    with path.open("rb") as f:
        inflated = b""
        while (length := bam_header_length(inflated)) is None:
            block = bgzf.read_block(f)
            assert block is not None
            inflated += block[0]
        assert len(inflated) == length  # htslib ends the header at a block boundary
        return f.read()


def test_header_only_recompresses_a_shared_block(tmp_path: Path) -> None:
    """When records share the header's last block, that block's tail is recompressed and records survive."""
    src = _bam(tmp_path / "in.bam", HEADER, _no_dropped_records())
    squeezed = tmp_path / "squeezed.bam"
    squeezed.write_bytes(bgzf.compress_blocks(gzip.decompress(src.read_bytes())) + bgzf.EOF_BLOCK)
    new = tmp_path / "new.bam"
    offset = bgzf.reheader(squeezed, new, _header_bytes(tmp_path), bam_header_length)
    assert squeezed.stat().st_size - len(bgzf.EOF_BLOCK) == offset
    assert _view(src) == _view(new)


def _header_bytes(tmp_path: Path) -> bytes:
    from deid.sam_header import bam_header_bytes

    return bam_header_bytes(HEADER, [("chr1", 1000), ("chr2", 1000), ("chrY", 1000), ("chrM", 200)])


def test_header_only_refused_when_records_must_change(tmp_path: Path) -> None:
    """Reads on a dropped contig, or an @RG ID holding the sample name, force the full path."""
    src = _bam(tmp_path / "in.bam")
    rules = _rules(rewrite_read_names=False, aux_tags_keep=("*",))
    assert False is deidentify_alignment(src, tmp_path / "a.bam", SAMPLES, rules).header_only
    header = HEADER.replace("ID:FCSECRET1.1", "ID:SAMPLE-JANE.1")
    records = [r.replace("RG:Z:FCSECRET1.1", "RG:Z:SAMPLE-JANE.1") for r in _no_dropped_records()]
    src2 = _bam(tmp_path / "in2.bam", header, records)
    stats = deidentify_alignment(src2, tmp_path / "b.bam", SAMPLES, rules)
    assert False is stats.header_only
    assert "SAMPLE-JANE" not in str(pysam.samtools.view("-h", "--no-PG", str(tmp_path / "b.bam")))


def _fasta(path: Path) -> Path:
    rng = random.Random(7)
    lengths = {"chr1": 1000, "chr2": 1000, "chrY": 1000, "chrM": 200}
    path.write_text("".join(f">{n}\n{''.join(rng.choices('ACGT', k=k))}\n" for n, k in lengths.items()))
    pysam.faidx(str(path))
    return path


def test_cram_round_trip(tmp_path: Path) -> None:
    """A CRAM with an embedded reference gives a CRAM whose records equal the BAM route's."""
    src = _bam(tmp_path / "in.cram", HEADER, RECORDS, "-C", "--output-fmt-option", "embed_ref=2")
    dst = tmp_path / "out.cram"
    stats = deidentify_alignment(src, dst, SAMPLES, _rules())
    bam = tmp_path / "out.bam"
    deidentify_alignment(_bam(tmp_path / "in.bam"), bam, SAMPLES, _rules())
    assert stats == deidentify_alignment(src, tmp_path / "again.bam", SAMPLES, _rules())
    assert _normalised(bam) == _normalised(dst)  # CRAM stores RG apart and decodes it last
    assert Path(f"{dst}.crai").is_file()
    assert "" == pysam.samtools.quickcheck(str(dst))


def _normalised(path: Path) -> list[list[str]]:
    return [r[:11] + sorted(r[11:]) for r in _view(path)]


def test_cram_needs_its_reference(tmp_path: Path) -> None:
    """A CRAM encoded against a FASTA that is gone is refused with the fix; with the FASTA it works, no path leaks."""
    fasta = _fasta(tmp_path / "jane_doe_ref.fa")
    src = _bam(tmp_path / "in.cram", HEADER, RECORDS, "-C", "-T", str(fasta))
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for p in tmp_path.glob("jane_doe_ref.fa*"):
        p.rename(moved / p.name)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(MalformedInput, match="--reference") as caught:
        deidentify_alignment(src, out / "x.cram", SAMPLES, _rules())
    assert [] == list(out.iterdir())
    assert "jane_doe" not in caught.value.detail
    stats = deidentify_alignment(src, out / "x.cram", SAMPLES, _rules(), reference=moved / fasta.name)
    assert 11 == stats.reads_out
    assert "UR:" not in _header(out / "x.cram")
    assert 11 == len(_view(out / "x.cram"))


def _refused(tmp_path: Path, src: Path, samples: dict[str, str] = SAMPLES) -> MalformedInput:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    with pytest.raises(MalformedInput) as caught:
        deidentify_alignment(src, out / "x.bam", samples, _rules())
    assert [] == list(out.iterdir())
    assert [] == [v for v in PLANTED if v in str(caught.value)]
    assert 1 == len(str(caught.value).splitlines())
    return caught.value


def test_truncated_bam_is_refused(tmp_path: Path) -> None:
    """A BAM cut short (no EOF block) is refused before anything is written."""
    src = _bam(tmp_path / "in.bam")
    data = src.read_bytes()
    src.write_bytes(data[: len(data) - 40])
    assert "truncated" in _refused(tmp_path, src).detail


def test_not_a_bam_is_refused(tmp_path: Path) -> None:
    """Plain text, and SAM text, are not BAM/CRAM."""
    junk = tmp_path / "junk.bam"
    junk.write_text("Jane Doe was here\n" * 20)
    assert "not a BAM or CRAM" in _refused(tmp_path, junk).detail
    sam = tmp_path / "in.sam"
    sam.write_text(HEADER + "".join(f"{r}\n" for r in RECORDS))
    assert "not a BAM or CRAM" in _refused(tmp_path, sam).detail


def test_record_on_undeclared_contig_is_refused(tmp_path: Path) -> None:
    """A record whose contig the header does not declare is refused, naming the record number."""
    src = _bam(tmp_path / "in.bam")
    short = tmp_path / "short.sam"
    short.write_text(
        HEADER.replace("@SQ\tSN:chrY\tLN:1000\n", "").replace("@SQ\tSN:chrM\tLN:200\tDS:Jane Doe mito\n", "")
    )
    bad = tmp_path / "bad.bam"
    pysam.samtools.reheader("-P", str(short), str(src), save_stdout=str(bad))
    assert "record 3 " in _refused(tmp_path, bad).detail  # its mate is on chrY


def test_unknown_sample_is_refused(tmp_path: Path) -> None:
    """An @RG SM missing from the mapping is refused without printing it."""
    src = _bam(tmp_path / "in.bam")
    error = _refused(tmp_path, src, {"SAMPLE-JANE": "PSN7Q2"})
    assert "header line 7 (@RG)" in error.detail


def test_undeclared_read_group_tag_is_refused(tmp_path: Path) -> None:
    """A record whose RG tag names no @RG is refused, naming the record number only."""
    src = _bam(tmp_path / "in.bam", HEADER, [RECORDS[0].replace("RG:Z:FCSECRET1.1", "RG:Z:OTHER")])
    assert "record 1: its RG tag" in _refused(tmp_path, src).detail


def test_existing_output_is_not_overwritten(tmp_path: Path) -> None:
    """An existing dst (or index) raises OutputExists; a wrong suffix raises DeidError."""
    src = _bam(tmp_path / "in.bam")
    taken = tmp_path / "taken.bam"
    taken.write_bytes(b"keep me")
    with pytest.raises(OutputExists):
        deidentify_alignment(src, taken, SAMPLES, _rules())
    assert b"keep me" == taken.read_bytes()
    with pytest.raises(DeidError, match=r"\.bam or \.cram"):
        deidentify_alignment(src, tmp_path / "x.sam", SAMPLES, _rules())


def test_template_names_close_templates() -> None:
    """A template closes after its primaries and SA-announced supplementaries; later records get new names."""
    names = TemplateNames()
    assert "1" == names.rename("a", 99, supplementaries=1)
    assert "1" == names.rename("a", 2145)
    assert 1 == names.open_templates
    assert "1" == names.rename("a", 147)
    assert 0 == names.open_templates
    assert "2" == names.rename("b", 0)
    assert "3" == names.rename("a", 99)
    assert 1 == names.open_templates


_CONTIGS = ("chr1", "chr2", "chrY")


@st.composite
def _templates(draw: st.DrawFn) -> list[tuple[bool, tuple[str, int], tuple[str, int]]]:
    spot = st.tuples(st.sampled_from(_CONTIGS), st.integers(1, 900))
    return draw(st.lists(st.tuples(st.booleans(), spot, spot), min_size=1, max_size=40))


def _sam_records(templates: list[tuple[bool, tuple[str, int], tuple[str, int]]]) -> list[str]:
    rows = []
    for i, (paired, (c1, p1), (c2, p2)) in enumerate(templates):
        name = f"HOSP:{i}:PATIENT{i * 7919}"
        if not paired:
            rows.append((c1, p1, f"{name}\t0\t{c1}\t{p1}\t60\t10M\t*\t0\t0\t{SEQ}\t{QUAL}\tRG:Z:FCSECRET1.1"))
            continue
        for flag, (c, p), (mc, mp) in ((67, (c1, p1), (c2, p2)), (131, (c2, p2), (c1, p1))):
            rnext = "=" if mc == c else mc
            line = f"{name}\t{flag}\t{c}\t{p}\t60\t10M\t{rnext}\t{mp}\t0\t{SEQ}\t{QUAL}\tRG:Z:FCSECRET1.1\tMC:Z:10M"
            rows.append((c, p, line))
    rows.sort(key=lambda r: (_CONTIGS.index(r[0]), r[1]))
    return [r[2] for r in rows]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_templates())
def test_property_names_pairs_and_counts(
    templates: list[tuple[bool, tuple[str, int], tuple[str, int]]],
) -> None:
    """Random templates: no original name survives, kept mates share a name, kept-contig counts hold."""
    records = _sam_records(templates)
    header = "@HD\tVN:1.6\tSO:coordinate\n" + "".join(f"@SQ\tSN:{c}\tLN:1000\n" for c in _CONTIGS)
    header += "@RG\tID:FCSECRET1.1\tSM:SAMPLE-JANE\n"
    with tempfile.TemporaryDirectory() as tmp:
        src = _bam(Path(tmp) / "in.bam", header, records)
        stats = deidentify_alignment(src, Path(tmp) / "out.bam", SAMPLES, _rules())
        out = _view(Path(tmp) / "out.bam")
    expected = Counter(r.split("\t")[2] for r in records if r.split("\t")[2] != "chrY")
    assert expected == Counter(r[2] for r in out)
    assert sum(expected.values()) == stats.reads_out
    assert [] == [r for r in out if "HOSP" in r[0] or "PATIENT" in r[0]]
    kept_pairs = sum(1 for paired, a, b in templates if paired and a[0] != "chrY" and b[0] != "chrY")
    names = Counter(r[0] for r in out)
    assert kept_pairs == sum(1 for n in names.values() if n == 2)
    assert [] == [n for n in names.values() if n > 2]
    for r in out:
        if names[r[0]] == 1 and int(r[1]) & 0x1:
            assert ("*", "0") == (r[6], r[7])
            assert int(r[1]) & 0x8
