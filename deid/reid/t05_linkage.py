"""T05 genotype linkage: can a released genome be matched to the lab's identified genotypes?

For released genome i and identified genome j (the reference panel: every identified sample,
released or not), over the sites both called (research/reid.md 3.1 and 5, T05):

    LLR(i, j) = sum_s log( P(g_i | g_j, same person) / P_HWE(g_i) )

with a per-site genotype error eps (a call differs from the truth with probability eps, either
other genotype equally likely) and Hardy-Weinberg genotype probabilities from the panel's allele
frequencies, smoothed as (alt + 1/2) / (called + 1) so that no genotype has probability 0.

Vectorised as a matrix product: for a block of released rows, W[s, g_i(s), :] (the log-ratio row
of each site for the released genotype; zeros where it is missing) laid out as S x 3 columns,
times the panel's one-hot genotypes (3 columns per site; zeros where missing) transposed. Blocks
of released rows keep memory at panel x 3S + block x panel float32; the full LLR matrix is never
held, only each row's best and second-best scores.

What an attacker can claim without ground truth is a "confident match": the best panel genome's
LLR exceeds ln(panel size) + ln(100) (posterior odds of 100:1 against a uniform prior over the
panel) and beats the second best by ln(100) (Bayes factor 100). The random-match probability of a
released profile is prod_s P_HWE(g_s) over its called sites (Lin 2004). Pass: confident match rate
<= 1/|panel| + T05_reid_rate_margin and median -log10 RMP < log10(T05_population_size) (8e9).
Which released genome matched which identified sample is never returned by `run` nor written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from deid.reid.genotypes import alt_frequencies, common_sites, read_many, read_panel
from deid.reid.model import AssessInputs, Comparator, Metric, Severity

TEST_ID = "T05_genotype_linkage"
TEST_VERSION = "1.0.0"
DEFAULT_EPS = 1e-3
DEFAULT_MARGIN = 0.01
DEFAULT_POPULATION = 8e9
CONFIDENCE = math.log(100.0)  # a Bayes factor of 100, natural log
BLOCK = 1024  # released rows per matrix product
_GENOTYPES = 3


@dataclass(frozen=True, slots=True, eq=False)
class Matches:
    """Per released genome: the best panel row, its LLR and the second-best LLR (-inf if none)."""

    best: npt.NDArray[np.intp]
    best_llr: npt.NDArray[np.float32]
    second_llr: npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Linkage:
    """Aggregates of one linkage run (no per-genome result)."""

    released: int
    panel: int
    sites: int
    confident_rate: float
    top1_rate: float  # NaN unless ground truth was given
    median_margin: float  # best minus second-best LLR, natural log; NaN with fewer than two panel rows
    median_neg_log10_rmp: float


def panel_frequencies(panel: npt.NDArray[np.int8]) -> npt.NDArray[np.float64]:
    """Smoothed alternate-allele frequencies of the panel: (alt + 1/2) / (called alleles + 1)."""
    frequency, alleles = alt_frequencies(panel)
    alt = np.nan_to_num(frequency) * alleles
    return np.asarray((alt + 0.5) / (alleles + 1.0), dtype=np.float64)


def hwe_log_probabilities(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """sites x 3: ln P(genotype 0, 1, 2) under Hardy-Weinberg equilibrium with alt frequency p."""
    q = 1.0 - p
    return np.log(np.stack([q * q, 2.0 * p * q, p * p], axis=1))


def log_ratio_tables(p: npt.NDArray[np.float64], eps: float) -> npt.NDArray[np.float32]:
    """sites x 3 x 3: W[s, released genotype, panel genotype] = ln P(g_r | g_p, same) - ln P_HWE(g_r)."""
    if not 0.0 < eps < 1.0:
        raise ValueError("the genotype error must lie strictly between 0 and 1")
    same = np.full((_GENOTYPES, _GENOTYPES), math.log(eps / 2.0))
    np.fill_diagonal(same, math.log1p(-eps))
    tables = same[None, :, :] - hwe_log_probabilities(p)[:, :, None]
    return tables.astype(np.float32)


def one_hot(genotypes: npt.NDArray[np.int8]) -> npt.NDArray[np.float32]:
    """rows x 3S float32: column 3s+g is 1 where the genotype at site s is g (all 0 where missing)."""
    rows, sites = genotypes.shape
    out = np.zeros((rows, sites, _GENOTYPES), dtype=np.float32)
    r, s = np.nonzero(genotypes >= 0)
    out[r, s, genotypes[r, s]] = 1.0
    return out.reshape(rows, sites * _GENOTYPES)


def weighted(released: npt.NDArray[np.int8], tables: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """rows x 3S float32: W[s, g_r(s), :] per site (zeros where the released genotype is missing)."""
    rows, sites = released.shape
    called = released >= 0
    out = tables[np.arange(sites)[None, :], np.where(called, released, 0)]  # rows x S x 3
    out[~called] = 0.0
    return out.reshape(rows, sites * _GENOTYPES)


def llr_matrix(
    released: npt.NDArray[np.int8], panel: npt.NDArray[np.int8], eps: float
) -> npt.NDArray[np.float32]:
    """released x panel LLRs in full, frequencies from the panel (for small inputs and tests)."""
    tables = log_ratio_tables(panel_frequencies(panel), eps)
    return weighted(released, tables) @ one_hot(panel).T


def best_matches(
    released: npt.NDArray[np.int8], panel: npt.NDArray[np.int8], eps: float, *, block: int = BLOCK
) -> Matches:
    """Each released row's best and second-best panel LLR, in blocks of released rows."""
    if panel.shape[0] == 0:
        raise ValueError("the panel has no genome to match against")
    tables = log_ratio_tables(panel_frequencies(panel), eps)
    hot_t = np.ascontiguousarray(one_hot(panel).T)
    n = released.shape[0]
    best = np.zeros(n, dtype=np.intp)
    top = np.zeros(n, dtype=np.float32)
    second = np.full(n, -np.inf, dtype=np.float32)
    for start in range(0, n, block):
        scores = weighted(released[start : start + block], tables) @ hot_t
        rows = np.arange(scores.shape[0])
        winner = np.argmax(scores, axis=1)
        best[start : start + block] = winner
        top[start : start + block] = scores[rows, winner]
        if scores.shape[1] > 1:
            scores[rows, winner] = -np.inf
            second[start : start + block] = scores.max(axis=1)
    return Matches(best, top, second)


