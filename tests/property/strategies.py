"""Hypothesis strategies for the property tests: envelope payloads and edit lists; manifest values and free text."""

from __future__ import annotations

import operator
import random
import string
from collections.abc import Sequence

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


# --- de-identification transforms (deid.transforms) ---

_DIGITS = "0123456789"
_ASCII_WORD = string.ascii_letters + _DIGITS + " .-_'@+"
# accented Latin and CJK letters of the kind synthetic names hold; no character whose Python
# lower() is ASCII (the Kelvin sign, dotted capital I), so ASCII-folded comparisons stay exact
_NON_ASCII = "éèÉÈüÜöÖßøØåÅçÇñÑ王芳小林真綾彭桂珍様"
# free text around identifiers: words, digits, punctuation, brackets and some non-ASCII letters
_FILLER = string.ascii_letters + _DIGITS + " .,;:()[]/-+#\n" + "éüß王様"


def zip_like(restricted: Sequence[str]) -> st.SearchStrategy[str | None]:
    """Values of a zip column: ZIPs (some in restricted areas), ZIP+4, padded, truncated, foreign, junk."""
    five = st.text(_DIGITS, min_size=5, max_size=5)
    in_restricted = st.builds(
        operator.add, st.sampled_from(sorted(restricted)), st.text(_DIGITS, min_size=2, max_size=2)
    )
    plus4 = st.builds(
        lambda z, p: f"{z}-{p}", st.one_of(five, in_restricted), st.text(_DIGITS, min_size=4, max_size=4)
    )
    return st.one_of(
        st.none(),
        five,
        in_restricted,
        plus4,
        st.builds(lambda z: f" {z}\t", five),
        st.text(_DIGITS, max_size=7),
        st.text(max_size=11),
    )


def identifier_values() -> st.SearchStrategy[str]:
    """Known identifier values: mostly ASCII (names, ids, e-mails), sometimes with non-ASCII letters."""
    return st.one_of(
        st.text(_ASCII_WORD, min_size=1, max_size=14),
        st.text(_ASCII_WORD + _NON_ASCII, min_size=1, max_size=10),
    )


@st.composite
def text_with(draw: st.DrawFn, values: Sequence[str]) -> str:
    """Free text that embeds some of values, ASCII letters of each in a random case, between filler."""
    pieces = [draw(st.text(_FILLER, max_size=12))]
    for _ in range(draw(st.integers(0, 5)) if values else 0):
        value = draw(st.sampled_from(values))
        flips = draw(st.lists(st.booleans(), min_size=len(value), max_size=len(value)))
        pieces.append(
            "".join(c.swapcase() if flip and c.isascii() else c for c, flip in zip(value, flips, strict=True))
        )
        pieces.append(draw(st.text(_FILLER, max_size=12)))
    return "".join(pieces)
