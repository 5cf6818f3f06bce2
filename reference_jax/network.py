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
from handwritten.layers import Sequential
from handwritten.spec import Masks, NetworkSpec, Params, Running, Trace
from reference_jax import blocks
from reference_jax.activations import activation
from reference_jax.losses import loss as loss_fn
from reference_jax.precision import float64

JaxParams = list[dict[str, jax.Array]]

# jax's glorot_normal and he_normal draw a normal truncated at 2 sigma, rescaled to the
# same variance: the standard deviation is the quantity both frameworks document
INITIALIZERS: dict[str, Any] = {
    "blog": jax.nn.initializers.normal(1.0),
    "glorot_uniform": jax.nn.initializers.glorot_uniform(),
    "glorot_normal": jax.nn.initializers.glorot_normal(),
    "he_normal": jax.nn.initializers.he_normal(),
}
"""Every handwritten init scheme by name, as the jax.nn.initializers initializer."""


@float64
def init_weight(scheme: str, fan_in: int, fan_out: int, seed: int) -> np.ndarray:
    """A (fan_in, fan_out) float64 W drawn by jax.nn.initializers from jax.random.key(seed);
    NotImplementedError for a scheme handwritten has and INITIALIZERS has not."""
    init = checks.counterpart(INITIALIZERS, "init scheme", scheme,
                              "reference_jax/network.py (INITIALIZERS)")
    return np.asarray(init(jax.random.key(seed), (fan_in, fan_out), jnp.float64))


@float64
def to_jax(params: Params) -> JaxParams:
    """NumPy params as JAX arrays of the same dtype (float64 stays float64: see precision)."""
    return [{k: jnp.asarray(v) for k, v in p.items()} for p in params]


def from_jax(tree: JaxParams) -> Params:
    """JAX params (or grads) as writable NumPy arrays of the same dtype."""
    return [{k: np.array(v) for k, v in p.items()} for p in tree]


def forward(spec: NetworkSpec, params: JaxParams, x: jax.Array,
            dz: list[jax.Array] | None = None, da: list[jax.Array] | None = None,
            masks: Masks | None = None, dq: list[dict[str, jax.Array]] | None = None,
            running: list[dict[str, jax.Array]] | None = None
            ) -> tuple[jax.Array, list[dict[str, jax.Array]]]:
    """z = a_prev @ W + b (+ dz), then a hidden block's parts (norm, activation, dropout
    with the given mask, residual skip), a (+ da), layer by layer.  dq: per layer, zero
    perturbations of a block's x_hat, n and h (their gradients are d_x_hat, d_n, d_h).
    ``running``: batch norm's running statistics; given, batch norm is in evaluation mode."""
    cache = []
    a = x
    for l, (p, name) in enumerate(zip(params, spec.activations)):
        q = dq[l] if dq is not None else {}
        z = a @ p["W"] + p["b"]
        if dz is not None:
            z = z + dz[l]
        layer = {"z": z}
        norm = spec.norm(l)
        if norm == "batch" and running is not None:
            layer |= blocks.normalize_running(z, running[l]["mean"], running[l]["var"],
                                              p["gamma"], p["beta"])
        elif norm is not None:
            layer |= blocks.normalize(norm, z, p["gamma"], p["beta"], q.get("x_hat"))
            if "n" in q:
                layer["n"] = layer["n"] + q["n"]
        h = activation(name)(layer.get("n", z))
        mask = masks[l] if masks is not None and l < len(masks) else None
        skip = l < len(spec.residual) and spec.residual[l]
        if mask is not None or skip:
            if "h" in q:
                h = h + q["h"]
            layer["h"] = h
        out = h if mask is None else blocks.dropout(h, mask.astype(h.dtype), spec.dropout[l])
        if skip:
            out = out + a
        a = out if da is None else out + da[l]
        layer["a"] = a
        cache.append(layer)
    return a, cache


def loss_value(spec: NetworkSpec, params: JaxParams, cache: list[dict[str, jax.Array]],
               y: jax.Array) -> jax.Array:
    """The loss plus weight_decay / 2 * sum ||W||^2."""
    loss = loss_fn(spec.loss)(cache[-1]["z"], cache[-1]["a"], y, spec.reduction)
    if spec.weight_decay:
        loss = loss + spec.weight_decay / 2 * sum(jnp.sum(p["W"] ** 2) for p in params)
    return loss


def _loss(params: JaxParams, x: jax.Array, y: jax.Array, spec: NetworkSpec,
          masks: Masks | None = None) -> jax.Array:
    _, cache = forward(spec, params, x, masks=masks)
    return loss_value(spec, params, cache, y)


def loss_and_statistics(params: JaxParams, x: jax.Array, y: jax.Array, spec: NetworkSpec,
                        masks: Masks | None = None) -> tuple[jax.Array, list[Any]]:
    """The loss, and every batch-norm layer's batch (mu, var, count) (count: the batch, the
    values each statistic is over; None on other layers): the aux output a training step
    updates the running statistics with."""
    _, cache = forward(spec, params, x, masks=masks)
    stats = [(c["mu"], c["var"], x.shape[0]) if spec.norm(l) == "batch" else None
             for l, c in enumerate(cache)]
    return loss_value(spec, params, cache, y), stats