def neg_log10_rmp(released: npt.NDArray[np.int8], p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per released row: -log10 of its random-match probability prod_s P_HWE(g_s) over called sites."""
    logs = hwe_log_probabilities(p)
    called = released >= 0
    picked = logs[np.arange(released.shape[1])[None, :], np.where(called, released, 0)]
    return np.asarray(-np.where(called, picked, 0.0).sum(axis=1) / math.log(10.0), dtype=np.float64)


def confident(matches: Matches, panel_size: int) -> npt.NDArray[np.bool_]:
    """Which released rows an attacker could claim: best LLR > ln N + ln 100 and margin > ln 100."""
    margin = matches.best_llr - matches.second_llr
    return np.asarray((matches.best_llr > math.log(panel_size) + CONFIDENCE) & (margin > CONFIDENCE))


def assess_linkage(
    released: npt.NDArray[np.int8],
    panel: npt.NDArray[np.int8],
    eps: float = DEFAULT_EPS,
    *,
    truth: npt.NDArray[np.intp] | None = None,
    block: int = BLOCK,
) -> Linkage:
    """Link released x sites against panel x sites (same site order); truth: each released row's
    panel row (-1 when not in the panel), known only in a test harness, gives the true top-1 rate."""
    if released.shape[1] != panel.shape[1]:
        raise ValueError("released and panel genotypes must cover the same sites")
    n, size = released.shape[0], panel.shape[0]
    matches = best_matches(released, panel, eps, block=block)
    margins = (matches.best_llr - matches.second_llr).astype(np.float64)
    finite = margins[np.isfinite(margins)]
    top1 = math.nan
    if truth is not None:
        known = truth >= 0
        top1 = float(np.mean(matches.best[known] == truth[known])) if known.any() else math.nan
    rmp = neg_log10_rmp(released, panel_frequencies(panel))
    return Linkage(
        released=n,
        panel=size,
        sites=released.shape[1],
        confident_rate=float(np.mean(confident(matches, size))) if n else 0.0,
        top1_rate=top1,
        median_margin=float(np.median(finite)) if finite.size else math.nan,
        median_neg_log10_rmp=float(np.median(rmp)) if n else 0.0,
    )


def run(inputs: AssessInputs) -> list[Metric]:
    """T05 on the release's genotypes/ VCFs against every identified genome; skipped without genotypes."""
    files = inputs.released_files("genotypes/*.vcf.gz") + inputs.released_files("genotypes/*.bcf")
    if not files:
        return _skipped("no individual-level genotypes in this release")
    work = inputs.private / "t05"
    work.mkdir(mode=0o700, exist_ok=True)
    released = read_many(files, work)
    panel = read_panel(inputs.identified, inputs.manifest_dir, work).genotypes
    if not released.samples:
        return _skipped("the released genotype files hold no sample")
    if not panel.samples:
        return _skipped("the identified manifest names no genotypes (columns vcf, vcf_sample)")
    in_release, in_panel = common_sites(released.sites, panel.sites)
    eps = inputs.threshold("T05_genotype_error", DEFAULT_EPS)
    result = assess_linkage(released.dosages[:, in_release], panel.dosages[:, in_panel], eps)
    del released, panel
    return metrics(result, eps, inputs.threshold("T05_reid_rate_margin", DEFAULT_MARGIN),
                   inputs.threshold("T05_population_size", DEFAULT_POPULATION))  # fmt: skip


def metrics(result: Linkage, eps: float, margin: float, population: float) -> list[Metric]:
    """The metric rows of a linkage result (aggregates only)."""
    parameters = {
        "genotype_error": eps,
        "sites": result.sites,
        "panel": result.panel,
        "confidence_ln_bayes_factor": CONFIDENCE,
        "population_size": population,
    }
    common: dict[str, Any] = {
        "n_records": result.released,
        "n_subjects": result.panel,
        "parameters": parameters,
    }
    return [
        Metric.checked(
            TEST_ID, TEST_VERSION, "confident_match_rate", result.confident_rate,
            1.0 / result.panel + margin, Comparator.LE, **common,
            message="share of released genomes an attacker can match with odds of 100:1",
        ),
        Metric.checked(
            TEST_ID, TEST_VERSION, "median_neg_log10_rmp", result.median_neg_log10_rmp,
            math.log10(population), Comparator.LT, **common,
            message="random-match probability of a released profile, median over genomes",
        ),
        Metric.info(
            TEST_ID, TEST_VERSION, "median_margin_ln", result.median_margin, **common,
            message="best minus second-best log-likelihood ratio, median over genomes",
        ),
        Metric.info(
            TEST_ID, TEST_VERSION, "overlap_sites", float(result.sites), **common,
            message="biallelic sites both released and in the identified genotypes",
        ),
    ]  # fmt: skip


def _skipped(reason: str) -> list[Metric]:
    return [
        Metric.skipped(TEST_ID, TEST_VERSION, name, reason, severity=Severity.BLOCK)
        for name in ("confident_match_rate", "median_neg_log10_rmp")
    ]
