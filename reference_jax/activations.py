"""Activations as jax.nn / jax.numpy functions; JAX autograd supplies every derivative."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp

from handwritten.activations import (
    CELU_ALPHA,
    ELU_ALPHA,
    LEAKY_RELU_SLOPE,
    SELU_ALPHA,
    SELU_SCALE,
)
from handwritten.checks import counterpart


def expm1(u: jax.Array) -> jax.Array:
    """e^u - 1, with a JAX derivative accurate for every u.

    jnp.expm1's derivative rule is (ans + 1), which cancels as e^u approaches 0: at
    u = -27 it keeps only 4 digits of e^u (jax.nn.elu, celu and selu inherit this: celu
    with a small alpha reaches such u at moderate z).  Below u = -1, exp(u) - 1 has no
    cancellation, and exp's derivative is exp(u) itself; each branch sees only its own
    inputs, so neither yields a NaN or inf the other would multiply by 0.
    """
    above = u > -1                      # where, not minimum: a tie's derivative is 1/2
    return jnp.where(above, jnp.expm1(jnp.where(above, u, -1.0)),
                     jnp.exp(jnp.where(above, -1.0, u)) - 1)


def elu(z: jax.Array, alpha: float = ELU_ALPHA) -> jax.Array:
    """jax.nn.elu's formula (alpha at z = 0, as torch), through the accurate expm1."""
    return jnp.where(z > 0, z, alpha * expm1(jnp.where(z > 0, 0.0, z)))


def celu(z: jax.Array, alpha: float = CELU_ALPHA) -> jax.Array:
    """jax.nn.celu's value, alpha * expm1(z / alpha) for z <= 0, through the accurate
    expm1 (and a where, not jax.nn.celu's minimum, whose derivative at a tie is 1/2)."""
    return jnp.where(z > 0, z, alpha * expm1(jnp.where(z > 0, 0.0, z) / alpha))


def leaky_relu(z: jax.Array, slope: float = LEAKY_RELU_SLOPE) -> jax.Array:
    """torch's leaky_relu, slope * z for z <= 0, as a where on z > 0: jax.nn.leaky_relu's
    derivative at exactly 0 is 1 (z >= 0), torch's the slope, and exact zeros reach it (a
    dropped unit, relu's flat side, in a Sequential's layers)."""
    return jnp.where(z > 0, z, slope * z)


ACTIVATIONS: dict[str, Callable[..., jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "leaky_relu": lambda z, p=LEAKY_RELU_SLOPE: leaky_relu(z, p),
    "elu": lambda z, p=ELU_ALPHA: elu(z, p),
    "celu": lambda z, p=CELU_ALPHA: celu(z, p),
    "selu": lambda z: SELU_SCALE * elu(z, SELU_ALPHA),           # jax.nn.selu's formula
    "softplus": jax.nn.softplus,
    "gelu": lambda z: jax.nn.gelu(z, approximate=True),
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "identity": lambda z: z,
    "softmax": lambda z: jax.nn.softmax(z, axis=1),
}
"""Every activation by name; a parametrised one takes its parameter as ``p``."""

DEFAULTS = {"leaky_relu": LEAKY_RELU_SLOPE, "elu": ELU_ALPHA, "celu": CELU_ALPHA}
"""The activations that take a parameter ("leaky_relu:0.2"), and its value without one."""

PARAMETRISED = frozenset(DEFAULTS)


def split(name: str) -> tuple[str, float | None]:
    """"leaky_relu:0.2" -> ("leaky_relu", 0.2); "tanh" -> ("tanh", None).  The name was
    validated by NetworkSpec; its parameter is read here, not by handwritten's split_name,
    which is code under test."""
    base, _, value = name.partition(":")
    return base, float(value) if value else None


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The function of an activation name, its parameter bound ("leaky_relu:0.2");
    NotImplementedError for a name handwritten has and this table has not."""
    base, value = split(name)
    op = counterpart(ACTIVATIONS, "activation", base, "reference_jax/activations.py")
    return op if value is None else partial(op, p=value)
