"""A whole release with genomic files, from synthetic cohorts (BAM and CRAM): no planted identifier
survives anywhere, htslib accepts every output, counts are what the policy predicts, and the
pseudonyms agree across samples.parquet, the VCF, @RG SM and the FASTQ file names."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
from pathlib import Path

import polars as pl
import pysam
import pytest

from deid import MalformedInput
from deid.policy import load_policy
from deid.release import deidentify
from deid.synth import CohortSpec, synthesize_cohort
from keys import Keystore, Passphrase, Vault

PASS = Passphrase("correct horse battery")
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
DROPPED = {"chrY", "Y", "chrM", "MT"}


def _release(tmp: Path, cram: bool, summary_only: bool = False) -> tuple[Path, Path, Path]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REF_PATH", ":")
        cohort = tmp / "cohort"
        synthesize_cohort(CohortSpec(out=cohort, samples=12, seed=5, reads=not summary_only, cram=cram))
        store = Keystore.init(tmp / "ks", PASS)
        vault = Vault(store.home, "default", store.vault_wrapper(PASS))
        result = deidentify(
            cohort / "manifest.csv",
            load_policy("cgipa"),
            tmp / "releases",
            vault,
            release_id="rel-genomic",
            now=NOW,
            summary_only=summary_only,
            ledger=store.home / "ledger",
        )
        return cohort, result.path, store.home


@pytest.fixture(scope="module", params=[False, True], ids=["bam", "cram"])
def released(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, Path]:
    """(cohort, release, keystore home) for a BAM cohort and a CRAM cohort."""
    return _release(tmp_path_factory.mktemp("genomic"), cram=request.param)


def _secrets(cohort: Path) -> list[tuple[str, str]]:
    with (cohort / "secrets.tsv").open(encoding="utf-8") as fh:
        return [(row["kind"], row["value"]) for row in csv.DictReader(fh, delimiter="\t")]


def _text_without_sequences(path: Path) -> str:
    """Decompressed, readable content of a released file; read sequences and qualities left out
    (an 8-base barcode occurs in a million bases by chance, and is not a leak there)."""
    name = path.name
    if name.endswith(".vcf.gz"):
        return str(pysam.bcftools.view(str(path)))
    if name.endswith((".bam", ".cram")):
        lines = str(pysam.samtools.view("-h", str(path))).splitlines()
        return "\n".join(line if line.startswith("@") else _drop_seq(line) for line in lines)
    if name.endswith(".fastq.gz"):
        lines = gzip.decompress(path.read_bytes()).decode().splitlines()
        return "\n".join(lines[0::4] + lines[2::4])
    if name.endswith(".parquet"):
        return pl.read_parquet(path).write_csv() + path.read_bytes().decode("latin-1")
    if name.endswith(".tbi"):
        return gzip.decompress(path.read_bytes()).decode("latin-1")
    return path.read_bytes().decode("latin-1")


def _drop_seq(line: str) -> str:
    fields = line.split("\t")
    return "\t".join(fields[:9] + fields[11:])


def test_no_planted_identifier_survives(released: tuple[Path, Path, Path]) -> None:
    """Every planted value (names, ids, paths, barcodes, flowcells, dates) is absent from every file."""
    cohort, release, _ = released
    values = {v.lower() for _, v in _secrets(cohort) if len(v) >= 4}
    found = []
    for path in sorted(p for p in release.rglob("*") if p.is_file()):
        text = (_text_without_sequences(path) + "\n" + path.relative_to(release).as_posix()).lower()
        raw = path.read_bytes().lower()
        found += [(path.name, v) for v in values if v in text or (len(v) >= 8 and v.encode() in raw)]
    assert [] == found


def test_outputs_pass_htslib_checks(released: tuple[Path, Path, Path]) -> None:
    """samtools quickcheck on every alignment, index counts match the VCF, FASTQ decompresses whole."""
    _, release, _ = released
    alignments = sorted(release.glob("alignments/*.*am"))
    assert 9 == len(alignments)
    pysam.samtools.quickcheck(*[str(p) for p in alignments])
    for path in alignments:
        assert Path(f"{path}.{'crai' if path.suffix == '.cram' else 'bai'}").is_file()
    [vcf] = release.glob("genotypes/*.vcf.gz")
    with pysam.VariantFile(str(vcf)) as variants:
        records = sum(1 for _ in variants)
    record = json.loads((release / "release.json").read_text())
    assert record["genomic_files"]["released"]["vcf"]["sites_out"] == records
    assert str(records) == str(pysam.bcftools.index("-n", str(vcf))).strip()
    for path in release.glob("reads/*.fastq.gz"):
        assert 0 == len(gzip.decompress(path.read_bytes()).splitlines()) % 4


def test_read_counts_are_what_the_policy_predicts(released: tuple[Path, Path, Path]) -> None:
    """Reads on chrY/chrM go; every other read stays (one output per included sample)."""
    cohort, release, _ = released
    reference = str(cohort / "reference" / "GRCh38-synthetic.fa")
    expected = 0
    included = set(pl.read_parquet(release / "samples.parquet")["sample_id"])
    included_ids = _included_ids(cohort, release)
    kept_inputs = 0
    for path in sorted(cohort.glob("alignments/*.*am")):
        with pysam.AlignmentFile(str(path), reference_filename=reference) as aln:
            samples = {rg["SM"] for rg in aln.header.to_dict().get("RG", [])}
            reads = [r.reference_name for r in aln.fetch(until_eof=True)]
        if samples & included_ids:
            kept_inputs += 1
            expected += sum(1 for name in reads if name not in DROPPED)
    actual = 0
    for path in sorted(release.glob("alignments/*.*am")):
        with pysam.AlignmentFile(str(path)) as aln:
            names = [r.reference_name for r in aln.fetch(until_eof=True)]
        assert set() == set(names) & DROPPED
        actual += len(names)
    assert (len(included), expected) == (kept_inputs, actual)


def _included_ids(cohort: Path, release: Path) -> set[str]:
    record = json.loads((release / "release.json").read_text())
    with (cohort / "manifest.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    consented = [
        r["sample_id"]
        for r in rows
        if r["consent_research"] == "true"
        and not r["consent_revoked_at"]
        and r["guardian_consent"] != "false"
    ]
    assert record["counts"]["included_samples"] == len(consented)
    return set(consented)


def test_pseudonyms_agree_across_files(released: tuple[Path, Path, Path]) -> None:
    """The same sample codes in samples.parquet, the VCF header, @RG SM and the FASTQ file names."""
    _, release, _ = released
    table = set(pl.read_parquet(release / "samples.parquet")["sample_id"])
    [vcf] = release.glob("genotypes/*.vcf.gz")
    with pysam.VariantFile(str(vcf)) as variants:
        in_vcf = set(variants.header.samples)
    in_rg = set()
    for path in release.glob("alignments/*.*am"):
        with pysam.AlignmentFile(str(path)) as aln:
            groups = aln.header.to_dict()["RG"]
        in_rg |= {rg["SM"] for rg in groups}
        assert {path.name.split(".")[0]} == {rg["SM"] for rg in groups}
    in_reads = {p.name.split("_")[0] for p in release.glob("reads/*.fastq.gz")}
    assert [table] * 3 == [in_vcf, in_rg, in_reads]


def test_ledger_holds_codes_and_consents_only(released: tuple[Path, Path, Path]) -> None:
    """The lab-side ledger lists each included subject by code with region and consents; no identity."""
    cohort, release, home = released
    ledger = json.loads((home / "ledger" / "rel-genomic.json").read_text())
    record = json.loads((release / "release.json").read_text())
    subjects = set(pl.read_parquet(release / "samples.parquet")["subject_id"])
    assert (record["release_sha256"], True, subjects) == (
        ledger["release_sha256"],
        ledger["genomic"],
        {s["subject"] for s in ledger["subjects"]},
    )
    text = json.dumps(ledger).lower()
    assert [] == [v for _, v in _secrets(cohort) if len(v) >= 4 and v.lower() in text]
    assert 0o600 == (home / "ledger" / "rel-genomic.json").stat().st_mode & 0o777


def test_summary_release_holds_frequencies_only(tmp_path: Path) -> None:
    """--summary-only: release.json and summary/allele_frequencies.parquet, no individual-level file."""
    cohort, release, home = _release(tmp_path, cram=False, summary_only=True)
    names = sorted(p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file())
    assert ["release.json", "summary/allele_frequencies.parquet"] == names
    frame = pl.read_parquet(release / "summary" / "allele_frequencies.parquet")
    assert set() == set(frame["chrom"].unique()) & DROPPED
    assert {"chrom", "pos", "ref", "alt", "AC", "AN", "AF"} <= set(frame.columns)
    assert json.loads((home / "ledger" / "rel-genomic.json").read_text())["genomic"] is False
    values = {v.lower() for _, v in _secrets(cohort) if len(v) >= 4}
    text = _text_without_sequences(release / "summary" / "allele_frequencies.parquet").lower()
    assert [] == [v for v in values if v in text]


def test_missing_genomic_file_is_refused_with_nothing_written(tmp_path: Path) -> None:
    """A manifest naming a file that does not exist: one line naming row and column; no release, no ledger."""
    cohort = tmp_path / "cohort"
    synthesize_cohort(CohortSpec(out=cohort, samples=12, seed=6, reads=False))
    manifest = pl.read_csv(cohort / "manifest.csv", infer_schema=False)
    manifest = manifest.with_columns(pl.lit("alignments/missing.bam").alias("alignment"))
    manifest.write_csv(cohort / "manifest.csv")
    store = Keystore.init(tmp_path / "ks", PASS)
    vault = Vault(store.home, "default", store.vault_wrapper(PASS))
    with pytest.raises(
        MalformedInput, match=r"row [0-9]+: column alignment names a file that does not exist"
    ):
        deidentify(
            cohort / "manifest.csv", load_policy("cgipa"), tmp_path / "out", vault, ledger=store.home / "l"
        )
    assert (False, False) == (
        (tmp_path / "out").exists() and any((tmp_path / "out").iterdir()),
        (store.home / "l").exists(),
    )
