"""Input checks shared by every implementation's public entry points.

Every check raises before anything is computed, names the argument, and says
what was expected.  Nothing here mutates its arguments.  ``reference_torch``
and ``reference_jax`` call the same checks, so all three refuse the same inputs
with the same messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from handwritten.losses import LOSSES
from handwritten.spec import NetworkSpec, OptimizerSpec, finite_real, positive_int

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

__all__ = ["FLOAT_DTYPES", "check_batch_order", "check_float_array", "check_params",
           "check_problem", "check_rng", "check_training_args", "check_x", "check_y",
           "finite_real", "positive_int"]


def check_float_array(name: str, value: object, ndim: int) -> np.dtype[Any]:
    """A finite float32/float64 ndarray of the given ndim; returns its dtype."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(value).__name__}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {value.dtype}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {value.shape}")
    if not np.isfinite(value).all():
        raise ValueError(f"{name} must be finite, but it contains NaN or inf")
    return value.dtype


def check_rng(rng: object) -> np.random.Generator:
    """An explicit numpy.random.Generator (never the global RNG)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    return rng


def check_params(spec: NetworkSpec, params: object, dtype: np.dtype[Any] | None = None,
                 name: str = "params") -> np.dtype[Any]:
    """One {"W": (fan_in, fan_out), "b": (fan_out,)} dict per layer, one dtype, finite."""
    if not isinstance(params, Sequence) or isinstance(params, (str, bytes)):
        raise TypeError(f"{name} must be a list of {{'W', 'b'}} dicts, got {type(params).__name__}")
    if len(params) != spec.n_layers:
        raise ValueError(f"{name} must have {spec.n_layers} layers for layer_sizes "
                         f"{spec.layer_sizes}, got {len(params)}")
    for i, layer in enumerate(params):
        if not isinstance(layer, dict) or set(layer) != {"W", "b"}:
            got = sorted(layer) if isinstance(layer, dict) else type(layer).__name__
            raise TypeError(f"{name}[{i}] must be a dict with keys 'W' and 'b', got {got}")
        fan_in, fan_out = spec.layer_sizes[i], spec.layer_sizes[i + 1]
        for key, ndim, shape in (("W", 2, (fan_in, fan_out)), ("b", 1, (fan_out,))):
            leaf = f"{name}[{i}][{key!r}]"
            leaf_dtype = check_float_array(leaf, layer[key], ndim)
            if layer[key].shape != shape:
                raise ValueError(f"{leaf} must have shape {shape} for layer_sizes "
                                 f"{spec.layer_sizes}, got {layer[key].shape}")
            if dtype is None:
                dtype = leaf_dtype
            elif leaf_dtype != dtype:
                raise TypeError(f"{leaf} has dtype {leaf_dtype}, but the rest is {dtype}: "
                                "mixed dtypes are not converted silently")
    assert dtype is not None
    return dtype


def check_x(spec: NetworkSpec, x: object) -> np.dtype[Any]:
    """spec is a NetworkSpec; x of shape (batch, n_in), batch >= 1."""
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"spec must be a NetworkSpec, got {type(spec).__name__}")
    dtype = check_float_array("x", x, 2)
    assert isinstance(x, np.ndarray)
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch (shape[0] == 0); need at least one sample")
    if x.shape[1] != spec.layer_sizes[0]:
        raise ValueError(f"x must have shape (batch, {spec.layer_sizes[0]}) for layer_sizes "
                         f"{spec.layer_sizes}, got {x.shape}")
    return dtype


def check_y(spec: NetworkSpec, y: object, batch: int, dtype: np.dtype[Any]) -> None:
    """Targets matching the loss: see the ``targets`` field of the loss registry."""
    n_out = spec.layer_sizes[-1]
    kind = LOSSES[spec.loss].targets
    if not isinstance(y, np.ndarray):
        raise TypeError(f"y must be a numpy.ndarray, got {type(y).__name__}")
    if kind == "class" and y.ndim == 1:
        if y.dtype.kind not in "iu":
            raise TypeError(f"y as class labels (1-D) must be an integer array, got {y.dtype}")
        if y.shape[0] != batch:
            raise ValueError(f"y must hold {batch} labels (one per row of x), got {y.shape[0]}")
        if y.size and (y.min() < 0 or y.max() >= n_out):
            raise ValueError(f"y labels must lie in [0, {n_out}) for {n_out} classes, "
                             f"got values in [{y.min()}, {y.max()}]")
        return
    y_dtype = check_float_array("y", y, 2)
    if y.shape != (batch, n_out):
        raise ValueError(f"y must have shape ({batch}, {n_out}) (batch of x, n_out), got {y.shape}")
    if y_dtype != dtype:
        raise TypeError(f"y has dtype {y_dtype} but x and params are {dtype}: "
                        "mixed dtypes are not converted silently")
    if kind in ("probability", "class") and ((y < 0).any() or (y > 1).any()):
        raise ValueError(f"y must hold probabilities in [0, 1] for loss {spec.loss!r}")
    if kind == "class":
        # rows of class probabilities must sum to 1: the fused gradient a - y relies on it.
        tol = 4 * n_out * np.finfo(dtype).eps
        if np.abs(y.sum(axis=1) - 1).max() > tol:
            raise ValueError(f"y rows must sum to 1 (one-hot or class probabilities) for loss "
                             f"{spec.loss!r}; pass integer labels of shape ({batch},) otherwise")


def check_problem(spec: NetworkSpec, params: object, x: object, y: object) -> np.dtype[Any]:
    """params, x and y together: shapes chain, one float dtype, all finite."""
    x_dtype = check_x(spec, x)
    assert isinstance(x, np.ndarray)
    check_params(spec, params, x_dtype)
    check_y(spec, y, x.shape[0], x_dtype)
    return x_dtype


# training arguments ----------------------------------------------------------


def check_batch_order(batch_order: object, epochs: int, n: int) -> NDArray[np.intp]:
    """An (epochs, n) integer array whose rows are permutations of range(n)."""
    if not isinstance(batch_order, np.ndarray) or batch_order.dtype.kind not in "iu":
        raise TypeError("batch_order must be an integer numpy.ndarray of shape (epochs, n_samples)")
    if batch_order.shape != (epochs, n):
        raise ValueError(f"batch_order must have shape (epochs, n_samples) = ({epochs}, {n}), "
                         f"got {batch_order.shape}")
    if not (np.sort(batch_order, axis=1) == np.arange(n)).all():
        raise ValueError(f"every row of batch_order must be a permutation of range({n})")
    return batch_order.astype(np.intp)


def check_training_args(optimizer: object, n_samples: int, epochs: object, batch_size: object,
                        batch_order: object, record_every: object, callback: object
                        ) -> tuple[int, int, NDArray[np.intp] | None, int | None]:
    """train()'s arguments besides the problem (checked first with ``check_problem``).

    Returns (epochs, batch_size, batch_order, record_every), each checked; the
    default batch_size (None) is the full batch.
    """
    if not isinstance(optimizer, OptimizerSpec):
        raise TypeError(f"optimizer must be an OptimizerSpec, got {type(optimizer).__name__}")
    epochs = positive_int("epochs", epochs)
    every = None if record_every is None else positive_int("record_every", record_every)
    size = positive_int("batch_size", n_samples if batch_size is None else batch_size)
    if size > n_samples:
        raise ValueError(f"batch_size must be in [1, {n_samples}] (the number of samples), "
                         f"got {size}")
    order = None if batch_order is None else check_batch_order(batch_order, epochs, n_samples)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(epoch, params), "
                        f"got {type(callback).__name__}")
    return epochs, size, order, every

