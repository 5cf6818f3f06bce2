"""Forward mode and per-example gradients (handwritten/derivatives.py) against torch.func and
JAX, and against what they must be: linear in the direction, a finite difference of the
forward pass, per-example gradients that sum to the batch's."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import handwritten as hw
from bpnet.compare import compare_params
from bpnet.problems import make_params
from bpnet.tolerances import ATOL64_SCALE, RTOL64
from handwritten import derivatives
from tests.helpers import assert_leaf_close, assert_reports_ok, assert_unchanged, at_most, snapshot
from tests.strategies import Problem, problems

pytest.importorskip("torch")
pytest.importorskip("jax")
from reference_jax import derivatives as jax_derivatives
from reference_torch import derivatives as torch_derivatives

REFERENCES = {"reference_torch": torch_derivatives, "reference_jax": jax_derivatives}
# JAX compiles jvp and vmap(grad) once per shape (~0.3 s): fewer examples than the
# bucketed properties, still every activation and loss within a CI run.
FEW = at_most(60)


def _direction(p: Problem, seed: int) -> hw.Params:
    return make_params(p.spec, np.random.default_rng(seed), np.float64)


@FEW
@given(p=problems(max_depth=3, max_width=8, max_batch=8), seed=st.integers(0, 2**16))
def test_jvp_matches_torch_func_and_jax(p: Problem, seed: int) -> None:
    v = _direction(p, seed)
    before = snapshot(p.params, p.x, v)
    out, tangent = derivatives.jvp(p.spec, p.params, p.x, v)
    assert_unchanged(before, p.params, p.x, v)
    for name, ref in REFERENCES.items():
        their_out, their_tangent = ref.jvp(p.spec, p.params, p.x, v)
        for label, a, e in (("output", out, their_out), ("output_dot", tangent, their_tangent)):
            assert_leaf_close(a, e, f"{label} vs {name}: {p!r}", rtol=RTOL64,
                              atol=ATOL64_SCALE * float(np.abs(e).max()))


@given(p=problems(max_depth=3, max_width=8, max_batch=8), seed=st.integers(0, 2**16),
       c=st.floats(-3, 3))
def test_jvp_is_linear_in_the_direction_and_a_derivative_of_the_forward_pass(
        p: Problem, seed: int, c: float) -> None:
    """jvp(v1 + c v2) = jvp(v1) + c jvp(v2); and jvp(v) is d/dh forward(params + h v) at 0,
    by central differences (h = 1e-6: error ~h**2 * f''' + eps/h)."""
    v1, v2 = _direction(p, seed), _direction(p, seed + 1)
    combined = [{k: v1[l][k] + c * v2[l][k] for k in ("W", "b")} for l in range(len(v1))]
    _, t1 = derivatives.jvp(p.spec, p.params, p.x, v1)
    _, t2 = derivatives.jvp(p.spec, p.params, p.x, v2)
    _, t = derivatives.jvp(p.spec, p.params, p.x, combined)
    scale = max(1.0, float(np.abs(t1).max()), float(np.abs(c * t2).max()))
    np.testing.assert_allclose(t, t1 + c * t2, rtol=0, atol=1e-12 * scale)
    if any(hw.activations.activation(n).kinked for n in p.spec.activations):
        return                         # a kink within h of some z: no finite difference
    h = 1e-6

    def moved(sign: float) -> np.ndarray:
        shifted = [{k: p.params[l][k] + sign * h * v1[l][k] for k in ("W", "b")}
                   for l in range(len(v1))]
        return hw.predict(p.spec, shifted, p.x)

    fd = (moved(1.0) - moved(-1.0)) / (2 * h)
    np.testing.assert_allclose(t1, fd, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(fd).max())))


@FEW
@given(p=problems(max_depth=3, max_width=8, max_batch=8))
def test_per_example_grads_match_vmap_grad_and_sum_to_the_batch_gradient(p: Problem) -> None:
    before = snapshot(p.params, p.x, p.y)
    ours = derivatives.per_example_grads(p.spec, p.params, p.x, p.y)
    assert_unchanged(before, p.params, p.x, p.y)
    for name, ref in REFERENCES.items():
        assert_reports_ok(compare_params(ours, ref.per_example_grads(p.spec, p.params, p.x, p.y),
                                         rtol=RTOL64, atol_scale=ATOL64_SCALE),
                          f"per-example grads vs {name}: {p!r}")
    _, grads = hw.loss_and_grads(p.spec, p.params, p.x, p.y)
    data = [{"W": g["W"] - p.spec.weight_decay * w["W"], "b": g["b"]}
            for g, w in zip(grads, p.params)]
    summed = [{k: v.sum(axis=0) for k, v in layer.items()} for layer in ours]
    assert_reports_ok(compare_params(summed, data, rtol=RTOL64, atol_scale=ATOL64_SCALE),
                      f"sum of per-example grads vs the data term's gradient: {p!r}")
    norms = derivatives.per_example_grad_norms(p.spec, p.params, p.x, p.y)
    explicit = np.sqrt(sum((v.reshape(p.batch, -1) ** 2).sum(axis=1)
                           for layer in ours for v in layer.values()))
    np.testing.assert_allclose(norms, explicit, rtol=1e-13, atol=1e-300)


def test_per_example_norms_are_finite_wherever_the_per_example_grads_are() -> None:
    """Inputs of about 1e160 with first-layer weights of 1e-160: every per-example gradient
    is finite (about 1e160 * d_z), but ||x[i]||**2 is not (beyond about 1.3e154): the norms
    must still be the explicit gradients' norms (math.hypot does not overflow)."""
    spec = hw.NetworkSpec((3, 4, 2), ("tanh", "identity"), "half_mse", "sum")
    rng = np.random.default_rng(0)
    params = make_params(spec, rng, "float64")
    params[0]["W"] = params[0]["W"] * 1e-160          # z of the first layer stays about 1
    x = rng.uniform(-1, 1, (5, 3)) * 1e160
    y = rng.uniform(-1, 1, (5, 2))
    per_example = derivatives.per_example_grads(spec, params, x, y)
    explicit = [math.hypot(*np.concatenate([v[i].ravel() for layer in per_example
                                            for v in layer.values()])) for i in range(5)]
    norms = derivatives.per_example_grad_norms(spec, params, x, y)
    assert np.isfinite(explicit).all() and np.max(explicit) > 1e154
    # the same sums of squares in another order, on scaled entries: a few ulps apart
    np.testing.assert_allclose(norms, explicit, rtol=1e-13)


def test_bad_direction_is_refused_by_name() -> None:
    spec = hw.NetworkSpec((2, 3, 1), ("tanh", "identity"))
    params = hw.init_params(spec, np.random.default_rng(0))
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"v\[0\]\['W'\] must have shape \(2, 3\)"):
        derivatives.jvp(spec, params, x, [{"W": np.zeros((3, 3)), "b": np.zeros(3)},
                                          params[1]])
    with pytest.raises(TypeError, match=r"v must be a list"):
        derivatives.jvp(spec, params, x, "v")  # type: ignore[arg-type]
