"""Differential property tests of fromscratch.einsum against torch.einsum (Hypothesis generates specs).

Integers: int64 only (torch.einsum refuses int32; ours accepts it, and a spec that sums returns int64,
as torch.sum does).

Specs: one to three operands of rank 0-3 over the letters a-d (repeats give diagonals), with or without
an ellipsis, implicit or explicit output, sizes 0-3, and now and then a mistake (a size mismatch, an
output letter that no operand has, a repeated output letter): then both must raise. Property: the
same value and gradient as torch within property_helpers.TOLERANCE (the absolute tolerance scaled by
the size of the largest product summed), or both raise.
"""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st
from property_helpers import assert_close, dtypes, gradients, same_outcome, tensors

from fromscratch import einsum as ours_module

LETTERS = "abcd"


@st.composite
def specs(draw, magnitudes: str = "any"):
    """(subscripts, operands): a random einsum, sometimes an invalid one."""
    dtype = draw(dtypes)
    sizes = {letter: draw(st.integers(0, 3)) for letter in LETTERS}
    if draw(st.integers(0, 2)) == 0:
        sizes = {letter: max(size, 1) for letter, size in sizes.items()}  # fewer empty results
    batch = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    terms, operands = [], []
    for _ in range(draw(st.integers(1, 3))):
        letters = draw(st.lists(st.sampled_from(LETTERS), min_size=0, max_size=3))
        shape = [sizes[letter] for letter in letters]
        term = "".join(letters)
        if batch and draw(st.booleans()):  # an ellipsis over some trailing batch axes, some of size 1
            at = draw(st.integers(0, len(letters)))
            covered = batch[len(batch) - draw(st.integers(0, len(batch))):]
            covered = [side if draw(st.booleans()) else 1 for side in covered]
            term = term[:at] + "..." + term[at:]
            shape = shape[:at] + covered + shape[at:]
        if draw(st.integers(0, 19)) == 0 and shape:  # a size mismatch
            shape[-1] += 1
        terms.append(term)
        operands.append(draw(tensors(tuple(shape), dtype, magnitudes)))
    subscripts = ",".join(terms)
    if draw(st.booleans()):  # explicit output
        present = sorted({ch for term in terms for ch in term if ch.isalpha()})
        out = draw(st.permutations(present)) [: draw(st.integers(0, len(present)))]
        out = "".join(out)
        if any("..." in term for term in terms) and draw(st.integers(0, 3)):
            at = draw(st.integers(0, len(out)))
            out = out[:at] + "..." + out[at:]
        if draw(st.integers(0, 19)) == 0:  # a letter no operand has, or one repeated
            out += draw(st.sampled_from(["z", out[:1] or "z"]))
        subscripts += "->" + out
    return subscripts, operands


def product_scale(operands: list[torch.Tensor]) -> float:
    """The size of the largest term a sum may hold: product of the largest finite |entry| of each."""
    scale = 1.0
    for t in operands:
        finite_t = t[torch.isfinite(t)].double()
        scale *= 1.0 + (float(finite_t.abs().max()) if finite_t.numel() else 0.0)
    return scale * max((t.numel() for t in operands), default=1)


@given(specs())
def test_einsum_values(case) -> None:
    subscripts, operands = case
    both = same_outcome(lambda: ours_module.einsum(subscripts, *operands),
                        lambda: torch.einsum(subscripts, *operands))
    if not both:
        return
    ours, theirs = both
    if len(operands) > 1 and not all(torch.isfinite(t).all() for t in operands):
        # deliberate: with ±inf or nan among several operands, inf * 0 = nan appears or not depending on
        # the order of the contractions (torch's order is its own); we compare where both are numbers
        keep = ~(ours.isnan() ^ theirs.isnan())
        ours, theirs = ours[keep], theirs[keep]
    assert_close(ours, theirs, scale=product_scale(operands))


@given(specs("normal"))
def test_einsum_gradients(case) -> None:
    subscripts, operands = case
    if same_outcome(lambda: ours_module.einsum(subscripts, *operands),
                    lambda: torch.einsum(subscripts, *operands)) is None:
        return
    ours = gradients(lambda *ts: ours_module.einsum(subscripts, *ts), *operands)
    theirs = gradients(lambda *ts: torch.einsum(subscripts, *ts), *operands)
    for a, b in zip(ours, theirs, strict=True):
        if a is None or b is None:  # no path from that operand: the other side must be all zeros
            present = a if a is not None else b
            assert present is None or not present.any()
            continue
        assert_close(a, b, scale=product_scale(operands) * 3)


@given(specs("normal"), st.just(torch.int64))
def test_einsum_on_integers(case, dtype) -> None:
    subscripts, operands = case
    operands = [t.round().to(dtype) for t in operands]
    both = same_outcome(lambda: ours_module.einsum(subscripts, *operands),
                        lambda: torch.einsum(subscripts, *operands))
    if both:
        ours, theirs = both
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)


@given(st.text(alphabet="abij.->, Z1", max_size=12), st.lists(st.integers(0, 3), max_size=3))
def test_einsum_refuses_what_torch_refuses(subscripts, shape) -> None:
    operand = torch.ones(shape, dtype=torch.float64)
    both = same_outcome(lambda: ours_module.einsum(subscripts, operand),
                        lambda: torch.einsum(subscripts, operand))
    if both:
        assert_close(*both, scale=float(math.prod(shape) or 1))
