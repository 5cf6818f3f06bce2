"""Conv1d and Conv2d: the cross-correlation of the input with a bank of kernels
(torch.nn.Conv1d / Conv2d: channels first, the same arguments, the same layouts).

Conv2d's input h is (batch, C, H, W) with C = in_channels; its kernel W is
(O, C // G, kh, kw) with O = out_channels and G = groups; its output z is
(batch, O, H_out, W_out).  With hp the input padded with zeros, s the stride and d the
dilation, output channel o of group g = o // (O / G) reads only its group's channels:

    z[n, o, y, x] = b[o] + sum_{c, i, j} W[o, c, i, j] hp[n, g C/G + c, y s + i d, x s + j d]

**Written as a sum over the kernel's offsets.**  For each offset (i, j) the *window*

    window_ij(hp) = hp[:, :, i d : i d + s (H_out - 1) + 1 : s,  j d : ... : s]

is a strided slice of the padded input with the output's spatial shape, and the kernel's
slice W[:, :, i, j] maps its channels to the output's (the channels contracted, every
(n, y, x) a column):

    z      = b + sum_ij  W[:, :, i, j] . window_ij(hp)                   forward
    d_W[:, :, i, j] = sum_{n, y, x}  d_z . window_ij(hp)                 the correlation
                                                                          of h with d_z
    window_ij(d_hp) += W[:, :, i, j]^T . d_z   for every (i, j)          d_z sent back
    d_h    = d_hp with the padding cropped                                 through each window
    d_b    = sum_{n, y, x} d_z

The third line *is* the transposed convolution: d_z lands on every s-th position of d_hp
(the stride's zeros in between), shifted by the offset's (i d, j d), and each offset's
kernel slice multiplies it -- written as a full convolution of the zero-stuffed d_z, that
is the kernel flipped in both spatial axes; here the flip is the offset's sign, so no
flipped copy of W is written out.  Rows and columns of the input that no window reaches
(an image size the stride does not tile) get d_h = 0, as they should.

**im2col: the sums over offsets as one GEMM.**  ``columns`` stacks every offset's window
as rows of one matrix per group, (C/G kh kw, H_out W_out batch), row (c, i, j) holding
window_ij of channel c; W reshaped to (O/G, C/G kh kw) has the same (c, i, j) order, so
the three lines above are three matrix products (``conv``, ``corr``, ``conv_t``) and the
scatter of d_cols back through the windows (col2im, in ``conv_t``).  Why im2col and not
kh kw products of one window each: each of those contracts only the C/G channels -- 1 in
an image network's first layer, a product BLAS cannot make fast -- where im2col
contracts C/G kh kw at once.  Its cost is memory: the columns are batch C kh kw H_out W_out
numbers, each input element up to kh kw times -- for LeNet's second layer at batch 128,
7.3 MiB of float32 columns for a 0.6 MiB input; ``bench/bench.py`` prints it per network.

**Memory layout: batch-last.**  Every array here is indexed (batch, C, *spatial) as torch
indexes it, but the images these layers make are *stored* (C, *spatial, batch) -- a
transposed view (``batch_first``) hands them on as (batch, C, ...), and the next layer's
``batch_last`` is again a view.  The reason is NumPy's cost model: an operation on a
strided array runs a loop per innermost run of memory.  In torch's order a window's
innermost run is one row of the output (4 to 28 numbers in the networks here); stored
batch-last it is the whole batch (128), continuing along the row where the stride is 1.
The window copies of im2col, its scatter back (col2im) and the pools' windows run 3 to
10 times faster so, and the GEMMs' matrices are reshapes of the stored arrays (columns
(y, x, n)), not copies.  Only speed depends on the layout: an input stored any way gives
the same numbers (up to a reduction's order, ``tests/test_conv.py``).

Groups: the channels are reshaped to (G, C/G) and the kernel to (G, O/G, C/G, kh, kw);
group g's outputs contract with group g's inputs only (depthwise: G = C).

Forward mode and the R-operator: z is bilinear in (h, W), so, as for Dense,

    z_dot    = conv(h, W_dot) + b_dot + conv(h_dot, W)
    R{d_W}   = corr(h, R{d_z}) + corr(h_dot, d_z) + lambda W_dot
    R{d_h}   = conv_t(R{d_z}, W) + conv_t(d_z, W_dot)           R{d_b} = sum R{d_z}

Per sample i: d_W_i = corr(h_i, d_z_i), d_b_i = sum_{y, x} d_z_i (the same contraction
without the sum over the batch).  Conv1d is the same with one spatial axis.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import numpy as np

from handwritten.layers.base import Array, Cache, Context, Shape
from handwritten.layers.dense import draw_weight
from handwritten.spec import positive_int

Window = tuple[Any, ...]
"""An index into the last axes of an array: one strided slice per spatial axis."""

CORR_BLOCK = 4096
"""Columns per block of d_W's contraction (``corr``).  d_W sums over every column
(n, y, x): in LeNet-5's first layer 100,352 columns into a 6 x 25 result, a long, thin
product that BLAS neither blocks for its cache nor splits across threads; summed a block
at a time (each block's columns fit in a core's cache) it ran about 3 times faster here;
a layer whose columns fit in one block is unchanged."""


def spatial(name: str, value: object, dims: int, *, low: int = 1) -> tuple[int, ...]:
    """An int, or a tuple of ``dims`` ints, each >= low (torch's ``_pair``), as a tuple."""
    items = value if isinstance(value, tuple) else (value,) * dims
    if len(items) != dims:
        raise ValueError(f"{name} must be an int or a tuple of {dims} ints, got {value!r}")
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise TypeError(f"{name} must be an int or a tuple of {dims} ints, got {value!r}")
        if item < low:
            raise ValueError(f"{name} must be >= {low}, got {value!r}")
        out.append(int(item))
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def windows(kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...],
            out: tuple[int, ...]) -> tuple[tuple[tuple[int, ...], Window], ...]:
    """Every kernel offset (i, j) and its window: the slice of the padded input that meets
    kernel element (i, j) at each output position, (..., i d : i d + s (out - 1) + 1 : s).
    Kept per geometry (lru_cache): every pass asks for the same ones."""
    return tuple((offset, (Ellipsis, *(slice(i * d, i * d + s * (o - 1) + 1, s)
                                       for i, d, s, o in zip(offset, dilation, stride, out))))
                 for offset in itertools.product(*(range(k) for k in kernel)))


