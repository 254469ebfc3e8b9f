"""T05 genotype linkage: hand-computed LLRs and RMPs, power on simulated genomes, and the known answer
that an individual-level release of the synthetic cohort fails while a summary release is skipped."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest

from deid.manifest import read_manifest
from deid.policy import load_policy
from deid.reid import t05_linkage as t05
from deid.reid.genotypes import common_sites, read_genotypes
from deid.reid.model import AssessInputs, Status
from deid.release import deidentify
from deid.synth import CohortSpec, synthesize_cohort
from keys import Keystore, Passphrase, Vault

EPS = 1e-3
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def _hwe(rng: np.random.Generator, people: int, sites: int) -> np.ndarray:
    p = rng.uniform(0.05, 0.5, sites)
    return rng.binomial(2, p, size=(people, sites)).astype(np.int8)


def test_llr_is_the_hand_computed_sum_over_sites() -> None:
    """Two sites at smoothed p = 0.5: the log ratios of the error model over HWE, added per site."""
    panel = np.array([[0, 1], [2, 1]], dtype=np.int8)  # p = (2 + 0.5) / (4 + 1) = 0.5 at both sites
    released = np.array([[0, 1]], dtype=np.int8)
    same, other = math.log(1 - EPS), math.log(EPS / 2)
    expected = [same - math.log(0.25) + same - math.log(0.5), other - math.log(0.25) + same - math.log(0.5)]
    assert expected == pytest.approx(t05.llr_matrix(released, panel, EPS).ravel().tolist(), rel=1e-6)


def test_missing_genotypes_add_nothing() -> None:
    """A site missing on either side contributes 0 to the LLR."""
    panel = np.array([[0, -1], [2, 1]], dtype=np.int8)
    released = np.array([[0, 1], [-1, -1]], dtype=np.int8)
    llr = t05.llr_matrix(released, panel, EPS)
    p0 = (2 + 0.5) / (4 + 1)  # site 0: alt 2 of 4 called alleles
    p1 = (1 + 0.5) / (2 + 1)  # site 1: alt 1 of 2 called alleles (the first panel genome is missing)
    first = math.log(1 - EPS) - math.log((1 - p0) ** 2)
    second = math.log(EPS / 2) - math.log((1 - p0) ** 2) + math.log(1 - EPS) - math.log(2 * p1 * (1 - p1))
    assert [first, second, 0.0, 0.0] == pytest.approx(llr.ravel().tolist(), rel=1e-6)


def test_random_match_probability_by_hand() -> None:
    """Genotypes 0 and 1 at p = 0.5: RMP = 0.25 * 0.5, so -log10 RMP = log10(8); missing sites count 1."""
    released = np.array([[0, 1, -1]], dtype=np.int8)
    assert [math.log10(8)] == pytest.approx(t05.neg_log10_rmp(released, np.full(3, 0.5)).tolist())


def test_enough_sites_link_every_genome_confidently() -> None:
    """200 common sites: every released genome's best match is its own, with odds far beyond 100:1."""
    rng = np.random.default_rng(3)
    panel = _hwe(rng, 300, 200)
    order = rng.permutation(300)[:120]
    result = t05.assess_linkage(panel[order], panel, EPS, truth=order, block=50)
    assert (1.0, 1.0, 120, 300) == (result.top1_rate, result.confident_rate, result.released, result.panel)
    assert result.median_neg_log10_rmp > math.log10(8e9)


def test_few_sites_allow_no_confident_claim() -> None:
    """3 sites cannot single out one of 300 genomes: no confident match, RMP far above 1 in 8 billion."""
    rng = np.random.default_rng(4)
    panel = _hwe(rng, 300, 3)
    result = t05.assess_linkage(panel[:50], panel, EPS, truth=np.arange(50))
    assert (0.0, True) == (result.confident_rate, result.median_neg_log10_rmp < math.log10(8e9))


def test_non_members_are_not_claimed() -> None:
    """Genomes absent from the panel get no confident match even with 500 sites (false-match rate 0)."""
    rng = np.random.default_rng(5)
    people = _hwe(rng, 400, 500)
    result = t05.assess_linkage(people[:100], people[100:], EPS)
    assert (0.0, True) == (result.confident_rate, math.isnan(result.top1_rate))


