"""One comparison helper for params-shaped and trace-shaped structures.

It checks keys, then shape, then dtype, then values, and names the failing leaf
("layer 1 d_W: max rel err 3e-04 > 1e-10").  Used by every test that compares two
implementations or an implementation with an oracle.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def leaf_error(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float
               ) -> tuple[bool, float, float]:
    """Whether |actual - expected| <= atol + rtol |expected| everywhere; max abs and rel error."""
    diff = np.abs(np.asarray(actual, dtype=np.float64) - np.asarray(expected, dtype=np.float64))
    ref = np.abs(np.asarray(expected, dtype=np.float64))
    ok = bool(np.all(diff <= atol + rtol * ref))
    max_abs = float(diff.max()) if diff.size else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(ref > 0, diff / ref, np.where(diff > 0, np.inf, 0.0))
    return ok, max_abs, float(rel.max()) if rel.size else 0.0


def assert_leaf_close(actual: Any, expected: Any, name: str, *, rtol: float,
                      atol_scale: float = 0.0, atol: float = 0.0,
                      mask: np.ndarray | None = None, check_dtype: bool = True) -> None:
    """Compare one array: shape, dtype, then values.

    The absolute floor is ``atol + atol_scale * max|expected|`` (entries that
    cancel to ~0 carry no relative accuracy; see bpnet.tolerances).
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (
        f"{name}: shape {actual.shape}, expected {expected.shape}")
    if check_dtype:
        assert actual.dtype == expected.dtype, (
            f"{name}: dtype {actual.dtype}, expected {expected.dtype}")
    if mask is not None:
        actual, expected = actual[mask], expected[mask]
    floor = atol + atol_scale * (float(np.abs(expected).max()) if expected.size else 0.0)
    ok, max_abs, max_rel = leaf_error(actual, expected, rtol, floor)
    assert ok, (f"{name}: max abs err {max_abs:.3g}, max rel err {max_rel:.3g} exceeds "
                f"rtol {rtol:.3g} + atol {floor:.3g}")


def assert_tree_close(actual: Sequence[Mapping[str, Any]], expected: Sequence[Mapping[str, Any]],
                      what: str, *, rtol: float, atol_scale: float = 0.0, atol: float = 0.0,
                      order: Sequence[str] | None = None) -> None:
    """Compare params/grads/trace layers leaf by leaf, in ``order`` of keys if given.

    With ``order`` (e.g. backward order), layers are walked from the output down so
    the first failure reported is the first derivation step that disagrees.
    """
    assert len(actual) == len(expected), (
        f"{what}: {len(actual)} layers, expected {len(expected)}")
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert set(a) == set(e), f"{what} layer {i}: keys {sorted(a)}, expected {sorted(e)}"
    layers = range(len(expected))
    for i in (reversed(layers) if order else layers):
        for key in (k for k in (order or expected[i]) if k in expected[i]):
            assert_leaf_close(actual[i][key], expected[i][key], f"{what} layer {i} {key}",
                              rtol=rtol, atol_scale=atol_scale, atol=atol)


def snapshot(*objs: Any) -> Any:
    """A deep copy of the caller's inputs, to prove later that nothing was modified."""
    return copy.deepcopy(objs)


def assert_unchanged(before: Any, *objs: Any) -> None:
    """Every array in ``objs`` is bit-for-bit what ``snapshot`` saw."""
    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, np.ndarray):
            assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, path
            assert np.array_equal(a, b, equal_nan=True), f"{path} was modified"
        elif isinstance(a, Mapping):
            assert set(a) == set(b), f"{path} keys changed"
            for k in a:
                walk(a[k], b[k], f"{path}[{k!r}]")
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b), f"{path} length changed"
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{path}[{i}]")
    walk(before, objs, "inputs")
