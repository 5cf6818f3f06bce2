"""Activations as jax.nn / jax.numpy functions; JAX autograd supplies every derivative."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from handwritten.activations import ELU_ALPHA, LEAKY_RELU_SLOPE

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "leaky_relu": lambda z: jax.nn.leaky_relu(z, negative_slope=LEAKY_RELU_SLOPE),
    "elu": lambda z: jax.nn.elu(z, alpha=ELU_ALPHA),
    "softplus": jax.nn.softplus,
    "gelu": lambda z: jax.nn.gelu(z, approximate=True),
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "identity": lambda z: z,
    "softmax": lambda z: jax.nn.softmax(z, axis=1),
}
