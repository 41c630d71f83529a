"""Einstein summation written from scratch on top of broadcasting: parse, align axes, multiply, sum.

    einsum("ik,kj->ij", a, b)      # matmul
    einsum("ii", a)                # trace (implicit mode: no output given)
    einsum("...ij,...jk", a, b)    # batched matmul, the batch dimensions broadcast

The rules: every axis of every operand gets a letter. A letter that appears in the output
keeps its axis; every other letter is summed over. A letter repeated inside one operand takes
the diagonal. Without '->' (implicit mode) the output is the ellipsis axes, then the letters
that appear exactly once, in alphabetical order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

ELLIPSIS = "..."


@dataclass(frozen=True)
class Spec:
    """A parsed einsum: one list of labels per operand, and the labels of the output.

    Letters stand for themselves; the axes an ellipsis covers get labels '…0', '…1', ...
    numbered so that the last ellipsis axis of every operand shares one label (broadcasting
    aligns axes from the right).
    """

    inputs: tuple[tuple[str, ...], ...]
    output: tuple[str, ...]


def _letters(term: str, where: str) -> list[str]:
    """The letters of one term without its ellipsis, checked to be letters."""
    bad = sorted({ch for ch in term if not ch.isalpha() or not ch.isascii()})
    if bad:
        raise ValueError(f"einsum subscripts may hold only letters a-z, A-Z and '...'; "
                         f"found {''.join(bad)!r} in {where} {term!r}")
    return list(term)


def _split_ellipsis(term: str, where: str) -> tuple[list[str], list[str] | None]:
    """Letters before and after the ellipsis of a term; `None` after it if there is none."""
    if term.count(ELLIPSIS) > 1 or term.replace(ELLIPSIS, "").count(".") > 0:
        raise ValueError(f"{where} {term!r}: at most one ellipsis, written '...'")
    if ELLIPSIS not in term:
        return _letters(term, where), None
    before, after = term.split(ELLIPSIS)
    return _letters(before, where), _letters(after, where)


def _ellipsis_labels(count: int, widest: int) -> list[str]:
    """Labels for the last `count` of `widest` broadcast axes."""
    return [f"…{widest - count + index}" for index in range(count)]


def parse(subscripts: str, shapes: list[tuple[int, ...]]) -> Spec:
    """Parse `subscripts` for operands of the given shapes into labels per axis (see `Spec`)."""
    if not isinstance(subscripts, str):
        raise TypeError("einsum subscripts must be a string like 'ij,jk->ik', "
                        f"got {type(subscripts).__name__}")
    equation = subscripts.replace(" ", "")
    if equation.count("->") > 1:
        raise ValueError(f"einsum subscripts {subscripts!r} have more than one '->'")
    left, arrow, right = equation.partition("->")
    terms = left.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum subscripts {subscripts!r} describe {len(terms)} operand(s) "
                         f"but {len(shapes)} were given")
    split = [_split_ellipsis(term, "operand") for term in terms]
    ellipsis_ndims = []
    for (before, after), shape, term in zip(split, shapes, terms, strict=True):
        named = len(before) + len(after or [])
        if (after is None and named != len(shape)) or named > len(shape):
            raise ValueError(f"operand subscripts {term!r} name {named} axes but the operand has "
                             f"{len(shape)} (shape {tuple(shape)}); add '...' to cover the rest")
        ellipsis_ndims.append(len(shape) - named if after is not None else 0)
    widest = max(ellipsis_ndims, default=0)
    inputs = tuple(tuple(before + _ellipsis_labels(nd, widest) + (after or []))
                   for (before, after), nd in zip(split, ellipsis_ndims, strict=True))
    broadcast = _ellipsis_labels(widest, widest)
    if arrow:
        before, after = _split_ellipsis(right, "output")
        output = before + (broadcast + after if after is not None else [])
        repeated = sorted(label for label, n in Counter(before + (after or [])).items() if n > 1)
        if repeated:
            raise ValueError(f"output subscripts {right!r} repeat {''.join(repeated)!r}; "
                             "each output letter appears once")
        missing = sorted(set(output) - {label for labels in inputs for label in labels})
        if missing:
            raise ValueError(f"output subscripts {right!r} use {''.join(missing)!r}, "
                             "which no operand has")
    else:
        counts = Counter(label for labels in inputs for label in labels if not label.startswith("…"))
        output = broadcast + sorted(label for label, n in counts.items() if n == 1)
    return Spec(inputs, tuple(output))


def take_diagonals(t: torch.Tensor, labels: tuple[str, ...]) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Collapse each letter repeated within one operand onto its diagonal ('ii' -> 'i')."""
    labels = list(labels)
    while len(set(labels)) < len(labels):
        label = next(label for label, n in Counter(labels).items() if n > 1)
        first = labels.index(label)
        second = labels.index(label, first + 1)
        if t.shape[first] != t.shape[second]:
            raise ValueError(f"label {label!r} repeats within an operand on axes of sizes "
                             f"{t.shape[first]} and {t.shape[second]}; a diagonal needs equal sizes")
        t = torch.diagonal(t, dim1=first, dim2=second)  # the diagonal becomes the last axis
        labels = [lab for index, lab in enumerate(labels) if index not in (first, second)] + [label]
    return t, tuple(labels)


