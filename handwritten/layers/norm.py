"""BatchNorm1d and LayerNorm: one normalization along different axes, then gamma, beta;
BatchNorm2d and GroupNorm (the convolution chapter) on the same two, at the bottom.

    mu, var = mean and biased variance along the axis     (batch norm: over the batch,
    x_hat   = (h - mu) / sqrt(var + eps)                    per feature; layer norm: over
    n       = gamma * x_hat + beta                          a sample's features)

and the backward's compact form, N the count along the axis, s = 1 / sqrt(var + eps):

    d_gamma = sum(d_n * x_hat, axis=0)      d_beta = sum(d_n, axis=0)
    d_x_hat = d_n * gamma
    d_h     = s / N * (N d_x_hat - sum(d_x_hat) - x_hat * sum(d_x_hat * x_hat))

(``handwritten.blocks`` holds the arithmetic; docs/derivation.md derives it node by node.)
Forward mode, the same graph differentiated forwards, with c = h - mu
(``normalize_tangent``: var_dot, x_hat_dot):

    mu_dot    = mean(h_dot)
    c_dot     = h_dot - mu_dot
    var_dot   = 2 mean(c * c_dot)
    x_hat_dot = s c_dot - x_hat * var_dot * s**2 / 2
    n_dot     = gamma x_hat_dot + gamma_dot x_hat + beta_dot

The R-operator (hvp), the product rule on the backward, with R{d_x_hat} = R{d_n} gamma +
d_n gamma_dot and the first-order d_h above:

    R{d_h} = s/N (N R{d_x_hat} - sum(R{d_x_hat}) - x_hat sum(R{d_x_hat} x_hat))
             - s**2 var_dot / 2 * d_h
             - s/N (x_hat_dot sum(d_x_hat x_hat) + x_hat sum(d_x_hat x_hat_dot))
    R{d_gamma} = sum(R{d_n} x_hat + d_n x_hat_dot, axis=0)     R{d_beta} = sum(R{d_n}, axis=0)

Batch norm in training mode couples the samples of a batch, so it has no per-example
gradient (Opacus refuses it for the same reason); it carries running statistics as state
(``init_state`` / ``update_state``, torch.nn.BatchNorm1d's momentum 0.1 and unbiased
variance), normalizes with them in evaluation mode, and is then a per-sample affine map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from handwritten import blocks
from handwritten.layers.base import Array, Cache, Context, Shape, features
from handwritten.spec import BATCH_NORM_MOMENTUM, NORM_EPS, positive_int


def normalize_tangent(norm: str, x_hat: Array, var: Array, h_dot: Array | None
                      ) -> tuple[Any, Any]:
    """The norm's forward in training mode (the statistics move with the input)
    differentiated along the input's tangent h_dot, from its forward's x_hat and var:
    (var_dot, x_hat_dot), var_dot kept along the axis (broadcastable); both 0 where h_dot
    is None (the input is data).  With c = h - mu = x_hat / s:

        c_dot     = h_dot - mean(h_dot)
        var_dot   = 2 mean(c * c_dot) = 2 mean(x_hat * c_dot) / s
        x_hat_dot = s c_dot - x_hat * var_dot * s**2 / 2

    Every norm layer's tangent and R-operator below reads it (GroupNorm on its rows, as
    layer norm); ``norm`` is "batch" or "layer" (``blocks.AXES``)."""
    if h_dot is None:
        return 0.0, 0.0
    axis = blocks.AXES[norm]
    inv_std = 1 / np.sqrt(np.expand_dims(var, axis) + NORM_EPS)
    c_dot = h_dot - h_dot.mean(axis=axis, keepdims=True)
    var_dot = 2 * np.mean(x_hat * c_dot, axis=axis, keepdims=True) / inv_std
    return var_dot, inv_std * c_dot - x_hat * var_dot * inv_std**2 / 2


@dataclass(frozen=True)
class _Norm:
    """What both norms share; ``AXIS`` says which statistics (``blocks.AXES``)."""

    NORM: ClassVar[str]
    OUT: ClassVar[str] = "n"
    FORWARD: ClassVar[tuple[str, ...]] = ("mu", "var", "x_hat", "n")
    BACKWARD: ClassVar[tuple[str, ...]] = ("d_n", "d_x_hat", "d_gamma", "d_beta")
    EQUATIONS: ClassVar[dict[str, str]] = {
        "mu": "mu = mean(h, axis)", "var": "var = mean((h - mu)**2, axis)   (biased)",
        "x_hat": "x_hat = (h - mu) / sqrt(var + eps)", "n": "n = gamma * x_hat + beta",
        "d_n": "d_n = d_h_next", "d_x_hat": "d_x_hat = d_n * gamma",
        "d_gamma": "d_gamma = sum(d_n * x_hat, axis=0)", "d_beta": "d_beta = sum(d_n, axis=0)",
    }
    D_IN: ClassVar[str] = ("d_h = s/N (N d_x_hat - sum(d_x_hat) - x_hat sum(d_x_hat x_hat)),  "
                           "s = 1/sqrt(var + eps)")
    DECAYED: ClassVar[tuple[str, ...]] = ()            # gamma and beta are not decayed

    def _width(self) -> int:
        raise NotImplementedError

    def out_shape(self, in_shape: Shape) -> Shape:
        if features(self, in_shape) != self._width():
            raise ValueError(f"{self!r} needs inputs of shape (batch, {self._width()}), got "
                             f"(batch, {in_shape[0]}) from the layer before")
        return in_shape

    def param_shapes(self) -> dict[str, Shape]:
        return {"gamma": (self._width(),), "beta": (self._width(),)}

    def init(self, in_shape: Shape, rng: np.random.Generator, scheme: str,
             dtype: np.dtype[Any]) -> dict[str, Array]:
        """The affine part starts as the identity: gamma = 1, beta = 0 (no draws)."""
        width = self._width()
        return {"gamma": np.ones(width, dtype=dtype), "beta": np.zeros(width, dtype=dtype)}

    def forward(self, p: dict[str, Array], h: Array, ctx: Context) -> tuple[Array, Cache]:
        cache = blocks.normalize(self.NORM, h, p["gamma"], p["beta"])
        return cache["n"], cache

    def backward(self, p: dict[str, Array], cache: Cache, d_n: Array, ctx: Context,
                 need_d_in: bool = True
                 ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        parts = blocks.normalize_backward(self.NORM, cache["x_hat"], cache["var"],
                                          p["gamma"], d_n)
        return (parts["d_z"], {"gamma": parts["d_gamma"], "beta": parts["d_beta"]},
                {"d_x_hat": parts["d_x_hat"]})

    def tangent(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                p_dot: dict[str, Array], ctx: Context) -> Array:
        """n_dot (``tangents``' last)."""
        return self.tangents(p, cache, h_dot, p_dot, ctx)["n"]

    def tangents(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                 p_dot: dict[str, Array], ctx: Context) -> dict[str, Array]:
        """The tangent of every forward quantity (module docstring): mu_dot = mean(h_dot),
        var_dot, x_hat_dot, n_dot -- the statistics' 0 where h_dot is None (the input is
        data); in evaluation mode x_hat_dot = h_dot s and n_dot only."""
        x_hat = cache["x_hat"]
        n_dot = p_dot["gamma"] * x_hat + p_dot["beta"]
        if "mu" not in cache:                     # evaluation mode: a fixed affine map
            if h_dot is None:
                return {"x_hat": np.zeros_like(x_hat), "n": n_dot}
            inv_std = 1 / np.sqrt(ctx.state["var"] + NORM_EPS)   # type: ignore[index]
            return {"x_hat": h_dot * inv_std, "n": n_dot + p["gamma"] * h_dot * inv_std}
        if h_dot is None:
            return {"mu": np.zeros_like(cache["mu"]), "var": np.zeros_like(cache["var"]),
                    "x_hat": np.zeros_like(x_hat), "n": n_dot}
        axis = blocks.AXES[self.NORM]
        var_dot, x_hat_dot = normalize_tangent(self.NORM, x_hat, cache["var"], h_dot)
        return {"mu": h_dot.mean(axis=axis), "var": np.squeeze(var_dot, axis),
                "x_hat": x_hat_dot, "n": n_dot + p["gamma"] * x_hat_dot}

    def r_backward(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                   p_dot: dict[str, Array], d_n: Array | None, r_d_n: Array, ctx: Context,
                   need_d_in: bool = True
                   ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        """Training mode (the batch's statistics), as ``backward``; module docstring."""
        axis = blocks.AXES[self.NORM]
        x_hat, gamma = cache["x_hat"], p["gamma"]
        count = x_hat.shape[axis]
        inv_std = 1 / np.sqrt(np.expand_dims(cache["var"], axis) + NORM_EPS)
        var_dot, x_hat_dot = normalize_tangent(self.NORM, x_hat, cache["var"], h_dot)
        r_d_x_hat = r_d_n * gamma
        r_gamma = np.sum(r_d_n * x_hat, axis=0)
        if d_n is not None:
            r_d_x_hat = r_d_x_hat + d_n * p_dot["gamma"]
            r_gamma = r_gamma + np.sum(d_n * x_hat_dot, axis=0)
        # the first-order operator applied to R{d_x_hat}
        r_d_h = count * r_d_x_hat
        r_d_h -= r_d_x_hat.sum(axis=axis, keepdims=True)
        r_d_h -= x_hat * np.sum(r_d_x_hat * x_hat, axis=axis, keepdims=True)
        r_d_h *= inv_std / count
        if d_n is not None:                       # how s, x_hat and d_x_hat move along v
            d_x_hat = d_n * gamma
            d_h = blocks.normalize_backward(self.NORM, x_hat, cache["var"], gamma, d_n)["d_z"]
            r_d_h -= inv_std**2 * var_dot / 2 * d_h
            r_d_h -= inv_std / count * (
                x_hat_dot * np.sum(d_x_hat * x_hat, axis=axis, keepdims=True)
                + x_hat * np.sum(d_x_hat * x_hat_dot, axis=axis, keepdims=True))
        return r_d_h, {"gamma": r_gamma, "beta": r_d_n.sum(axis=0)}, {"d_x_hat": r_d_x_hat}

    def init_state(self, in_shape: Shape, dtype: np.dtype[Any]) -> dict[str, Array]:
        return {}

    def update_state(self, state: dict[str, Array], cache: Cache) -> dict[str, Array]:
        return state


@dataclass(frozen=True)
class BatchNorm1d(_Norm):
    """torch.nn.BatchNorm1d(num_features): each feature over the batch; eps 1e-5,
    momentum 0.1, affine, running statistics tracked."""

    num_features: int
    NORM: ClassVar[str] = "batch"

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_features",
                           positive_int("num_features", self.num_features))

    def _width(self) -> int:
        return self.num_features

    def forward(self, p: dict[str, Array], h: Array, ctx: Context) -> tuple[Array, Cache]:
        if not ctx.training:                      # evaluation: the running statistics
            assert ctx.state is not None, "evaluation mode needs the running statistics"
            cache = blocks.normalize_running(h, ctx.state["mean"], ctx.state["var"],
                                             p["gamma"], p["beta"])
            return cache["n"], cache
        return super().forward(p, h, ctx)

    def per_example(self, p: dict[str, Array], cache: Cache, d_out: Array, ctx: Context
                    ) -> dict[str, Array]:
        raise NotImplementedError(
            f"{self!r} in training mode has no per-example gradient: a sample's output "
            "depends on the whole batch through its mean and variance (Opacus refuses "
            "batch norm for the same reason); use "
            f"{'GroupNorm' if type(self).__name__ == 'BatchNorm2d' else 'LayerNorm'}, or no "
            "norm")

    def init_state(self, in_shape: Shape, dtype: np.dtype[Any]) -> dict[str, Array]:
        """torch.nn.BatchNorm1d's buffers at the start: running mean 0, variance 1."""
        width = self.num_features
        return {"mean": np.zeros(width, dtype=dtype), "var": np.ones(width, dtype=dtype)}

    def update_state(self, state: dict[str, Array], cache: Cache) -> dict[str, Array]:
        """One training-mode batch's update (``blocks.running_update``: momentum
        BATCH_NORM_MOMENTUM, unbiased variance)."""
        assert BATCH_NORM_MOMENTUM == 0.1
        mean, var = blocks.running_update(state["mean"], state["var"], cache["mu"],
                                          cache["var"], cache["x_hat"].shape[0])
        return {"mean": mean, "var": var}

    def check_state(self, state: dict[str, Array], name: str) -> None:
        """Evaluation divides by sqrt(var + eps): a running variance below 0 is no state
        ``update_state`` makes (``predict``'s check of ``running``)."""
        if not (state["var"] >= 0).all():
            raise ValueError(f"{name}['var'] must be >= 0 (a variance)")


@dataclass(frozen=True)
class LayerNorm(_Norm):
    """torch.nn.LayerNorm(normalized_shape): each sample over its features; eps 1e-5,
    elementwise affine."""

    normalized_shape: int
    NORM: ClassVar[str] = "layer"

    def __post_init__(self) -> None:
        object.__setattr__(self, "normalized_shape",
                           positive_int("normalized_shape", self.normalized_shape))

    def _width(self) -> int:
        return self.normalized_shape

    def per_example(self, p: dict[str, Array], cache: Cache, d_n: Array, ctx: Context
                    ) -> dict[str, Array]:
        """Each sample is normalized on its own: d_gamma_i = d_n_i * x_hat_i,
        d_beta_i = d_n_i."""
        return {"gamma": d_n * cache["x_hat"], "beta": d_n.copy()}


def rows(x: Array) -> Array:
    """(batch, C, *spatial) -> (batch * prod(spatial), C): one row per position, one column
    per channel (the channel axis moved last, then flattened, row-major)."""
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def images(r: Array, shape: Shape) -> Array:
    """``rows``' inverse: (batch * prod(spatial), C) back to ``shape``."""
    return np.moveaxis(r.reshape(shape[0], *shape[2:], shape[1]), -1, 1)


@dataclass(frozen=True)
class BatchNorm2d(BatchNorm1d):
    """torch.nn.BatchNorm2d(num_features): spatial batch norm, each channel over (batch,
    H, W).  It *is* BatchNorm1d on the rows: every (n, y, x) position is one row of a
    (batch H W, C) matrix (``rows``), so mu, var, gamma, beta are (C,) and the count N in
    the backward is batch H W; the trace's x_hat, n, d_n, d_x_hat are in the input's
    (batch, C, H, W) layout.  Running statistics as BatchNorm1d, with the unbiased
    variance's count batch H W (torch's)."""

    EQUATIONS: ClassVar[dict[str, str]] = _Norm.EQUATIONS | {
        "mu": "mu = mean(h, axis=(batch, H, W))   (per channel)",
        "var": "var = mean((h - mu)**2, axis=(batch, H, W))   (biased)",
        "d_gamma": "d_gamma = sum(d_n * x_hat, axis=(batch, H, W))",
        "d_beta": "d_beta = sum(d_n, axis=(batch, H, W))"}
    D_IN: ClassVar[str] = ("d_h = s/N (N d_x_hat - sum(d_x_hat) - x_hat sum(d_x_hat x_hat)) "
                           "over (batch, H, W),  N = batch H W")

    def out_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3 or in_shape[0] != self.num_features:
            raise ValueError(f"{self!r} needs inputs of shape (batch, {self.num_features}, H, "
                             f"W), got (batch, {', '.join(map(str, in_shape))}) from the layer "
                             "before")
        return in_shape

    @staticmethod
    def _as_rows(cache: Cache) -> Cache:
        return cache | {k: rows(cache[k]) for k in ("x_hat", "n") if k in cache}

    def forward(self, p: dict[str, Array], h: Array, ctx: Context) -> tuple[Array, Cache]:
        _, cache = super().forward(p, rows(h), ctx)
        cache = cache | {k: images(cache[k], h.shape) for k in ("x_hat", "n") if k in cache}
        return cache["n"], cache

    def backward(self, p: dict[str, Array], cache: Cache, d_n: Array, ctx: Context,
                 need_d_in: bool = True
                 ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        d_h, grads, inner = super().backward(p, self._as_rows(cache), rows(d_n), ctx, need_d_in)
        return (None if d_h is None else images(d_h, d_n.shape), grads,
                {k: images(v, d_n.shape) for k, v in inner.items()})

    def tangents(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                 p_dot: dict[str, Array], ctx: Context) -> dict[str, Array]:
        shape = cache["x_hat"].shape
        found = super().tangents(p, self._as_rows(cache),
                                 None if h_dot is None else rows(h_dot), p_dot, ctx)
        return found | {k: images(found[k], shape) for k in ("x_hat", "n")}

    def r_backward(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                   p_dot: dict[str, Array], d_n: Array | None, r_d_n: Array, ctx: Context,
                   need_d_in: bool = True
                   ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        r_d_h, r_grads, inner = super().r_backward(
            p, self._as_rows(cache), None if h_dot is None else rows(h_dot), p_dot,
            None if d_n is None else rows(d_n), rows(r_d_n), ctx, need_d_in)
        return ((None if r_d_h is None else images(r_d_h, r_d_n.shape)), r_grads,
                {k: images(v, r_d_n.shape) for k, v in inner.items()})

    def update_state(self, state: dict[str, Array], cache: Cache) -> dict[str, Array]:
        """BatchNorm1d's update with the count batch H W."""
        return super().update_state(state, self._as_rows(cache))


@dataclass(frozen=True)
class GroupNorm:
    """torch.nn.GroupNorm(num_groups, num_channels): each sample's channels in ``num_groups``
    consecutive groups, each group normalized over its channels and positions (eps 1e-5),
    then a per-channel affine gamma, beta (C,).  No batch statistics: a sample is
    normalized on its own, in training and evaluation alike, and has its per-example
    gradient.

    It is LayerNorm without its affine on the rows of a (batch G, C/G * positions) matrix
    -- one row per sample and group (``h.reshape(batch * G, -1)``: a group's channels are
    consecutive) -- so every equation of the norms above holds with the count N = C/G
    positions, and then the affine per channel:

        x_hat   = rows' normalization, back to (batch, C, *spatial)
        n       = gamma[c] x_hat + beta[c]
        d_gamma = sum(d_n * x_hat, axis=(batch, *spatial))   d_beta = sum(d_n, ...)
        d_x_hat = d_n * gamma[c];  d_h = LayerNorm's d_h of d_x_hat on the rows

    mu and var are (batch, G)."""

    num_groups: int
    num_channels: int

    OUT: ClassVar[str] = "n"
    FORWARD: ClassVar[tuple[str, ...]] = ("mu", "var", "x_hat", "n")
    BACKWARD: ClassVar[tuple[str, ...]] = ("d_n", "d_x_hat", "d_gamma", "d_beta")
    EQUATIONS: ClassVar[dict[str, str]] = {
        "mu": "mu = mean(h, axis=(channels of the group, *spatial))   (batch, G)",
        "var": "var = mean((h - mu)**2, same axes)   (biased)",
        "x_hat": "x_hat = (h - mu) / sqrt(var + eps)", "n": "n = gamma[c] * x_hat + beta[c]",
        "d_n": "d_n = d_h_next", "d_x_hat": "d_x_hat = d_n * gamma[c]",
        "d_gamma": "d_gamma = sum(d_n * x_hat, axis=(batch, *spatial))",
        "d_beta": "d_beta = sum(d_n, axis=(batch, *spatial))"}
    D_IN: ClassVar[str] = ("d_h = s/N (N d_x_hat - sum(d_x_hat) - x_hat sum(d_x_hat x_hat)) "
                           "over each sample's group,  N = C/G positions")
    DECAYED: ClassVar[tuple[str, ...]] = ()            # gamma and beta are not decayed

    def __post_init__(self) -> None:
        for name in ("num_groups", "num_channels"):
            object.__setattr__(self, name, positive_int(name, getattr(self, name)))
        if self.num_channels % self.num_groups:
            raise ValueError(f"num_channels must be divisible by num_groups: num_channels="
                             f"{self.num_channels}, num_groups={self.num_groups}")

    def out_shape(self, in_shape: Shape) -> Shape:
        if not in_shape or in_shape[0] != self.num_channels:
            raise ValueError(f"{self!r} needs inputs of shape (batch, {self.num_channels}, "
                             f"*spatial), got (batch, {', '.join(map(str, in_shape))}) from "
                             "the layer before")
        return in_shape

    def param_shapes(self) -> dict[str, Shape]:
        return {"gamma": (self.num_channels,), "beta": (self.num_channels,)}

    def init(self, in_shape: Shape, rng: np.random.Generator, scheme: str,
             dtype: np.dtype[Any]) -> dict[str, Array]:
        """gamma = 1, beta = 0 (no draws), as torch.nn.GroupNorm."""
        return {"gamma": np.ones(self.num_channels, dtype=dtype),
                "beta": np.zeros(self.num_channels, dtype=dtype)}

    # the rows, and the layer norm without affine on them ----------------------------------

    def _rows(self, x: Array) -> Array:
        return x.reshape(x.shape[0] * self.num_groups, -1)

    def _core(self, shape: Shape, dtype: np.dtype[Any]) -> tuple[LayerNorm, dict[str, Array]]:
        """LayerNorm over a group's N = C/G positions, with gamma = 1, beta = 0."""
        width = math.prod(shape[1:]) // self.num_groups
        return LayerNorm(width), {"gamma": np.ones(width, dtype=dtype),
                                  "beta": np.zeros(width, dtype=dtype)}

    def _channel(self, v: Array, ndim: int) -> Array:
        """A (C,) vector broadcast over (batch, C, *spatial)."""
        return v.reshape(-1, *(1,) * (ndim - 2))

    def _sum(self, x: Array) -> Array:
        """The sum over (batch, *spatial): per channel."""
        return x.sum(axis=(0, *range(2, x.ndim)))

    # the contract ----------------------------------------------------------------------

    def forward(self, p: dict[str, Array], h: Array, ctx: Context) -> tuple[Array, Cache]:
        core, unit = self._core(h.shape, h.dtype)
        _, rows_cache = core.forward(unit, self._rows(h), ctx)
        x_hat = rows_cache["x_hat"].reshape(h.shape)
        n = self._channel(p["gamma"], h.ndim) * x_hat + self._channel(p["beta"], h.ndim)
        groups = (h.shape[0], self.num_groups)
        return n, {"mu": rows_cache["mu"].reshape(groups), "var": rows_cache["var"].reshape(groups),
                   "x_hat": x_hat, "n": n, "rows": rows_cache}

    def backward(self, p: dict[str, Array], cache: Cache, d_n: Array, ctx: Context,
                 need_d_in: bool = True
                 ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        x_hat = cache["x_hat"]
        grads = {"gamma": self._sum(d_n * x_hat), "beta": self._sum(d_n)}
        d_x_hat = d_n * self._channel(p["gamma"], d_n.ndim)
        d_h = None
        if need_d_in:
            core, unit = self._core(d_n.shape, d_n.dtype)
            d_h = core.backward(unit, cache["rows"], self._rows(d_x_hat), ctx)[0]
            d_h = d_h.reshape(d_n.shape)                     # type: ignore[union-attr]
        return d_h, grads, {"d_x_hat": d_x_hat}

    def tangent(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                p_dot: dict[str, Array], ctx: Context) -> Array:
        """n_dot (``tangents``' last)."""
        return self.tangents(p, cache, h_dot, p_dot, ctx)["n"]

    def tangents(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                 p_dot: dict[str, Array], ctx: Context) -> dict[str, Array]:
        """The core's tangents on the rows (mu_dot, var_dot (batch, G), x_hat_dot), then the
        affine's product rule: n_dot = gamma_dot[c] x_hat + beta_dot[c] + gamma[c]
        x_hat_dot."""
        x_hat = cache["x_hat"]
        nd = x_hat.ndim
        n_dot = self._channel(p_dot["gamma"], nd) * x_hat + self._channel(p_dot["beta"], nd)
        if h_dot is None:
            return {"mu": np.zeros_like(cache["mu"]), "var": np.zeros_like(cache["var"]),
                    "x_hat": np.zeros_like(x_hat), "n": n_dot}
        core, unit = self._core(x_hat.shape, x_hat.dtype)
        zero = {k: np.zeros_like(v) for k, v in unit.items()}
        found = core.tangents(unit, cache["rows"], self._rows(h_dot), zero, ctx)
        x_hat_dot = found["x_hat"].reshape(x_hat.shape)
        groups = cache["mu"].shape
        return {"mu": found["mu"].reshape(groups), "var": found["var"].reshape(groups),
                "x_hat": x_hat_dot, "n": n_dot + self._channel(p["gamma"], nd) * x_hat_dot}

    def r_backward(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                   p_dot: dict[str, Array], d_n: Array | None, r_d_n: Array, ctx: Context,
                   need_d_in: bool = True
                   ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        """The affine's product rule here, the normalization's R-operator the core's:
        R{d_x_hat} = R{d_n} gamma + d_n gamma_dot, R{d_gamma} = sum(R{d_n} x_hat + d_n
        x_hat_dot), R{d_beta} = sum(R{d_n})."""
        x_hat, nd = cache["x_hat"], r_d_n.ndim
        gamma, gamma_dot = self._channel(p["gamma"], nd), self._channel(p_dot["gamma"], nd)
        core, unit = self._core(x_hat.shape, x_hat.dtype)
        zero = {k: np.zeros_like(v) for k, v in unit.items()}
        r_d_x_hat = r_d_n * gamma
        r_gamma = self._sum(r_d_n * x_hat)
        d_x_hat = None
        if d_n is not None:
            r_d_x_hat = r_d_x_hat + d_n * gamma_dot
            d_x_hat = self._rows(d_n * gamma)
            if h_dot is not None:
                rows_cache = cache["rows"]           # the core's: a layer norm on the rows
                _, x_hat_dot = normalize_tangent("layer", rows_cache["x_hat"],
                                                        rows_cache["var"], self._rows(h_dot))
                r_gamma = r_gamma + self._sum(d_n * np.reshape(x_hat_dot, x_hat.shape))
        r_d_h, _, _ = core.r_backward(unit, cache["rows"],
                                      None if h_dot is None else self._rows(h_dot), zero,
                                      d_x_hat, self._rows(r_d_x_hat), ctx, need_d_in)
        return (None if r_d_h is None else r_d_h.reshape(r_d_n.shape),
                {"gamma": r_gamma, "beta": self._sum(r_d_n)}, {"d_x_hat": r_d_x_hat})

    def per_example(self, p: dict[str, Array], cache: Cache, d_n: Array, ctx: Context
                    ) -> dict[str, Array]:
        """Each sample is normalized on its own: d_gamma_i = sum over positions of
        d_n_i x_hat_i, d_beta_i = sum of d_n_i."""
        spatial = tuple(range(2, d_n.ndim))
        return {"gamma": (d_n * cache["x_hat"]).sum(axis=spatial),
                "beta": d_n.sum(axis=spatial)}

    def init_state(self, in_shape: Shape, dtype: np.dtype[Any]) -> dict[str, Array]:
        return {}

    def update_state(self, state: dict[str, Array], cache: Cache) -> dict[str, Array]:
        return state
