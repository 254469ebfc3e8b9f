"""deid.vcf: VCF/BCF de-identification through htslib, checked with htslib (pysam, pysam.bcftools)."""

from __future__ import annotations

import dataclasses
import gzip
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pysam
import pysam.bcftools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deid.errors import MalformedInput
from deid.policy import GenomicRules, load_policy
from deid.vcf import VcfStats, allele_frequencies, deidentify_vcf
from deid.vcf_blocks import read_header

CGIPA = load_policy("cgipa").genomic
SAMPLES = ("LAB-0001-Alice", "LAB-0002-Bob", "LAB-0003-Carol", "LAB-0004-Dave")
PLANTED = (
    *SAMPLES,
    "Alice Liddell",
    "MRN445566",
    "/data/clinical/patients",
    "GRCh38_secret_ref",
    "20240131",
    "LABVAR-Alice",
    "PATIENTNOTE",
    "WHOKEY",
    "BARCODEX",
)
HEADER = f"""##fileformat=VCFv4.2
##fileDate=20240131
##source=GATK GenotypeGVCFs by Alice Liddell
##reference=file:///data/clinical/patients/GRCh38_secret_ref.fa
##commandline="gatk -V /data/clinical/patients/Alice_MRN445566/x.g.vcf.gz"
##bcftools_mergeCommand=merge /data/clinical/patients/LAB-0001-Alice.vcf.gz; Date=Wed Jan 31 2024
##SAMPLE=<ID=LAB-0001-Alice,Individual="Alice Liddell",MRN=MRN445566>
##PEDIGREE=<Child=LAB-0001-Alice,Mother=LAB-0002-Bob>
##contig=<ID=chrM,length=16569,assembly=GRCh38_secret_ref>
##contig=<ID=chr1,length=100000,URL=file:///data/clinical/patients/GRCh38_secret_ref.fa>
##contig=<ID=chr2,length=100000,md5=0123456789abcdef0123456789abcdef>
##contig=<ID=chrY,length=50000>
##FILTER=<ID=LowQual,Description="Low quality">
##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count">
##INFO=<ID=AN,Number=1,Type=Integer,Description="Allele number">
##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">
##INFO=<ID=WHOKEY,Number=1,Type=String,Description="Who">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=BC,Number=1,Type=String,Description="Barcode">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{chr(9).join(SAMPLES)}
"""
# genotypes of SAMPLES, per site: (chrom, pos, id, ref, alt, genotypes)
SITES = (
    ("chrM", 100, ".", "A", "G", ("0/1", "1/1", "0/0", "0/1")),
    ("chr1", 1000, "LABVAR-Alice", "A", "G", ("0/1", "0/1", "0/1", "0/0")),
    ("chr1", 2000, ".", "C", "T", ("0/0", "0/0", "0/1", "0/0")),  # singleton
    ("chr1", 3000, ".", "G", "A", ("1/1", "1/1", "1/1", "1/1")),  # monomorphic
    ("chr1", 4000, "rs123", "T", "C,G", ("0/1", "1/2", "1/1", "0/0")),
    ("chr2", 500, ".", "A", "C", ("0/1", "1/1", "0/0", "0/1")),
    ("chr2", 900, ".", "G", "T", ("0/0", "0/1", "./.", "0/1")),
    ("chrY", 50, ".", "A", "T", ("0/1", "0/1", "0/1", "0/1")),
)


def _write(
    path: Path, header: str, sites: tuple[tuple[str, int, str, str, str, tuple[str, ...]], ...]
) -> Path:
    """A bgzipped, tabix-indexed VCF with the planted INFO and FORMAT values on every record."""
    rows = [
        f"{c}\t{p}\t{i}\t{r}\t{a}\t50\tPASS\tAC=9;AF=0.5;WHOKEY=PATIENTNOTE\tGT:BC\t"
        + "\t".join(f"{g}:BARCODEX" for g in gts)
        for c, p, i, r, a, gts in sites
    ]
    text = path.with_suffix("")
    text.write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    pysam.tabix_compress(str(text), str(path), force=True)
    pysam.tabix_index(str(path), preset="vcf", force=True)
    text.unlink()
    return path


def _records(path: Path) -> list[pysam.VariantRecord]:
    with pysam.VariantFile(str(path)) as vcf:
        return list(vcf)


def _rules(**changes: object) -> GenomicRules:
    return dataclasses.replace(CGIPA, **changes)  # type: ignore[arg-type]