def align(t: torch.Tensor, labels: tuple[str, ...], order: tuple[str, ...]) -> torch.Tensor:
    """Permute `t`'s axes into `order` and insert size-1 axes for labels it lacks (for broadcasting)."""
    t = t.permute([labels.index(label) for label in order if label in labels])
    shape = iter(t.shape)
    return t.reshape([next(shape) if label in labels else 1 for label in order])


def _check_sizes(operands: list[torch.Tensor], inputs: tuple[tuple[str, ...], ...]) -> None:
    """Every label must have one size across operands, except that a size of 1 broadcasts (as in torch).

    Within one operand a repeated letter needs equal sizes: `take_diagonals` checks that.
    """
    sizes: dict[str, int] = {}
    for t, labels in zip(operands, inputs, strict=True):
        for label, size in zip(labels, t.shape, strict=True):
            known = sizes.setdefault(label, size)
            if known == size or 1 in (known, size):
                sizes[label] = size if known == 1 else known
            else:
                raise ValueError(f"label {label!r} has size {known} in one place and {size} in "
                                 "another; sizes of a letter must agree (or be 1, to broadcast)")


def einsum(subscripts: str, *operands: torch.Tensor) -> torch.Tensor:
    """`torch.einsum(subscripts, *operands)` from scratch: diagonals, broadcast products, sums.

    Operands are multiplied left to right. After each product, every label that no later
    operand and not the output needs is summed away, so the intermediate stays as small as
    this order allows. The product itself is a broadcast: its size is the product of the
    sizes of all labels involved (for matmul, m * k * n numbers).

    Differences from torch: int32 operands are accepted (a spec that sums returns int64, as torch.sum);
    with ±inf or nan in several operands, whether inf * 0 = nan shows up depends on the order of the
    contractions, and ours (left to right) is not torch's.
    """
    if len(operands) == 1 and isinstance(operands[0], list | tuple):
        operands = tuple(operands[0])
    if not operands:
        raise ValueError("einsum needs at least one operand")
    if not all(isinstance(t, torch.Tensor) for t in operands):
        raise TypeError("einsum operands must be torch tensors")
    spec = parse(subscripts, [tuple(t.shape) for t in operands])
    _check_sizes(list(operands), spec.inputs)
    pairs = [take_diagonals(t, labels) for t, labels in zip(operands, spec.inputs, strict=True)]
    result, labels = pairs[0]
    for position in range(len(pairs)):
        if position > 0:
            other, other_labels = pairs[position]
            order = labels + tuple(label for label in other_labels if label not in labels)
            result = align(result, labels, order) * align(other, other_labels, order)
            labels = order
        still_needed = set(spec.output).union(*(set(lab) for _, lab in pairs[position + 1:]))
        summed = [axis for axis, label in enumerate(labels) if label not in still_needed]
        if summed:
            result = result.sum(dim=summed)
            labels = tuple(label for label in labels if label in still_needed)
    return align(result, labels, spec.output)
