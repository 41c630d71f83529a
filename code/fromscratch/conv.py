"""Two-dimensional convolution from scratch: loops, im2col by stride arithmetic, and one matmul.

    conv2d_loops(image, kernel)        # one channel, no padding: the definition, four nested loops
    im2col(x, (3, 3), padding=1)       # every receptive field as a column: (N, C*kh*kw, L), like F.unfold
    conv2d(x, w, b, stride=2, padding=1, groups=2)   # im2col + one (batched) matmul, F.conv2d's contract
    conv2d_unfold(x, w, b, ...)        # the same with torch's F.unfold doing the gathering
    output_size(28, 3, stride=2, padding=1)          # floor((n + 2p - d(k-1) - 1) / s) + 1 = 14

Like torch (and every deep-learning library), "convolution" here is cross-correlation: the kernel is
not flipped. Inputs F.conv2d refuses, ours refuse with a one-line ValueError or TypeError; so does
a weight with zero input channels, for which F.conv2d returns an output with no channels at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

IntPair = int | Sequence[int]
Padding = int | Sequence[int] | str


def output_size(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Length of one output side: floor((n + 2p - d(k - 1) - 1) / s) + 1."""
    return (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv2d_loops(image: Tensor, kernel: Tensor) -> Tensor:
    """Cross-correlate one (H, W) image with one (kh, kw) kernel, no padding, in Python loops."""
    if image.dim() != 2 or kernel.dim() != 2:
        raise ValueError(f"conv2d_loops takes a 2-D image and a 2-D kernel, got {image.dim()}-D and "
                         f"{kernel.dim()}-D; use conv2d for batches and channels")
    (h, w), (kh, kw) = image.shape, kernel.shape
    if kh > h or kw > w:
        raise ValueError(f"kernel {tuple(kernel.shape)} is larger than the image {tuple(image.shape)}")
    out = image.new_zeros(h - kh + 1, w - kw + 1)
    for i in range(h - kh + 1):
        for j in range(w - kw + 1):
            total = image.new_zeros(())
            for di in range(kh):
                for dj in range(kw):
                    total = total + image[i + di, j + dj] * kernel[di, dj]
            out[i, j] = total
    return out


def im2col(x: Tensor, kernel_size: IntPair, stride: IntPair = 1, padding: IntPair = 0,
           dilation: IntPair = 1) -> Tensor:
    """Receptive fields as columns, (N, C*kh*kw, L), built as a strided view of the padded input.

    The same result as F.unfold: column l holds the C*kh*kw inputs that output position l sees,
    channel-major then kernel row then kernel column; L = out_h * out_w, row-major.
    """
    if x.dim() != 4:
        raise ValueError(f"im2col takes a (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (_pair(v, name) for v, name in (
        (kernel_size, "kernel_size"), (stride, "stride"), (padding, "padding"), (dilation, "dilation")))
    _check_positive(kernel_size=(kh, kw), stride=(sh, sw), dilation=(dh, dw))
    _check_non_negative(padding=(ph, pw))
    n, c, h, w = x.shape
    if min(c, h, w) < 1:
        raise ValueError(f"im2col needs at least one channel, row and column, got shape {tuple(x.shape)}")
    out_h, out_w = _output_shape((h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw))
    padded = F.pad(x, (pw, pw, ph, ph)).contiguous()
    s_n, s_c, s_h, s_w = padded.stride()
    # fields[n, c, i, j, y, x] = padded[n, c, y*sh + i*dh, x*sw + j*dw]: no copy until the reshape
    fields = padded.as_strided((n, c, kh, kw, out_h, out_w),
                               (s_n, s_c, dh * s_h, dw * s_w, sh * s_h, sw * s_w))
    return fields.reshape(n, c * kh * kw, out_h * out_w)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntPair = 1,
           padding: Padding = 0, dilation: IntPair = 1, groups: int = 1) -> Tensor:
    """F.conv2d as im2col and one matmul: (N, C, H, W) * (O, C/groups, kh, kw) -> (N, O, out_h, out_w).

    Takes what F.conv2d takes: an unbatched (C, H, W) input, int or pair stride/padding/dilation,
    padding 'valid' or 'same', and `groups` dividing both C and O.
    """
    return _conv2d(x, weight, bias, stride, padding, dilation, groups, gather=im2col)


def conv2d_unfold(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntPair = 1,
                  padding: Padding = 0, dilation: IntPair = 1, groups: int = 1) -> Tensor:
    """`conv2d` with torch's F.unfold gathering the columns instead of our `im2col`."""
    return _conv2d(x, weight, bias, stride, padding, dilation, groups, gather=F.unfold)


