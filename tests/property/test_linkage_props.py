"""Invariants of T05's linkage core and of the genotype text parser, over generated genotype matrices."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from deid.reid.genotypes import parse_query
from deid.reid.t05_linkage import llr_matrix

EPS = 1e-3


@st.composite
def panels(draw: st.DrawFn, missing: bool) -> tuple[np.ndarray, np.ndarray]:
    """(released, panel): genotype matrices over the same sites; released may have missing calls."""
    people = draw(st.integers(2, 7))
    sites = draw(st.integers(1, 15))
    low = -1 if missing else 0
    panel = draw(arrays(np.int8, (people, sites), elements=st.integers(low, 2)))
    released = draw(arrays(np.int8, (draw(st.integers(1, 4)), sites), elements=st.integers(-1, 2)))
    return released, panel


@settings(max_examples=150, deadline=None)
@given(panels(missing=True), st.data())
def test_permuting_the_panel_permutes_the_columns(
    data: tuple[np.ndarray, np.ndarray], pick: st.DataObject
) -> None:
    """LLR(released, panel[perm]) == LLR(released, panel)[:, perm]: no panel row is favoured by position."""
    released, panel = data
    perm = np.array(pick.draw(st.permutations(range(panel.shape[0]))))
    expected = llr_matrix(released, panel, EPS)[:, perm]
    np.testing.assert_allclose(expected, llr_matrix(released, panel[perm], EPS), rtol=1e-5, atol=1e-4)


@settings(max_examples=150, deadline=None)
@given(panels(missing=False), st.data())
def test_an_identical_genome_scores_the_maximum(
    data: tuple[np.ndarray, np.ndarray], pick: st.DataObject
) -> None:
    """A released genome equal to a fully called panel genome scores at least as high there as anywhere."""
    _, panel = data
    j = pick.draw(st.integers(0, panel.shape[0] - 1))
    llr = llr_matrix(panel[j : j + 1], panel, EPS)[0]
    assert llr[j] >= llr.max() - 1e-4


@settings(max_examples=150, deadline=None)
@given(panels(missing=True), st.data())
def test_a_missing_site_counts_as_absent(data: tuple[np.ndarray, np.ndarray], pick: st.DataObject) -> None:
    """Marking a site missing in every released genome equals dropping it from both sides."""
    released, panel = data
    s = pick.draw(st.integers(0, panel.shape[1] - 1))
    masked = released.copy()
    masked[:, s] = -1
    dropped = llr_matrix(np.delete(released, s, axis=1), np.delete(panel, s, axis=1), EPS)
    np.testing.assert_allclose(dropped, llr_matrix(masked, panel, EPS), rtol=1e-5, atol=1e-4)


GT_TEXT = {
    0: ["0/0", "0|0"],
    1: ["0/1", "1|0", "0|1"],
    2: ["1/1", "1|1"],
    -1: ["./.", ".", "1", "0", "./1", ".|0"],
}


@settings(max_examples=150, deadline=None)
@given(
    arrays(np.int8, st.tuples(st.integers(1, 6), st.integers(0, 5)), elements=st.integers(-1, 2)), st.data()
)
def test_parse_query_reads_back_what_was_written(dosages: np.ndarray, pick: st.DataObject) -> None:
    """Any spelling of a call (phased, unphased, haploid, partly missing) parses to its dosage."""
    lines = []
    for s, row in enumerate(dosages):
        calls = [pick.draw(st.sampled_from(GT_TEXT[int(g)])) for g in row]
        lines.append("\t".join([f"chr1:{s + 1}:A:G", *calls]) + "\n")
    keys, block = parse_query("".join(lines).encode(), dosages.shape[1])
    assert ([f"chr1:{s + 1}:A:G" for s in range(dosages.shape[0])], dosages.tolist()) == (
        keys,
        block.tolist(),
    )