def _leaks(*paths: Path) -> list[str]:
    """Planted values found in raw or decompressed bytes of the files."""
    found = []
    for path in paths:
        raw = path.read_bytes()
        plain = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        found += [v for v in PLANTED if v.encode() in raw or v.encode() in plain]
    return found


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return _write(tmp_path / "in.vcf.gz", HEADER, SITES)


RENAME = [("LAB-0003-Carol", "P-C"), ("LAB-0001-Alice", "P-A"), ("LAB-0002-Bob", "P-B")]


@pytest.mark.parametrize("name", ["out.vcf.gz", "out.bcf"])
def test_full_path_releases_no_planted_identifier(source: Path, tmp_path: Path, name: str) -> None:
    """Header lines, IDs, INFO/FORMAT keys and sample names planted in the input leave no trace."""
    dst = tmp_path / name
    deidentify_vcf(source, dst, RENAME, CGIPA)
    index = dst.with_name(dst.name + (".csi" if name.endswith(".bcf") else ".tbi"))
    assert [] == _leaks(dst, index)
    text = pysam.bcftools.view(str(dst))
    assert [] == [v for v in PLANTED if v in text]
    assert {} == {
        n: 1 for n in ("##source", "##SAMPLE", "##PEDIGREE", "##reference", "##fileDate") if n in text
    }


@pytest.mark.parametrize("name", ["out.vcf.gz", "out.bcf"])
def test_full_path_counts_ac_an_af_for_the_subset(source: Path, tmp_path: Path, name: str) -> None:
    """Sites, AC/AN/AF and genotypes are what the policy predicts for the released samples."""
    dst = tmp_path / name
    stats = deidentify_vcf(source, dst, RENAME, _rules(min_minor_allele_count=2))
    columns = [SAMPLES.index(n) for n, _ in RENAME]
    expected = []
    for chrom, pos, _, ref, alt, gts in SITES:
        if chrom in CGIPA.drop_contigs:
            continue
        alleles = [int(a) for i in columns for a in gts[i].split("/") if a != "."]
        counts = np.bincount(alleles, minlength=len(alt.split(",")) + 1)
        seen = [k for k in range(1, len(counts)) if counts[k] > 0]  # bcftools view -a trims unseen ALTs
        if len(alleles) - counts.max() < 2:
            continue
        ac = tuple(int(counts[k]) for k in seen)
        af = tuple(round(c / len(alleles), 4) for c in ac)
        expected.append(
            (chrom, pos, None, ref, tuple(alt.split(",")[k - 1] for k in seen), ac, len(alleles), af)
        )
    actual = [
        (
            r.chrom,
            r.pos,
            r.id,
            r.ref,
            r.alts,
            r.info["AC"],
            r.info["AN"],
            tuple(round(x, 4) for x in r.info["AF"]),
        )
        for r in _records(dst)
    ]
    assert expected == actual
    assert VcfStats(4, 3, 8, len(expected), 2, 6 - len(expected), False) == stats
    with pysam.VariantFile(str(dst)) as vcf:
        assert ["P-C", "P-A", "P-B"] == list(vcf.header.samples)
        assert ["chr1", "chr2"] == list(vcf.header.contigs)
        assert ["AC", "AN", "AF"] == list(vcf.header.info)
        assert ["GT"] == list(vcf.header.formats)
        first = next(vcf.fetch("chr1", 999, 1000))
        assert [(0, 1), (0, 1), (0, 1)] == [first.samples[p]["GT"] for p in ("P-C", "P-A", "P-B")]
    assert len(expected) == len(str(pysam.bcftools.view("-H", str(dst), "chr1", "chr2")).splitlines())


