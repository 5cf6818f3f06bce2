"""Second order by hand (handwritten/derivatives.py: hvp by Pearlmutter's R-operator, gnvp,
r_trace) against torch's double backward and JAX's forward-over-reverse, step by step; and
against what they must be: symmetric, linear in v, a finite difference of the hand-derived
gradient, the full jax.hessian, J^T H J where the fit is exact, positive semi-definite."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import handwritten as hw
from bpnet.compare import compare_params, compare_r_trace
from bpnet.hessian import flatten, layout, unflatten
from bpnet.problems import make_params
from bpnet.tolerances import (
    ATOL64_SCALE,
    EPS64,
    FD_ATOL_SCALE,
    FD_RTOL,
    FD_STEP_SCALE,
    RTOL64,
    f32_allowed,
)
from handwritten import derivatives
from handwritten.activations import ACTIVATIONS, activation
from handwritten.losses import LOSSES
from tests.helpers import assert_leaf_close, assert_reports_ok, assert_unchanged, at_most, snapshot
from tests.strategies import Problem, problems

pytest.importorskip("torch")
pytest.importorskip("jax")
import jax
import jax.numpy as jnp
import torch

import reference_jax
import reference_torch
from reference_jax import derivatives as jax_derivatives
from reference_torch import derivatives as torch_derivatives
from reference_torch.losses import SECOND_ORDER_LOSSES

REFERENCES = {"reference_torch": torch_derivatives, "reference_jax": jax_derivatives}
# JAX compiles the R-trace and the hvp once per shape, torch's double backward is eager:
# fewer examples than the bucketed properties, still every activation and loss in a CI run.
FEW = at_most(60)
SMALL = dict(max_depth=3, max_width=8, max_batch=8)


def _direction(p: Problem, seed: int) -> hw.Params:
    return make_params(p.spec, np.random.default_rng(seed), np.float64)


def _dot(u: hw.Params, w: hw.Params) -> float:
    return float(sum(np.sum(u[l][k] * w[l][k]) for l in range(len(u)) for k in ("W", "b")))


def _norm(u: hw.Params) -> float:
    return float(np.sqrt(_dot(u, u)))


def _combine(u: hw.Params, c: float, w: hw.Params) -> hw.Params:
    return [{k: u[l][k] + c * w[l][k] for k in ("W", "b")} for l in range(len(u))]


# against torch and JAX ---------------------------------------------------------------------

@FEW
@given(p=problems(**SMALL), seed=st.integers(0, 2**16))
def test_r_trace_hvp_and_gnvp_match_torch_and_jax(p: Problem, seed: int) -> None:
    """Every R-quantity in the order the passes form it (a failure names the first wrong
    step, e.g. "layer 0 R{d_z}"), then the products, at the suite's float64 tolerances."""
    v = _direction(p, seed)
    before = snapshot(p.params, p.x, p.y, v)
    ours_trace = derivatives.r_trace(p.spec, p.params, p.x, p.y, v)
    ours_hvp = derivatives.hvp(p.spec, p.params, p.x, p.y, v)
    ours_gnvp = derivatives.gnvp(p.spec, p.params, p.x, p.y, v)
    assert_unchanged(before, p.params, p.x, p.y, v)
    for l, layer in enumerate(ours_hvp):     # hvp is the trace's last quantities, not a copy
        np.testing.assert_array_equal(layer["W"], ours_trace[l]["R{d_W}"])
    for name, ref in REFERENCES.items():
        tol = dict(rtol=RTOL64, atol_scale=ATOL64_SCALE)
        assert_reports_ok(compare_r_trace(ours_trace, ref.r_trace(p.spec, p.params, p.x, p.y, v),
                                          **tol), f"R-operator trace vs {name}: {p!r}")
        assert_reports_ok(compare_params(ours_hvp, ref.hvp(p.spec, p.params, p.x, p.y, v), **tol),
                          f"hvp vs {name}: {p!r}")
        assert_reports_ok(compare_params(ours_gnvp, ref.gnvp(p.spec, p.params, p.x, p.y, v),
                                         **tol), f"gnvp vs {name}: {p!r}")


