"""Forward mode and per-example gradients through JAX: nothing derived by hand.

    jvp                  jax.jvp of the network's output in the params
    per_example_grads    jax.vmap(jax.grad(one sample's loss)), times the reduction's share
                         of that sample (1/batch under "mean")
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from handwritten import checks
from handwritten.spec import NetworkSpec, Params
from reference_jax.network import forward, from_jax, loss_value, to_jax
from reference_jax.precision import float64


@float64
def jvp(spec: NetworkSpec, params: Params, x: np.ndarray, v: Params
        ) -> tuple[np.ndarray, np.ndarray]:
    """handwritten.derivatives.jvp's contract, by jax.jvp."""
    dtype = checks.check_x(spec, x)
    checks.check_params(spec, params, dtype)
    checks.check_params(spec, v, dtype, name="v")
    jx = jnp.asarray(x)
    out, tangent = jax.jvp(lambda p: forward(spec, p, jx)[0], (to_jax(params),), (to_jax(v),))
    return np.array(out), np.array(tangent)


@float64
def per_example_grads(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray
                      ) -> Params:
    """handwritten.derivatives.per_example_grads' contract, by jax.vmap over jax.grad of
    each sample's loss (a batch of one, the data term only), times 1/batch under "mean"."""
    checks.check_problem(spec, params, x, y)
    data = dataclasses.replace(spec, weight_decay=0.0)

    def one(p: list[dict[str, jax.Array]], xi: jax.Array, yi: jax.Array) -> jax.Array:
        _, cache = forward(data, p, xi[None])
        return loss_value(data, p, cache, yi[None])

    share = 1.0 / x.shape[0] if spec.reduction == "mean" else 1.0
    grads = jax.vmap(jax.grad(one), in_axes=(None, 0, 0))(to_jax(params), jnp.asarray(x),
                                                          jnp.asarray(y))
    return [{k: g * share for k, g in layer.items()} for layer in from_jax(grads)]
