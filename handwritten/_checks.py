"""Input checks shared by the public entry points.

Every check raises before anything is computed, names the argument, and says
what was expected.  Nothing here mutates its arguments.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from handwritten.losses import LOSSES

if TYPE_CHECKING:
    from handwritten.network import NetworkSpec

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


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


def check_positive_int(name: str, value: object) -> int:
    """A positive integer (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def check_real(name: str, value: object, *, low: float, high: float = np.inf,
               low_open: bool = False, high_open: bool = True) -> float:
    """A finite real number in an interval; the message states the interval."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    too_low = v <= low if low_open else v < low
    too_high = v >= high if high_open else v > high
    if not np.isfinite(v) or too_low or too_high:
        interval = ("(" if low_open else "[") + f"{low}, {high}" + (")" if high_open else "]")
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return v


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
    from handwritten.network import NetworkSpec

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