def batch_last(a: Array) -> Array:
    """(batch, *rest) seen as (*rest, batch): a view, no copy (np.moveaxis(a, 0, -1))."""
    return a.transpose(*range(1, a.ndim), 0)


def batch_first(a: Array) -> Array:
    """(*rest, batch) seen as (batch, *rest): ``batch_last``'s inverse, a view."""
    return a.transpose(a.ndim - 1, *range(a.ndim - 1))


def batch_last_full(shape: Shape, fill: float, dtype: Any) -> Array:
    """A new (batch, *rest) array of ``fill``, stored batch-last: (*rest, batch) in memory
    (the module docstring's layout)."""
    stored = (*shape[1:], shape[0])
    return batch_first(np.zeros(stored, dtype) if fill == 0 else np.full(stored, fill, dtype))


def padded(h: Array, pads: tuple[tuple[int, int], ...], fill: float) -> Array:
    """h (batch, C, *spatial) inside a border of ``fill``, pads[a] = (before, after) on
    spatial axis a; a new array, stored batch-last."""
    shape = (*h.shape[:2], *(size + lo + hi for size, (lo, hi) in zip(h.shape[2:], pads)))
    hp = batch_last_full(shape, fill, h.dtype)
    inside: Window = (Ellipsis, *(slice(lo, lo + size)
                                  for size, (lo, _) in zip(h.shape[2:], pads)))
    hp[inside] = h
    return hp


