"""The blog post's program, function for function: the seed this project grew from.

A (1, 10, 1) network, sigmoid on both layers, fitted to y = x**2 + noise with
plain gradient descent.  The functions keep the blog's names, signatures and
arithmetic; the general network reproduces them with

    BLOG_SPEC = NetworkSpec((1, 10, 1), ("sigmoid", "sigmoid"), loss="half_mse", reduction="sum")

Read this first: the loss the blog *prints* is not the loss it *minimises*.
-------------------------------------------------------------------------------
``loss(y, a2)`` prints the mean over the N = 100 samples,

    printed L = mean((y - a2)**2 / 2),

but ``backward`` starts from dz2 = (a2 - y) * sigmoid'(z2) with no 1/N: that is
the gradient of the *sum*,

    minimised L = sum((y - a2)**2 / 2) = N * printed L,

so every step is N = 100 times the gradient of the printed loss.  lr = 0.1 on
the sum is lr = 10 on the mean.  Nothing is wrong with that, but a reader who
checks the printed loss against the update will be puzzled; the general network
states the reduction explicitly (``reduction="sum"`` reproduces the blog).

Three deliberate differences from the blog, none of which changes its numbers
(1000 epochs land on the blog program's weights bit for bit):

- ``sigmoid`` silences the overflow of exp(-z) for very negative z, where
  1 / (1 + inf) = 0 is the right answer (the blog's program warns there);
- ``update`` returns new arrays instead of also overwriting its arguments in
  place (``w1 -= lr * dw1``), so a caller's arrays are never modified;
- ``train`` also returns the (epoch, loss) pairs it prints, and printing can be
  switched off with ``verbose=False``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from handwritten.activations import sigmoid
from handwritten.spec import NetworkSpec, Params

Array = NDArray[np.floating[Any]]

BLOG_SPEC = NetworkSpec((1, 10, 1), ("sigmoid", "sigmoid"), loss="half_mse", reduction="sum")
"""The general network that equals the blog's functions."""

__all__ = ["BLOG_SPEC", "backward", "blog_problem", "d_sigmoid", "forward", "from_params",
           "loss", "predict", "sigmoid", "to_params", "train", "update"]


def d_sigmoid(x: Array) -> Array:
    """sigmoid'(x) = sigmoid(x) (1 - sigmoid(x)), from the pre-activation as in the blog."""
    s = sigmoid(x)
    return s * (1 - s)


def forward(x: Array, w1: Array, b1: Array, w2: Array, b2: Array
            ) -> tuple[Array, Array, Array, Array]:
    """z1 = x @ w1 + b1, a1 = sigmoid(z1), z2 = a1 @ w2 + b2, a2 = sigmoid(z2).

    Shapes: x (N, 1), w1 (1, 10), b1 (10,), w2 (10, 1), b2 (1,);
    z1, a1 (N, 10); z2, a2 (N, 1).
    """
    z1 = np.dot(x, w1) + b1
    a1 = sigmoid(z1)
    z2 = np.dot(a1, w2) + b2
    a2 = sigmoid(z2)
    return z1, a1, z2, a2


def loss(y: Array, a2: Array) -> np.floating[Any]:
    """The loss the blog prints: mean((y - a2)**2 / 2), the *mean* over samples."""
    return np.mean(np.square(y - a2) / 2)


def backward(x: Array, y: Array, w1: Array, b1: Array, w2: Array, b2: Array,
             z1: Array, a1: Array, z2: Array, a2: Array
             ) -> tuple[Array, Array, Array, Array]:
    """Gradients of sum((y - a2)**2 / 2) -- the sum, N times the printed loss's.

        dz2 = (a2 - y) * sigmoid'(z2)     (N, 1)
        dw2 = a1.T @ dz2                  (10, 1)
        db2 = dz2.sum(axis=0)             (1,)
        da1 = dz2 @ w2.T                  (N, 10)
        dz1 = da1 * sigmoid'(z1)          (N, 10)
        dw1 = x.T @ dz1                   (1, 10)
        db1 = dz1.sum(axis=0)             (10,)
    """
    dz2 = (a2 - y) * d_sigmoid(z2)
    dw2 = np.dot(a1.T, dz2)
    db2 = np.sum(dz2, axis=0)
    da1 = np.dot(dz2, w2.T)
    dz1 = da1 * d_sigmoid(z1)
    dw1 = np.dot(x.T, dz1)
    db1 = np.sum(dz1, axis=0)
    return dw1, db1, dw2, db2