# --------------------------------------------------------------------------- the shared path
def _conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: Padding,
            dilation: IntPair, groups: int, gather) -> Tensor:
    unbatched = _check_tensors(x, weight, bias)
    if unbatched:
        x = x.unsqueeze(0)
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    _check_positive(stride=stride, dilation=dilation)
    kernel = tuple(weight.shape[2:])
    x, padding = _apply_padding(x, padding, kernel, stride, dilation)
    _check_groups(x.shape[1], weight, groups)
    out_shape = _output_shape(tuple(x.shape[2:]), kernel, stride, padding, dilation)

    n, o, k = x.shape[0], weight.shape[0], weight[0].numel()
    cols = gather(x, kernel, dilation=dilation, padding=padding, stride=stride)  # (N, C*kh*kw, L)
    cols = cols.reshape(n, groups, k, cols.shape[-1])  # each group sees its own C/groups channels
    w = weight.reshape(groups, o // groups, k)  # (G, O/G, C/G*kh*kw)
    out = (w @ cols).reshape(n, o, *out_shape)
    if bias is not None:
        out = out + bias.reshape(1, o, 1, 1)
    return out.squeeze(0) if unbatched else out


def _apply_padding(x: Tensor, padding: Padding, kernel: tuple[int, ...], stride: tuple[int, int],
                   dilation: tuple[int, int]) -> tuple[Tensor, tuple[int, int]]:
    """Resolve 'valid', 'same' or ints to symmetric padding; an odd 'same' total is padded here by F.pad."""
    if isinstance(padding, str):
        if padding == "valid":
            return x, (0, 0)
        if padding != "same":
            raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"padding='same' needs stride 1 (got {stride}); give the padding as numbers")
        totals = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
        if all(t % 2 == 0 for t in totals):
            return x, (totals[0] // 2, totals[1] // 2)
        th, tw = totals  # an even kernel: torch puts the extra row and column at the bottom and right
        return F.pad(x, (tw // 2, tw - tw // 2, th // 2, th - th // 2)), (0, 0)
    pair = _pair(padding, "padding")
    _check_non_negative(padding=pair)
    return x, pair


def _output_shape(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, int],
                  padding: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    shape = tuple(output_size(n, k, s, p, d)
                  for n, k, s, p, d in zip(size, kernel, stride, padding, dilation, strict=True))
    if min(shape) < 1:
        raise ValueError(f"kernel {tuple(kernel)} with dilation {dilation} is larger than the padded "
                         f"input {tuple(n + 2 * p for n, p in zip(size, padding, strict=True))}; "
                         "pad more or use a smaller kernel")
    return shape


def _check_tensors(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """Refuse what F.conv2d refuses; True when x is unbatched (C, H, W)."""
    for name, t in (("input", x), ("weight", weight), ("bias", bias)):
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t is not None and t.dtype == torch.bool:
            raise TypeError(f"{name} is bool, which F.conv2d does not take either; convert it with .float()")
    if weight.dim() != 4:
        raise ValueError(f"weight must be 4-D (out_channels, in_channels/groups, kh, kw), got shape "
                         f"{tuple(weight.shape)}")
    if x.dim() not in (3, 4):
        raise ValueError(f"input must be (N, C, H, W) or unbatched (C, H, W), got shape {tuple(x.shape)}")
    if min(weight.shape) < 1:
        raise ValueError(f"weight needs at least one output channel, one input channel and a 1x1 kernel, "
                         f"got shape {tuple(weight.shape)}")
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != x.dtype):
        raise TypeError(f"input, weight and bias must share one dtype, got {x.dtype}, {weight.dtype}"
                        f"{'' if bias is None else ', ' + str(bias.dtype)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},), one per output channel, got "
                         f"{tuple(bias.shape)}")
    return x.dim() == 3


def _check_groups(channels: int, weight: Tensor, groups: int) -> None:
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    if weight.shape[0] % groups:
        raise ValueError(f"groups={groups} must divide the {weight.shape[0]} output channels")
    if channels != weight.shape[1] * groups:
        raise ValueError(f"input has {channels} channels but weight expects {weight.shape[1]} per group "
                         f"x {groups} groups = {weight.shape[1] * groups}")


def _pair(value: IntPair, name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if (isinstance(value, Sequence) and len(value) in (1, 2)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])
    raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")


def _check_positive(**pairs: tuple[int, int]) -> None:
    for name, pair in pairs.items():
        if min(pair) < 1:
            raise ValueError(f"{name} must be positive, got {pair}")


def _check_non_negative(**pairs: tuple[int, int]) -> None:
    for name, pair in pairs.items():
        if min(pair) < 0:
            raise ValueError(f"{name} must be >= 0, got {pair}")
