"""Our einsum against torch.einsum: named specs, random specs, and clear errors on bad input."""

from __future__ import annotations

import random

import pytest
import torch

from fromscratch.einsum import align, einsum, parse, take_diagonals


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# (spec, operand shapes): the worked examples of the post and the corners of the notation
SPECS = [
    ("i,i->", [(5,), (5,)]),                     # dot product
    ("i,i", [(5,), (5,)]),                       # dot product, implicit
    ("i,j->ij", [(3,), (4,)]),                   # outer product
    ("i,j", [(3,), (4,)]),                       # outer product, implicit
    ("ik,kj->ij", [(3, 4), (4, 5)]),             # matmul
    ("ik,kj", [(3, 4), (4, 5)]),                 # matmul, implicit
    ("bik,bkj->bij", [(2, 3, 4), (2, 4, 5)]),    # batched matmul
    ("...ik,...kj->...ij", [(2, 3, 4), (4, 5)]),  # broadcast batch
    ("...ij,...jk", [(6, 1, 3, 4), (2, 4, 5)]),  # ellipsis broadcasting, implicit
    ("ij->ji", [(3, 4)]),                        # transpose
    ("ji", [(3, 4)]),                            # implicit transpose: output sorted 'ij'
    ("ii->", [(4, 4)]),                          # trace
    ("ii", [(4, 4)]),                            # trace, implicit
    ("ii->i", [(4, 4)]),                         # diagonal
    ("iji->j", [(3, 2, 3)]),                     # diagonal over non-neighbouring axes
    ("bii->bi", [(2, 3, 3)]),                    # batched diagonal
    ("ij->", [(3, 4)]),                          # total sum
    ("ij->j", [(3, 4)]),                         # column sums
    ("i,ij,j->", [(3,), (3, 4), (4,)]),          # bilinear form x^T A y
    ("bi,ij,bj->b", [(5, 3), (3, 4), (5, 4)]),   # batched bilinear form
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 8), (2, 3, 5, 8)]),  # attention scores
    ("bhqk,bhkd->bhqd", [(2, 3, 4, 5), (2, 3, 5, 8)]),  # attention-weighted values
    ("ij,ij->ij", [(3, 4), (3, 4)]),             # elementwise product
    ("ij,ij->", [(3, 4), (3, 4)]),               # Frobenius inner product
    ("id,jd->ij", [(4, 3), (5, 3)]),             # Gram matrix
    ("...i->...", [(2, 3, 4)]),                  # row sums under an ellipsis
    ("...i->i", [(2, 3, 4)]),                    # ellipsis summed away in explicit mode
    ("i...->...i", [(3, 2, 4)]),                 # move an axis to the end
    ("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)]),  # chain of three
    ("Ab,bA->", [(3, 4), (4, 3)]),               # upper-case letters: trace of a product
    (" i j , j k -> i k ", [(2, 3), (3, 4)]),    # spaces are ignored
    ("->", [()]),                                # a scalar
    (",i->i", [(), (3,)]),                       # scalar times vector
]


@pytest.mark.parametrize(("spec", "shapes"), SPECS, ids=[s for s, _ in SPECS])
def test_equals_torch_einsum(spec: str, shapes: list[tuple[int, ...]]) -> None:
    operands = [rand(*shape, seed=i) for i, shape in enumerate(shapes)]
    expected = torch.einsum(spec, *operands)
    got = einsum(spec, *operands)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected)


def random_spec(rng: random.Random) -> tuple[str, list[tuple[int, ...]]]:
    """A random einsum over 1-3 operands with repeats, diagonals, sums and maybe an ellipsis."""
    letters = rng.sample("abcdefgh", rng.randint(1, 5))
    sizes = {label: rng.randint(1, 4) for label in letters}
    use_ellipsis = rng.random() < 0.3
    batch = [rng.randint(1, 3) for _ in range(rng.randint(1, 2))] if use_ellipsis else []
    terms, shapes = [], []
    for _ in range(rng.randint(1, 3)):
        term = [rng.choice(letters) for _ in range(rng.randint(0, 3))]
        shape = [sizes[label] for label in term]
        if use_ellipsis:
            keep = rng.randint(0, len(batch))
            sub_batch = [rng.choice((size, 1)) for size in batch[len(batch) - keep:]]
            term, shape = ["...", *term], sub_batch + shape
        terms.append("".join(term))
        shapes.append(tuple(shape))
    used = sorted({ch for term in terms for ch in term if ch.isalpha()})
    if rng.random() < 0.5:
        return ",".join(terms), shapes
    out = rng.sample(used, rng.randint(0, len(used)))
    prefix = "..." if use_ellipsis and rng.random() < 0.7 else ""
    return ",".join(terms) + "->" + prefix + "".join(out), shapes


def test_random_specs_equal_torch_einsum() -> None:
    rng = random.Random(4)
    checked = 0
    while checked < 300:
        spec, shapes = random_spec(rng)
        operands = [rand(*shape, seed=checked + i) for i, shape in enumerate(shapes)]
        expected = torch.einsum(spec, *operands)
        torch.testing.assert_close(einsum(spec, *operands), expected, msg=f"{spec} {shapes}")
        checked += 1


def test_operands_as_a_list_and_float32() -> None:
    a, b = rand(3, 4).float(), rand(4, 2).float()
    torch.testing.assert_close(einsum("ij,jk", [a, b]), a @ b)


def test_parse_labels_and_implicit_output() -> None:
    spec = parse("...ij,jk", [(7, 2, 3), (3, 4)])
    assert spec.inputs == (("…0", "i", "j"), ("j", "k"))
    assert spec.output == ("…0", "i", "k")


def test_take_diagonals_and_align() -> None:
    x = rand(3, 3)
    d, labels = take_diagonals(x, ("i", "i"))
    assert labels == ("i",)
    torch.testing.assert_close(d, torch.diagonal(x))
    y = align(rand(2, 3), ("a", "b"), ("b", "c", "a"))
    assert y.shape == (3, 1, 2)


@pytest.mark.parametrize(("spec", "shapes", "error", "match"), [
    ("ij,jk", [(2, 3)], ValueError, "describe 2 operand"),
    ("ij", [(2, 3, 4)], ValueError, "add '...'"),
    ("ij->k", [(2, 3)], ValueError, "no operand has"),
    ("ij->ii", [(2, 3)], ValueError, "repeat"),
    ("ij,jk", [(2, 3), (4, 5)], ValueError, "sizes of a letter"),
    ("ii", [(2, 3)], ValueError, "sizes of a letter"),
    ("i1", [(2, 3)], ValueError, "only letters"),
    ("..i", [(2,)], ValueError, "ellipsis"),
    ("i->i->i", [(2,)], ValueError, "more than one"),
])
def test_bad_specs_raise_clear_errors(spec, shapes, error, match) -> None:
    with pytest.raises(error, match=match):
        einsum(spec, *[rand(*shape) for shape in shapes])


def test_bad_types_raise() -> None:
    with pytest.raises(TypeError, match="subscripts must be a string"):
        einsum(3, rand(2))
    with pytest.raises(TypeError, match="torch tensors"):
        einsum("i", [1.0, 2.0])
