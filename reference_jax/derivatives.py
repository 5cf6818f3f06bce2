"""Forward mode, second order and per-example gradients through JAX: nothing derived by hand.

    jvp                  jax.jvp of the network's output in the params
    hvp                  jax.jvp(jax.grad(loss)): forward over reverse
    gnvp                 jax.jvp of the loss's input, the loss's Hessian there (jax.jvp of
                         its jax.grad), then jax.vjp back through the network
    r_trace              jax.jvp, along v, of every quantity of reference_jax's trace
                         (a Sequential's: of reference_jax.layers' trace)
    per_example_grads    jax.vmap(jax.grad(one sample's loss)), times the reduction's share
                         of that sample (1/batch under "mean")

Each is one jitted program per spec (a static argument) and shape, as reference_jax.network's
trace is: run op by op, JAX would compile every operation for every new shape instead.
jvp, hvp, gnvp and per_example_grads take a NetworkSpec with hidden blocks (norms in training
mode, dropout with its masks, one per hidden layer, residual skips: reference_jax.network's
forward), and a ``Sequential`` (its dropout's masks, one entry per node), which they hand to
reference_jax.layers: the same calls on the fold of its layers.
r_trace takes a plain NetworkSpec (per layer) and a ``Sequential`` (per node, with its
masks), not a NetworkSpec's hidden blocks, as handwritten's.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from handwritten import checks
from handwritten.layers import Sequential
from handwritten.spec import Masks, NetworkSpec, Params
from reference_jax import layers as sequential
from reference_jax.losses import gauss_newton
from reference_jax.network import (
    JaxParams,
    _loss,
    _masks,
    _trace,
    forward,
    from_jax,
    loss_value,
    to_jax,
)
from reference_jax.precision import float64

JaxMasks = list[jax.Array | None] | None


def _no_masks(masks: Masks | None, name: str) -> None:
    if masks is not None:
        raise ValueError(f"masks are a Sequential's: a NetworkSpec's {name} takes none")


def _blocks_only(spec: NetworkSpec, masks: Masks | None, name: str) -> None:
    """A NetworkSpec takes masks where it has hidden blocks (its dropout's, one per hidden
    layer, checked with the problem), as handwritten's does; a plain one takes none."""
    if not spec.has_blocks:
        _no_masks(masks, name)


@float64
def jvp(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray, v: Params,
        masks: Masks | None = None) -> tuple[np.ndarray, np.ndarray]:
    """handwritten.derivatives.jvp's contract, by jax.jvp.  A ``Sequential`` (its dropout's
    ``masks``, one entry per node): reference_jax.layers.jvp."""
    if isinstance(spec, Sequential):
        return sequential.jvp(spec, params, x, v, masks)
    _blocks_only(spec, masks, "jvp")
    dtype = checks.check_x(spec, x)
    checks.check_params(spec, params, dtype)
    checks.check_params(spec, v, dtype, name="v")
    checks.check_masks(spec, masks, x.shape[0])
    out, tangent = _jvp(spec, to_jax(params), jnp.asarray(x), to_jax(v), _masks(masks))
    return np.array(out), np.array(tangent)


@partial(jax.jit, static_argnums=0)
def _jvp(spec: NetworkSpec, params: JaxParams, x: jax.Array, v: JaxParams, masks: JaxMasks
         ) -> tuple[jax.Array, jax.Array]:
    return jax.jvp(lambda p: forward(spec, p, x, masks=masks)[0], (params,), (v,))


def _checked(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray, v: Params,
             masks: Masks | None = None) -> tuple[JaxParams, JaxParams, jax.Array, jax.Array]:
    checks.check_problem(spec, params, x, y, masks)
    checks.check_params(spec, v, params[0]["W"].dtype, name="v")
    return to_jax(params), to_jax(v), jnp.asarray(x), jnp.asarray(y)


@float64
def hvp(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray, y: np.ndarray,
        v: Params, masks: Masks | None = None) -> Params:
    """handwritten.derivatives.hvp's contract, by jax.jvp of jax.grad (forward over reverse).
    A ``Sequential`` (its dropout's ``masks``, one entry per node): reference_jax.layers.hvp."""
    if isinstance(spec, Sequential):
        return sequential.hvp(spec, params, x, y, v, masks)
    _blocks_only(spec, masks, "hvp")
    return from_jax(_hvp(spec, *_checked(spec, params, x, y, v, masks), _masks(masks)))


@partial(jax.jit, static_argnums=0)
def _hvp(spec: NetworkSpec, params: JaxParams, v: JaxParams, x: jax.Array, y: jax.Array,
         masks: JaxMasks) -> JaxParams:
    _, product = jax.jvp(jax.grad(lambda p: _loss(p, x, y, spec, masks)), (params,), (v,))
    return product


