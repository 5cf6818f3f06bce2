"""The blog post's training run as it was written: the oracle for handwritten.seed.

Kept independent of handwritten/ on purpose: the naive sigmoid 1 / (1 + exp(-x)),
a derivative that recomputes it, and updates that overwrite the weights in place,
exactly as the blog's program does.  Only the seeding differs: the blog draws
from NumPy's global RNG; the data and initial weights are handed in here.
"""

from __future__ import annotations

import numpy as np


def blog_training_run(x: np.ndarray, y: np.ndarray, w1: np.ndarray, b1: np.ndarray,
                      w2: np.ndarray, b2: np.ndarray, lr: float, epochs: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """Returns the final weights and the losses the blog prints (every 10 epochs)."""
    w1, b1, w2, b2 = w1.copy(), b1.copy(), w2.copy(), b2.copy()

    def sig(v: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-v))

    printed = []
    for i in range(epochs):
        z1 = np.dot(x, w1) + b1
        a1 = sig(z1)
        z2 = np.dot(a1, w2) + b2
        a2 = sig(z2)
        dz2 = (a2 - y) * (sig(z2) * (1 - sig(z2)))
        dw2 = np.dot(a1.T, dz2)
        db2 = np.sum(dz2, axis=0)
        dz1 = np.dot(dz2, w2.T) * (sig(z1) * (1 - sig(z1)))
        dw1 = np.dot(x.T, dz1)
        db1 = np.sum(dz1, axis=0)
        w1 -= lr * dw1
        b1 -= lr * db1
        w2 -= lr * dw2
        b2 -= lr * db2
        if i % 10 == 0:
            printed.append(float(np.mean(np.square(y - a2) / 2)))
    return w1, b1, w2, b2, printed
