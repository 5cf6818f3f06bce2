"""Dropout: inverted dropout with a given keep-mask m of 0s and 1s (torch.nn.Dropout).

    out = h * m / (1 - p)           (batch, features)   training, with a mask
    d_h = d_out * m / (1 - p)       the same mask and rescaling on the way down
    out = h                         evaluation, or no mask given

The mask is an input (``masks=``), never drawn here: every implementation uses the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from handwritten import blocks
from handwritten.layers.base import Array, Cache, Context, LinearInInput, Shape
from handwritten.spec import finite_real


@dataclass(frozen=True)
class Dropout(LinearInInput):
    """Drop probability p in [0, 1)."""

    p: float = 0.5

    OUT: ClassVar[str] = "out"
    FORWARD: ClassVar[tuple[str, ...]] = ("out",)
    BACKWARD: ClassVar[tuple[str, ...]] = ("d_out",)
    EQUATIONS: ClassVar[dict[str, str]] = {"out": "out = h * m / (1 - p)",
                                           "d_out": "d_out = d_h_next"}
    D_IN: ClassVar[str] = "d_h = d_out * m / (1 - p)"

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", finite_real("Dropout p", self.p, low=0.0, high=1.0))

    def out_shape(self, in_shape: Shape) -> Shape:
        return in_shape

    def forward(self, p: dict[str, Array], h: Array, ctx: Context) -> tuple[Array, Cache]:
        if ctx.mask is None or not self.p:
            return h, {"mask": None}
        mask = np.asarray(ctx.mask, dtype=h.dtype)    # bools or ints: never a float64 upcast
        return blocks.dropout(h, mask, self.p), {"mask": mask}

    def backward(self, p: dict[str, Array], cache: Cache, d_out: Array, ctx: Context,
                 need_d_in: bool = True
                 ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        if cache["mask"] is None:
            return d_out, {}, {}
        return blocks.dropout_backward(d_out, cache["mask"], self.p), {}, {}

    def tangent(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                p_dot: dict[str, Array], ctx: Context) -> Array:
        assert h_dot is not None
        if cache["mask"] is None:
            return h_dot
        return blocks.dropout(h_dot, cache["mask"], self.p)     # linear in h