@dataclass(frozen=True)
class _ConvNd:
    """What Conv1d and Conv2d share; ``DIMS`` is the number of spatial axes."""

    in_channels: int
    out_channels: int
    kernel_size: int | tuple[int, ...]
    stride: int | tuple[int, ...] = 1
    padding: int | tuple[int, ...] | str = 0
    dilation: int | tuple[int, ...] = 1
    groups: int = 1
    bias: bool = True

    DIMS: ClassVar[int]
    OUT: ClassVar[str] = "z"
    FORWARD: ClassVar[tuple[str, ...]] = ("z",)
    BACKWARD: ClassVar[tuple[str, ...]] = ("d_z", "d_W", "d_b")
    EQUATIONS: ClassVar[dict[str, str]] = {
        "z": "z = b + sum_ij W[:, :, i, j] . window_ij(pad(h))",
        "d_z": "d_z = d_h_next (from the layer above)",
        "d_W": "d_W[:, :, i, j] = sum_(n,y,x) d_z . window_ij(pad(h)) (+ weight_decay * W)",
        "d_b": "d_b = d_z.sum over (batch, *spatial)",
    }
    D_IN: ClassVar[str] = "d_h = crop(sum_ij window_ij += W[:, :, i, j]^T . d_z)"
    DECAYED: ClassVar[tuple[str, ...]] = ("W",)       # the bias is not decayed

    def __post_init__(self) -> None:
        n = self.DIMS
        for name in ("in_channels", "out_channels", "groups"):
            object.__setattr__(self, name, positive_int(name, getattr(self, name)))
        object.__setattr__(self, "kernel_size", spatial("kernel_size", self.kernel_size, n))
        object.__setattr__(self, "stride", spatial("stride", self.stride, n))
        object.__setattr__(self, "dilation", spatial("dilation", self.dilation, n))
        if isinstance(self.padding, str):
            if self.padding not in ("same", "valid"):
                raise ValueError(f"padding must be an int, a tuple of {n} ints, 'same' or "
                                 f"'valid', got {self.padding!r}")
            if self.padding == "same" and any(s != 1 for s in self.geometry[1]):
                raise ValueError("padding='same' needs stride 1 (torch refuses a strided "
                                 f"'same' convolution too), got stride {self.stride}")
        else:
            object.__setattr__(self, "padding", spatial("padding", self.padding, n, low=0))
        if not isinstance(self.bias, bool):
            raise TypeError(f"bias must be a bool, got {type(self.bias).__name__}")
        for name in ("in_channels", "out_channels"):
            if getattr(self, name) % self.groups:
                raise ValueError(f"{name} must be divisible by groups: {name}="
                                 f"{getattr(self, name)}, groups={self.groups}")

    # geometry ----------------------------------------------------------------------

    @property
    def geometry(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(kernel_size, stride, dilation), each a tuple of one int per spatial axis (as
        ``__post_init__`` stores them): what ``windows`` takes (the padding is ``pads``)."""
        return cast(tuple[int, ...], self.kernel_size), cast(tuple[int, ...], self.stride), \
            cast(tuple[int, ...], self.dilation)

    def pads(self) -> tuple[tuple[int, int], ...]:
        """(before, after) zeros on each spatial axis.  'same': the dilated kernel's
        d (k - 1) split with the odd one after (bottom, right), as torch pads it."""
        if self.padding == "valid":
            return ((0, 0),) * self.DIMS
        kernel, _, dilation = self.geometry
        if self.padding == "same":
            totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
            return tuple((t // 2, t - t // 2) for t in totals)
        return tuple((p, p) for p in cast(tuple[int, ...], self.padding))

    def out_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 1 + self.DIMS or in_shape[0] != self.in_channels:
            want = ", ".join(["batch", str(self.in_channels), *"HW"[2 - self.DIMS:]])
            raise ValueError(f"{self!r} needs inputs of shape ({want}), got (batch, "
                             f"{', '.join(map(str, in_shape))}) from the layer before")
        out = []
        for size, (lo, hi), k, s, d in zip(in_shape[1:], self.pads(), *self.geometry):
            reach = d * (k - 1) + 1                   # the dilated kernel's extent
            if size + lo + hi < reach:
                raise ValueError(f"{self!r}: the padded input ({size} + {lo + hi}) is smaller "
                                 f"than the dilated kernel ({reach}) along a spatial axis")
            out.append((size + lo + hi - reach) // s + 1)
        return (self.out_channels, *out)

    def param_shapes(self) -> dict[str, Shape]:
        shapes = {"W": (self.out_channels, self.in_channels // self.groups,
                        *self.geometry[0])}
        return shapes | ({"b": (self.out_channels,)} if self.bias else {})

    def init(self, in_shape: Shape, rng: np.random.Generator, scheme: str,
             dtype: np.dtype[Any]) -> dict[str, Array]:
        """W drawn by ``draw_weight`` with torch's fans (fan_in = C/G kh kw, fan_out =
        O kh kw), in float64 and then cast; b = 0."""
        shape = self.param_shapes()["W"]
        field = math.prod(self.geometry[0])
        w = draw_weight(scheme, shape[1] * field, shape[0] * field, rng, shape)
        p = {"W": w.astype(dtype)}
        return p | ({"b": np.zeros(self.out_channels, dtype=dtype)} if self.bias else {})

    # im2col, and the three products ----------------------------------------------------

    def _padded(self, h: Array) -> Array:
        """h with its zeros, channels split by group: (batch, G, C/G, *padded), stored
        batch-last (h itself where nothing is padded: no copy)."""
        pads = self.pads()
        hp = padded(h, pads, 0.0) if any(map(any, pads)) else h
        return hp.reshape(h.shape[0], self.groups, -1, *hp.shape[2:])

    def _windows(self, out: tuple[int, ...]) -> tuple[tuple[tuple[int, ...], Window], ...]:
        return windows(*self.geometry, out)

    def _matrix(self, W: Array) -> Array:
        """The kernel as G matrices (O/G, C/G kh kw): group g's kernels, one per row, each
        its (c, i, j) in row-major order -- the columns' row order."""
        return W.reshape(self.groups, W.shape[0] // self.groups, -1)

    def columns(self, h: Array, out: tuple[int, ...]) -> Array:
        """im2col: every offset's window of the padded input, stacked as the rows of G
        matrices (C/G kh kw, P batch), P = the output's positions; row (c, i, j) holds
        window_ij of channel c (column (y, x, n): batch-last), so W's matrix times them
        is the sum over offsets."""
        hp = self._padded(h)
        n, g, c = hp.shape[:3]
        cols = np.empty((g, c, math.prod(self.geometry[0]), *out, n), dtype=h.dtype)
        for k, (_, window) in enumerate(self._windows(out)):
            cols[:, :, k] = batch_last(hp[window])      # (G, C/G, *out, batch)
        return cols.reshape(g, c * cols.shape[2], -1)

    def _outputs(self, d_z: Array) -> Array:
        """(batch, O, *out) as G matrices (O/G, P batch): the columns' layout (a view of a
        d_z stored batch-last, a copy of any other)."""
        return batch_last(d_z).reshape(self.groups, d_z.shape[1] // self.groups, -1)

    def conv(self, cols: Array, W: Array, n: int, out: tuple[int, ...]) -> Array:
        """z without the bias: one GEMM per group, W's matrix times the columns, seen as
        (batch, O, *out) (stored batch-last, as the product comes: no copy)."""
        z = self._matrix(W) @ cols                      # (G, O/G, P batch)
        return batch_first(z.reshape(self.out_channels, *out, n))

    def corr(self, cols: Array, d_z: Array, per_example: bool = False) -> Array:
        """d_W = d_z's matrix times the columns transposed: the correlation of the input
        with d_z, summed over (batch, y, x) -> (O, C/G, *kernel); ``per_example``: without
        the sum over the batch -> (batch, O, C/G, *kernel)."""
        shape = self.param_shapes()["W"]
        d = self._outputs(d_z)                          # (G, O/G, P batch)
        if not per_example:
            # d cols^T, formed as (cols d^T)^T: the same products, in the order OpenBLAS
            # ran about 1.5x faster at the bench networks' shapes; and summed over blocks of
            # CORR_BLOCK columns (n, y, x) -- the same sum, in pieces BLAS runs fast
            d_W_t = sum(cols[..., s:s + CORR_BLOCK] @ d[..., s:s + CORR_BLOCK].transpose(0, 2, 1)
                        for s in range(0, cols.shape[-1], CORR_BLOCK))
            return np.asarray(d_W_t).transpose(0, 2, 1).reshape(shape)
        n = d_z.shape[0]
        d = np.moveaxis(d.reshape(*d.shape[:2], -1, n), -1, 0)          # (batch, G, O/G, P)
        c = np.moveaxis(cols.reshape(*cols.shape[:2], -1, n), -1, 0)    # (batch, G, C/G K, P)
        per = np.ascontiguousarray(d) @ np.ascontiguousarray(c).transpose(0, 1, 3, 2)
        return per.reshape(n, *shape)                   # (batch, G, O/G, C/G kh kw)

    def conv_t(self, d_z: Array, W: Array, h_shape: Shape) -> Array:
        """The transposed convolution: d_cols = W's matrix transposed times d_z, each
        offset's rows sent back through its window (col2im), the padding cropped ->
        (batch, C, *spatial), stored batch-last."""
        n, out = d_z.shape[0], d_z.shape[2:]
        d_cols = self._matrix(W).transpose(0, 2, 1) @ self._outputs(d_z)   # (G, C/G K, P batch)
        d_cols = d_cols.reshape(self.groups, -1, math.prod(self.geometry[0]), *out, n)
        sizes = [size + lo + hi for size, (lo, hi) in zip(h_shape[2:], self.pads())]
        d_hp = batch_last_full((n, self.groups, d_cols.shape[1], *sizes), 0.0, d_z.dtype)
        for k, (_, window) in enumerate(self._windows(out)):
            d_hp[window] += batch_first(d_cols[:, :, k])          # (batch, G, C/G, *out)
        crop: Window = (Ellipsis, *(slice(lo, lo + size)
                                    for size, (lo, _) in zip(h_shape[2:], self.pads())))
        return d_hp.reshape(n, self.in_channels, *sizes)[crop]

    def _bias(self, b: Array) -> Array:
        return b.reshape(-1, *(1,) * self.DIMS)      # broadcast over the spatial axes

    # the contract ------------------------------------------------------------------------

    def forward(self, p: dict[str, Array], h: Array, ctx: Context) -> tuple[Array, Cache]:
        out = self.out_shape(h.shape[1:])[1:]
        cols = self.columns(h, out)
        z = self.conv(cols, p["W"], h.shape[0], out)
        if self.bias:
            z += self._bias(p["b"])                   # in place: z is a fresh array
        return z, {"h": h, "cols": cols, "z": z}

    def backward(self, p: dict[str, Array], cache: Cache, d_z: Array, ctx: Context,
                 need_d_in: bool = True
                 ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        d_W = self.corr(cache["cols"], d_z)            # (O, C/G, *kernel)
        if ctx.weight_decay:
            d_W += ctx.weight_decay * p["W"]          # d_W is a fresh array
        grads = {"W": d_W}
        if self.bias:
            grads["b"] = d_z.sum(axis=(0, *range(2, d_z.ndim)))      # (O,)
        d_h = self.conv_t(d_z, p["W"], cache["h"].shape) if need_d_in else None
        return d_h, grads, {}

    def tangent(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                p_dot: dict[str, Array], ctx: Context) -> Array:
        n, out = cache["z"].shape[0], cache["z"].shape[2:]
        z_dot = self.conv(cache["cols"], p_dot["W"], n, out)     # conv(h, W_dot)
        if self.bias:
            z_dot += self._bias(p_dot["b"])                      # + b_dot
        if h_dot is not None:
            z_dot += self.conv(self.columns(h_dot, out), p["W"], n, out)  # + conv(h_dot, W)
        return z_dot

    def r_backward(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                   p_dot: dict[str, Array], d_z: Array | None, r_d_z: Array, ctx: Context,
                   need_d_in: bool = True
                   ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        r_d_W = self.corr(cache["cols"], r_d_z)                  # corr(h, R{d_z})
        if d_z is not None and h_dot is not None:
            r_d_W += self.corr(self.columns(h_dot, d_z.shape[2:]), d_z)   # + corr(h_dot, d_z)
        if ctx.weight_decay:
            r_d_W += ctx.weight_decay * p_dot["W"]               # + lambda W_dot
        r_grads = {"W": r_d_W}
        if self.bias:
            r_grads["b"] = r_d_z.sum(axis=(0, *range(2, r_d_z.ndim)))
        r_d_h = None
        if need_d_in:
            r_d_h = self.conv_t(r_d_z, p["W"], cache["h"].shape)  # conv_t(R{d_z}, W)
            if d_z is not None:
                r_d_h += self.conv_t(d_z, p_dot["W"], cache["h"].shape)  # + conv_t(d_z, W_dot)
        return r_d_h, r_grads, {}

    def per_example(self, p: dict[str, Array], cache: Cache, d_z: Array, ctx: Context
                    ) -> dict[str, Array]:
        grads = {"W": self.corr(cache["cols"], d_z, per_example=True)}
        if self.bias:
            grads["b"] = d_z.sum(axis=tuple(range(2, d_z.ndim)))
        return grads

    def init_state(self, in_shape: Shape, dtype: np.dtype[Any]) -> dict[str, Array]:
        return {}

    def update_state(self, state: dict[str, Array], cache: Cache) -> dict[str, Array]:
        return state


@dataclass(frozen=True)
class Conv1d(_ConvNd):
    """torch.nn.Conv1d: input (batch, C, L), kernel (O, C // groups, k)."""

    DIMS: ClassVar[int] = 1


@dataclass(frozen=True)
class Conv2d(_ConvNd):
    """torch.nn.Conv2d: input (batch, C, H, W), kernel (O, C // groups, kh, kw)."""

    DIMS: ClassVar[int] = 2
