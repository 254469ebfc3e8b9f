"""Hypothesis strategies for the property tests: payloads that stress segment boundaries, edit lists."""

from __future__ import annotations

import random

from hypothesis import strategies as st

SEGMENT = 65536
BOUNDARY_SIZES = (0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT, 3 * SEGMENT + 17)


@st.composite
def payloads(draw: st.DrawFn, max_size: int = 4 * SEGMENT) -> bytes:
    """Bytes of any size up to max_size, with the segment-boundary sizes drawn often.

    Large payloads are expanded from a drawn seed (drawing 200 KB byte by byte would be slow and
    shrink poorly); small ones are drawn directly so hypothesis can shrink their content.
    """
    size = draw(st.one_of(st.sampled_from(BOUNDARY_SIZES), st.integers(0, max_size)))
    if size <= 256:
        return draw(st.binary(min_size=size, max_size=size))
    return random.Random(draw(st.integers(0, 2**32 - 1))).randbytes(size)


def edit_lists(total: int) -> st.SearchStrategy[tuple[int, ...]]:
    """Skip/keep lengths that stay within a plaintext of `total` bytes (an odd count keeps the rest)."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[int, ...]:
        lengths: list[int] = []
        left = total
        for _ in range(draw(st.integers(1, 6))):
            length = draw(st.integers(0, left))
            lengths.append(length)
            left -= length
        return tuple(lengths)

    return build()
