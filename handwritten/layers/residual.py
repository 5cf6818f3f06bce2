"""Residual: a skip connection around a sequence of layers (its ``body``).

    out  = body(h) + h                  (batch, *shape)   body keeps the shape
    d_h  = d_body_in + d_out            the skip carries d_out straight down, and the
                                        body's own backward adds its path
    out_dot = body_dot + h_dot

The body is folded like the network itself (``handwritten.layers.fold``); this file holds
only the join and its derivative.  Its params are its layers' (it has none of its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from handwritten.layers.base import Array, Shape, Stateless


@dataclass(frozen=True)
class Residual(Stateless):
    """out = body(h) + h, with ``body`` a non-empty tuple of layers that keeps the shape."""

    body: tuple[object, ...]

    OUT: ClassVar[str] = "out"
    FORWARD: ClassVar[tuple[str, ...]] = ("out",)
    BACKWARD: ClassVar[tuple[str, ...]] = ("d_out",)
    EQUATIONS: ClassVar[dict[str, str]] = {"out": "out = body(h) + h",
                                           "d_out": "d_out = d_h_next"}
    D_IN: ClassVar[str] = "d_h = d_body_in + d_out"

    def __init__(self, body: Sequence[object]) -> None:
        if isinstance(body, (str, bytes)) or not isinstance(body, Sequence):
            raise TypeError(f"Residual's body must be a sequence of layers, got "
                            f"{type(body).__name__}")
        if not body:
            raise ValueError("Residual's body is empty: give it at least one layer")
        object.__setattr__(self, "body", tuple(body))

    def __repr__(self) -> str:
        return f"Residual([{', '.join(map(repr, self.body))}])"

    def out_shape(self, in_shape: Shape) -> Shape:
        return in_shape                  # checked against the body's by ``Sequential``

    @staticmethod
    def join(body_out: Array, h: Array) -> Array:
        return body_out + h

    @staticmethod
    def join_backward(d_out: Array, d_body_in: Array) -> Array:
        return d_body_in + d_out         # a fresh array: d_out stays as the trace holds it
