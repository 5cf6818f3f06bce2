"""Dense: the affine map z = h @ W + b, the blog's orientation (a row is one sample).

    z   = h @ W + b                 (batch, out_features)
    d_W = h.T @ d_z + lambda W      (in_features, out_features)   lambda: weight decay
    d_b = d_z.sum(axis=0)           (out_features,)
    d_h = d_z @ W.T                 (batch, in_features)

Forward mode along (h_dot, W_dot, b_dot), the product rule on z:

    z_dot = h @ W_dot + b_dot + h_dot @ W

Per sample i (its own term of the loss; d_z's row i is that term's gradient):
d_W_i = outer(h_i, d_z_i), d_b_i = d_z_i.

The R-operator (Pearlmutter: the backward differentiated along the same direction, for the
Hessian-vector product), the product rule on each line of the backward:

    R{d_W} = h.T @ R{d_z} + h_dot.T @ d_z + lambda W_dot
    R{d_b} = R{d_z}.sum(axis=0)
    R{d_h} = R{d_z} @ W.T + d_z @ W_dot.T

(Gauss-Newton drops the terms with d_z: the loss's gradient is taken as 0.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from handwritten.layers.base import Array, Cache, Context, Shape, features
from handwritten.spec import positive_int

INIT_SCHEMES = ("blog", "glorot_uniform", "glorot_normal", "he_normal")


def draw_weight(scheme: str, fan_in: int, fan_out: int, rng: np.random.Generator,
                shape: Shape | None = None) -> Array:
    """A float64 (fan_in, fan_out) weight drawn from ``rng`` by one of ``INIT_SCHEMES``
    (of ``shape`` when given: a convolution's kernel, its fans as torch counts them):

    - ``"blog"``: W ~ N(0, 1), the blog post's choice;
    - ``"glorot_uniform"``: W ~ U(-r, r), r = sqrt(6 / (fan_in + fan_out));
    - ``"glorot_normal"``: W ~ N(0, s^2), s = sqrt(2 / (fan_in + fan_out));
    - ``"he_normal"``: W ~ N(0, s^2), s = sqrt(2 / fan_in).
    """
    shape = (fan_in, fan_out) if shape is None else shape
    if scheme == "blog":
        return rng.normal(0.0, 1.0, size=shape)
    if scheme == "glorot_uniform":
        r = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-r, r, size=shape)
    if scheme == "glorot_normal":
        return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), size=shape)
    if scheme == "he_normal":
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)
    # the callers check the name against INIT_SCHEMES: one registered without its rule
    # lands here, and never draws another scheme's weights
    raise NotImplementedError(f"init scheme {scheme!r} is in INIT_SCHEMES but draw_weight "
                              "has no rule for it")


@dataclass(frozen=True)
class Dense:
    """torch.nn.Linear's affine map, with W stored as (in_features, out_features)."""

    in_features: int
    out_features: int

    OUT: ClassVar[str] = "z"
    FORWARD: ClassVar[tuple[str, ...]] = ("z",)
    BACKWARD: ClassVar[tuple[str, ...]] = ("d_z", "d_W", "d_b")
    EQUATIONS: ClassVar[dict[str, str]] = {
        "z": "z = h @ W + b",
        "d_z": "d_z = d_h_next (from the layer above)",
        "d_W": "d_W = h.T @ d_z (+ weight_decay * W)",
        "d_b": "d_b = d_z.sum(axis=0)",
    }
    D_IN: ClassVar[str] = "d_h = d_z @ W.T"
    DECAYED: ClassVar[tuple[str, ...]] = ("W",)       # the bias is not decayed

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_features", positive_int("in_features", self.in_features))
        object.__setattr__(self, "out_features",
                           positive_int("out_features", self.out_features))

    def out_shape(self, in_shape: Shape) -> Shape:
        if features(self, in_shape) != self.in_features:
            raise ValueError(f"{self!r} needs inputs of shape (batch, {self.in_features}), "
                             f"got (batch, {in_shape[0]}) from the layer before")
        return (self.out_features,)

    def param_shapes(self) -> dict[str, Shape]:
        return {"W": (self.in_features, self.out_features), "b": (self.out_features,)}

    def init(self, in_shape: Shape, rng: np.random.Generator, scheme: str,
             dtype: np.dtype[Any]) -> dict[str, Array]:
        """W from ``draw_weight`` in float64, then cast (float32 and float64 params from one
        seed agree to float32 rounding); b = 0."""
        w = draw_weight(scheme, self.in_features, self.out_features, rng)
        return {"W": w.astype(dtype), "b": np.zeros(self.out_features, dtype=dtype)}

    # The products of forward and backward are np.dot(u, v): for 2-D arrays the very
    # product u @ v (the same BLAS call, the same numbers), with a fraction of the @
    # operator's fixed cost -- which, on the blog's (100, 10) arrays, is most of a step.

    def forward(self, p: dict[str, Array], h: Array, ctx: Context) -> tuple[Array, Cache]:
        z = np.dot(h, p["W"])                             # h @ W: (batch, out_features)
        z += p["b"]                                       # in place: z is a fresh array
        return z, {"h": h, "z": z}

    def backward(self, p: dict[str, Array], cache: Cache, d_z: Array, ctx: Context,
                 need_d_in: bool = True
                 ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        d_W = np.dot(cache["h"].T, d_z)                   # h.T @ d_z: (in_features, out_features)
        if ctx.weight_decay:
            d_W += ctx.weight_decay * p["W"]              # d_W is a fresh array
        grads = {"W": d_W, "b": d_z.sum(axis=0)}          # d_b: (out_features,)
        d_h = np.dot(d_z, p["W"].T) if need_d_in else None   # d_z @ W.T: (batch, in_features)
        return d_h, grads, {}

    def tangent(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                p_dot: dict[str, Array], ctx: Context) -> Array:
        z_dot = cache["h"] @ p_dot["W"] + p_dot["b"]      # h @ W_dot + b_dot
        if h_dot is not None:
            z_dot += h_dot @ p["W"]                       # + h_dot @ W
        return z_dot

    def r_backward(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                   p_dot: dict[str, Array], d_z: Array | None, r_d_z: Array, ctx: Context,
                   need_d_in: bool = True
                   ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        r_d_W = cache["h"].T @ r_d_z                      # h.T @ R{d_z}
        if d_z is not None and h_dot is not None:
            r_d_W += h_dot.T @ d_z                        # + R{h}.T @ d_z
        if ctx.weight_decay:
            r_d_W += ctx.weight_decay * p_dot["W"]        # + lambda W_dot
        r_d_h = None
        if need_d_in:
            r_d_h = r_d_z @ p["W"].T                      # R{d_z} @ W.T
            if d_z is not None:
                r_d_h += d_z @ p_dot["W"].T               # + d_z @ R{W}.T
        return r_d_h, {"W": r_d_W, "b": r_d_z.sum(axis=0)}, {}

    def per_example(self, p: dict[str, Array], cache: Cache, d_z: Array, ctx: Context
                    ) -> dict[str, Array]:
        h = cache["h"]
        return {"W": h[:, :, None] * d_z[:, None, :],     # outer products, per row
                "b": d_z.copy()}

    def init_state(self, in_shape: Shape, dtype: np.dtype[Any]) -> dict[str, Array]:
        return {}

    def update_state(self, state: dict[str, Array], cache: Cache) -> dict[str, Array]:
        return state
