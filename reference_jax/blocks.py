"""A hidden block's optional parts in jax.numpy, every derivative from jax.grad.

Batch norm (training mode, torch.nn.BatchNorm1d's semantics) and layer norm
(torch.nn.LayerNorm's) written out: mean and biased variance along the norm's axis, x_hat,
then gamma * x_hat + beta.  JAX has no batch-norm primitive of its own (flax's and haiku's
are written the same way); autograd differentiates through the mean and the variance.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from handwritten.checks import counterpart
from handwritten.spec import BATCH_NORM_MOMENTUM, NORM_EPS, NetworkSpec

AXES = {"batch": 0, "layer": 1}
"""Every norm by name, as the axis its statistics are taken along."""


def normalize(norm: str, z: jax.Array, gamma: jax.Array, beta: jax.Array,
              d_x_hat: jax.Array | None = None) -> dict[str, jax.Array]:
    """{"mu", "var", "x_hat", "n"} of handwritten.blocks.normalize (x_hat + d_x_hat: a zero
    perturbation whose gradient is d_x_hat, for the trace); NotImplementedError for a norm
    handwritten has and AXES has not."""
    axis = counterpart(AXES, "norm", norm, "reference_jax/blocks.py")
    mu = jnp.mean(z, axis=axis, keepdims=True)
    var = jnp.mean((z - mu) ** 2, axis=axis, keepdims=True)
    x_hat = (z - mu) / jnp.sqrt(var + NORM_EPS)
    if d_x_hat is not None:
        x_hat = x_hat + d_x_hat
    return {"mu": jnp.squeeze(mu, axis), "var": jnp.squeeze(var, axis), "x_hat": x_hat,
            "n": x_hat * gamma + beta}


def dropout(h: jax.Array, mask: jax.Array, p: float) -> jax.Array:
    """Inverted dropout with the given keep-mask: h * m / (1 - p)."""
    return h * mask / (1 - p)


def normalize_running(z: jax.Array, mean: jax.Array, var: jax.Array, gamma: jax.Array,
                      beta: jax.Array) -> dict[str, jax.Array]:
    """Batch norm in evaluation mode: the running statistics in place of the batch's."""
    x_hat = (z - mean) / jnp.sqrt(var + NORM_EPS)
    return {"x_hat": x_hat, "n": x_hat * gamma + beta}


def init_running(spec: NetworkSpec, dtype: Any) -> list[dict[str, jax.Array]]:
    """Batch norm's running statistics before the first step, as torch.nn.BatchNorm1d starts
    them (flax's BatchNorm the same): mean 0, variance 1 on every layer with batch norm, {}
    on every other."""
    return [{"mean": jnp.zeros(n, dtype), "var": jnp.ones(n, dtype)}
            if spec.norm(l) == "batch" else {} for l, n in enumerate(spec.layer_sizes[1:])]


def running_update(running: dict[str, jax.Array], mu: jax.Array, var: jax.Array, batch: int
                   ) -> dict[str, jax.Array]:
    """torch.nn.BatchNorm1d's documented update, written in jnp (JAX has no batch-norm
    layer of its own; flax's BatchNorm states the same rule): momentum 0.1 towards the
    batch mean and the unbiased batch variance."""
    m = BATCH_NORM_MOMENTUM
    return {"mean": (1 - m) * running["mean"] + m * mu,
            "var": (1 - m) * running["var"] + m * var * (batch / (batch - 1))}