@partial(jax.jit, static_argnums=3)
def _loss_and_grads(params: JaxParams, x: jax.Array, y: jax.Array, spec: NetworkSpec,
                    masks: Masks | None = None) -> tuple[jax.Array, JaxParams]:
    return jax.value_and_grad(_loss)(params, x, y, spec, masks)


def _perturbed_loss(params: JaxParams, dz: list[jax.Array], da: list[jax.Array],
                    dq: list[dict[str, jax.Array]], x: jax.Array, y: jax.Array,
                    spec: NetworkSpec, masks: Masks | None
                    ) -> tuple[jax.Array, list[dict[str, jax.Array]]]:
    _, cache = forward(spec, params, x, dz, da, masks, dq)
    return loss_value(spec, params, cache, y), cache


def _block_zeros(spec: NetworkSpec, batch: int, dtype: Any, masks: Masks | None
                 ) -> list[dict[str, jax.Array]]:
    """Zero perturbations of every block quantity the trace reports a gradient of."""
    out = []
    for l, n in enumerate(spec.layer_sizes[1:]):
        names = []
        if spec.norm(l) is not None:
            names += ["x_hat", "n"]
        has_mask = masks is not None and l < len(masks) and masks[l] is not None
        if has_mask or (l < len(spec.residual) and spec.residual[l]):
            names.append("h")
        out.append({k: jnp.zeros((batch, n), dtype) for k in names})
    return out


@partial(jax.jit, static_argnums=3)
def _trace(params: JaxParams, x: jax.Array, y: jax.Array, spec: NetworkSpec,
           masks: Masks | None = None) -> Any:
    zeros = [jnp.zeros((x.shape[0], n), x.dtype) for n in spec.layer_sizes[1:]]
    dq = _block_zeros(spec, x.shape[0], x.dtype, masks)
    grad_fn = jax.value_and_grad(_perturbed_loss, argnums=(0, 1, 2, 3), has_aux=True)
    (loss, cache), (d_params, d_z, d_a, d_q) = grad_fn(params, zeros, zeros, dq, x, y, spec,
                                                       masks)
    return loss, cache, d_params, d_z, d_a, d_q


@float64
def predict(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray,
            running: Running | None = None) -> np.ndarray:
    """The network's output for inputs x (batch, n_in), in evaluation mode: no dropout,
    batch norm normalized with ``running``.  A ``Sequential``:
    reference_jax.layers.predict."""
    if isinstance(spec, Sequential):
        # deferred: layers imports this module
        from reference_jax import layers
        return layers.predict(spec, params, x, running)
    dtype = checks.check_x(spec, x)
    checks.check_params(spec, params, dtype)
    checks.check_running(spec, running, dtype)
    jrun = None if running is None or "batch" not in spec.norms else to_jax(running)
    return np.array(_predict(to_jax(params), jnp.asarray(x), spec, jrun))


@partial(jax.jit, static_argnums=2)
def _predict(params: JaxParams, x: jax.Array, spec: NetworkSpec,
             running: list[dict[str, jax.Array]] | None) -> jax.Array:
    return forward(spec, params, x, running=running)[0]


def _masks(masks: Masks | None) -> list[jax.Array | None] | None:
    return None if masks is None else [None if m is None else jnp.asarray(m) for m in masks]


@float64
def loss_and_grads(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray, y: np.ndarray,
                   masks: Masks | None = None) -> tuple[Any, Params]:
    """The loss and jax.value_and_grad's gradient for every parameter.  A ``Sequential``:
    reference_jax.layers.loss_and_grads (one dict per node)."""
    if isinstance(spec, Sequential):
        # deferred: layers imports this module
        from reference_jax import layers
        return layers.loss_and_grads(spec, params, x, y, masks)
    checks.check_problem(spec, params, x, y, masks)
    loss, grads = _loss_and_grads(to_jax(params), jnp.asarray(x), jnp.asarray(y), spec,
                                  _masks(masks))
    return np.asarray(loss)[()], from_jax(grads)


@float64
def trace(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray, y: np.ndarray,
          masks: Masks | None = None) -> Trace:
    """Every z, a and autograd's d_a, d_z, d_W, d_b of every layer (and a block's mu, var,
    x_hat, n, h with d_x_hat, d_n, d_h, d_gamma, d_beta).  A ``Sequential``:
    reference_jax.layers.trace (one dict per node)."""
    if isinstance(spec, Sequential):
        # deferred: layers imports this module
        from reference_jax import layers
        return layers.trace(spec, params, x, y, masks)
    checks.check_problem(spec, params, x, y, masks)
    loss, cache, d_params, d_z, d_a, d_q = _trace(to_jax(params), jnp.asarray(x),
                                                  jnp.asarray(y), spec, _masks(masks))
    extra = [{**{k: v for k, v in c.items() if k not in ("z", "a")},
              **{f"d_{k}": v for k, v in q.items()},
              **{f"d_{k}": v for k, v in g.items() if k in ("gamma", "beta")}}
             for c, q, g in zip(cache, d_q, d_params)]
    return Trace.from_passes(spec, loss, z=[c["z"] for c in cache], a=[c["a"] for c in cache],
                             d_a=d_a, d_z=d_z, d_W=[g["W"] for g in d_params],
                             d_b=[g["b"] for g in d_params],
                             blocks=extra if spec.has_blocks else None)
