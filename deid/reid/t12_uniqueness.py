"""T12 population uniqueness: how many people in the population share no quasi-identifier tuple.

Estimated from the released table's class-size histogram (s_k = number of classes of size k, u
classes, n records) and the population size N (threshold T12_population; default 331,449,281, the
US resident population of the 2020 Census), sampling fraction pi = n/N. Formulas as ARX codes them
(org.deidentifier.arx.risk, reid.md 2.1); each returns the estimated number of population uniques:

- Zayatz (1991): P(F=1|f=1) = (s_1/u) h(1|1) / sum_k (s_k/u) h(1|k), h(1|k) the hypergeometric
  probability of drawing exactly 1 of k marked among N in n draws; uniques = s_1 P(F=1|f=1) / pi.
- Pitman (Hoshino 2001): (theta, alpha) maximise the Pitman sampling likelihood (Newton-Raphson on
  ARX's score equations, from ARX's initial guess); uniques = Gamma(theta+1)/Gamma(theta+alpha) N^alpha,
  valid when 0 <= uniques <= N.
- SNB (Chen & Keller-McNulty 1998): K = estimated non-empty population classes (Haas et al. 1995
  Shlosser-type estimator D_Sh3; ARX's Java adds the "-1" of (1+q)^i - 1 once per histogram entry,
  an operator-precedence slip not copied here); (alpha, beta) solve ARX's two equations for s_1 and
  s_2 (as coded there); uniques = K beta^alpha.
- Dankar et al. (2012): s_1 = 0 -> 0; pi <= 0.1 -> Pitman (Zayatz if Pitman is not valid); else
  min(Zayatz, SNB), or Zayatz if SNB is not valid. "Valid" is finite and non-zero, as in ARX.

The metric is Dankar's estimate / N (ARX's fraction of unique tuples), which under random sampling is
also the expected share of released records that are population-unique. Pass: <= T12_dankar_fraction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import polars as pl

from deid.reid.model import AssessInputs, Comparator, Metric
from deid.reid.t11_k_anonymity import class_sizes, present_quasi_identifiers

TEST_ID = "T12_population_uniqueness"
TEST_VERSION = "1.0.0"
DEFAULT_POPULATION = 331_449_281  # US resident population, 2020 Census (April 1, 2020)
_ACCURACY = 1e-9
_ITERATIONS = 500


def histogram(sizes: pl.Series) -> dict[int, int]:
    """Class size -> number of classes of that size. Pure."""
    counts = sizes.value_counts()
    return {int(k): int(v) for k, v in counts.sort(counts.columns[0]).iter_rows()}


def _log_comb(a: float, b: float) -> float:
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def hypergeometric_one(population: int, marked: int, draws: int) -> float:
    """P(X = 1) drawing `draws` without replacement from `population` holding `marked` marked. Pure."""
    if marked < 1 or draws < 1 or draws - 1 > population - marked:
        return 0.0
    return math.exp(
        math.log(marked) + _log_comb(population - marked, draws - 1) - _log_comb(population, draws)
    )


def zayatz_uniques(hist: Mapping[int, int], population: int) -> float:
    """Zayatz's estimate of the number of population uniques. Pure."""
    n = sum(k * v for k, v in hist.items())
    u = sum(hist.values())
    s1 = hist.get(1, 0)
    if s1 == 0:
        return 0.0
    total = sum((v / u) * hypergeometric_one(population, k, n) for k, v in hist.items())
    conditional = (s1 / u) * hypergeometric_one(population, 1, n) / total
    return s1 * conditional / (n / population)


