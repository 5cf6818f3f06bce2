"""The optional parts of a hidden block, each forward beside its hand-derived backward.

A hidden layer is, in the order of torchvision.ops.MLP (``handwritten.network``),

    z = a_prev @ W + b                    dense                      (batch, fan_out)
    n = gamma * x_hat + beta              optional norm: x_hat = (z - mu) / sqrt(var + eps)
    h = f(n)                              the activation
    a = h * m / (1 - p)                   optional inverted dropout, keep-mask m in {0, 1}
    a = a + a_prev                        optional residual skip (fan_in == fan_out)

Batch norm and layer norm are one normalization along different axes: batch norm takes
each feature's mean and *biased* variance over the batch (axis 0: mu, var of shape
(fan_out,)), as torch.nn.BatchNorm1d in training mode; layer norm takes each sample's over
its features (axis 1: mu, var of shape (batch,)), as torch.nn.LayerNorm.  eps = 1e-5 for
both.  With N the number of entries averaged (batch, or fan_out) and s = 1/sqrt(var + eps):

    d_gamma = sum(d_n * x_hat, axis=0)                    (fan_out,)  over the batch
    d_beta  = sum(d_n, axis=0)                            (fan_out,)  for both norms
    d_x_hat = d_n * gamma                                 (batch, fan_out)
    d_z     = s / N * (N d_x_hat - sum(d_x_hat) - x_hat * sum(d_x_hat * x_hat))

the sums along the normalized axis (the compact form: docs/derivation.md derives it from
the graph node by node -- the path through x_hat, the path through var, the path through
mu -- and shows the two agree).  The mean and the variance both depend on every entry
along the axis: that is why batch norm's backward couples the samples of a batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from handwritten.spec import BATCH_NORM_MOMENTUM, NORM_EPS

Array = NDArray[np.floating[Any]]

AXES = {"batch": 0, "layer": 1}
"""The axis each norm averages over: batch norm over the batch, layer norm over features."""


def normalize(norm: str, z: Array, gamma: Array, beta: Array) -> dict[str, Array]:
    """The norm's forward: its statistics, x_hat and n = gamma * x_hat + beta.

    Returns {"mu", "var", "x_hat", "n"}: mu and var of shape (fan_out,) for batch norm,
    (batch,) for layer norm; var is the biased variance (divided by N), as torch normalizes.
    """
    axis = AXES[norm]
    mu = z.mean(axis=axis, keepdims=True)
    centred = z - mu
    var = np.mean(centred * centred, axis=axis, keepdims=True)       # biased: / N
    x_hat = centred                                                   # divided in place:
    x_hat /= np.sqrt(var + NORM_EPS)                                  # no second array
    n = x_hat * gamma
    n += beta
    return {"mu": mu.squeeze(axis), "var": var.squeeze(axis), "x_hat": x_hat, "n": n}


def normalize_backward(norm: str, x_hat: Array, var: Array, gamma: Array, d_n: Array
                       ) -> dict[str, Array]:
    """The norm's backward, compact form (module docstring): d_gamma, d_beta, d_x_hat, d_z."""
    axis = AXES[norm]
    count = x_hat.shape[axis]                                         # N
    inv_std = 1 / np.sqrt(np.expand_dims(var, axis) + NORM_EPS)       # s, broadcastable
    d_x_hat = d_n * gamma
    d_z = count * d_x_hat
    d_z -= d_x_hat.sum(axis=axis, keepdims=True)                      # the path through mu
    d_z -= x_hat * np.sum(d_x_hat * x_hat, axis=axis, keepdims=True)  # the path through var
    d_z *= inv_std / count
    return {"d_gamma": np.sum(d_n * x_hat, axis=0), "d_beta": d_n.sum(axis=0),
            "d_x_hat": d_x_hat, "d_z": d_z}


def normalize_running(z: Array, mean: Array, var: Array, gamma: Array, beta: Array
                      ) -> dict[str, Array]:
    """Batch norm in evaluation mode (``predict``): the running statistics in place of the
    batch's, so each sample is normalized on its own, as torch.nn.BatchNorm1d.eval() does:

        x_hat = (z - running_mean) / sqrt(running_var + eps);  n = gamma * x_hat + beta
    """
    x_hat = (z - mean) / np.sqrt(var + NORM_EPS)
    n = x_hat * gamma
    n += beta
    return {"x_hat": x_hat, "n": n}


def running_update(running_mean: Array, running_var: Array, mu: Array, var: Array,
                   batch: int) -> tuple[Array, Array]:
    """torch.nn.BatchNorm1d's running statistics after one training-mode batch: momentum
    0.1 towards the batch's mean and its *unbiased* variance (var * N / (N - 1)).

        running_mean = (1 - 0.1) running_mean + 0.1 mu
        running_var  = (1 - 0.1) running_var  + 0.1 var N / (N - 1)
    """
    m = BATCH_NORM_MOMENTUM
    return ((1 - m) * running_mean + m * mu,
            (1 - m) * running_var + m * var * (batch / (batch - 1)))


def dropout(h: Array, mask: Array, p: float) -> Array:
    """Inverted dropout with a given keep-mask: a = h * m / (1 - p) (the expected value of a
    is h, so nothing changes at evaluation, where there is no dropout)."""
    return h * mask * (1 / (1 - p))


def dropout_backward(d_a: Array, mask: Array, p: float) -> Array:
    """d_h = d_a * m / (1 - p): the mask and the same rescaling, on the way down."""
    return d_a * mask * (1 / (1 - p))