def test_metrics_hold_the_thresholds() -> None:
    """Confident rate <= 1/|P| + margin and median -log10 RMP < log10(N): pass and fail both reported."""
    passing = t05.Linkage(10, 100, 5, 0.015, math.nan, 1.0, 3.0)
    failing = t05.Linkage(10, 100, 5, 0.5, math.nan, 50.0, 12.0)
    rows = {r.metric: r for r in t05.metrics(passing, EPS, 0.01, 8e9)}
    bad = {r.metric: r for r in t05.metrics(failing, EPS, 0.01, 8e9)}
    assert ([True, True], [False, False]) == (
        [rows["confident_match_rate"].passed, rows["median_neg_log10_rmp"].passed],
        [bad["confident_match_rate"].passed, bad["median_neg_log10_rmp"].passed],
    )
    assert 0.02 == pytest.approx(rows["confident_match_rate"].threshold)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A synthetic cohort (40 people, genotypes only) released twice: individual-level and summary-only."""
    tmp = tmp_path_factory.mktemp("t05")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REF_PATH", ":")
        synthesize_cohort(CohortSpec(out=tmp / "cohort", samples=40, seed=11, reads=False))
        passphrase = Passphrase("correct horse battery")
        store = Keystore.init(tmp / "ks", passphrase)
        vault = Vault(store.home, "default", store.vault_wrapper(passphrase))
        paths = {"cohort": tmp / "cohort"}
        for name, summary in (("individual", False), ("summary", True)):
            result = deidentify(
                tmp / "cohort" / "manifest.csv", load_policy("cgipa"), tmp / "releases", vault,
                release_id=f"rel-{name}", now=NOW, summary_only=summary,
            )  # fmt: skip
            paths[name] = result.path
    return paths


def _inputs(release: Path, cohort: Path, private: Path) -> AssessInputs:
    policy = load_policy("cgipa")
    raw = read_manifest(cohort / "manifest.csv")
    frame = raw.rename(policy.canonical_names([c for c in raw.columns if c != "_row"], "manifest"))
    private.mkdir(mode=0o700)
    record = json.loads((release / "release.json").read_text())
    return AssessInputs(release, record, frame, cohort, policy, private, seed=1)


def test_individual_level_release_of_the_synthetic_cohort_fails(
    synthetic: dict[str, Path], tmp_path: Path
) -> None:
    """The released VCF links back: T05 fails both blocking metrics and leaves no file behind."""
    inputs = _inputs(synthetic["individual"], synthetic["cohort"], tmp_path / "private")
    rows = {r.metric: r for r in t05.run(inputs)}
    assert (Status.OK, False, False, 1.0) == (
        rows["confident_match_rate"].status,
        rows["confident_match_rate"].passed,
        rows["median_neg_log10_rmp"].passed,
        rows["confident_match_rate"].value,
    )
    assert [] == [p for p in (tmp_path / "private").rglob("*") if p.is_file()]
    [vcf] = synthetic["individual"].glob("genotypes/*.vcf.gz")
    with_pseudonyms = read_genotypes(vcf, tmp_path)
    assert [] == [s for s in with_pseudonyms.samples if s in repr([*rows.values()])]


def test_true_top1_rate_on_the_synthetic_release_is_one(synthetic: dict[str, Path], tmp_path: Path) -> None:
    """Ground truth by genotype identity (test harness only): every released genome's best match is itself."""
    [vcf] = synthetic["individual"].glob("genotypes/*.vcf.gz")
    released = read_genotypes(vcf, tmp_path)
    panel = read_genotypes(synthetic["cohort"] / "genotypes" / "cohort.vcf.gz", tmp_path)
    left, right = common_sites(released.sites, panel.sites)
    r, p = released.dosages[:, left], panel.dosages[:, right]
    identical = (r[:, None, :] == p[None, :, :]).all(axis=2)
    assert [1] * r.shape[0] == identical.sum(axis=1).tolist()  # each released genome is one panel genome
    result = t05.assess_linkage(r, p, EPS, truth=identical.argmax(axis=1))
    assert (1.0, 1.0) == (result.top1_rate, result.confident_rate)


def test_summary_release_is_skipped(synthetic: dict[str, Path], tmp_path: Path) -> None:
    """A summary-only release has no genome to link: skipped, never failed."""
    rows = t05.run(_inputs(synthetic["summary"], synthetic["cohort"], tmp_path / "private"))
    assert [(Status.SKIPPED, None, "no individual-level genotypes in this release")] * 2 == [
        (r.status, r.passed, r.message) for r in rows
    ]