@float64
def gnvp(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray, y: np.ndarray,
         v: Params, masks: Masks | None = None) -> Params:
    """handwritten.derivatives.gnvp's contract: J^T H_loss J v (J of the loss's input, z_out
    for a fused loss, else a_out) composed from jax.jvp and jax.vjp, plus lambda W_dot.  A
    ``Sequential`` (its dropout's ``masks``): reference_jax.layers.gnvp."""
    if isinstance(spec, Sequential):
        return sequential.gnvp(spec, params, x, y, v, masks)
    _blocks_only(spec, masks, "gnvp")
    product = _gnvp(spec, *_checked(spec, params, x, y, v, masks), _masks(masks))
    return sequential.with_weight_decay(from_jax(product), v, spec.weight_decay,
                                        [("W",)] * len(v))


@partial(jax.jit, static_argnums=0)
def _gnvp(spec: NetworkSpec, params: JaxParams, v: JaxParams, x: jax.Array, y: jax.Array,
          masks: JaxMasks) -> JaxParams:
    """J^T H_loss J v, without the weight decay's lambda v."""
    def loss_input(p: JaxParams) -> jax.Array:
        out = forward(spec, p, x, masks=masks)[1][-1]
        return out["z"] if spec.fused_output else out["a"]

    return gauss_newton(loss_input, params, v, spec.loss, y, spec.reduction)


@float64
def r_trace(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray, y: np.ndarray,
            v: Params, masks: Masks | None = None) -> list[dict[str, np.ndarray]]:
    """handwritten.derivatives.r_trace's contract: jax.jvp, along v, of reference_jax's
    trace (every z, a and autograd's d_a, d_z, d_W, d_b).  A ``Sequential`` (its dropout's
    ``masks``, one entry per node): reference_jax.layers.r_trace, of that module's trace."""
    if isinstance(spec, Sequential):
        return sequential.r_trace(spec, params, x, y, v, masks)
    _no_masks(masks, "r_trace")
    _, cache, d_p, d_z, d_a, _ = _trace_tangents(spec, *_checked(spec, params, x, y, v))
    layers = []
    for l in range(spec.n_layers):
        layer: dict[str, Any] = {"R{z}": cache[l]["z"], "R{a}": cache[l]["a"], "R{d_a}": d_a[l],
                                 "R{d_z}": d_z[l], "R{d_W}": d_p[l]["W"], "R{d_b}": d_p[l]["b"]}
        if spec.fused_output and l == spec.n_layers - 1:
            del layer["R{d_a}"]
        layers.append({k: np.array(t) for k, t in layer.items()})
    return layers


@partial(jax.jit, static_argnums=0)
def _trace_tangents(spec: NetworkSpec, params: JaxParams, v: JaxParams, x: jax.Array,
                    y: jax.Array) -> Any:
    _, tangents = jax.jvp(lambda p: _trace(p, x, y, spec), (params,), (v,))
    return tangents


@float64
def per_example_grads(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray,
                      y: np.ndarray, masks: Masks | None = None) -> Params:
    """handwritten.derivatives.per_example_grads' contract, by jax.vmap over jax.grad of
    each sample's loss (a batch of one, the data term only), times 1/batch under "mean".
    A ``Sequential`` (its dropout's ``masks``, one entry per node):
    reference_jax.layers.per_example_grads."""
    if isinstance(spec, Sequential):
        return sequential.per_example_grads(spec, params, x, y, masks)
    _blocks_only(spec, masks, "per_example_grads")
    checks.check_problem(spec, params, x, y, masks)
    refuse_batch_norm(spec)
    share = 1.0 / x.shape[0] if spec.reduction == "mean" else 1.0
    grads = _per_example(dataclasses.replace(spec, weight_decay=0.0), to_jax(params),
                         jnp.asarray(x), jnp.asarray(y), _masks(masks))
    return [{k: g * share for k, g in layer.items()} for layer in from_jax(grads)]


def refuse_batch_norm(spec: NetworkSpec) -> None:
    """NotImplementedError naming the first layer with batch norm: in training mode a
    sample's output depends on the whole batch (its mean and variance), so it has no
    gradient of its own."""
    for l in range(spec.n_layers - 1):
        if spec.norm(l) == "batch":
            raise NotImplementedError(
                f"layer {l}, batch norm (norms[{l}] = 'batch'), in training mode has no "
                "per-example gradient: a sample's output depends on the whole batch through "
                "its mean and variance")


@partial(jax.jit, static_argnums=0)
def _per_example(data: NetworkSpec, params: JaxParams, x: jax.Array, y: jax.Array,
                 masks: JaxMasks) -> JaxParams:
    def one(p: JaxParams, xi: jax.Array, yi: jax.Array, mi: JaxMasks) -> jax.Array:
        rows = None if mi is None else [None if m is None else m[None] for m in mi]
        _, cache = forward(data, p, xi[None], masks=rows)
        return loss_value(data, p, cache, yi[None])

    return jax.vmap(jax.grad(one), in_axes=(None, 0, 0, 0))(params, x, y, masks)