@FEW
@given(p=problems(**SMALL), seed=st.integers(0, 2**16))
def test_float32_r_trace_error_is_within_the_frameworks_own(p: Problem, seed: int) -> None:
    """The suite's float32 policy, for every R-quantity: handwritten's float32 r_trace is as
    close to the float64 one as torch's and JAX's float32 R-traces are (F32_FACTOR times,
    above F32_FLOOR), normwise per quantity."""
    v = _direction(p, seed)
    exact = derivatives.r_trace(p.spec, p.params, p.x, p.y, v)
    p32 = p.astype("float32")
    v32 = [{k: w.astype(np.float32) for k, w in layer.items()} for layer in v]
    traces = {"handwritten": derivatives.r_trace(p32.spec, p32.params, p32.x, p32.y, v32)}
    traces |= {name: ref.r_trace(p32.spec, p32.params, p32.x, p32.y, v32)
               for name, ref in REFERENCES.items()}
    for l, layer in enumerate(exact):
        for key, value in layer.items():
            scale = max(float(np.abs(value).max()), np.finfo(np.float64).tiny)
            errors = {name: float(np.abs(t[l][key].astype(np.float64) - value).max()) / scale
                      for name, t in traces.items()}
            assert traces["handwritten"][l][key].dtype == np.float32, (l, key)
            allowed = f32_allowed([errors[name] for name in REFERENCES])
            assert errors["handwritten"] <= allowed, (
                f"layer {l} {key}: float32 normwise error {errors['handwritten']:.3g} > "
                f"allowed {allowed:.3g} (torch {errors['reference_torch']:.3g}, "
                f"jax {errors['reference_jax']:.3g}): {p!r}")


def _activation_names() -> list[str]:
    names = sorted(n for n in ACTIVATIONS if n != "swish")
    return [*names, "leaky_relu:0.2", "leaky_relu:3", "elu:0.5", "celu:0.3", "celu:2.5"]


@pytest.mark.parametrize("name", _activation_names())
def test_each_activations_second_derivative_matches_double_backward_and_jax(name: str) -> None:
    """second(z, a, d_a, z_dot) on its own: torch's double backward (the gradient in z of
    <d_a f'(z), z_dot>: the Hessian of <d_a, f(z)> is symmetric) and jax.jvp of jax.vjp.
    z spans [-8, 8], away from the kink at 0 where f'' does not exist."""
    rng = np.random.default_rng(len(name))
    shape = (7, 5)
    z = rng.uniform(-8, 8, size=shape)
    z[np.abs(z) < 1e-3] = 0.5
    d_a, z_dot = rng.normal(size=shape), rng.normal(size=shape)
    f = activation(name)
    assert f.second is not None
    ours = f.second(z, f.forward(z), d_a, z_dot)

    tz = torch.tensor(z, requires_grad=True)
    (g,) = torch.autograd.grad(reference_torch.activations.activation(name)(tz), tz,
                               torch.tensor(d_a), create_graph=True)
    # f' constant (relu, identity, ...): g does not depend on z, and its derivative is 0
    (torch_second,) = (torch.autograd.grad(g, tz, torch.tensor(z_dot)) if g.requires_grad
                       else (torch.zeros_like(tz),))
    with jax.enable_x64(True):
        fj = reference_jax.activations.activation(name)
        _, jax_second = jax.jvp(lambda u: jax.vjp(fj, u)[1](jnp.asarray(d_a))[0],
                                (jnp.asarray(z),), (jnp.asarray(z_dot),))
        jax_second = np.array(jax_second)
    for ref_name, theirs in (("torch", torch_second.numpy()), ("jax", jax_second)):
        assert_leaf_close(ours, theirs, f"{name} second vs {ref_name}", rtol=RTOL64,
                          atol_scale=ATOL64_SCALE)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", [n for n in _activation_names() if n != "softmax"])
def test_second_derivatives_at_the_extremes_are_finite_and_vanish_in_the_tails(
        name: str, dtype: str) -> None:
    """At every special value (0, subnormals, the saturation thresholds, up to the float
    range's end): no NaN, no RuntimeWarning, the dtype kept; and since every f'' here tends
    to 0 as |z| grows (sigmoid, tanh, softplus, gelu and silu saturate, elu-like tails decay,
    piecewise-linear ones are 0), it is 0 to below the smallest normal from |z| = 1e4 on --
    where a careless formula gives inf * 0 = nan (gelu's u'**2 overflows there)."""
    import warnings

    from bpnet.oracle import specials

    z = np.array(specials(dtype), dtype=dtype).reshape(-1, 1)
    f = activation(name)
    assert f.second is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = f.forward(z)
        second = f.second(z, a, np.ones_like(z), np.ones_like(z))
    assert second.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(second)), z[~np.isfinite(second)]
    tail = np.abs(z) >= 1e4
    assert np.all(np.abs(second[tail]) <= np.finfo(dtype).smallest_normal), \
        (z[tail], second[tail])