def test_fast_path_copies_body_blocks_and_moves_the_index(tmp_path: Path) -> None:
    """All samples in order, no floor, clean keys: the body blocks are the input's, the index is htslib's."""
    header = "\n".join(
        line
        for line in HEADER.splitlines()
        if "WHOKEY" not in line and "ID=BC" not in line and "chrY" not in line
    )
    text = tmp_path / "big.vcf"
    rng = np.random.default_rng(7)
    lines = [header]
    for pos in range(1, 30_000):  # several BGZF blocks, header ending mid-block
        gts = rng.choice(["0/0", "0/1", "1/1"], size=4)
        lines.append(f"chr1\t{pos}\t.\tA\tG\t50\tPASS\t.\tGT\t" + "\t".join(gts))
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    src = tmp_path / "big.vcf.gz"
    pysam.tabix_compress(str(text), str(src))
    pysam.tabix_index(str(src), preset="vcf")
    rename = [(s, f"P{i}") for i, s in enumerate(SAMPLES)]
    dst = tmp_path / "out.vcf.gz"
    stats = deidentify_vcf(src, dst, rename, _rules(min_minor_allele_count=0))
    assert VcfStats(4, 4, 29_999, 29_999, 0, 0, True) == stats
    _, src_blocks, _ = read_header(src)
    src_body = src.read_bytes()[src_blocks[-1].offset + src_blocks[-1].size :]
    assert src_body == dst.read_bytes()[-len(src_body) :]
    assert [] == _leaks(dst)
    moved = gzip.decompress((tmp_path / "out.vcf.gz.tbi").read_bytes())
    pysam.tabix_index(str(dst), preset="vcf", force=True)
    assert gzip.decompress((tmp_path / "out.vcf.gz.tbi").read_bytes()) == moved
    assert ["P0", "P1", "P2", "P3"] == list(pysam.VariantFile(str(dst)).header.samples)
    assert 101 == len(str(pysam.bcftools.view("-H", str(dst), "chr1:100-200")).splitlines())


def test_full_path_moved_index_equals_a_rebuilt_one(source: Path, tmp_path: Path) -> None:
    """The index written with the records and moved past the new header is the one htslib would build."""
    dst = tmp_path / "out.vcf.gz"
    deidentify_vcf(source, dst, RENAME, CGIPA)
    moved = gzip.decompress((tmp_path / "out.vcf.gz.tbi").read_bytes())
    pysam.tabix_index(str(dst), preset="vcf", force=True)
    assert gzip.decompress((tmp_path / "out.vcf.gz.tbi").read_bytes()) == moved


def test_allele_frequencies_per_population_without_names(source: Path, tmp_path: Path) -> None:
    """The summary has AC/AN/AF overall and per population, one row per ALT, and no sample name."""
    dst = tmp_path / "af.parquet"
    rename = [(s, f"P{i}") for i, s in enumerate(SAMPLES)]
    stats = allele_frequencies(source, dst, rename, {"P0": "EUR", "P1": "EUR", "P2": "AFR"}, CGIPA)
    table = pq.read_table(dst)
    assert None is table.schema.metadata
    expected_columns = ["chrom", "pos", "ref", "alt", "AC", "AN", "AF"] + [
        f"{k}_{p}" for p in ("AFR", "EUR") for k in ("AC", "AN", "AF")
    ]
    assert expected_columns == table.column_names
    rows = table.to_pylist()
    # floor 3 over 4 samples: chr1:1000 (nonmajor 3), chr1:4000 (4), chr2:500 (4); chr2:900 has 2
    assert [("chr1", 1000, "G"), ("chr1", 4000, "C"), ("chr1", 4000, "G"), ("chr2", 500, "C")] == [
        (r["chrom"], r["pos"], r["alt"]) for r in rows
    ]
    first = rows[0]
    assert (3, 8, 3 / 8, 1, 2, 0.5, 2, 4, 0.5) == (
        first["AC"], first["AN"], first["AF"], first["AC_AFR"], first["AN_AFR"], first["AF_AFR"],
        first["AC_EUR"], first["AN_EUR"], first["AF_EUR"],
    )  # fmt: skip
    assert (4, 1) == (rows[1]["AC"], rows[2]["AC"])
    assert [] == _leaks(dst)
    assert VcfStats(4, 4, 8, 3, 2, 3, False) == stats


def test_missing_sample_is_refused_without_naming_it(source: Path, tmp_path: Path) -> None:
    """A manifest sample the VCF lacks: one MalformedInput that counts it, names none, writes nothing."""
    with pytest.raises(MalformedInput) as err:
        deidentify_vcf(source, tmp_path / "o.vcf.gz", [("LAB-0001-Alice", "P"), ("NOPE-Zed", "Q")], CGIPA)
    assert "lacks 1 sample(s) the manifest names; check the vcf_sample column" == err.value.detail
    assert "NOPE-Zed" not in str(err.value)
    assert ["in.vcf.gz", "in.vcf.gz.tbi"] == sorted(p.name for p in tmp_path.iterdir())


