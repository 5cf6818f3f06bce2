"""Test-side wrappers around bpnet.compare, the one comparison helper, and input snapshots."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import settings

import handwritten as hw
from bpnet.compare import (
    LeafReport,
    compare_leaf,
    compare_step,
    first_failure,
    torch_lerp_state,
)
from bpnet.tolerances import ATOL64_SCALE, RTOL64, f32_scale
from handwritten.spec import State

CI_EXAMPLES = 150
"""The ``ci`` profile's examples per property (tests/conftest.py)."""


def at_most(examples: int) -> settings:
    """Hypothesis settings for a property whose examples each compile a JAX program: it runs
    ``examples`` in the ``ci`` profile (150 for the others), as many as the profile's own
    number where that is smaller (``quick``, ``dev``), and the same share of a larger one
    (``thorough``: examples * 1000 / 150).  Read when the test module is imported:
    tests/conftest.py has loaded the profile by then."""
    profile = settings.default.max_examples
    return settings(max_examples=min(examples, profile) if profile <= CI_EXAMPLES
                    else examples * profile // CI_EXAMPLES)


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
            # equal_nan is for float and complex arrays (np.isnan refuses object arrays)
            assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), f"{path} was modified"
        elif isinstance(a, Mapping):
            assert set(a) == set(b), f"{path} keys changed"
            for k in a:
                walk(a[k], b[k], f"{path}[{k!r}]")
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b), f"{path} length changed"
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{path}[{i}]")
    walk(before, objs, "inputs")


def assert_trajectories_agree(ours: Any, theirs: Any, allowed_at: Sequence[float],
                              twin_losses: Sequence[float], context: str) -> float:
    """Two training Histories of one run: the params after every recorded step within the
    envelope ``allowed_at`` (bpnet.compare.envelope), and each step's loss within
    trajectory_rtol(k) of the largest loss plus TWIN_FACTOR times the twin run's loss drift
    at that step.  Returns the worst params divergence in units of its allowance (for
    Hypothesis's target())."""
    from bpnet.compare import param_divergence
    from bpnet.tolerances import TWIN_FACTOR, trajectory_rtol

    assert theirs.recorded_steps == ours.recorded_steps, context
    worst = 0.0
    for k, allowed, a, b in zip(ours.recorded_steps, allowed_at, ours.params, theirs.params):
        diff = param_divergence(a, b)
        worst = max(worst, diff / allowed)
        assert diff <= allowed, (f"{context}: params after step {k} differ by {diff:.3g} "
                                 f"(normwise) > allowed {allowed:.3g} (the envelope)")
    # losses: on the scale of the largest loss, plus the twin's loss drift at that step
    scale = float(np.abs(ours.losses).max())
    for k in range(1, len(ours.losses) + 1):
        mine, other = float(ours.losses[k - 1]), float(theirs.losses[k - 1])
        allowed = trajectory_rtol(k) * scale + TWIN_FACTOR * abs(twin_losses[k - 1] - mine)
        assert abs(other - mine) <= allowed, (
            f"{context}: loss before step {k} differs by {abs(other - mine):.3g} "
            f"> allowed {allowed:.3g}")
    return worst


def assert_one_step_agrees(optimizer: hw.OptimizerSpec, params: hw.Params, grads: hw.Params,
                           state: State, ours: tuple[hw.Params, State], name: str,
                           reference: Any, context: str) -> None:
    """One step of ``reference`` (a reference package) from the same params, gradients and
    state as ``ours``: the params, then every buffer, at RTOL64.  Against torch, a leaf may
    also differ by its distance to handwritten's step as torch rounds its lerp's weight
    (bpnet.compare.torch_lerp_state: a tiny beta1 is 0 to torch)."""
    theirs = reference.step(optimizer, params, grads, state)
    twin = (hw.step(optimizer, params, grads, torch_lerp_state(optimizer, state))
            if name == "reference_torch" else None)
    assert_reports_ok(compare_step(ours, theirs, rtol=RTOL64, atol_scale=ATOL64_SCALE,
                                   twin=twin), context)


def output_d_a_error(exact: Any, traces: dict[str, Any], references: Iterable[str]) -> float:
    """The references' largest float32 normwise error in the output layer's d_a (0 for a
    fused loss, which has none): what every backward quantity may inherit (f32_allowed)."""
    out = exact.layers[-1]
    if "d_a" not in out:
        return 0.0
    scale = f32_scale(out, "d_a")
    return max(float(np.abs(traces[name].layers[-1]["d_a"].astype(np.float64) - out["d_a"]).max())
               / scale for name in references)