def _loss_case(name: str, reduction: str, labels: bool, rng: np.random.Generator
               ) -> dict[str, Any]:
    loss = LOSSES[name]
    batch, n_out = 6, 3
    z = rng.normal(size=(batch, n_out)) * 2
    out = loss.fused_with or ("sigmoid" if loss.targets == "probability" else "identity")
    act = activation(out)
    a = act.forward(z)
    z_dot = rng.normal(size=z.shape)
    a_dot = act.backward(z, a, z_dot)
    if loss.targets == "class":
        y: Any = (rng.integers(0, n_out, batch) if labels
                  else rng.dirichlet(np.ones(n_out), size=batch))
    elif loss.targets == "probability":
        y = rng.uniform(size=z.shape)
    else:
        y = rng.normal(size=z.shape)
    return dict(z=z, a=a, y=y, z_dot=z_dot, a_dot=a_dot)


LOSS_CASES = [(n, r, labels) for n in sorted(LOSSES) for r in hw.REDUCTIONS
              for labels in ((False, True) if LOSSES[n].targets == "class" else (False,))]


@pytest.mark.parametrize(("name", "reduction", "labels"), LOSS_CASES)
def test_each_losses_second_derivative_matches_double_backward_and_jax(
        name: str, reduction: str, labels: bool) -> None:
    """loss.second on its own: the Hessian of the loss in its input (a; z when fused) times
    that input's tangent, against torch.autograd.functional.hvp and jax.jvp(jax.grad)."""
    c = _loss_case(name, reduction, labels, np.random.default_rng(3))
    loss = LOSSES[name]
    assert loss.second is not None
    ours = loss.second(c["z"], c["a"], c["y"], reduction, c["z_dot"], c["a_dot"])
    o, o_dot = (c["z"], c["z_dot"]) if loss.fused_with else (c["a"], c["a_dot"])
    ty = torch.tensor(c["y"])
    ty = ty.long() if labels else ty
    _, torch_h = torch.autograd.functional.hvp(
        lambda t: SECOND_ORDER_LOSSES[name](t, t, ty, reduction), torch.tensor(o),
        torch.tensor(o_dot))
    with jax.enable_x64(True):
        lj = reference_jax.losses.LOSSES[name]
        jy = jnp.asarray(c["y"])
        _, jax_h = jax.jvp(jax.grad(lambda t: lj(t, t, jy, reduction)), (jnp.asarray(o),),
                           (jnp.asarray(o_dot),))
        jax_h = np.array(jax_h)
    for ref_name, theirs in (("torch", torch_h.numpy()), ("jax", jax_h)):
        assert_leaf_close(ours, theirs, f"{name} ({reduction}) second vs {ref_name}",
                          rtol=RTOL64, atol_scale=ATOL64_SCALE)


def test_torchs_own_bce_double_backward_adds_1e_12_and_the_reference_avoids_it() -> None:
    """Why reference_torch takes bce's second derivative from SECOND_ORDER_LOSSES: torch
    2.13's binary_cross_entropy double backward is (a**2 - 2ay + y) / ((a + e)**2
    (1 - a + e)**2) with e = 1e-12, off by ~2e-12 / a relative -- 1e-8 at a = 2e-4."""
    a = np.array([2e-4, 0.3, 0.5, 1 - 2e-4])
    y = np.array([0.0, 0.2, 1.0, 0.7])
    exact = y / a**2 + (1 - y) / (1 - a) ** 2
    e = 1e-12
    pinned = (a * a - 2 * a * y + y) / ((a + e) ** 2 * (1 - a + e) ** 2)
    ta, ty = torch.tensor(a, requires_grad=True), torch.tensor(y)
    (g,) = torch.autograd.grad(torch.nn.functional.binary_cross_entropy(ta, ty, reduction="sum"),
                               ta, create_graph=True)
    (torchs,) = torch.autograd.grad(g.sum(), ta)
    np.testing.assert_allclose(torchs.numpy(), pinned, rtol=1e-14)
    assert abs(torchs.numpy()[0] / exact[0] - 1) > 1e-9          # the difference is real
    ours = LOSSES["bce"].second(a, a, y, "sum", a, np.ones_like(a))
    np.testing.assert_allclose(ours, exact, rtol=1e-14)


