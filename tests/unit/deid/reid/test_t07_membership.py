"""T07 membership inference: Homer's T, AUC and calibrated TPR by hand, and power through run():
a large cohort's summary passes, a small cohort's frequencies over many sites fail."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import polars as pl
import pysam
import pytest

from deid.policy import load_policy
from deid.reid import t05_linkage as t05
from deid.reid import t07_membership as t07
from deid.reid.model import AssessInputs, Status
from deid.vcf import allele_frequencies

HEADER = (
    "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=100000000>\n"
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT"
)
CALLS = np.array(["0/0", "0/1", "1/1"])


def test_homer_t_by_hand() -> None:
    """Y = (0, 1), M = (.2, .6), Pop = (.4, .5): D = (.2, .1), mean .15, sd .0707, T = 3."""
    t = t07.homer_t(np.array([[0, 2]], dtype=np.int8), np.array([0.2, 0.6]), np.array([0.4, 0.5]))
    assert [3.0] == pytest.approx(t.tolist())


def test_homer_t_skips_missing_sites_and_needs_two() -> None:
    """Missing sites are left out of the mean and the count; one called site gives NaN."""
    dosages = np.array([[0, -1, 2], [0, -1, -1]], dtype=np.int8)
    t = t07.homer_t(dosages, np.array([0.2, 0.9, 0.6]), np.array([0.4, 0.1, 0.5]))
    assert 3.0 == pytest.approx(t[0])
    assert np.isnan(t[1])


def test_auc_counts_ties_half() -> None:
    """Members (3, 2) vs non-members (1, 2): 3.5 of 4 pairs."""
    assert 0.875 == t07.auc(np.array([3.0, 2.0]), np.array([1.0, 2.0]))


def test_tpr_threshold_is_calibrated_on_non_members() -> None:
    """100 non-members 0..99 at 1% FPR: threshold 98 (one exceeds it); members 98.5, 99.5, 50 -> 2/3."""
    tpr = t07.tpr_at_fpr(np.array([98.5, 99.5, 50.0]), np.arange(100, dtype=np.float64))
    assert 2 / 3 == tpr


def test_predicted_tpr_is_sankararaman() -> None:
    """m = n: Phi(1 - 2.3263) = Phi(-1.3263) = 0.0924."""
    assert 0.0924 == pytest.approx(t07.predicted_tpr(500, 500), abs=1e-4)


def _write_vcf(path: Path, dosages: np.ndarray) -> list[str]:
    """A bgzipped, indexed VCF of people x sites dosages; returns the sample names."""
    names = [f"P{i:05d}" for i in range(dosages.shape[0])]
    lines = [HEADER + "".join(f"\t{n}" for n in names)]
    calls = CALLS[dosages.T]
    lines += [
        f"chr1\t{100 * (s + 1)}\t.\tA\tG\t.\t.\t.\tGT\t" + "\t".join(row) for s, row in enumerate(calls)
    ]
    text = path.with_name("cohort.vcf")
    text.write_text("\n".join(lines) + "\n")
    pysam.tabix_compress(str(text), str(path), force=True)
    pysam.tabix_index(str(path), preset="vcf", force=True)
    text.unlink()
    return names


def _summary_release(tmp: Path, members: int, non_members: int, sites: int, seed: int) -> AssessInputs:
    """An identified cohort (members consented, non-members not) and its summary release made by the
    pipeline's own allele_frequencies (cgipa site floor)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.2, 0.5, sites)
    dosages = rng.binomial(2, p, size=(members + non_members, sites)).astype(np.int8)
    vcf = tmp / "cohort.vcf.gz"
    names = _write_vcf(vcf, dosages)
    release = tmp / "release"
    (release / "summary").mkdir(parents=True)
    policy = load_policy("cgipa")
    rename = [(n, f"GGS{i:05d}") for i, n in enumerate(names[:members])]
    allele_frequencies(vcf, release / "summary" / "allele_frequencies.parquet", rename, {}, policy.genomic)
    identified = pl.DataFrame(
        {
            "sample_id": names,
            "date_of_birth": [dt.date(1970, 1, 1)] * len(names),
            "consent_research": [True] * members + [False] * non_members,
            "vcf": ["cohort.vcf.gz"] * len(names),
            "vcf_sample": names,
        }
    )
    private = tmp / "private"
    private.mkdir(mode=0o700)
    record = {"created_at": "2026-11-22T12:00:00+00:00", "summary_only": True}
    return AssessInputs(release, record, identified, tmp, policy, private, seed=seed)


