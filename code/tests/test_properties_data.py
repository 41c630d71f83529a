"""Property tests of fromscratch.data.DataLoader against torch.utils.data.DataLoader.

Property: for any dataset size, batch size, drop_last, shuffle and seed, our loader yields the same
batches (values and dtypes) in the same order as torch's, epoch after epoch, with one generator
each seeded alike; without shuffling each epoch covers every row once, in order.
"""

from __future__ import annotations

import torch
import torch.utils.data as tud
from hypothesis import given
from hypothesis import strategies as st

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
