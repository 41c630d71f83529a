"""fromscratch.conv against F.conv2d and F.unfold on hand-picked shapes: values, gradients, refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fromscratch import conv


def rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def case(n, c, h, w, o, kh, kw, groups=1, seed=0, dtype=torch.float32):
    """Input, weight scaled by 1/sqrt(fan-in) (outputs of order one, as in a network), bias."""
    x = rand(n, c, h, w, seed=seed, dtype=dtype)
    weight = rand(o, c // groups, kh, kw, seed=seed + 1, dtype=dtype) / max(1, c // groups * kh * kw) ** 0.5
    return x, weight, rand(o, seed=seed + 2, dtype=dtype)


# (n, c, h, w, o, kh, kw), keyword arguments of F.conv2d
CASES = [
    ((1, 1, 8, 8, 1, 3, 3), {}),
    ((4, 3, 10, 9, 5, 3, 3), {"padding": 1}),
    ((2, 3, 11, 7, 4, 2, 5), {"stride": (2, 1), "padding": (1, 2)}),
    ((2, 4, 12, 12, 6, 3, 3), {"stride": 2, "padding": 1, "dilation": 2}),
    ((3, 6, 9, 10, 6, 3, 3), {"padding": 1, "groups": 6}),  # depthwise
    ((2, 4, 9, 9, 8, 1, 3), {"groups": 2, "dilation": (1, 3)}),
    ((2, 3, 7, 8, 4, 4, 2), {"padding": "same"}),  # even kernel: torch pads more at the end
    ((2, 3, 7, 8, 4, 3, 3), {"padding": "same", "dilation": 2}),
    ((2, 3, 7, 8, 4, 3, 3), {"padding": "valid", "stride": 3}),
    ((2, 2, 5, 5, 3, 5, 5), {}),  # kernel as large as the input: one output pixel
    ((0, 2, 5, 5, 3, 3, 3), {}),  # empty batch
    ((2, 3, 28, 28, 16, 3, 3), {"stride": 2, "padding": 1}),
]
IMPLEMENTATIONS = [conv.conv2d, conv.conv2d_unfold]


@pytest.mark.parametrize("fn", IMPLEMENTATIONS)
@pytest.mark.parametrize(("shape", "kwargs"), CASES)
def test_values_match_torch_float32(fn, shape, kwargs) -> None:
    x, weight, bias = case(*shape, groups=kwargs.get("groups", 1))
    for b in (bias, None):
        torch.testing.assert_close(fn(x, weight, b, **kwargs), F.conv2d(x, weight, b, **kwargs),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("shape", "kwargs"), CASES)
def test_values_match_torch_float64(shape, kwargs) -> None:
    x, weight, bias = case(*shape, groups=kwargs.get("groups", 1), dtype=torch.float64)
    torch.testing.assert_close(conv.conv2d(x, weight, bias, **kwargs), F.conv2d(x, weight, bias, **kwargs),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("shape", "kwargs"), CASES)
def test_gradients_match_torch(shape, kwargs) -> None:
    x, weight, bias = case(*shape, groups=kwargs.get("groups", 1), dtype=torch.float64)
    upstream = None
    grads = []
    for fn in (conv.conv2d, F.conv2d):
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
        out = fn(*leaves, **kwargs)
        if upstream is None:  # uneven weights: a plain sum would hide a transposed gradient
            upstream = torch.linspace(-1, 2, out.numel(), dtype=out.dtype).reshape(out.shape)
        grads.append(torch.autograd.grad(out, leaves, upstream))
    for ours, theirs in zip(*grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_unbatched_input_like_torch() -> None:
    x, weight, bias = case(1, 3, 6, 7, 2, 3, 3)
    ours = conv.conv2d(x[0], weight, bias, padding=1)
    assert ours.shape == (2, 6, 7)
    torch.testing.assert_close(ours, F.conv2d(x[0], weight, bias, padding=1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("kernel", "kwargs"), [
    ((3, 3), {}), ((2, 4), {"stride": (2, 3), "padding": (1, 0), "dilation": (2, 1)}),
    ((1, 1), {"stride": 2}), ((5, 5), {"padding": 2, "dilation": 1}), ((3, 2), {"padding": 3}),
])
def test_im2col_is_unfold(kernel, kwargs) -> None:
    x = rand(2, 3, 9, 8)
    assert torch.equal(conv.im2col(x, kernel, **kwargs), F.unfold(x, kernel, **kwargs))


def test_im2col_gradient_is_unfold_gradient() -> None:
    x = rand(2, 2, 6, 5, dtype=torch.float64)
    grads = []
    for fn in (conv.im2col, F.unfold):
        leaf = x.clone().requires_grad_()
        out = fn(leaf, (3, 2), stride=(1, 2), padding=1)
        grads.append(torch.autograd.grad(out, leaf, torch.linspace(-1, 2, out.numel(),
                                                                   dtype=out.dtype).reshape(out.shape))[0])
    torch.testing.assert_close(*grads)


@pytest.mark.parametrize(("n", "k", "s", "p", "d"), [
    (8, 3, 1, 0, 1), (8, 3, 1, 1, 1), (28, 3, 2, 1, 1), (7, 3, 2, 1, 1), (9, 2, 3, 0, 1),
    (10, 3, 1, 2, 2), (5, 5, 1, 0, 1), (6, 4, 2, 3, 3),
])
def test_output_size_is_the_shape_torch_returns(n, k, s, p, d) -> None:
    out = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), stride=s, padding=p, dilation=d)
    assert conv.output_size(n, k, s, p, d) == out.shape[-1]


@pytest.mark.parametrize("kernel_shape", [(3, 3), (2, 5), (1, 1), (8, 8)])
def test_loops_match_torch(kernel_shape) -> None:
    image, kernel = rand(8, 8, seed=3), rand(*kernel_shape, seed=4)
    expected = F.conv2d(image[None, None], kernel[None, None])[0, 0]
    torch.testing.assert_close(conv.conv2d_loops(image, kernel), expected, rtol=1e-5, atol=1e-5)


def test_loops_refuse_batches_and_big_kernels() -> None:
    with pytest.raises(ValueError, match="2-D image"):
        conv.conv2d_loops(rand(1, 8, 8), rand(3, 3))
    with pytest.raises(ValueError, match="larger than the image"):
        conv.conv2d_loops(rand(2, 8), rand(3, 3))


# each: what is wrong, the arguments, the message ours gives; torch must refuse the same input
REFUSALS = [
    ("channels", ((1, 3, 5, 5), (2, 4, 3, 3)), {}, "channels"),
    ("groups not dividing out", ((1, 4, 5, 5), (3, 2, 3, 3)), {"groups": 2}, "divide"),
    ("kernel larger", ((1, 1, 4, 4), (1, 1, 5, 5)), {"padding": 0}, "larger than the padded input"),
    ("stride zero", ((1, 1, 4, 4), (1, 1, 3, 3)), {"stride": 0}, "stride must be positive"),
    ("negative padding", ((1, 1, 4, 4), (1, 1, 3, 3)), {"padding": -1}, "padding must be >= 0"),
    ("dilation zero", ((1, 1, 4, 4), (1, 1, 3, 3)), {"dilation": (1, 0)}, "dilation must be positive"),
    ("groups zero", ((1, 1, 4, 4), (1, 1, 3, 3)), {"groups": 0}, "groups must be a positive int"),
    ("same with stride", ((1, 1, 4, 4), (1, 1, 3, 3)), {"padding": "same", "stride": 2}, "stride 1"),
    ("unknown padding", ((1, 1, 4, 4), (1, 1, 3, 3)), {"padding": "full"}, "'valid' or 'same'"),
    ("2-D input", ((4, 4), (1, 1, 3, 3)), {}, "input must be"),
    ("3-D weight", ((1, 1, 4, 4), (1, 3, 3)), {}, "weight must be 4-D"),
]


@pytest.mark.parametrize(("what", "shapes", "kwargs", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_are_one_line_where_torch_refuses(what, shapes, kwargs, message) -> None:
    x, weight = torch.zeros(shapes[0]), torch.zeros(shapes[1])
    with pytest.raises((RuntimeError, ValueError, TypeError)):
        F.conv2d(x, weight, **kwargs)
    for fn in IMPLEMENTATIONS:
        with pytest.raises(ValueError, match=message) as error:
            fn(x, weight, **kwargs)
        assert "\n" not in str(error.value)


def test_type_refusals() -> None:
    x, weight = torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3)
    with pytest.raises(TypeError, match="bool"):
        conv.conv2d(x.bool(), weight.bool())
    with pytest.raises(TypeError, match="share one dtype"):
        conv.conv2d(x, weight.double())
    with pytest.raises(ValueError, match="bias must have shape"):
        conv.conv2d(x, weight, torch.zeros(2))
    with pytest.raises(ValueError, match="at least one output channel"):
        conv.conv2d(x, torch.zeros(0, 1, 3, 3))
    for bad in ((x.bool(), weight.bool()), (x, weight.double()), (x, weight, torch.zeros(2)),
                (x, torch.zeros(0, 1, 3, 3))):
        with pytest.raises((RuntimeError, NotImplementedError)):
            F.conv2d(*bad)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.complex64])
def test_integer_and_complex_inputs_like_torch(dtype) -> None:
    x = torch.arange(2 * 3 * 5 * 6).reshape(2, 3, 5, 6) % 7
    weight = torch.arange(4 * 3 * 3 * 2).reshape(4, 3, 3, 2) % 3
    x, weight = x.to(dtype), weight.to(dtype)
    ours = conv.conv2d(x, weight, stride=(1, 2), padding=1)
    assert ours.dtype == dtype
    torch.testing.assert_close(ours, F.conv2d(x, weight, stride=(1, 2), padding=1), rtol=0, atol=0)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float16, 1e-2), (torch.bfloat16, 5e-2)])
def test_half_precision_like_torch(dtype, tol) -> None:
    x, weight, bias = case(2, 3, 9, 9, 4, 3, 3)
    x, weight, bias = x.to(dtype), weight.to(dtype), bias.to(dtype)
    ours = conv.conv2d(x, weight, bias, stride=2, padding=1)
    assert ours.dtype == dtype
    torch.testing.assert_close(ours, F.conv2d(x, weight, bias, stride=2, padding=1), rtol=tol, atol=tol)


def test_non_contiguous_and_channels_last_inputs() -> None:
    x, weight, bias = case(2, 3, 9, 8, 4, 3, 3)
    for strange in (x.to(memory_format=torch.channels_last), x.transpose(2, 3), x[:, :, ::2]):
        for padding in (0, 1):
            torch.testing.assert_close(conv.conv2d(strange, weight, bias, padding=padding),
                                       F.conv2d(strange, weight, bias, padding=padding), rtol=1e-5, atol=1e-5)
            columns = conv.im2col(strange, 3, padding=padding)
            assert torch.equal(columns, F.unfold(strange, 3, padding=padding))


def test_benchmark_rows_hold_differences_and_ratios() -> None:
    """Structure only: every row compares with F.conv2d; speed is never asserted."""
    from fromscratch.benchmarks import conv as benchmark

    result = benchmark.run(shapes=[(2, 4, 6, 6, 4, 3, 1, 1, 2)], rounds=1)
    (row,) = result["rows"]
    assert row["im2col_max_abs_diff"] < 1e-5 and row["unfold_max_abs_diff"] < 1e-5
    ratios = [row[f"ratio_{name}_{step}"] for name in ("im2col", "unfold") for step in ("forward", "fwd_bwd")]
    assert all(ratio > 0 for ratio in ratios)
    assert result["summary"]["max_abs_diff"] < 1e-5
