"""Built-in datasets, generated in code from an explicit numpy.random.Generator (and
scikit-learn's handwritten digits, which ship inside scikit-learn: no download).

Each comes with a preset network that fits it; the command line's options
override any part of the preset (an MLP's, or ``--network`` in place of a Sequential).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from handwritten import NetworkSpec
from handwritten.layers import Activation, Conv2d, Dense, Flatten, MaxPool2d, Sequential
from handwritten.seed import BLOG_SPEC

Data = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Preset:
    """A dataset and the network, optimizer and schedule that fit it by default."""

    make: Callable[[np.random.Generator, int], Data]
    n: int
    spec: NetworkSpec | Sequential
    optimizer: str
    lr: float
    epochs: int
    init: str
    kind: str                     # "regression" (1-D x), "classification" (2-D x), "images"
    about: str
    holdout: float = 0.0
    """The share of the data held out of training, to report accuracy on (after the
    dataset's own shuffle: the last samples)."""
    batch_size: int | None = None
    """Mini-batches of this size, shuffled each epoch, unless --batch-size says otherwise
    (None: full batch)."""
    log_every: int = 10
    """Epochs between two lines of fit's log."""


def blog(rng: np.random.Generator, n: int) -> Data:
    """The blog's data: x = linspace(-1, 1, n), y = x**2 + N(0, 0.1**2) (drawn first)."""
    x = np.linspace(-1, 1, n)[:, np.newaxis]
    return x, np.square(x) + rng.normal(0, 0.1, size=x.shape)


def sin(rng: np.random.Generator, n: int) -> Data:
    """y = 0.5 + 0.4 sin(pi x) + N(0, 0.05**2) on x in [-1, 1] (inside a sigmoid's range)."""
    x = np.linspace(-1, 1, n)[:, np.newaxis]
    return x, 0.5 + 0.4 * np.sin(np.pi * x) + rng.normal(0, 0.05, size=x.shape)


def xor(rng: np.random.Generator, n: int) -> Data:
    """Points in [-1, 1]^2 labelled 1 where x1 * x2 > 0: XOR of the signs (targets (n, 1))."""
    x = rng.uniform(-1, 1, size=(n, 2))
    return x, (x[:, :1] * x[:, 1:] > 0).astype(np.float64)


def moons(rng: np.random.Generator, n: int) -> Data:
    """Two interleaving half circles with N(0, 0.1**2) noise; integer labels 0/1."""
    labels = rng.integers(0, 2, size=n)
    angle = rng.uniform(0, np.pi, size=n)
    x = np.where(labels[:, None] == 0,
                 np.stack([np.cos(angle), np.sin(angle)], axis=1),
                 np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], axis=1))
    x = x + rng.normal(0, 0.1, size=x.shape)
    return (x - [0.5, 0.25]) / [1.0, 0.5], labels


def spirals(rng: np.random.Generator, n: int) -> Data:
    """Three interleaved spiral arms; integer labels 0, 1, 2."""
    labels = rng.integers(0, 3, size=n)
    r = rng.uniform(0.1, 1.0, size=n)
    angle = 4 * r + labels * 2 * np.pi / 3 + rng.normal(0, 0.15, size=n)
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1), labels


def digits(rng: np.random.Generator, n: int) -> Data:
    """scikit-learn's handwritten digits: 1,797 images of 8 x 8 pixels with 16 grey levels
    (the UCI optical recognition set's test part, shipped inside scikit-learn), in an order
    drawn from ``rng``: x (n, 1, 8, 8) scaled to [0, 1], integer labels 0-9."""
    try:
        from sklearn.datasets import load_digits  # type: ignore[import-untyped]
    except ImportError:
        raise ValueError("dataset 'digits' needs scikit-learn (pip install 'bpnet[cli]')"
                         ) from None
    data = load_digits()
    order = rng.permutation(len(data.target))[:n]
    return data.images[order, None] / 16.0, data.target[order]


DIGITS_CNN = Sequential(
    [Conv2d(1, 8, 3, padding=1), Activation("relu"), MaxPool2d(2),
     Conv2d(8, 16, 3, padding=1), Activation("relu"), MaxPool2d(2),
     Flatten(), Dense(64, 10), Activation("softmax")],
    "softmax_cross_entropy", "mean", in_shape=(1, 8, 8))
"""conv-relu-pool twice, a dense layer, softmax: (1, 8, 8) -> (8, 8, 8) -> (8, 4, 4) ->
(16, 4, 4) -> (16, 2, 2) -> 64 -> 10."""


PRESETS: dict[str, Preset] = {
    "blog": Preset(blog, 100, BLOG_SPEC, "sgd", 0.1, 1000, "blog", "regression",
                   "the blog post's y = x^2 + noise, its network"),
    "sin": Preset(sin, 100, NetworkSpec((1, 16, 1), ("tanh", "sigmoid"), "half_mse", "mean"),
                  "adam", 0.02, 1000, "glorot_uniform", "regression", "a noisy sine"),
    "xor": Preset(xor, 200, NetworkSpec((2, 8, 1), ("tanh", "sigmoid"), "bce_with_logits",
                                        "mean"),
                  "adam", 0.05, 500, "glorot_uniform", "classification",
                  "XOR of the coordinates' signs"),
    "moons": Preset(moons, 300, NetworkSpec((2, 16, 2), ("tanh", "softmax"),
                                            "softmax_cross_entropy", "mean"),
                    "adam", 0.05, 500, "glorot_uniform", "classification", "two moons"),
    "spirals": Preset(spirals, 300, NetworkSpec((2, 32, 32, 3), ("relu", "relu", "softmax"),
                                                "softmax_cross_entropy", "mean"),
                      "adam", 0.02, 1000, "he_normal", "classification", "three spiral arms"),
    "digits": Preset(digits, 1797, DIGITS_CNN, "adam", 0.01, 20, "he_normal", "images",
                     "scikit-learn's 8x8 handwritten digits, a small CNN", holdout=0.2,
                     batch_size=32, log_every=1),
}


def make(name: str, rng: np.random.Generator, n: int | None = None, dtype: Any = np.float64
         ) -> Data:
    """Inputs (n, n_in) -- images (n, C, H, W) -- in ``dtype`` and targets (float ``dtype``,
    or integer labels)."""
    preset = PRESETS[name]
    x, y = preset.make(rng, n or preset.n)
    return x.astype(dtype), (y.astype(dtype) if y.dtype.kind == "f" else y)
