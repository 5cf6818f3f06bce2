"""The network through JAX autograd: loss_and_grads, trace, predict.

Params cross the boundary through one conversion pair, ``to_jax`` / ``from_jax``,
keeping W as (fan_in, fan_out).  The trace's d_z and d_a come from autograd too:
the loss is written as a function of zero perturbations added to every z and a,
and its gradient with respect to a perturbation is exactly dL/dz or dL/da.
Compiled functions are cached per spec (a static argument) and per shape.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from handwritten import checks
from handwritten.spec import NetworkSpec, Params, Trace
from reference_jax.activations import activation
from reference_jax.losses import LOSSES
from reference_jax.precision import float64

JaxParams = list[dict[str, jax.Array]]


@float64
def to_jax(params: Params) -> JaxParams:
    """NumPy params as JAX arrays of the same dtype (float64 stays float64: see precision)."""
    return [{k: jnp.asarray(v) for k, v in p.items()} for p in params]


def from_jax(tree: JaxParams) -> Params:
    """JAX params (or grads) as writable NumPy arrays of the same dtype."""
    return [{k: np.array(v) for k, v in p.items()} for p in tree]


def forward(spec: NetworkSpec, params: JaxParams, x: jax.Array,
            dz: list[jax.Array] | None = None, da: list[jax.Array] | None = None
            ) -> tuple[jax.Array, list[dict[str, jax.Array]]]:
    """z = a_prev @ W + b (+ dz), a = f(z) (+ da), layer by layer."""
    cache = []
    a = x
    for l, (p, name) in enumerate(zip(params, spec.activations)):
        z = a @ p["W"] + p["b"]
        if dz is not None:
            z = z + dz[l]
        a = activation(name)(z)
        if da is not None:
            a = a + da[l]
        cache.append({"z": z, "a": a})
    return a, cache


def loss_value(spec: NetworkSpec, params: JaxParams, cache: list[dict[str, jax.Array]],
               y: jax.Array) -> jax.Array:
    """The loss plus weight_decay / 2 * sum ||W||^2."""
    loss = LOSSES[spec.loss](cache[-1]["z"], cache[-1]["a"], y, spec.reduction)
    if spec.weight_decay:
        loss = loss + spec.weight_decay / 2 * sum(jnp.sum(p["W"] ** 2) for p in params)
    return loss


def _loss(params: JaxParams, x: jax.Array, y: jax.Array, spec: NetworkSpec) -> jax.Array:
    _, cache = forward(spec, params, x)
    return loss_value(spec, params, cache, y)


@partial(jax.jit, static_argnums=3)
def _loss_and_grads(params: JaxParams, x: jax.Array, y: jax.Array, spec: NetworkSpec
                    ) -> tuple[jax.Array, JaxParams]:
    return jax.value_and_grad(_loss)(params, x, y, spec)


def _perturbed_loss(params: JaxParams, dz: list[jax.Array], da: list[jax.Array], x: jax.Array,
                    y: jax.Array, spec: NetworkSpec
                    ) -> tuple[jax.Array, list[dict[str, jax.Array]]]:
    _, cache = forward(spec, params, x, dz, da)
    return loss_value(spec, params, cache, y), cache


@partial(jax.jit, static_argnums=3)
def _trace(params: JaxParams, x: jax.Array, y: jax.Array, spec: NetworkSpec) -> Any:
    zeros = [jnp.zeros((x.shape[0], n), x.dtype) for n in spec.layer_sizes[1:]]
    grad_fn = jax.value_and_grad(_perturbed_loss, argnums=(0, 1, 2), has_aux=True)
    (loss, cache), (d_params, d_z, d_a) = grad_fn(params, zeros, zeros, x, y, spec)
    return loss, cache, d_params, d_z, d_a


@float64
def predict(spec: NetworkSpec, params: Params, x: np.ndarray) -> np.ndarray:
    """The network's output for inputs x (batch, n_in)."""
    dtype = checks.check_x(spec, x)
    checks.check_params(spec, params, dtype)
    return np.array(forward(spec, to_jax(params), jnp.asarray(x))[0])


@float64
def loss_and_grads(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray
                   ) -> tuple[Any, Params]:
    """The loss and jax.value_and_grad's gradient for every parameter."""
    checks.check_problem(spec, params, x, y)
    loss, grads = _loss_and_grads(to_jax(params), jnp.asarray(x), jnp.asarray(y), spec)
    return np.asarray(loss)[()], from_jax(grads)


@float64
def trace(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray) -> Trace:
    """Every z, a and autograd's d_a, d_z, d_W, d_b of every layer."""
    checks.check_problem(spec, params, x, y)
    loss, cache, d_params, d_z, d_a = _trace(to_jax(params), jnp.asarray(x), jnp.asarray(y), spec)
    return Trace.from_passes(spec, loss, z=[c["z"] for c in cache], a=[c["a"] for c in cache],
                             d_a=d_a, d_z=d_z, d_W=[g["W"] for g in d_params],
                             d_b=[g["b"] for g in d_params])
