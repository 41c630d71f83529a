"""Property tests of fromscratch.data.DataLoader against torch.utils.data.DataLoader.

Property: for any dataset size, batch size, drop_last, shuffle and seed, our loader yields the same
batches (values and dtypes) in the same order as torch's, epoch after epoch, with one generator
each seeded alike; without shuffling each epoch covers every row once, in order.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.utils.data as tud
from hypothesis import given
from hypothesis import strategies as st
from property_helpers import assert_same_structure

from fromscratch import data


@given(st.integers(1, 40), st.integers(1, 12), st.booleans(), st.booleans(), st.integers(0, 2**31),
       st.integers(1, 3))
def test_same_batches_as_torch(n, batch_size, drop_last, shuffle, seed, epochs) -> None:
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    y = torch.arange(n)
    kwargs = {"batch_size": batch_size, "drop_last": drop_last, "shuffle": shuffle}
    ours = data.DataLoader(data.TensorDataset(x, y), generator=torch.Generator().manual_seed(seed), **kwargs)
    theirs = tud.DataLoader(tud.TensorDataset(x, y), generator=torch.Generator().manual_seed(seed), **kwargs)
    assert len(ours) == len(theirs)
    for _ in range(epochs):
        mine, torchs = list(ours), list(theirs)
        assert len(mine) == len(torchs) == len(ours)
        for (xa, ya), (xb, yb) in zip(mine, torchs, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
        rows = torch.cat([yb for _, yb in mine]) if mine else torch.empty(0, dtype=torch.long)
        assert len(rows) == (n // batch_size * batch_size if drop_last else n)
        if not shuffle:
            assert rows.tolist() == list(range(len(rows)))


# --------------------------------------------------------------------------- collation
LEAVES = st.sampled_from(["int", "float", "bool", "str", "tensor", "array"])
SCHEMAS = st.recursive(LEAVES, lambda inner: st.one_of(
    st.tuples(st.just("tuple"), st.lists(inner, min_size=1, max_size=3)),
    st.tuples(st.just("list"), st.lists(inner, min_size=1, max_size=3)),
    st.tuples(st.just("dict"), st.dictionaries(st.sampled_from("abcd"), inner, min_size=1, max_size=3))),
    max_leaves=6)


def sample(schema, draw):
    """One sample that follows `schema`, with values drawn by `draw`."""
    if schema == "int":
        return draw(st.integers(-5, 5))
    if schema == "float":
        return draw(st.floats(-5, 5, allow_nan=False))
    if schema == "bool":
        return draw(st.booleans())
    if schema == "str":
        return draw(st.text("xyz", max_size=3))
    if schema == "tensor":
        return torch.tensor(draw(st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=2)))
    if schema == "array":
        return np.array(draw(st.lists(st.integers(-5, 5), min_size=3, max_size=3)))
    kind, parts = schema
    if kind == "dict":
        return {key: sample(part, draw) for key, part in parts.items()}
    items = [sample(part, draw) for part in parts]
    return tuple(items) if kind == "tuple" else items


@given(SCHEMAS, st.integers(1, 4), st.data())
def test_default_collate_equals_torchs(schema, batch_size, drawn) -> None:
    batch = [sample(schema, drawn.draw) for _ in range(batch_size)]
    assert_same_structure(data.default_collate(batch), tud.default_collate(batch))