# what the products must be -----------------------------------------------------------------

@given(p=problems(**SMALL), seed=st.integers(0, 2**16), c=st.floats(-3, 3))
def test_hvp_is_symmetric_linear_and_a_derivative_of_the_gradient(p: Problem, seed: int,
                                                                   c: float) -> None:
    """u^T H v = v^T H u; hvp(v1 + c v2) = hvp(v1) + c hvp(v2); and H v is the central
    difference of the hand-derived gradient along v (no kink within reach of the step)."""
    u, v = _direction(p, seed), _direction(p, seed + 1)
    hu = derivatives.hvp(p.spec, p.params, p.x, p.y, u)
    hv = derivatives.hvp(p.spec, p.params, p.x, p.y, v)
    # each inner product sums ~n_params products of size <= |u||Hv|: rounding ~n eps |u||Hv|
    n = sum(w.size for layer in u for w in layer.values())
    scale = max(_norm(u) * _norm(hv), _norm(v) * _norm(hu))
    assert abs(_dot(u, hv) - _dot(v, hu)) <= 16 * n * EPS64 * scale, p
    combined = derivatives.hvp(p.spec, p.params, p.x, p.y, _combine(u, c, v))
    expected = _combine(hu, c, hv)
    assert_reports_ok(compare_params(combined, expected, rtol=RTOL64, atol_scale=ATOL64_SCALE),
                      f"hvp is not linear in v: {p!r}")
    if any(activation(name).kinked for name in p.spec.activations):
        return
    # central differences of the gradient, step h = FD_STEP_SCALE * max(1, |params|) along
    # v / |v|: error ~h**2 |g'''| + eps |g| / h, the loss's FD bounds with g in place of L
    h = FD_STEP_SCALE * max(1.0, max(float(np.abs(w).max()) for layer in p.params
                                     for w in layer.values()))
    step = h / _norm(v)
    g_plus = hw.loss_and_grads(p.spec, _combine(p.params, step, v), p.x, p.y)[1]
    g_minus = hw.loss_and_grads(p.spec, _combine(p.params, -step, v), p.x, p.y)[1]
    g_scale = max(1.0, max(float(np.abs(w).max()) for layer in g_plus for w in layer.values()))
    assume(all(np.all(np.isfinite(w)) for layer in g_plus + g_minus for w in layer.values()))
    fd = [{k: (g_plus[l][k] - g_minus[l][k]) / (2 * step) for k in ("W", "b")}
          for l in range(len(v))]
    for l in range(len(v)):
        for k in ("W", "b"):
            np.testing.assert_allclose(
                hv[l][k], fd[l][k], rtol=FD_RTOL * 100,
                atol=FD_ATOL_SCALE * g_scale * _norm(v) + FD_RTOL * float(np.abs(fd[l][k]).max()),
                err_msg=f"layer {l} {k}: {p!r}")


@at_most(10)   # jax.hessian compiles per shape: ~0.4 s an example
@given(p=problems(max_depth=2, max_width=4, max_batch=5))
def test_hvp_builds_the_full_hessian_of_jax_hessian(p: Problem) -> None:
    """On networks of at most ~40 params: H, column by column from hvp of the unit vectors,
    equals jax.hessian of the flattened loss (and is symmetric)."""
    flat = flatten(p.params)
    columns = [flatten(derivatives.hvp(p.spec, p.params, p.x, p.y,
                                     unflatten(layout(p.params), np.eye(flat.size)[i])))
               for i in range(flat.size)]
    ours = np.stack(columns, axis=1)
    with jax.enable_x64(True):
        from reference_jax.network import _loss

        # jitted: one program per example, where op by op every operation compiles anew
        shapes = layout(p.params)
        hessian = jax.jit(jax.hessian(lambda f, x, y: _loss(unflatten(shapes, f), x, y, p.spec)))
        theirs = np.array(hessian(jnp.asarray(flat), jnp.asarray(p.x), jnp.asarray(p.y)))
    assert_leaf_close(ours, theirs, f"Hessian vs jax.hessian: {p!r}", rtol=RTOL64,
                      atol_scale=ATOL64_SCALE)
    assert_leaf_close(ours, ours.T, f"Hessian symmetry: {p!r}", rtol=RTOL64,
                      atol_scale=ATOL64_SCALE)


@given(p=problems(**SMALL, exclude_losses=("bce", "bce_with_logits", "softmax_cross_entropy")),
       seed=st.integers(0, 2**16))
