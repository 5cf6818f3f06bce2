"""Losses from optax.losses where one matches, else jax.numpy, as (z, a, y, reduction).

"mean" averages every element for the elementwise losses (batch * n_out) and the
rows for softmax cross-entropy, as in handwritten.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

LossFn = Callable[[jax.Array, jax.Array, jax.Array, str], jax.Array]


def _reduce(per_item: jax.Array, reduction: str) -> jax.Array:
    return jnp.mean(per_item) if reduction == "mean" else jnp.sum(per_item)


def _softmax_ce(z: jax.Array, y: jax.Array) -> jax.Array:
    """Per-row cross-entropy from integer labels (batch,) or probability rows (batch, n_out)."""
    if y.ndim == 1:
        return optax.losses.softmax_cross_entropy_with_integer_labels(z, y)
    return optax.losses.softmax_cross_entropy(z, y)


LOSSES: dict[str, LossFn] = {
    "half_mse": lambda z, a, y, r: _reduce(optax.losses.l2_loss(a, y), r),   # (a - y)**2 / 2
    "mse": lambda z, a, y, r: _reduce(optax.losses.squared_error(a, y), r),
    # optax has binary cross-entropy for logits only; on probabilities it is written out
    "bce": lambda z, a, y, r: _reduce(-(y * jnp.log(a) + (1 - y) * jnp.log1p(-a)), r),
    "bce_with_logits": lambda z, a, y, r: _reduce(
        optax.losses.sigmoid_binary_cross_entropy(z, y), r),
    "softmax_cross_entropy": lambda z, a, y, r: _reduce(_softmax_ce(z, y), r),
}