def test_truncated_bgzf_is_refused(source: Path, tmp_path: Path) -> None:
    """A cut-short file is refused before anything is written."""
    cut = tmp_path / "cut.vcf.gz"
    cut.write_bytes(source.read_bytes()[:-40])
    with pytest.raises(MalformedInput, match="truncated"):
        deidentify_vcf(cut, tmp_path / "o.vcf.gz", RENAME, CGIPA)
    assert not (tmp_path / "o.vcf.gz").exists()


def test_not_a_vcf_is_refused(tmp_path: Path) -> None:
    """Bgzipped text that is not a VCF, and plain bytes, are each one clear error."""
    text = tmp_path / "x.txt"
    text.write_text("hello\n" * 10)
    gz = tmp_path / "x.vcf.gz"
    pysam.tabix_compress(str(text), str(gz))
    with pytest.raises(MalformedInput, match="not a VCF or BCF"):
        deidentify_vcf(gz, tmp_path / "o.vcf.gz", [], CGIPA)
    with pytest.raises(MalformedInput, match=r"not bgzipped|not a BGZF"):
        deidentify_vcf(text, tmp_path / "o.vcf.gz", [], CGIPA)
    assert not (tmp_path / "o.vcf.gz").exists()


def test_record_on_undeclared_contig_is_refused(tmp_path: Path) -> None:
    """A record whose contig has no ##contig line is refused (htslib only warns)."""
    sites = (*SITES[1:3], ("chr9", 10, ".", "A", "G", ("0/1", "0/1", "0/1", "0/1")))
    src = _write(tmp_path / "in.vcf.gz", HEADER, sites)
    with pytest.raises(MalformedInput, match="does not declare"):
        deidentify_vcf(src, tmp_path / "o.vcf.gz", RENAME, CGIPA)
    assert not (tmp_path / "o.vcf.gz").exists()


genotypes = st.sampled_from(["0/0", "0/1", "1/1", "./.", "0|1", "1|1"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_samples=st.integers(2, 6),
    matrix_seed=st.integers(0, 2**32 - 1),
    n_sites=st.integers(1, 12),
    floor=st.integers(1, 4),
    data=st.data(),
)
def test_mac_floor_and_counts_match_numpy(
    n_samples: int, matrix_seed: int, n_sites: int, floor: int, data: st.DataObject
) -> None:
    """Random genotypes and sample subsets: kept sites and AC/AN equal a numpy recomputation."""
    rng = np.random.default_rng(matrix_seed)
    names = [f"ID{i:03d}-secret" for i in range(n_samples)]
    cells = rng.choice(["0/0", "0/1", "1/1", "./.", "0|1"], size=(n_sites, n_samples))
    chosen = data.draw(st.permutations(range(n_samples)).map(lambda p: p[: max(1, len(p) - 1)]))
    header = "".join(
        ["##fileformat=VCFv4.2\n##contig=<ID=chr1,length=100000>\n",
         '##FORMAT=<ID=GT,Number=1,Type=String,Description="GT">\n',
         "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(names) + "\n"]
    )  # fmt: skip
    rows = [f"chr1\t{i + 1}\t.\tA\tG\t.\t.\t.\tGT\t" + "\t".join(cells[i]) for i in range(n_sites)]
    alt = np.vectorize(lambda g: sum(a == "1" for a in g.replace("|", "/").split("/")))(cells)
    called = np.vectorize(lambda g: sum(a != "." for a in g.replace("|", "/").split("/")))(cells)
    ac, an = alt[:, list(chosen)].sum(axis=1), called[:, list(chosen)].sum(axis=1)
    keep = np.minimum(ac, an - ac) >= floor
    with tempfile.TemporaryDirectory() as work:
        text, src, dst = Path(work, "in.vcf"), Path(work, "in.vcf.gz"), Path(work, "out.vcf.gz")
        text.write_text(header + "\n".join(rows) + "\n")
        pysam.tabix_compress(str(text), str(src))
        rename = [(names[c], f"PSN{k}") for k, c in enumerate(chosen)]
        stats = deidentify_vcf(src, dst, rename, _rules(min_minor_allele_count=floor))
        actual = [(r.pos, r.info["AC"][0], r.info["AN"]) for r in _records(dst)]
        raw = gzip.decompress(dst.read_bytes())
    expected = [(i + 1, int(ac[i]), int(an[i])) for i in range(n_sites) if keep[i]]
    assert expected == actual
    assert (n_sites, int(keep.sum())) == (stats.sites_in, stats.sites_out)
    assert [] == [n for n in names if n.encode() in raw]
