"""Test-side wrappers around bpnet.compare, the one comparison helper, and input snapshots."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bpnet.compare import LeafReport, compare_leaf, first_failure


def assert_reports_ok(reports: Sequence[LeafReport], context: str) -> None:
    """Fail with the first failing quantity (in derivation order) and the case's context."""
    bad = first_failure(reports)
    assert bad is None, f"{context}\nfirst disagreement: {bad}"


def assert_leaf_close(actual: Any, expected: Any, name: str, *, rtol: float,
                      atol_scale: float = 0.0, atol: float = 0.0,
                      mask: np.ndarray | None = None, check_dtype: bool = True) -> None:
    """Compare one array: shape, dtype, then values (see bpnet.compare.compare_leaf)."""
    report = compare_leaf(actual, expected, name, None, rtol=rtol, atol_scale=atol_scale,
                          atol=atol, mask=mask, check_dtype=check_dtype)
    assert report.ok, str(report)


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
