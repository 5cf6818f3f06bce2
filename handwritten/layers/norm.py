"""BatchNorm1d and LayerNorm: one normalization along different axes, then gamma, beta.

    mu, var = mean and biased variance along the axis     (batch norm: over the batch,
    x_hat   = (h - mu) / sqrt(var + eps)                    per feature; layer norm: over
    n       = gamma * x_hat + beta                          a sample's features)

and the backward's compact form, N the count along the axis, s = 1 / sqrt(var + eps):

    d_gamma = sum(d_n * x_hat, axis=0)      d_beta = sum(d_n, axis=0)
    d_x_hat = d_n * gamma
    d_h     = s / N * (N d_x_hat - sum(d_x_hat) - x_hat * sum(d_x_hat * x_hat))

(``handwritten.blocks`` holds the arithmetic; docs/derivation.md derives it node by node.)
Forward mode, the same graph differentiated forwards, with c = h - mu:

    c_dot     = h_dot - mean(h_dot)
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

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from handwritten import blocks
from handwritten.layers.base import Array, Cache, Context, Shape, features
from handwritten.spec import BATCH_NORM_MOMENTUM, NORM_EPS, positive_int


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
        x_hat = cache["x_hat"]
        n_dot = p_dot["gamma"] * x_hat + p_dot["beta"]
        if h_dot is None:
            return n_dot
        if "mu" not in cache:                     # evaluation mode: a fixed affine map
            inv_std = 1 / np.sqrt(ctx.state["var"] + NORM_EPS)   # type: ignore[index]
            return n_dot + p["gamma"] * h_dot * inv_std
        _, x_hat_dot = self._input_tangent(cache, h_dot)
        return n_dot + p["gamma"] * x_hat_dot

    def _input_tangent(self, cache: Cache, h_dot: Array | None) -> tuple[Any, Any]:
        """(var_dot, x_hat_dot) of the training-mode statistics along h_dot (the tangent's)."""
        if h_dot is None:
            return 0.0, 0.0
        axis = blocks.AXES[self.NORM]
        x_hat = cache["x_hat"]
        inv_std = 1 / np.sqrt(np.expand_dims(cache["var"], axis) + NORM_EPS)
        c_dot = h_dot - h_dot.mean(axis=axis, keepdims=True)
        var_dot = 2 * np.mean(x_hat * c_dot, axis=axis, keepdims=True) / inv_std
        return var_dot, inv_std * c_dot - x_hat * var_dot * inv_std**2 / 2

    def r_backward(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                   p_dot: dict[str, Array], d_n: Array | None, r_d_n: Array, ctx: Context,
                   need_d_in: bool = True) -> tuple[Array | None, dict[str, Array]]:
        """Training mode (the batch's statistics), as ``backward``; module docstring."""
        axis = blocks.AXES[self.NORM]
        x_hat, gamma = cache["x_hat"], p["gamma"]
        count = x_hat.shape[axis]
        inv_std = 1 / np.sqrt(np.expand_dims(cache["var"], axis) + NORM_EPS)
        var_dot, x_hat_dot = self._input_tangent(cache, h_dot)
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
        return r_d_h, {"gamma": r_gamma, "beta": r_d_n.sum(axis=0)}

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
            "batch norm for the same reason); use LayerNorm, or no norm")

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