def update(w1: Array, b1: Array, w2: Array, b2: Array,
           dw1: Array, db1: Array, dw2: Array, db2: Array, lr: float
           ) -> tuple[Array, Array, Array, Array]:
    """One gradient-descent step, theta - lr * d_theta, returned as new arrays."""
    return w1 - lr * dw1, b1 - lr * db1, w2 - lr * dw2, b2 - lr * db2


def train(x: Array, y: Array, w1: Array, b1: Array, w2: Array, b2: Array, lr: float,
          epoch: int, *, verbose: bool = True
          ) -> tuple[Array, Array, Array, Array, list[tuple[int, float]]]:
    """``epoch`` full-batch steps; prints ``epoch: i, loss: L`` every 10 epochs as the blog.

    The loss printed at epoch i is that of the params *before* step i (the blog
    evaluates ``loss(y, a2)`` with the a2 of the forward pass that fed the step).

    Returns
    -------
    w1, b1, w2, b2 : the trained params
    log : list of (i, loss) for i = 0, 10, 20, ..., exactly what was printed
    """
    log = []
    for i in range(epoch):
        z1, a1, z2, a2 = forward(x, w1, b1, w2, b2)
        dw1, db1, dw2, db2 = backward(x, y, w1, b1, w2, b2, z1, a1, z2, a2)
        w1, b1, w2, b2 = update(w1, b1, w2, b2, dw1, db1, dw2, db2, lr)
        if i % 10 == 0:
            log.append((i, float(loss(y, a2))))
            if verbose:
                print(f"epoch: {i}, loss: {log[-1][1]}")
    return w1, b1, w2, b2, log


def predict(x: Array, w1: Array, b1: Array, w2: Array, b2: Array) -> Array:
    """The network's output a2 for inputs x of shape (N, 1)."""
    return forward(x, w1, b1, w2, b2)[3]


def blog_problem(rng: np.random.Generator, n: int = 100, noise_std: float = 0.1
                 ) -> tuple[Array, Array, Array, Array, Array, Array]:
    """The blog's data and initial weights, drawn from ``rng`` in the blog's order.

        x  = linspace(-1, 1, n)[:, None]          (n, 1)
        y  = x**2 + N(0, noise_std**2) noise      (n, 1)
        w1 ~ N(0, 1) (1, 10), b1 = 0 (10,), w2 ~ N(0, 1) (10, 1), b2 = 0 (1,)

    The weights are the same draws as ``init_params(BLOG_SPEC, rng, "blog")``
    would make right after the noise.

    Returns
    -------
    x, y, w1, b1, w2, b2
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    x = np.linspace(-1, 1, n)[:, np.newaxis]
    noise = rng.normal(0, noise_std, size=x.shape)
    y = np.square(x) + noise
    w1 = rng.normal(0, 1, size=(1, 10))
    b1 = np.zeros(10)
    w2 = rng.normal(0, 1, size=(10, 1))
    b2 = np.zeros(1)
    return x, y, w1, b1, w2, b2


def to_params(w1: Array, b1: Array, w2: Array, b2: Array) -> Params:
    """The blog's four arrays as general-network params (the same arrays, not copies)."""
    return [{"W": w1, "b": b1}, {"W": w2, "b": b2}]


def from_params(params: Params) -> tuple[Array, Array, Array, Array]:
    """General-network params of BLOG_SPEC back as (w1, b1, w2, b2)."""
    return params[0]["W"], params[0]["b"], params[1]["W"], params[1]["b"]
