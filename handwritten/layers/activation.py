"""Activation: an elementwise (or, for softmax, row-wise) function a = f(z), by name.

    a   = f(z)                      (batch, features)
    d_z = f'(z) * d_a               each activation's backward (``handwritten.activations``),
                                    written with its output where that is cheaper
    a_dot = f'(z) * z_dot           forward mode: the same Jacobian (symmetric: softmax's too)

    R{d_z} = f'(z) * R{d_a} + d_a * f''(z) * z_dot      the R-operator (hvp); the second
                                                     term is the registry's ``second``

Every registered activation name is a layer: ``Activation("tanh")``,
``Activation("leaky_relu:0.2")``.  softmax couples a row's units, so it is allowed only
as the last layer (``Sequential`` checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from handwritten.activations import ACTIVATIONS, activation
from handwritten.layers.base import Array, Cache, Context, Shape, Stateless


@dataclass(frozen=True)
class Activation(Stateless):
    """f applied to every unit: torch.nn.Tanh, ReLU, ... by the registry's name."""

    name: str

    OUT: ClassVar[str] = "a"
    FORWARD: ClassVar[tuple[str, ...]] = ("a",)
    BACKWARD: ClassVar[tuple[str, ...]] = ("d_a",)
    EQUATIONS: ClassVar[dict[str, str]] = {"a": "a = f(z)", "d_a": "d_a = d_h_next"}

    @property
    def D_IN(self) -> str:
        """d_z from d_a: the registry's derivative (``bpnet explain`` prints it)."""
        return f"d_z = {activation(self.name).derivative}"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"Activation's name must be a str, got {type(self.name).__name__}")
        if self.name.partition(":")[0] not in ACTIVATIONS:
            raise ValueError(f"Activation name is unknown: {self.name!r}; expected one of "
                             f"{sorted(ACTIVATIONS)}")
        try:
            activation(self.name)
        except ValueError as error:
            raise ValueError(f"Activation name is not valid: {error}") from None

    @property
    def output_only(self) -> bool:
        """True for an activation that couples a row's units (softmax): last layer only."""
        return activation(self.name).output_only

    def equation(self) -> str:
        """The backward's equation from the registry (``bpnet explain``)."""
        return activation(self.name).derivative

    def out_shape(self, in_shape: Shape) -> Shape:
        return in_shape

    def forward(self, p: dict[str, Array], z: Array, ctx: Context) -> tuple[Array, Cache]:
        a = activation(self.name).forward(z)
        return a, {"z": z, "a": a}

    def backward(self, p: dict[str, Array], cache: Cache, d_a: Array, ctx: Context,
                 need_d_in: bool = True
                 ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        return activation(self.name).backward(cache["z"], cache["a"], d_a), {}, {}

    def r_backward(self, p: dict[str, Array], cache: Cache, z_dot: Array | None,
                   p_dot: dict[str, Array], d_a: Array | None, r_d_a: Array, ctx: Context,
                   need_d_in: bool = True
                   ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        entry = activation(self.name)
        r_d_z = entry.backward(cache["z"], cache["a"], r_d_a)          # f'(z) * R{d_a}
        if d_a is not None and z_dot is not None:
            if entry.second is None:
                raise ValueError(f"{self!r} has no hand-derived second derivative: hvp and "
                                 "gnvp cannot take it")
            r_d_z = r_d_z + entry.second(cache["z"], cache["a"], d_a, z_dot)
        return r_d_z, {}, {}

    def tangent(self, p: dict[str, Array], cache: Cache, z_dot: Array | None,
                p_dot: dict[str, Array], ctx: Context) -> Array:
        assert z_dot is not None, "an activation's input always has a tangent"
        return activation(self.name).backward(cache["z"], cache["a"], z_dot)
