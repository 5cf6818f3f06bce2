"""Activations as jax.nn / jax.numpy functions; JAX autograd supplies every derivative."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp

from handwritten.activations import CELU_ALPHA, ELU_ALPHA, LEAKY_RELU_SLOPE, split_name

ACTIVATIONS: dict[str, Callable[..., jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "leaky_relu": lambda z, p=LEAKY_RELU_SLOPE: jax.nn.leaky_relu(z, negative_slope=p),
    "elu": lambda z, p=ELU_ALPHA: jax.nn.elu(z, alpha=p),
    "celu": lambda z, p=CELU_ALPHA: jax.nn.celu(z, alpha=p),
    "selu": jax.nn.selu,
    "softplus": jax.nn.softplus,
    "gelu": lambda z: jax.nn.gelu(z, approximate=True),
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "identity": lambda z: z,
    "softmax": lambda z: jax.nn.softmax(z, axis=1),
}
"""Every activation by name; a parametrised one takes its parameter as ``p``."""

PARAMETRISED = frozenset({"leaky_relu", "elu", "celu"})


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The function of an activation name, its parameter bound ("leaky_relu:0.2")."""
    base, value = split_name(name)
    return ACTIVATIONS[base] if value is None else partial(ACTIVATIONS[base], p=value)
