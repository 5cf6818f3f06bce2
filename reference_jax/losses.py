"""Losses from optax.losses where one matches, else jax.numpy, as (z, a, y, reduction).

``TERMS`` holds each loss before the reduction: one term per element, or one
per row for softmax cross-entropy.  "mean" averages the terms (batch * n_out
elements, or the batch's rows), "sum" adds them, as in handwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from handwritten.checks import counterpart

Terms = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
LossFn = Callable[[jax.Array, jax.Array, jax.Array, str], jax.Array]


def _softmax_ce(z: jax.Array, a: jax.Array, y: jax.Array) -> jax.Array:
    """Per-row cross-entropy from integer labels (batch,) or probability rows (batch, n_out)."""
    if y.ndim == 1:
        return optax.losses.softmax_cross_entropy_with_integer_labels(z, y)
    return optax.losses.softmax_cross_entropy(z, y)


TERMS: dict[str, Terms] = {
    "half_mse": lambda z, a, y: optax.losses.l2_loss(a, y),             # (a - y)**2 / 2
    "mse": lambda z, a, y: optax.losses.squared_error(a, y),
    # optax has binary cross-entropy for logits only; on probabilities it is written out
    "bce": lambda z, a, y: -(y * jnp.log(a) + (1 - y) * jnp.log1p(-a)),
    "bce_with_logits": lambda z, a, y: optax.losses.sigmoid_binary_cross_entropy(z, y),
    "softmax_cross_entropy": _softmax_ce,
}


def _reduced(terms: Terms) -> LossFn:
    def loss(z: jax.Array, a: jax.Array, y: jax.Array, reduction: str) -> jax.Array:
        per_item = terms(z, a, y)
        return jnp.mean(per_item) if reduction == "mean" else jnp.sum(per_item)
    return loss


LOSSES: dict[str, LossFn] = {name: _reduced(terms) for name, terms in TERMS.items()}


def loss(name: str) -> LossFn:
    """The loss of a name; NotImplementedError for a name handwritten has and this table
    has not."""
    return counterpart(LOSSES, "loss", name, "reference_jax/losses.py")


def gauss_newton(loss_input: Callable[[Any], jax.Array], params: Any, v: Any, name: str,
                 y: jax.Array, reduction: str) -> Any:
    """J^T H_loss J v, J the Jacobian of ``loss_input`` (params -> the loss's input) in the
    params: jax.jvp forward, the loss's Hessian in its input by jax.jvp of jax.grad, jax.vjp
    back.  Each loss reads only its own input (z for a fused loss, a otherwise)."""
    def loss_of(o: jax.Array) -> jax.Array:
        return loss(name)(o, o, y, reduction)

    o, j_v = jax.jvp(loss_input, (params,), (v,))
    _, h_j_v = jax.jvp(jax.grad(loss_of), (o,), (j_v,))
    _, pullback = jax.vjp(loss_input, params)
    (product,) = pullback(h_j_v)
    return product

