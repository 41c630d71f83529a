"""Differential property tests of fromscratch.conv against F.conv2d and F.unfold.

Property: on generated shapes, strides, paddings, dilations and groups (valid or not), ours and
torch's give the same values and gradients, or both refuse. Values are compared in float32 to 1e-5
relative and 1e-5 times the largest sum of |input x weight| products an output adds up (the scale of
float32 rounding in a sum), in float64 to 1e-12. The one deliberate difference: a weight with zero
input channels is refused (F.conv2d returns an output with zero channels for it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from property_helpers import budget, gradients, same_outcome

from fromscratch import conv

ZERO_CHANNELS = "at least one output channel, one input channel"


@st.composite
def conv_cases(draw, dtype: torch.dtype | None = None):
    """Input, weight, bias and F.conv2d's keyword arguments; often valid, sometimes not."""
    groups = draw(st.integers(1, 3))
    counts = st.sampled_from([0, 1, 1, 2, 2, 3, 3, 4])  # zero channels now and then
    per_group_in, per_group_out = draw(counts), draw(counts)
    channels = per_group_in * groups + draw(st.sampled_from([0] * 7 + [1]))  # sometimes mismatched
    n, h, w = draw(st.sampled_from([0, 1, 2, 3, 3])), draw(st.integers(1, 12)), draw(st.integers(1, 12))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    side = st.integers(1, 3)
    stride = draw(st.one_of(side, st.tuples(side, side), st.tuples(side, side), st.just(0)))
    dilation = draw(st.one_of(st.just(1), st.just(1), side, st.tuples(side, side)))
    padding = draw(st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)),
                             st.sampled_from(["same", "valid"])))
    dtype = dtype or draw(st.sampled_from([torch.float32, torch.float64]))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, h, w, generator=generator, dtype=dtype)
    if draw(st.booleans()):
        x = x[0] if n else x  # unbatched (C, H, W)
    weight = torch.randn(per_group_out * groups, per_group_in, kh, kw, generator=generator, dtype=dtype)
    bias = torch.randn(weight.shape[0], generator=generator, dtype=dtype) if draw(st.booleans()) else None
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return x, weight, bias, kwargs


def _close(ours: torch.Tensor, theirs: torch.Tensor, scale: float) -> None:
    if theirs.dtype == torch.float64:
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12 * scale)
    else:
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * scale)


def _scale(x, weight, kwargs) -> float:
    """Largest sum of |x * w| over one output: float32 rounding in a sum grows with it."""
    magnitudes = F.conv2d(x.abs().double(), weight.abs().double(), **kwargs)
    return max(1.0, float(magnitudes.max())) if magnitudes.numel() else 1.0


@given(conv_cases())
def test_conv2d_values(case) -> None:
    x, weight, bias, kwargs = case
    for fn in (conv.conv2d, conv.conv2d_unfold):
        both = same_outcome(lambda f=fn: f(x, weight, bias, **kwargs),
                            lambda: F.conv2d(x, weight, bias, **kwargs), refusal=ZERO_CHANNELS)
        if both:
            _close(*both, scale=_scale(x, weight, kwargs))


@settings(max_examples=budget(0.6))
@given(conv_cases(torch.float64))
def test_conv2d_gradients(case) -> None:
    x, weight, bias, kwargs = case
    both = same_outcome(lambda: conv.conv2d(x, weight, bias, **kwargs),
                        lambda: F.conv2d(x, weight, bias, **kwargs), refusal=ZERO_CHANNELS)
    if not both or not both[1].numel():
        return
    inputs = (x, weight) if bias is None else (x, weight, bias)
    ours = gradients(lambda *t: conv.conv2d(*t, **kwargs), *inputs)
    theirs = gradients(lambda *t: F.conv2d(*t, **kwargs), *inputs)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12 * _scale(x, weight, kwargs))


@given(st.integers(1, 3), st.integers(0, 3), st.integers(1, 9), st.integers(1, 9),
       st.tuples(st.integers(1, 4), st.integers(1, 4)), st.tuples(st.integers(1, 3), st.integers(1, 3)),
       st.tuples(st.integers(0, 3), st.integers(0, 3)), st.tuples(st.integers(1, 3), st.integers(1, 3)))
def test_im2col_is_unfold(n, c, h, w, kernel, stride, padding, dilation) -> None:
    x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(h * 10 + w))
    both = same_outcome(lambda: conv.im2col(x, kernel, stride, padding, dilation),
                        lambda: F.unfold(x, kernel, dilation, padding, stride))
    if both:
        assert torch.equal(*both)


@given(st.integers(1, 40), st.integers(1, 7), st.integers(1, 4), st.integers(0, 4), st.integers(1, 3))
def test_output_size_matches_torch(n, k, s, p, d) -> None:
    expected = conv.output_size(n, k, s, p, d)
    both = same_outcome(lambda: expected if expected >= 1 else _refuse(),
                        lambda: F.conv2d(torch.zeros(1, 1, n, 1), torch.zeros(1, 1, k, 1), stride=(s, 1),
                                         padding=(p, 0), dilation=(d, 1)).shape[2])
    if both:
        assert both[0] == both[1]


def _refuse():
    raise ValueError("no output")
