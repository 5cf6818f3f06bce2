"""Pooling and Flatten: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d((1, 1)), Flatten
(torch.nn's names and arguments; channels first, each channel pooled on its own).

A pool reads the same windows as a convolution (``handwritten.layers.conv.windows``),
one per offset (i, j) of its kernel, each the output's spatial shape:

    MaxPool2d   out = max_ij window_ij(pad(h, -inf))
                arg = the offset that wins: the first in row-major window order (i, then
                      j) among equal maxima -- torch's rule on ties
                d_h: window_arg(d_hp) += d_out        the gradient goes to the winner only;
                                                      an element that wins several
                                                      overlapping windows gets their sum
    AvgPool2d   out = sum_ij window_ij(pad(h, 0)) / count
                count = kh kw (count_include_pad) or the window's elements inside the
                        input (count_include_pad=False)
                d_h: window_ij(d_hp) += d_out / count for every (i, j)
    AdaptiveAvgPool2d((1, 1))   out = mean of each channel over (H, W), shape (C, 1, 1)
                                d_h = d_out / (H W) at every position
    Flatten     out = h.reshape(batch, C H W), (c, y, x) row-major as torch.flatten
                d_h = d_out.reshape(batch, C, H, W)

Each is linear in h once max pooling's winners are fixed, so the tangent is the forward
applied to h_dot (max pooling: h_dot read at the winners) and the R-operator's R{d_h} is
the backward applied to R{d_out} (``base.LinearInInput``).  None has params or state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from handwritten.layers.base import Array, Cache, Context, LinearInInput, Shape
from handwritten.layers.conv import Window, batch_last_full, padded, spatial, windows


@dataclass(frozen=True)
class _Pool2d(LinearInInput):
    """What the two windowed pools share: kernel, stride (the kernel's by default),
    zero padding of at most half the kernel (torch's limit)."""

    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, int] = 0

    OUT: ClassVar[str] = "out"
    FORWARD: ClassVar[tuple[str, ...]] = ("out",)
    BACKWARD: ClassVar[tuple[str, ...]] = ("d_out",)

    def __post_init__(self) -> None:
        kernel = spatial("kernel_size", self.kernel_size, 2)
        object.__setattr__(self, "kernel_size", kernel)
        object.__setattr__(self, "stride", kernel if self.stride is None
                           else spatial("stride", self.stride, 2))
        padding = spatial("padding", self.padding, 2, low=0)
        if any(2 * p > k for p, k in zip(padding, kernel)):
            raise ValueError(f"padding must be at most half the kernel (torch's limit), got "
                             f"padding {padding} for kernel_size {kernel}")
        if math.prod(kernel) > 2**15:            # MaxPool2d keeps each winner as an int16
            raise ValueError(f"kernel_size {kernel} has more than 2**15 elements")
        object.__setattr__(self, "padding", padding)

    def _kernel_stride_padding(self) -> tuple[tuple[int, ...], tuple[int, ...],
                                              tuple[int, ...]]:
        """(kernel_size, stride, padding), each a tuple of two ints (as ``__post_init__``
        stores them).  Not a convolution's ``geometry``, whose third is the dilation: a
        pool's is 1, and its padding is read here."""
        return self.kernel_size, self.stride, self.padding      # type: ignore[return-value]

    def out_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise ValueError(f"{self!r} needs inputs of shape (batch, C, H, W), got (batch, "
                             f"{', '.join(map(str, in_shape))}) from the layer before")
        kernel, stride, padding = self._kernel_stride_padding()
        out = []
        for size, k, s, p in zip(in_shape[1:], kernel, stride, padding):
            if size + 2 * p < k:
                raise ValueError(f"{self!r}: the padded input ({size} + {2 * p}) is smaller "
                                 f"than the kernel ({k})")
            out.append((size + 2 * p - k) // s + 1)           # ceil_mode off, as torch's default
        return (in_shape[0], *out)

    def _pad(self, h: Array, value: float) -> Array:
        _, _, padding = self._kernel_stride_padding()
        if not any(padding):
            return h                                  # no copy where there is nothing to pad
        return padded(h, tuple((p, p) for p in padding), value)

    def _windows(self, out: tuple[int, ...]) -> Any:
        kernel, stride, _ = self._kernel_stride_padding()
        return windows(kernel, stride, (1, 1), out)

    def _pad_shape(self, h_shape: Shape) -> Shape:
        _, _, padding = self._kernel_stride_padding()
        return (*h_shape[:2], *(size + 2 * p for size, p in zip(h_shape[2:], padding)))

    def _crop(self, d_hp: Array) -> Array:
        _, _, padding = self._kernel_stride_padding()
        crop: Window = (Ellipsis, *(slice(p, d_hp.shape[2 + a] - p)
                                    for a, p in enumerate(padding)))
        return d_hp[crop]


@dataclass(frozen=True)
class MaxPool2d(_Pool2d):
    """torch.nn.MaxPool2d(kernel_size, stride=None, padding=0): ceil_mode and dilation
    off (torch's defaults)."""

    EQUATIONS: ClassVar[dict[str, str]] = {
        "out": "out = max_ij window_ij(pad(h, -inf)), arg = the first offset that attains it",
        "d_out": "d_out = d_h_next"}
    D_IN: ClassVar[str] = "d_h = crop(window_arg(d_hp) += d_out)   (the winner only)"

    def forward(self, p: dict[str, Array], h: Array, ctx: Context) -> tuple[Array, Cache]:
        hp = self._pad(h, -np.inf)
        wins = [hp[window] for _, window in self._windows(self.out_shape(h.shape[1:])[1:])]
        out = wins[0].copy(order="K")                 # (batch, C, *out), laid out as h
        # the winner's offset k (row-major in the window), the windows taken in that
        # order: offset k takes over only where it is strictly greater than the maximum
        # so far, so among equal maxima the first wins -- torch's rule on ties.  The
        # maximum only grows, so the winner is the largest k that took over (the same as
        # np.argmax over the stacked windows, without stacking kh kw copies of them);
        # int16: __post_init__ keeps kh kw below 2**15
        arg = np.zeros_like(out, dtype=np.int16)
        for k, win in enumerate(wins[1:], start=1):
            took_over = win > out
            np.maximum(out, win, out=out)
            np.maximum(arg, took_over * np.int16(k), out=arg)
        return out, {"h_shape": h.shape, "arg": arg, "out": out}

    def _route(self, cache: Cache, d_out: Array) -> Array:
        """d_out to each window's winner, summed where an element wins several.  (arg ==
        k) * d_out is d_out where offset k won and 0 elsewhere -- unless d_out holds an
        inf or a nan, which 0 * inf would spread to the losers: then np.where (exact, and
        about ten times slower)."""
        d_hp = batch_last_full(self._pad_shape(cache["h_shape"]), 0.0, d_out.dtype)
        finite = bool(np.isfinite(d_out).all())
        for k, (_, window) in enumerate(self._windows(d_out.shape[2:])):
            won = cache["arg"] == k
            d_hp[window] += won * d_out if finite else np.where(won, d_out, 0)
        return self._crop(d_hp)

    def backward(self, p: dict[str, Array], cache: Cache, d_out: Array, ctx: Context,
                 need_d_in: bool = True
                 ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        return (self._route(cache, d_out) if need_d_in else None), {}, {}

    def tangent(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                p_dot: dict[str, Array], ctx: Context) -> Array:
        """h_dot read at each window's winner."""
        assert h_dot is not None
        hp_dot = self._pad(h_dot, 0.0)
        out_dot = np.zeros_like(cache["out"], dtype=h_dot.dtype)
        for k, (_, window) in enumerate(self._windows(out_dot.shape[2:])):
            out_dot += np.where(cache["arg"] == k, hp_dot[window], 0)
        return out_dot


@dataclass(frozen=True)
class AvgPool2d(_Pool2d):
    """torch.nn.AvgPool2d(kernel_size, stride=None, padding=0, count_include_pad=True):
    ceil_mode off, no divisor_override."""

    count_include_pad: bool = True

    EQUATIONS: ClassVar[dict[str, str]] = {
        "out": "out = sum_ij window_ij(pad(h, 0)) / count",
        "d_out": "d_out = d_h_next"}
    D_IN: ClassVar[str] = "d_h = crop(window_ij(d_hp) += d_out / count, every (i, j))"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.count_include_pad, bool):
            raise TypeError("count_include_pad must be a bool, got "
                            f"{type(self.count_include_pad).__name__}")

    def _count(self, h_shape: Shape, dtype: np.dtype[Any]) -> Array | float:
        """Each window's divisor: kh kw, or (count_include_pad=False) how many of its
        elements lie inside the input (the pool of a padded field of ones)."""
        kernel, _, padding = self._kernel_stride_padding()
        if self.count_include_pad or not any(padding):
            return float(math.prod(kernel))
        ones = self._pad(np.ones((1, 1, *h_shape[2:]), dtype=dtype), 0.0)
        return self._sum(ones, self.out_shape(h_shape[1:])[1:])

    def _sum(self, hp: Array, out: tuple[int, ...]) -> Array:
        total = batch_last_full((*hp.shape[:2], *out), 0.0, hp.dtype)
        for _, window in self._windows(out):
            total += hp[window]
        return total

    def forward(self, p: dict[str, Array], h: Array, ctx: Context) -> tuple[Array, Cache]:
        count = self._count(h.shape, h.dtype)
        out = self._sum(self._pad(h, 0.0), self.out_shape(h.shape[1:])[1:])
        out /= count
        return out, {"h_shape": h.shape, "count": count, "out": out}

    def backward(self, p: dict[str, Array], cache: Cache, d_out: Array, ctx: Context,
                 need_d_in: bool = True
                 ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        if not need_d_in:
            return None, {}, {}
        d_hp = batch_last_full(self._pad_shape(cache["h_shape"]), 0.0, d_out.dtype)
        share = d_out / cache["count"]                # each window's element's part
        for _, window in self._windows(d_out.shape[2:]):
            d_hp[window] += share
        return self._crop(d_hp), {}, {}

    def tangent(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                p_dot: dict[str, Array], ctx: Context) -> Array:
        assert h_dot is not None
        return self._sum(self._pad(h_dot, 0.0), cache["out"].shape[2:]) / cache["count"]


@dataclass(frozen=True)
class AdaptiveAvgPool2d(LinearInInput):
    """torch.nn.AdaptiveAvgPool2d((1, 1)): global average pooling, each channel's mean
    over (H, W).  Only output_size (1, 1) (or 1) is implemented."""

    output_size: int | tuple[int, int] = (1, 1)

    OUT: ClassVar[str] = "out"
    FORWARD: ClassVar[tuple[str, ...]] = ("out",)
    BACKWARD: ClassVar[tuple[str, ...]] = ("d_out",)
    EQUATIONS: ClassVar[dict[str, str]] = {"out": "out = mean(h, axis=(H, W))",
                                           "d_out": "d_out = d_h_next"}
    D_IN: ClassVar[str] = "d_h = d_out / (H W), at every (y, x)"

    def __post_init__(self) -> None:
        size = spatial("output_size", self.output_size, 2)
        if size != (1, 1):
            raise ValueError(f"output_size must be (1, 1) (global average pooling; other "
                             f"adaptive sizes are not implemented), got {self.output_size!r}")
        object.__setattr__(self, "output_size", size)

    def out_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise ValueError(f"{self!r} needs inputs of shape (batch, C, H, W), got (batch, "
                             f"{', '.join(map(str, in_shape))}) from the layer before")
        return (in_shape[0], 1, 1)

    def forward(self, p: dict[str, Array], h: Array, ctx: Context) -> tuple[Array, Cache]:
        out = h.mean(axis=(2, 3), keepdims=True)
        return out, {"h_shape": h.shape, "out": out}

    def backward(self, p: dict[str, Array], cache: Cache, d_out: Array, ctx: Context,
                 need_d_in: bool = True
                 ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        if not need_d_in:
            return None, {}, {}
        h_shape = cache["h_shape"]
        return np.broadcast_to(d_out / (h_shape[2] * h_shape[3]), h_shape).copy(), {}, {}

    def tangent(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                p_dot: dict[str, Array], ctx: Context) -> Array:
        assert h_dot is not None
        return h_dot.mean(axis=(2, 3), keepdims=True)


@dataclass(frozen=True)
class Flatten(LinearInInput):
    """torch.nn.Flatten(): each sample's (C, H, W) (or any shape) to one row, in
    row-major (c, y, x) order as torch.flatten(h, 1)."""

    OUT: ClassVar[str] = "out"
    FORWARD: ClassVar[tuple[str, ...]] = ("out",)
    BACKWARD: ClassVar[tuple[str, ...]] = ("d_out",)
    EQUATIONS: ClassVar[dict[str, str]] = {"out": "out = h.reshape(batch, -1)",
                                           "d_out": "d_out = d_h_next"}
    D_IN: ClassVar[str] = "d_h = d_out.reshape(h.shape)"

    def out_shape(self, in_shape: Shape) -> Shape:
        return (math.prod(in_shape),)

    def forward(self, p: dict[str, Array], h: Array, ctx: Context) -> tuple[Array, Cache]:
        out = h.reshape(h.shape[0], -1)
        return out, {"h": h, "out": out}

    def backward(self, p: dict[str, Array], cache: Cache, d_out: Array, ctx: Context,
                 need_d_in: bool = True
                 ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        if not need_d_in:
            return None, {}, {}
        # d_h stored as h was (batch-last after a conv, conv.py): the layers below then
        # read their d_out in their own layout
        d_h = np.empty_like(cache["h"], dtype=d_out.dtype)
        d_h[...] = d_out.reshape(d_h.shape)
        return d_h, {}, {}

    def tangent(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                p_dot: dict[str, Array], ctx: Context) -> Array:
        assert h_dot is not None
        return h_dot.reshape(h_dot.shape[0], -1)