def test_large_cohort_summary_passes_t07_and_t05(tmp_path: Path) -> None:
    """3,000 members, 300 common sites (m/n = 0.1), 1,000 non-members: T07 passes; T05 is skipped."""
    inputs = _summary_release(tmp_path, 3000, 1000, 300, seed=21)
    rows = {r.metric: r for r in t07.run(inputs)}
    assert (Status.OK, True, True) == (
        rows["auc"].status,
        rows["auc"].passed,
        rows["tpr_at_fpr_0.01"].passed,
    )
    assert (3000, 500) == (rows["auc"].parameters["members"], rows["auc"].parameters["non_members"])
    assert {Status.SKIPPED} == {r.status for r in t05.run(inputs)}


def test_small_cohort_with_many_sites_fails_t07(tmp_path: Path) -> None:
    """20 members' frequencies over 5,000 sites give membership away: AUC and TPR both fail."""
    inputs = _summary_release(tmp_path, 20, 40, 5000, seed=22)
    rows = {r.metric: r for r in t07.run(inputs)}
    assert (False, False, 1.0) == (rows["auc"].passed, rows["tpr_at_fpr_0.01"].passed, rows["auc"].value)
    assert 1.0 == pytest.approx(rows["predicted_tpr_at_fpr_0.01"].value)


def test_individual_level_release_gives_frequencies_too(tmp_path: Path) -> None:
    """Without a summary, M comes from the released genotypes: 20 members over 2,000 sites fail."""
    rng = np.random.default_rng(23)
    dosages = rng.binomial(2, rng.uniform(0.2, 0.5, 2000), size=(60, 2000)).astype(np.int8)
    names = _write_vcf(tmp_path / "cohort.vcf.gz", dosages)
    release = tmp_path / "release"
    (release / "genotypes").mkdir(parents=True)
    _write_vcf(release / "genotypes" / "genotypes-1.vcf.gz", dosages[:20])
    identified = pl.DataFrame(
        {"sample_id": names, "date_of_birth": [dt.date(1970, 1, 1)] * 60,
         "consent_research": [True] * 20 + [False] * 40, "vcf": ["cohort.vcf.gz"] * 60, "vcf_sample": names}
    )  # fmt: skip
    (tmp_path / "private").mkdir()
    inputs = AssessInputs(release, {"created_at": "2026-11-22T12:00:00+00:00"}, identified, tmp_path,
                          load_policy("cgipa"), tmp_path / "private", seed=3)  # fmt: skip
    rows = {r.metric: r for r in t07.run(inputs)}
    assert (False, False) == (rows["auc"].passed, rows["tpr_at_fpr_0.01"].passed)


def test_too_few_non_members_is_skipped(tmp_path: Path) -> None:
    """19 non-members cannot calibrate the test: skipped with the count, not guessed."""
    inputs = _summary_release(tmp_path, 30, 19, 50, seed=24)
    rows = t07.run(inputs)
    assert [(Status.SKIPPED, None)] * 2 == [(r.status, r.passed) for r in rows]
    assert "19 identified samples" in rows[0].message


def test_auc_standard_error_by_hand() -> None:
    """Hanley-McNeil at AUC 0.5, 10 and 10: Q1 = Q2 = 1/3, sqrt((.25 + 2 * 9 * (1/3 - 1/4)) / 100) = 0.1323."""
    result = t07.Membership(10, 10, 5, 0.5, 0.0, 0.0)
    assert 0.1323 == pytest.approx(t07.auc_standard_error(result), abs=1e-4)
    assert math.isnan(t07.auc_standard_error(t07.Membership(0, 10, 5, math.nan, math.nan, math.nan)))