def test_gnvp_is_hvp_where_the_fit_is_exact(p: Problem, seed: int) -> None:
    """With y = the network's own output (mse, half_mse), every d_a and d_z is 0, so every
    term hvp has beyond J^T H J vanishes: the two products agree."""
    spec = p.spec
    y = hw.predict(spec, p.params, p.x)
    v = _direction(p, seed)
    assert_reports_ok(compare_params(derivatives.gnvp(spec, p.params, p.x, y, v),
                                     derivatives.hvp(spec, p.params, p.x, y, v),
                                     rtol=RTOL64, atol_scale=ATOL64_SCALE),
                      f"gnvp vs hvp at an exact fit: {p!r}")


@given(p=problems(**SMALL), seed=st.integers(0, 2**16))
def test_gnvp_is_positive_semidefinite(p: Problem, seed: int) -> None:
    """Every loss is convex in its input, so v^T G v = (J v)^T H_loss (J v) + lambda |W_dot|^2
    >= 0, up to the rounding of the inner product (n eps |v| |G v|)."""
    v = _direction(p, seed)
    gv = derivatives.gnvp(p.spec, p.params, p.x, p.y, v)
    n = sum(w.size for layer in v for w in layer.values())
    assert _dot(v, gv) >= -16 * n * EPS64 * _norm(v) * _norm(gv), p


# coverage and bad input --------------------------------------------------------------------

def test_every_activation_and_loss_has_a_hand_derived_second_order() -> None:
    """The registry coverage: an entry without ``second`` is refused by hvp (next test);
    today none is missing."""
    missing = [f"activation {n}" for n, a in ACTIVATIONS.items()
               if a.second is None or not a.second_derivative]
    missing += [f"loss {n}" for n, loss in LOSSES.items() if loss.second is None or
                not loss.hessian]
    assert not missing, f"no hand-derived second order for: {', '.join(missing)}"


def test_a_kind_without_second_order_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = hw.NetworkSpec((2, 3, 1), ("tanh", "identity"))
    params = hw.init_params(spec, np.random.default_rng(0))
    x, y = np.zeros((4, 2)), np.zeros((4, 1))
    monkeypatch.setitem(ACTIVATIONS, "tanh", ACTIVATIONS["tanh"]._replace(second=None))
    for fn in (derivatives.hvp, derivatives.gnvp, derivatives.r_trace):
        with pytest.raises(ValueError, match=r"spec.activations\[0\] = 'tanh' has no "
                                             "hand-derived second derivative"):
            fn(spec, params, x, y, params)


def test_bad_direction_and_targets_are_refused_by_name() -> None:
    spec = hw.NetworkSpec((2, 3, 1), ("tanh", "identity"))
    params = hw.init_params(spec, np.random.default_rng(0))
    x, y = np.zeros((4, 2)), np.zeros((4, 1))
    bad_v = [{"W": np.zeros((3, 3)), "b": np.zeros(3)}, params[1]]
    for fn in (derivatives.hvp, derivatives.gnvp, derivatives.r_trace):
        with pytest.raises(ValueError, match=r"v\[0\]\['W'\] must have shape \(2, 3\)"):
            fn(spec, params, x, y, bad_v)
        with pytest.raises(ValueError, match="y"):
            fn(spec, params, x, np.zeros((3, 1)), params)
        with pytest.raises(TypeError, match="v must be a list"):
            fn(spec, params, x, y, "v")  # type: ignore[arg-type]


def test_flatten_follows_a_sequentials_own_params() -> None:
    """bpnet hessian's flat vector of a Sequential: one dict per node (empty for a pool, an
    activation, a flatten), the conv kernel 4-D; unflatten gives back views of exactly that
    structure, so the hvp's product lines up with the tangent it was given."""
    from bpnet.datasets import DIGITS_CNN

    params = hw.init_params(DIGITS_CNN, np.random.default_rng(0), "he_normal")
    shapes = layout(params)
    assert shapes[0] == (("W", (8, 1, 3, 3)), ("b", (8,))) and shapes[1] == ()
    flat = flatten(params)
    assert flat.size == 1898
    back = unflatten(shapes, flat)
    assert [sorted(node) for node in back] == [sorted(node) for node in params]
    for node, ours in zip(params, back, strict=True):
        for name in node:
            assert ours[name].shape == node[name].shape and np.shares_memory(ours[name], flat)
            np.testing.assert_array_equal(ours[name], node[name])
    assert np.array_equal(flatten(back), flat)
