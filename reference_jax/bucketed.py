"""The JAX reference, compiled once per *bucket* of shapes instead of once per network.

XLA compiles a new program for every new shape, about 0.2 s each, while a
compiled trace runs in about a millisecond: checking many random architectures
through ``reference_jax`` spends its time compiling.  This module computes the
same loss, gradients and trace with the same JAX ops and autograd, on networks
padded to a few fixed shapes, so one compiled program serves every architecture
in a bucket:

- depth is padded to ``DEPTH`` with identity layers *in front* (W = I, b = 0,
  activation identity): x @ I is x exactly, and so is the gradient through it;
- every width is padded to the bucket width with zero weights: a padded unit
  receives nothing and sends nothing (its outgoing weights are 0), so it changes
  no real quantity; padded output columns are masked out of softmax
  (``jax.nn.softmax(where=)``) and of the loss;
- the batch is padded with rows that are masked out of the loss, and the
  reduction divides by the *real* count;
- activations and the loss are chosen at run time with ``lax.switch`` over the
  reference's own functions, so they are data, not part of the compiled program.

Padding is not a derivation: every derivative still comes from ``jax.grad``.
``tests/test_bucketed.py`` checks this module against the plain ``reference_jax``
on drawn networks.  Networks deeper than ``DEPTH`` use a deeper bucket.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from handwritten import _checks
from handwritten.losses import LOSSES as HW_LOSSES
from handwritten.network import NetworkSpec, Params, Trace
from reference_jax.activations import ACTIVATIONS

DEPTH = 4
ACTIVATION_NAMES = tuple(sorted(ACTIVATIONS))
LOSS_NAMES = tuple(sorted(HW_LOSSES))
# A padded softmax logit: exp(-1e30 - max) is exactly 0, and unlike -inf it keeps
# 0 * logit finite in the cross-entropy of a padded column.
MASKED_LOGIT = -1e30


def _bucket(n: int, smallest: int) -> int:
    """The next power of two >= n (at least ``smallest``)."""
    size = smallest
    while size < n:
        size *= 2
    return size


def _activation_branch(name: str) -> Any:
    if name == "softmax":
        return lambda z, columns: jax.nn.softmax(z, axis=1, where=columns)
    f = ACTIVATIONS[name]
    return lambda z, columns: f(z)


def _per_element(name: str) -> Any:
    """Each loss before reduction, on padded arrays: (z, a, y, mask, columns) -> terms."""
    if name == "half_mse":
        return lambda z, a, y, m, c: optax.losses.l2_loss(a, y)
    if name == "mse":
        return lambda z, a, y, m, c: optax.losses.squared_error(a, y)
    if name == "bce":
        def bce(z: jax.Array, a: jax.Array, y: jax.Array, m: jax.Array, c: jax.Array) -> Any:
            a = jnp.where(m, a, 0.5)          # padded entries: a harmless probability
            return -(y * jnp.log(a) + (1 - y) * jnp.log1p(-a))
        return bce
    if name == "bce_with_logits":
        return lambda z, a, y, m, c: optax.losses.sigmoid_binary_cross_entropy(z, y)
    if name == "softmax_cross_entropy":
        def ce(z: jax.Array, a: jax.Array, y: jax.Array, m: jax.Array, c: jax.Array) -> Any:
            rows = optax.losses.softmax_cross_entropy(jnp.where(c, z, MASKED_LOGIT), y)
            first_column = jnp.arange(z.shape[1]) == 0       # one term per row, exactly
            return jnp.where(first_column[None, :], rows[:, None], 0)
        return ce
    raise ValueError(name)


def _loss(params: Any, dz: Any, da: Any, x: jax.Array, y: jax.Array, meta: dict[str, Any]
          ) -> tuple[jax.Array, Any]:
    a = x
    cache = []
    for l in range(len(params)):
        z = a @ params[l]["W"] + params[l]["b"] + dz[l]
        a = jax.lax.switch(meta["activation"][l],
                           [_activation_branch(n) for n in ACTIVATION_NAMES], z,
                           meta["columns"]) + da[l]
        cache.append({"z": z, "a": a})
    mask = meta["rows"][:, None] & meta["columns"][None, :]
    terms = jax.lax.switch(meta["loss"], [_per_element(n) for n in LOSS_NAMES],
                           cache[-1]["z"], cache[-1]["a"], y, mask, meta["columns"])
    loss = jnp.sum(jnp.where(mask, terms, 0)) / meta["divisor"]
    decay = sum(meta["real"][l] * jnp.sum(params[l]["W"] ** 2) for l in range(len(params)))
    return loss + meta["weight_decay"] / 2 * decay, cache


@lru_cache(maxsize=32)
def _compiled(depth: int) -> Any:
    grad_fn = jax.value_and_grad(_loss, argnums=(0, 1, 2), has_aux=True)
    return jax.jit(grad_fn)


def _pad(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape, dtype=a.dtype)
    out[tuple(slice(0, n) for n in a.shape)] = a
    return out


def _padded_problem(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray
                    ) -> tuple[Any, ...]:
    depth = max(DEPTH, spec.n_layers)
    width = _bucket(max(spec.layer_sizes), 16)
    batch = _bucket(x.shape[0], 8)
    n_out = spec.layer_sizes[-1]
    dtype = x.dtype
    offset = depth - spec.n_layers
    eye = np.eye(width, dtype=dtype)
    padded = [{"W": eye, "b": np.zeros(width, dtype)} for _ in range(offset)]
    padded += [{"W": _pad(p["W"], (width, width)), "b": _pad(p["b"], (width,))} for p in params]
    if y.ndim == 1:                                  # class labels: one-hot rows
        y = np.eye(n_out, dtype=dtype)[y]
    reduction_count = (x.shape[0] if spec.loss == "softmax_cross_entropy"
                       else x.shape[0] * n_out)
    meta = {
        "activation": np.array([ACTIVATION_NAMES.index("identity")] * offset
                               + [ACTIVATION_NAMES.index(n) for n in spec.activations]),
        "loss": np.array(LOSS_NAMES.index(spec.loss)),
        "rows": np.arange(batch) < x.shape[0],
        "columns": np.arange(width) < n_out,
        "divisor": np.array(reduction_count if spec.reduction == "mean" else 1, dtype),
        "real": np.array([0.0] * offset + [1.0] * spec.n_layers, dtype),
        "weight_decay": np.array(spec.weight_decay, dtype),
    }
    zeros = [np.zeros((batch, width), dtype) for _ in range(depth)]
    return padded, zeros, _pad(x, (batch, width)), _pad(y, (batch, width)), meta, offset


def trace(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray) -> Trace:
    """reference_jax.trace's result, computed on the padded network."""
    _checks.check_problem(spec, params, x, y)
    padded, zeros, px, py, meta, offset = _padded_problem(spec, params, x, y)
    # one transfer to NumPy, then NumPy slicing: slicing JAX arrays eagerly would compile
    # a new XLA op for every new slice shape
    (loss, cache), (d_params, d_z, d_a) = jax.device_get(
        _compiled(len(padded))(padded, zeros, zeros, px, py, meta))
    fused = HW_LOSSES[spec.loss].fused_with is not None
    batch, layers = x.shape[0], []
    for l in range(spec.n_layers):
        fan_in, fan_out = spec.layer_sizes[l], spec.layer_sizes[l + 1]
        k = offset + l
        layer = {"z": np.array(cache[k]["z"][:batch, :fan_out]),
                 "a": np.array(cache[k]["a"][:batch, :fan_out])}
        if not (fused and l == spec.n_layers - 1):
            layer["d_a"] = np.array(d_a[k][:batch, :fan_out])
        layer.update(d_z=np.array(d_z[k][:batch, :fan_out]),
                     d_W=np.array(d_params[k]["W"][:fan_in, :fan_out]),
                     d_b=np.array(d_params[k]["b"][:fan_out]))
        layers.append(layer)
    return Trace(np.asarray(loss).dtype.type(loss), layers)


def loss_and_grads(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray
                   ) -> tuple[Any, Params]:
    """reference_jax.loss_and_grads's result, computed on the padded network."""
    t = trace(spec, params, x, y)
    return t.loss, [{"W": layer["d_W"], "b": layer["d_b"]} for layer in t.layers]
