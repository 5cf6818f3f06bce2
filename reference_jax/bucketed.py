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

from handwritten import checks
from handwritten.checks import counterpart
from handwritten.spec import NetworkSpec, Params, Trace
from reference_jax.activations import ACTIVATIONS, DEFAULTS, PARAMETRISED, split
from reference_jax.losses import TERMS
from reference_jax.precision import float64

DEPTH = 4
ACTIVATION_NAMES = tuple(sorted(ACTIVATIONS))
LOSS_NAMES = tuple(sorted(TERMS))
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
    """(z, columns, p) -> a; p is the layer's parameter (data too), used by leaky_relu, elu
    and celu only."""
    if name == "softmax":
        return lambda z, columns, p: jax.nn.softmax(z, axis=1, where=columns)
    f = ACTIVATIONS[name]
    if name in PARAMETRISED:
        return lambda z, columns, p: f(z, p)
    return lambda z, columns, p: f(z)


def _index(names: tuple[str, ...], kind: str, name: str, where: str) -> int:
    """The branch of a name in ``lax.switch`` (NotImplementedError for a name handwritten
    has and reference_jax has not)."""
    return counterpart({n: i for i, n in enumerate(names)}, kind, name, where)


def _parameter(name: str) -> float:
    """The parameter of an activation name (its default without one; 0 if it takes none)."""
    base, value = split(name)
    if value is not None:
        return value
    return DEFAULTS.get(base, 0.0)


def _padded_terms(name: str) -> Any:
    """reference_jax's terms of one loss on padded arrays, as (batch, width) terms and their
    count: (z, a, y, mask, n_rows, n_out) -> (terms, count).

    Padded entries get harmless inputs (a logit whose exp() is exactly 0, a probability of
    0.5) so that neither they nor their gradients are NaN before the mask removes them.  A
    loss with one term per row (softmax cross-entropy) puts it in the row's first column.
    """
    terms = TERMS[name]

    def padded(z: jax.Array, a: jax.Array, y: jax.Array, mask: jax.Array, n_rows: jax.Array,
               n_out: jax.Array) -> tuple[jax.Array, jax.Array]:
        columns = mask.any(axis=0)
        t = terms(jnp.where(columns[None, :], z, MASKED_LOGIT), jnp.where(mask, a, 0.5), y)
        if t.ndim == 1:
            first_column = jnp.arange(z.shape[1]) == 0
            return jnp.where(first_column[None, :], t[:, None], 0), n_rows
        return t, n_rows * n_out
    return padded


def _loss(params: Any, dz: Any, da: Any, x: jax.Array, y: jax.Array, meta: dict[str, Any]
          ) -> tuple[jax.Array, Any]:
    a = x
    cache = []
    for l in range(len(params)):
        z = a @ params[l]["W"] + params[l]["b"] + dz[l]
        a = jax.lax.switch(meta["activation"][l],
                           [_activation_branch(n) for n in ACTIVATION_NAMES], z,
                           meta["columns"], meta["parameter"][l]) + da[l]
        cache.append({"z": z, "a": a})
    mask = meta["rows"][:, None] & meta["columns"][None, :]
    terms, count = jax.lax.switch(meta["loss"], [_padded_terms(n) for n in LOSS_NAMES],
                                  cache[-1]["z"], cache[-1]["a"], y, mask, meta["n_rows"],
                                  meta["n_out"])
    divisor = jnp.where(meta["mean"], count, 1).astype(terms.dtype)
    loss = jnp.sum(jnp.where(mask, terms, 0)) / divisor
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
    if spec.has_blocks:
        # padding would change a norm's statistics (padded rows and features are averaged
        # too) and needs masks: the properties of hidden blocks use reference_jax's trace
        raise ValueError("reference_jax.bucketed does not take hidden blocks (norms, dropout, "
                         "residual): use reference_jax.trace / loss_and_grads")
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
    meta = {
        "activation": np.array([ACTIVATION_NAMES.index("identity")] * offset
                               + [_index(ACTIVATION_NAMES, "activation", split(n)[0],
                                         "reference_jax/activations.py")
                                  for n in spec.activations]),
        "parameter": np.array([0.0] * offset + [_parameter(n) for n in spec.activations], dtype),
        "loss": np.array(_index(LOSS_NAMES, "loss", spec.loss, "reference_jax/losses.py")),
        "rows": np.arange(batch) < x.shape[0],
        "columns": np.arange(width) < n_out,
        "n_rows": np.array(x.shape[0]),
        "n_out": np.array(n_out),
        "mean": np.array(spec.reduction == "mean"),
        "real": np.array([0.0] * offset + [1.0] * spec.n_layers, dtype),
        "weight_decay": np.array(spec.weight_decay, dtype),
    }
    zeros = [np.zeros((batch, width), dtype) for _ in range(depth)]
    return padded, zeros, _pad(x, (batch, width)), _pad(y, (batch, width)), meta, offset


@float64
def trace(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray) -> Trace:
    """reference_jax.trace's result, computed on the padded network."""
    checks.check_problem(spec, params, x, y)
    padded, zeros, px, py, meta, offset = _padded_problem(spec, params, x, y)
    # one transfer to NumPy, then NumPy slicing: slicing JAX arrays eagerly would compile
    # a new XLA op for every new slice shape
    (loss, cache), (d_params, d_z, d_a) = jax.device_get(
        _compiled(len(padded))(padded, zeros, zeros, px, py, meta))
    batch, layers = x.shape[0], spec.layer_sizes
    padded_layers = range(offset, offset + spec.n_layers)
    return Trace.from_passes(
        spec, np.asarray(loss).dtype.type(loss),
        z=[cache[k]["z"][:batch, :layers[l + 1]] for l, k in enumerate(padded_layers)],
        a=[cache[k]["a"][:batch, :layers[l + 1]] for l, k in enumerate(padded_layers)],
        d_a=[d_a[k][:batch, :layers[l + 1]] for l, k in enumerate(padded_layers)],
        d_z=[d_z[k][:batch, :layers[l + 1]] for l, k in enumerate(padded_layers)],
        d_W=[d_params[k]["W"][:layers[l], :layers[l + 1]] for l, k in enumerate(padded_layers)],
        d_b=[d_params[k]["b"][:layers[l + 1]] for l, k in enumerate(padded_layers)])


def loss_and_grads(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray
                   ) -> tuple[Any, Params]:
    """reference_jax.loss_and_grads's result, computed on the padded network."""
    t = trace(spec, params, x, y)
    return t.loss, [{"W": layer["d_W"], "b": layer["d_b"]} for layer in t.layers]
