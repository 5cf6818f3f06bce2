"""Beyond the gradient: forward mode and per-example gradients, by hand.

``d_<name>`` is dL/d<name> as in ``network``; a dot is a tangent: for a direction
v = (W_dot, b_dot) in parameter space (params-shaped), <name>_dot is the derivative of
<name> along v.  Shapes as in ``network``: z, a (batch, fan_out); W (fan_in, fan_out).

Forward mode (``jvp``) pushes a tangent up the network beside the forward pass, layer
by layer (the input x is data: its tangent is 0):

    z_dot = a_prev_dot @ W + a_prev @ W_dot + b_dot     (batch, fan_out)   product rule
    a_dot = f'(z) * z_dot                                (batch, fan_out)

An activation's Jacobian is symmetric -- diagonal for the elementwise ones, and
softmax's, diag(a) - a a^T, per row -- so the product J z_dot is the activation's own
backward applied to z_dot: ``activation(name).backward(z, a, z_dot)``.  No new
derivative is needed, and softmax's row coupling comes along.

Per-example gradients (``per_example_grads``) split the batch's gradient into its
samples.  The loss is a sum over samples of each sample's term (times 1/batch or
1/(batch n_out) under "mean"), so row i of every d_z is sample i's own: with a_prev[i]
the layer's input for sample i,

    d_W[i] = outer(a_prev[i], d_z[i])     (batch, fan_in, fan_out)
    d_b[i] = d_z[i]                       (batch, fan_out)

and summing over i gives the batch's d_W = a_prev.T @ d_z and d_b.  The L2 penalty
belongs to no sample and is left out.  Their norms need no (batch, fan_in, fan_out)
array: the Frobenius norm of an outer product is the product of the two norms,

    ||d_W[i]||**2 = ||a_prev[i]||**2 * ||d_z[i]||**2
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from handwritten import checks
from handwritten.activations import activation
from handwritten.network import backward, forward
from handwritten.spec import NetworkSpec, Params

Array = NDArray[np.floating[Any]]


def jvp(spec: NetworkSpec, params: Params, x: Array, v: Params) -> tuple[Array, Array]:
    """The network's output and its derivative along the params-shaped direction v.

    Returns
    -------
    a_out, a_out_dot : (batch, n_out)
        The output (as ``predict``) and d(output)/d(params) applied to v.
    """
    dtype = checks.check_x(spec, x)
    checks.check_params(spec, params, dtype)
    checks.check_params(spec, v, dtype, name="v")
    a, a_dot = x, np.zeros_like(x)
    for l, (p, t) in enumerate(zip(params, v)):
        z = a @ p["W"] + p["b"]                                   # (batch, fan_out)
        z_dot = a_dot @ p["W"] + a @ t["W"] + t["b"]              # product rule
        f = activation(spec.activations[l])
        a = f.forward(z)
        a_dot = f.backward(z, a, z_dot)                           # J z_dot, J symmetric
    return a, a_dot


def _layer_inputs_and_deltas(spec: NetworkSpec, params: Params, x: Array, y: Array
                             ) -> list[tuple[Array, Array]]:
    """(a_prev, d_z) of every layer, for the data term of the loss (no L2 penalty)."""
    checks.check_problem(spec, params, x, y)
    _, cache = forward(spec, params, x)
    _, deltas = backward(spec, params, x, y, cache)
    inputs = [x, *(c["a"] for c in cache[:-1])]
    return [(a_prev, d["d_z"]) for a_prev, d in zip(inputs, deltas)]


def per_example_grads(spec: NetworkSpec, params: Params, x: Array, y: Array) -> Params:
    """Each sample's gradient of its own term of the loss, under the spec's reduction.

    Returns params-shaped arrays with a leading batch axis, W (batch, fan_in, fan_out)
    and b (batch, fan_out); their sum over the batch is the gradient of the data term
    (``loss_and_grads`` without the weight decay's lambda W).
    """
    return [{"W": a_prev[:, :, None] * d_z[:, None, :],        # outer products, per row
             "b": d_z.copy()}
            for a_prev, d_z in _layer_inputs_and_deltas(spec, params, x, y)]


def per_example_grad_norms(spec: NetworkSpec, params: Params, x: Array, y: Array) -> Array:
    """||per-example gradient|| of every sample, over all params, shape (batch,), without
    forming the (batch, fan_in, fan_out) arrays: ||outer(u, w)|| = ||u|| ||w||."""
    total = np.zeros(x.shape[0], dtype=x.dtype)
    for a_prev, d_z in _layer_inputs_and_deltas(spec, params, x, y):
        dz2 = np.einsum("ij,ij->i", d_z, d_z)                      # ||d_z[i]||**2
        total += np.einsum("ij,ij->i", a_prev, a_prev) * dz2 + dz2   # W, then b
    return np.sqrt(total)
