"""Genotype matrices from VCFs (htslib through pysam.bcftools), summary frequencies and the identified panel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pysam
import pytest

from deid.errors import MalformedInput
from deid.reid.genotypes import (
    GenotypeMatrix,
    alt_frequencies,
    combine,
    common_sites,
    parse_query,
    read_frequencies,
    read_genotypes,
    read_panel,
)

HEADER = (
    "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=10000>\n##contig=<ID=chrX,length=10000>\n"
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT"
)
RECORDS = [
    "chr1\t10\t.\tA\tG\t.\t.\t.\tGT\t0/0\t0|1\t1/1",
    "chr1\t11\t.\tA\tG,T\t.\t.\t.\tGT\t0/0\t0|1\t1/2",  # multi-allelic: no single dosage
    "chr1\t12\t.\tC\tT\t.\t.\t.\tGT\t./.\t1|0\t./1",
    "chr1\t12\t.\tC\tT\t.\t.\t.\tGT\t1/1\t1/1\t1/1",  # the same key again: the first record is kept
    "chrX\t5\t.\tC\tCT\t.\t.\t.\tGT\t0\t1/1\t.",  # haploid calls count as missing
]


def _vcf(path: Path, samples: list[str], records: list[str]) -> Path:
    text = path.with_suffix("")
    text.write_text("\n".join([HEADER + "".join(f"\t{s}" for s in samples), *records]) + "\n")
    pysam.tabix_compress(str(text), str(path), force=True)
    pysam.tabix_index(str(path), preset="vcf", force=True)
    text.unlink()
    return path


def test_parse_query_reads_diploid_calls_and_marks_the_rest_missing() -> None:
    """0/0, 0|1, 1/1 are 0, 1, 2; ./., ./1, a haploid 1 and a bare . are -1; keys come from each line."""
    text = b"chr1:10:A:G\t0/0\t0|1\t1/1\nchr1:12:C:T\t./.\t./1\t1\nchr2:3:G:A\t.\t1|1\t0/0\n"
    keys, block = parse_query(text, 3)
    assert (["chr1:10:A:G", "chr1:12:C:T", "chr2:3:G:A"], [[0, 1, 2], [-1, -1, -1], [-1, 2, 0]]) == (
        keys,
        block.tolist(),
    )


def test_parse_query_refuses_a_ragged_line() -> None:
    """A line with fewer genotypes than samples is refused, not shifted into the next site."""
    with pytest.raises(ValueError, match="whole lines"):
        parse_query(b"chr1:10:A:G\t0/0\t0/1\nchr1:11:A:G\t0/0\n", 2)


def test_read_genotypes_matches_pysam(tmp_path: Path) -> None:
    """Dosages and keys agree with a record-by-record reading through pysam.VariantFile."""
    path = _vcf(tmp_path / "a.vcf.gz", ["s1", "s2", "s3"], RECORDS)
    matrix = read_genotypes(path, tmp_path)
    expected_sites, expected = [], []
    with pysam.VariantFile(str(path)) as vcf:
        for record in vcf:
            alts = record.alts or ()
            key = f"{record.chrom}:{record.pos}:{record.ref}:{alts[0]}"
            if len(alts) != 1 or key in expected_sites:
                continue
            expected_sites.append(key)
            calls = [record.samples[s]["GT"] for s in vcf.header.samples]
            expected.append([sum(c) if len(c) == 2 and None not in c else -1 for c in calls])
    assert (("s1", "s2", "s3"), expected_sites, np.array(expected).T.tolist()) == (
        matrix.samples,
        matrix.sites.tolist(),
        matrix.dosages.tolist(),
    )
    assert [] == list(tmp_path.glob("*.tsv"))  # the query text is removed


def test_read_genotypes_refuses_a_file_that_is_not_a_vcf(tmp_path: Path) -> None:
    """A corrupt file is MalformedInput naming the file and the fix."""
    bad = tmp_path / "bad.vcf.gz"
    bad.write_bytes(b"not a vcf at all\n")
    with pytest.raises(MalformedInput, match="bcftools view"):
        read_genotypes(bad, tmp_path)


def test_read_frequencies_keys_sites_and_drops_null_af(tmp_path: Path) -> None:
    """chrom:pos:ref:alt keys with AF; a site without AF is left out."""
    path = tmp_path / "af.parquet"
    pl.DataFrame(
        {"chrom": ["chr1", "chr1", "chr2"], "pos": [10, 10, 7], "ref": ["A", "A", "C"],
         "alt": ["G", "T", "T"], "AC": [1, 0, 0], "AN": [4, 4, 0], "AF": [0.25, 0.0, None]}
    ).write_parquet(path)  # fmt: skip
    freqs = read_frequencies(path)
    assert (["chr1:10:A:G", "chr1:10:A:T"], [0.25, 0.0]) == (freqs.sites.tolist(), freqs.frequencies.tolist())


def test_read_frequencies_refuses_a_table_without_af(tmp_path: Path) -> None:
    """A parquet without the AF column is MalformedInput naming the columns needed."""
    path = tmp_path / "af.parquet"
    pl.DataFrame({"chrom": ["chr1"], "pos": [1], "ref": ["A"], "alt": ["G"]}).write_parquet(path)
    with pytest.raises(MalformedInput, match="chrom, pos, ref, alt, AF"):
        read_frequencies(path)


def test_alt_frequencies_count_called_alleles_only() -> None:
    """AF = alt alleles / called alleles per site; NaN where nobody is called."""
    freq, alleles = alt_frequencies(np.array([[0, 2, -1], [1, -1, -1]], dtype=np.int8))
    assert ([0.25, 1.0], [4, 2, 0], True) == (freq[:2].tolist(), alleles.tolist(), bool(np.isnan(freq[2])))


def test_combine_and_common_sites_align_keys() -> None:
    """combine fills sites a file lacks with -1; common_sites indexes the shared keys on both sides."""
    a = GenotypeMatrix(("a",), np.array(["1:1:A:G", "1:2:A:G"]), np.array([[0, 1]], dtype=np.int8))
    b = GenotypeMatrix(("b",), np.array(["1:2:A:G", "1:3:A:G"]), np.array([[2, 2]], dtype=np.int8))
    both = combine([a, b])
    left, right = common_sites(a.sites, b.sites)
    assert (["1:1:A:G", "1:2:A:G", "1:3:A:G"], [[0, 1, -1], [-1, 2, 2]], [1], [0]) == (
        both.sites.tolist(),
        both.dosages.tolist(),
        left.tolist(),
        right.tolist(),
    )


def test_read_panel_follows_manifest_rows(tmp_path: Path) -> None:
    """Each manifest row with a VCF becomes a matrix row holding its vcf_sample column, in row order."""
    _vcf(tmp_path / "joint.vcf.gz", ["s1", "s2", "s3"], RECORDS)
    frame = pl.DataFrame(
        {"sample_id": ["A", "B", "C", "D"], "vcf": ["joint.vcf.gz", None, "joint.vcf.gz", "joint.vcf.gz"],
         "vcf_sample": ["s3", None, "s1", "s2"]}
    )  # fmt: skip
    panel = read_panel(frame, tmp_path, tmp_path)
    assert ([0, 2, 3], ("s3", "s1", "s2"), [[2, -1, -1], [0, -1, -1], [1, 1, 2]]) == (
        panel.rows.tolist(),
        panel.genotypes.samples,
        panel.genotypes.dosages.tolist(),
    )


def test_read_panel_refuses_a_missing_sample_without_naming_it(tmp_path: Path) -> None:
    """A vcf_sample absent from its VCF is MalformedInput that names the column, never the sample."""
    _vcf(tmp_path / "joint.vcf.gz", ["s1", "s2", "s3"], RECORDS)
    frame = pl.DataFrame({"sample_id": ["A"], "vcf": ["joint.vcf.gz"], "vcf_sample": ["Jane-Doe-7"]})
    with pytest.raises(MalformedInput, match="vcf_sample") as caught:
        read_panel(frame, tmp_path, tmp_path)
    assert "Jane-Doe-7" not in str(caught.value)


def test_read_panel_without_vcf_column_is_empty(tmp_path: Path) -> None:
    """A manifest that names no genotypes gives an empty panel."""
    panel = read_panel(pl.DataFrame({"sample_id": ["A"]}), tmp_path, tmp_path)
    assert ((), 0) == (panel.genotypes.samples, panel.rows.size)
