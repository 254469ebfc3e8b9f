"""T07 membership inference on released allele frequencies (Homer et al. 2008; research/reid.md 3.2, 3.3).

For a person with genotype dosages g (Y = g / 2 per site), released frequencies M (the mixture)
and reference-population frequencies Pop, over the s sites the person has called:

    D_j = |Y_j - Pop_j| - |Y_j - M_j|        (> 0: closer to the mixture)
    T   = mean(D) / (sd(D) / sqrt(s))       (one-sample t statistic, sd with ddof 1)

Members (identified samples in the release) score higher than non-members when the release gives
away membership. Ground for the test: the lab's identified samples that the consent filter let
into this release are the members (deid.consent, run again at the release's date); the others are
non-members, split at random (the run's seed) into two halves: one gives Pop, the other is the
non-member test set. Fewer than MIN_NON_MEMBERS non-members: skipped, not guessed.

Metrics: AUC of T, members vs test non-members (Mann-Whitney, ties counted half), and TPR at 1%
FPR with the threshold calibrated on the non-members themselves (the score that at most 1% of
them exceed), never on theory (Braun et al. 2009). Pass: AUC <= T07_auc (0.55) and TPR@1%FPR <=
T07_tpr_at_1pct_fpr (0.05). Also Sankararaman's predicted TPR Phi(sqrt(m/n) - z_0.99), for m
released sites and n members, as information.

Frequencies come from the summary release (summary/allele_frequencies.parquet, overall AF) or,
for an individual-level release, from its genotypes.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

from deid.consent import consent_filter
from deid.errors import MalformedInput
from deid.genomic import SUMMARY_FILE
from deid.reid.genotypes import alt_frequencies, common_sites, read_frequencies, read_many, read_panel
from deid.reid.model import AssessInputs, Comparator, Metric, Severity

TEST_ID = "T07_membership_homer"
TEST_VERSION = "1.0.0"
MIN_NON_MEMBERS = 20
FPR = 0.01
DEFAULT_AUC = 0.55
DEFAULT_TPR = 0.05
_ROW = "__t07_row"


@dataclass(frozen=True, slots=True)
class Membership:
    """Aggregates of one membership run."""

    members: int
    non_members: int  # in the test set (the other half gave Pop)
    sites: int
    auc: float
    tpr_at_fpr: float
    predicted_tpr: float


def homer_t(
    dosages: npt.NDArray[np.int8], mixture: npt.NDArray[np.float64], population: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Homer's T per person (rows of dosages; -1 missing) over their called sites; NaN below two sites.

    A person whose D is the same at every site (sd 0) scores +inf, -inf or 0 by the sign of its mean.
    """
    called = dosages >= 0
    y = np.where(called, dosages, 0).astype(np.float64) / 2.0
    d = np.where(called, np.abs(y - population) - np.abs(y - mixture), 0.0)
    s = called.sum(axis=1)
    safe = np.maximum(s, 1)
    mean = d.sum(axis=1) / safe
    squares = np.where(called, (d - mean[:, None]) ** 2, 0.0).sum(axis=1)
    sd = np.sqrt(squares / np.maximum(s - 1, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / (sd / np.sqrt(safe))
    t = np.where(sd > 0, t, np.sign(mean) * np.inf)
    t = np.where((sd == 0) & (mean == 0), 0.0, t)
    return np.asarray(np.where(s >= 2, t, np.nan), dtype=np.float64)


def auc(members: npt.NDArray[np.float64], non_members: npt.NDArray[np.float64]) -> float:
    """P(member score > non-member score) + P(tie) / 2: the Mann-Whitney U over n1 * n0."""
    if members.size == 0 or non_members.size == 0:
        return math.nan
    scores = np.concatenate([members, non_members])
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(scores.size, dtype=np.float64)
    ranks[order] = np.arange(1, scores.size + 1)
    _, tied, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.bincount(tied, weights=ranks) / counts)[tied]  # ties share their average rank
    u = ranks[: members.size].sum() - members.size * (members.size + 1) / 2.0
    return float(u / (members.size * non_members.size))


def tpr_at_fpr(
    members: npt.NDArray[np.float64], non_members: npt.NDArray[np.float64], fpr: float = FPR
) -> float:
    """Share of members above the threshold that at most fpr of the non-members exceed."""
    if members.size == 0 or non_members.size == 0:
        return math.nan
    descending = np.sort(non_members)[::-1]
    threshold = descending[min(math.floor(fpr * descending.size), descending.size - 1)]
    return float(np.mean(members > threshold))


def predicted_tpr(sites: int, members: int, fpr: float = FPR) -> float:
    """Sankararaman et al. 2009, first order: Phi(sqrt(m / n) - z_(1 - fpr))."""
    if members <= 0:
        return math.nan
    normal = NormalDist()
    return normal.cdf(math.sqrt(sites / members) - normal.inv_cdf(1.0 - fpr))


def assess_membership(
    mixture: npt.NDArray[np.float64],
    members: npt.NDArray[np.int8],
    reference: npt.NDArray[np.int8],
    non_members: npt.NDArray[np.int8],
) -> Membership:
    """Homer's test: mixture frequencies per site, and genotype matrices (rows x the same sites) of
    members, of the reference non-members (giving Pop) and of the test non-members."""
    population, _ = alt_frequencies(reference)
    usable = np.isfinite(mixture) & np.isfinite(population)
    m, pop = mixture[usable], population[usable]
    t_in = homer_t(members[:, usable], m, pop)
    t_out = homer_t(non_members[:, usable], m, pop)
    t_in, t_out = t_in[~np.isnan(t_in)], t_out[~np.isnan(t_out)]
    return Membership(
        members=int(t_in.size),
        non_members=int(t_out.size),
        sites=int(usable.sum()),
        auc=auc(t_in, t_out),
        tpr_at_fpr=tpr_at_fpr(t_in, t_out),
        predicted_tpr=predicted_tpr(int(usable.sum()), members.shape[0]),
    )


def run(inputs: AssessInputs) -> list[Metric]:
    """T07 on the release's frequencies (summary) or genotypes, members and non-members from the lab."""
    work = inputs.private / "t07"
    work.mkdir(mode=0o700, exist_ok=True)
    summary = inputs.release / SUMMARY_FILE
    files = inputs.released_files("genotypes/*.vcf.gz") + inputs.released_files("genotypes/*.bcf")
    if summary.is_file():
        released = read_frequencies(summary)
        sites, mixture = released.sites, released.frequencies
    elif files:
        genotypes = read_many(files, work)
        sites, mixture = genotypes.sites, alt_frequencies(genotypes.dosages)[0]
        del genotypes
    else:
        return _skipped("no allele frequencies or genotypes in this release")
    panel = read_panel(inputs.identified, inputs.manifest_dir, work)
    recipient = inputs.record.get("for_recipient")  # a release made for one partner (deid --for)
    included, _ = consent_filter(
        inputs.identified.with_row_index(_ROW),
        _release_date(inputs),
        recipient if isinstance(recipient, str) else None,
    )
    is_member = np.isin(panel.rows, included[_ROW].to_numpy())
    outside = np.flatnonzero(~is_member)
    if outside.size < MIN_NON_MEMBERS:
        return _skipped(
            f"{outside.size} identified samples with genotypes are not in this release; "
            f"{MIN_NON_MEMBERS} are needed to calibrate the test"
        )
    if not is_member.any():
        return _skipped("no identified sample with genotypes is in this release")
    shuffled = np.random.default_rng(inputs.seed).permutation(outside)
    half = shuffled.size // 2
    in_release, in_panel = common_sites(sites, panel.genotypes.sites)
    dosages = panel.genotypes.dosages[:, in_panel]
    result = assess_membership(
        mixture[in_release], dosages[is_member], dosages[shuffled[:half]], dosages[shuffled[half:]]
    )
    return metrics(
        result,
        inputs.threshold("T07_auc", DEFAULT_AUC),
        inputs.threshold("T07_tpr_at_1pct_fpr", DEFAULT_TPR),
        inputs.seed,
    )


def metrics(result: Membership, max_auc: float, max_tpr: float, seed: int | None = None) -> list[Metric]:
    """The metric rows of a membership result (aggregates only)."""
    parameters = {
        "members": result.members,
        "non_members": result.non_members,
        "fpr": FPR,
        "statistic": "homer_t",
        "calibration": "empirical, held-out non-members",
    }
    common: dict[str, Any] = {
        "n_records": result.sites,
        "n_subjects": result.members + result.non_members,
        "parameters": parameters,
        "seed": seed,
    }
    return [
        Metric.checked(
            TEST_ID, TEST_VERSION, "auc", result.auc, max_auc, Comparator.LE, **common,
            message="Homer T, members vs non-members",
        ),
        Metric.checked(
            TEST_ID, TEST_VERSION, "tpr_at_fpr_0.01", result.tpr_at_fpr, max_tpr, Comparator.LE, **common,
            message="members detected at a threshold calibrated on non-members",
        ),
        Metric.info(
            TEST_ID, TEST_VERSION, "auc_standard_error", auc_standard_error(result), **common,
            message="Hanley-McNeil standard error of the AUC: few non-members make it wide",
        ),
        Metric.info(
            TEST_ID, TEST_VERSION, "predicted_tpr_at_fpr_0.01", result.predicted_tpr, **common,
            message="Sankararaman: Phi(sqrt(m/n) - z_0.99), m sites, n members",
        ),
    ]  # fmt: skip


def auc_standard_error(result: Membership) -> float:
    """Hanley and McNeil (1982): the sampling error of an AUC from n1 members and n0 non-members."""
    a, n1, n0 = result.auc, result.members, result.non_members
    if n1 == 0 or n0 == 0 or math.isnan(a):
        return math.nan
    q1, q2 = a / (2.0 - a), 2.0 * a * a / (1.0 + a)
    variance = (a * (1.0 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0)
    return math.sqrt(max(variance, 0.0))


def _release_date(inputs: AssessInputs) -> dt.date:
    created = inputs.record.get("created_at")
    try:
        return dt.datetime.fromisoformat(str(created)).date()
    except ValueError as exc:
        raise MalformedInput(
            str(inputs.release / "release.json"),
            "created_at is not an ISO date-time; restore the release record",
        ) from exc


def _skipped(reason: str) -> list[Metric]:
    return [
        Metric.skipped(TEST_ID, TEST_VERSION, name, reason, severity=Severity.BLOCK)
        for name in ("auc", "tpr_at_fpr_0.01")
    ]