def pitman_parameters(hist: Mapping[int, int]) -> tuple[float, float] | None:
    """(theta, alpha) of Pitman's model by Newton-Raphson on ARX's score equations, or None. Pure."""
    n = sum(k * v for k, v in hist.items())
    u = sum(hist.values())
    c1, c2 = float(hist.get(1, 0)), float(hist.get(2, 0)) or 1.0
    c = c1 * (c1 - 1) / c2
    denominator = 2 * c1 * u + c1 * c - n * c
    if denominator == 0 or u < 2:
        return None
    t = (n * u * c - c1 * (n - 1) * (2 * u + c)) / denominator
    a = (t * (c1 - n) + (n - 1) * c1) / (n * u)
    i_u = np.arange(1, u, dtype=np.float64)
    i_n = np.arange(1, n, dtype=np.float64)
    sizes = np.array([k for k in hist if k > 1], dtype=np.int64)
    weights = np.array([hist[int(k)] for k in sizes], dtype=np.float64)
    j = np.arange(1, int(sizes.max()) if sizes.size else 1, dtype=np.float64)

    def system(theta: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        v = theta + i_u * alpha
        w = theta + i_n
        inv_j = 1.0 / (j - alpha)
        harmonic = np.concatenate([[0.0], np.cumsum(inv_j)])[sizes - 1]
        squared = np.concatenate([[0.0], np.cumsum(inv_j**2)])[sizes - 1]
        o1, o3, o2 = np.sum(1 / v), np.sum(i_u / v), np.sum(1 / w)
        o4 = float(weights @ harmonic)
        d1, d5, d3 = np.sum(1 / v**2), np.sum(i_u / v**2), np.sum(i_u**2 / v**2)
        d2, d4 = np.sum(1 / w**2), float(weights @ squared)
        return np.array([o1 - o2, o3 - o4]), np.array([[d2 - d1, -d5], [-d5, -d3 - d4]])

    return _newton(system, t, a)


def pitman_uniques(hist: Mapping[int, int], population: int) -> float:
    """Pitman's estimate of the number of population uniques (NaN when not valid). Pure."""
    if hist.get(1, 0) == 0:
        return 0.0
    solved = pitman_parameters(hist)
    if solved is None:
        return math.nan
    theta, alpha = solved
    if alpha == 0 or theta + alpha <= 0 or theta + 1 <= 0:
        return math.nan
    try:
        value = math.exp(math.lgamma(theta + 1) - math.lgamma(theta + alpha) + alpha * math.log(population))
    except OverflowError:
        return math.nan
    return value if 0 <= value <= population else math.nan


def shlosser_classes(hist: Mapping[int, int], fraction: float) -> float:
    """Haas et al.'s Shlosser-type estimate (D_Sh3) of the non-empty population classes. Pure."""
    q = fraction
    u, s1 = sum(hist.values()), hist.get(1, 0)
    v1 = sum(i * q * q * (1 - q * q) ** (i - 1) * s for i, s in hist.items())
    v2 = sum((1 - q) ** i * ((1 + q) ** i - 1) * s for i, s in hist.items())
    v3 = sum((1 - q) ** i * s for i, s in hist.items())
    v4 = sum(i * q * (1 - q) ** (i - 1) * s for i, s in hist.items())
    if v2 == 0 or v4 == 0:
        return math.nan
    return u + s1 * (v1 / v2) * (v3 / v4) ** 2


def snb_equations(k: float, f: float, c1: float, c2: float) -> Callable[[float, float], np.ndarray]:
    """ARX's two SNB equations in (alpha, beta); zero at the solution. Pure."""

    def equations(alpha: float, beta: float) -> np.ndarray:
        a, b = np.float64(alpha), np.float64(beta)  # overflow gives inf (then no solution), not an exception
        d = (1 - f) * (1 - b)
        x = k * f * (b / (1 - d)) ** a * (a * d / (1 - d) + 1) - c1
        y = k * a * b**a * f * f * (1 - b) / 2 * (1 - d) ** (a + 2) * (2 - (1 - a) * d) - c2
        return np.array([x, y])

    return equations


def snb_uniques(hist: Mapping[int, int], population: int) -> float:
    """The SNB estimate of the number of population uniques (NaN when not solved). Pure."""
    s1, s2 = hist.get(1, 0), hist.get(2, 0)
    if s1 == 0:
        return 0.0
    n = sum(k * v for k, v in hist.items())
    f = n / population
    k = shlosser_classes(hist, f)
    if not math.isfinite(k):
        return math.nan
    equations = snb_equations(k, f, s1, s2)

    def system(a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
        h = 1e-7
        value = equations(a, b)
        jac = np.column_stack(
            [
                (equations(a + h, b) - equations(a - h, b)) / (2 * h),
                (equations(a, b + h) - equations(a, b - h)) / (2 * h),
            ]
        )
        return value, jac

    for a0, b0 in ((1.0, 0.5), (0.5, 0.5), (2.0, 0.1), (1.0, 0.9), (5.0, 0.5)):
        solved = _newton(system, a0, b0, tolerance=1e-6 * max(1.0, s1))
        if solved is not None and 0 < solved[1] < 1:
            return float(k * solved[1] ** solved[0])
    return math.nan


def _newton(
    system: Callable[[float, float], tuple[np.ndarray, np.ndarray]],
    x: float,
    y: float,
    tolerance: float = _ACCURACY,
) -> tuple[float, float] | None:
    with np.errstate(all="ignore"):
        for _ in range(_ITERATIONS):
            value, jac = system(x, y)
            if not (np.all(np.isfinite(value)) and np.all(np.isfinite(jac))):
                return None
            if np.max(np.abs(value)) <= tolerance:
                return x, y
            try:
                step = np.linalg.solve(jac, -value)
            except np.linalg.LinAlgError:
                return None
            x, y = x + float(step[0]), y + float(step[1])
    return None


def _valid(value: float) -> bool:
    return math.isfinite(value) and value != 0


def dankar_uniques(hist: Mapping[int, int], population: int) -> tuple[float, str, dict[str, float]]:
    """(uniques, model chosen, every estimate) by Dankar et al.'s decision rule, as ARX applies it. Pure."""
    if hist.get(1, 0) == 0:
        return 0.0, "none (no sample uniques)", {"zayatz": 0.0, "pitman": 0.0, "snb": 0.0}
    n = sum(k * v for k, v in hist.items())
    estimates = {
        "zayatz": zayatz_uniques(hist, population),
        "pitman": pitman_uniques(hist, population),
        "snb": snb_uniques(hist, population),
    }
    if n / population <= 0.1:
        chosen = "pitman" if _valid(estimates["pitman"]) else "zayatz"
    elif _valid(estimates["snb"]):
        chosen = "zayatz" if estimates["zayatz"] < estimates["snb"] else "snb"
    else:
        chosen = "zayatz"
    value = estimates[chosen]
    return (value if _valid(value) else 0.0), chosen, estimates


def run(inputs: AssessInputs) -> list[Metric]:
    """Population-uniqueness estimates of samples.parquet over the policy's quasi-identifiers."""
    released = inputs.released_samples
    if released is None:
        return [
            Metric.skipped(TEST_ID, TEST_VERSION, "dankar_fraction", "summary-only release: no samples table")
        ]
    qis = present_quasi_identifiers(released, inputs.policy.quasi_identifiers)
    if not qis or released.height == 0:
        why = "samples.parquet holds none of the policy's quasi-identifiers, or no rows"
        return [Metric.skipped(TEST_ID, TEST_VERSION, "dankar_fraction", why)]
    population = int(inputs.threshold("T12_population", DEFAULT_POPULATION))
    hist = histogram(class_sizes(released, qis))
    uniques, chosen, estimates = dankar_uniques(hist, population)
    params = {
        "quasi_identifiers": qis,
        "population": population,
        "model": chosen,
        "sampling_fraction": released.height / population,
    }
    n = released.height
    rows = [
        Metric.checked(
            TEST_ID,
            TEST_VERSION,
            "dankar_fraction",
            uniques / population,
            inputs.threshold("T12_dankar_fraction", 0.05),
            Comparator.LE,
            n_records=n,
            n_subjects=n,
            parameters=params,
            message="estimated population uniques / population (Dankar's rule)",
        ),
    ]
    for name, value in estimates.items():
        rows.append(
            Metric.info(
                TEST_ID,
                TEST_VERSION,
                f"{name}_fraction",
                value / population,
                n_records=n,
                n_subjects=n,
                parameters=params,
            )
        )
    return rows
