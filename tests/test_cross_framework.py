"""Hypothesis properties: handwritten against torch and JAX autograd, on any drawn network.

Every property draws a case, computes it in each implementation, and compares with
bpnet.check.cross_check (loss, gradients, trace) or bpnet.compare (optimizer steps,
trajectories).  A failure names the pair, the first quantity in derivation order
that disagrees (e.g. "layer 1 d_z"), its errors against the tolerance, and prints a
``Problem(...)`` line that rebuilds the case.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, reject, target
from hypothesis import strategies as st

import handwritten as hw
from bpnet.check import FINITE_DIFFERENCES, CheckReport, cross_check
from bpnet.check_all import random_state
from bpnet.compare import compare_step, envelope, first_failure, torch_lerp_state, twin_run
from bpnet.tolerances import ATOL64_SCALE, RTOL64, f32_allowed, f32_scale
from handwritten.spec import BACKWARD_QUANTITIES
from tests.helpers import (
    assert_one_step_agrees,
    assert_reports_ok,
    assert_trajectories_agree,
    output_d_a_error,
)
from tests.strategies import Problem, optimizer_specs, problems

pytest.importorskip("torch")
pytest.importorskip("jax")
import reference_jax as rj
import reference_torch as rt
from reference_jax import bucketed

REFERENCES = {"reference_torch": rt, "reference_jax": rj}
# For the properties that draw a new architecture per example, JAX runs through
# reference_jax.bucketed: padded to a few shape buckets, it compiles once per bucket
# instead of once per architecture (~0.2 s each), so the same time buys ~100x more
# examples.  tests/test_bucketed.py proves it equal to the plain reference_jax.  Hidden
# blocks are not drawn here: padding a layer would put the padded entries into a norm's mean
# and variance (bucketed refuses blocks by name), so the block properties -- the same
# properties on drawn block networks, through the plain reference_jax -- are in
# tests/test_blocks.py and tests/test_blocks_training.py.
AUTOGRAD = {"reference_torch": rt, "reference_jax": bucketed}


def _worst(report: CheckReport, column: str) -> float:
    """Largest error in units of each array's absolute floor, for Hypothesis's target()."""
    return max((c.max_abs / c.atol for (_, col), c in report.cells.items()
                if col == column and c.atol > 0), default=0.0)


def _assert_agree(report: CheckReport, p: Problem) -> None:
    for column in report.columns:
        target(_worst(report, column), label=f"vs {column}")
    assert report.ok, report.message(repr(p))


@given(problems())
def test_loss_and_grads_match_autograd(p: Problem) -> None:
    """loss_and_grads' loss and every gradient, in every implementation."""
    report = cross_check(p.spec, p.params, p.x, p.y, {"handwritten": hw, **AUTOGRAD})
    _assert_agree(report, p)


@given(problems())
def test_every_trace_quantity_matches_autograd(p: Problem) -> None:
    """z, a, loss, then d_a, d_z, d_W, d_b from the output down: the first that disagrees
    is the derivation step that is wrong."""
    report = cross_check(p.spec, p.params, p.x, p.y, {"handwritten": hw, **AUTOGRAD},
                         grads=False)
    assert report.rows[0] == "layer 0 z" and report.rows[-1] == "layer 0 d_b"
    _assert_agree(report, p)


MAXIMIZE_LR_DIVISOR = 100


def supporting(opt: hw.OptimizerSpec, steps: int) -> dict[str, ModuleType]:
    """The references that have every option of ``opt`` as torch has it, for ``steps``
    steps from t = 0: torch always; optax not where ``reference_jax.unsupported`` names a
    difference (dampening, amsgrad, adagrad's eps, clip_norm, ...; each tested in
    tests/test_schedules.py and tests/test_references.py)."""
    chosen = {name: ref for name, ref in REFERENCES.items() if ref.unsupported(opt, steps) is None}
    assert "reference_torch" in chosen
    return chosen


@given(p=problems(max_batch=8), opt=optimizer_specs(), t=st.integers(0, 5))
def test_one_optimizer_step_matches_torch_optim_and_optax(p: Problem, opt: hw.OptimizerSpec,
                                                          t: int) -> None:
    """From identical params and optimizer state, one step of every optimizer agrees."""
    _, grads = hw.loss_and_grads(p.spec, p.params, p.x, p.y)
    state = random_state(opt, p.params, t, np.random.default_rng(p.seed))
    ours = hw.step(opt, p.params, grads, state)
    for name, ref in supporting(opt, t + 1).items():
        assert_one_step_agrees(opt, p.params, grads, state, ours, name, ref,
                               f"{opt} from t={t}, handwritten vs {name}: {p!r}")



@pytest.mark.parametrize("name, buffer, weight", [("adam", "m", "beta1"),
                                                  ("adamw", "m", "beta1"),
                                                  ("rmsprop", "gbar", "alpha")])
def test_torchs_lerp_drops_a_weight_below_the_rounding_of_one(name: str, buffer: str,
                                                               weight: str) -> None:
    """torch.optim evaluates a running mean as m + fl(1 - beta) (g - m): for beta = 1e-18,
    fl(1 - beta) = 1 and torch's new m is g exactly, while handwritten keeps beta m +
    (1 - beta) g (as optax does).  With g far below m (a batch-norm layer's bias, whose
    gradient is rounding noise) the two differ relatively by beta m / g -- here 1e-18 * 1 /
    1e-15, 1e-3, far past RTOL64.  handwritten from bpnet.compare.torch_lerp_state is torch
    to the rounding; and for a beta torch's lerp keeps (0.9), that twin is handwritten's own
    step to RTOL64, so the one-step properties' allowance takes nothing away there."""
    params = [{"W": np.array([[0.5]]), "b": np.array([0.0])}]
    grads = [{"W": np.array([[0.25]]), "b": np.array([1e-15])}]
    hyper = dict(hw.OPTIMIZER_DEFAULTS[name]) | ({"centered": True} if name == "rmsprop" else {})
    for beta, kept in ((1e-18, False), (0.9, True)):
        opt = hw.OptimizerSpec(name, 0.01, hyper | {weight: beta})
        state = hw.init_state(opt, params)
        state["t"] = 3
        for key in hw.OPTIMIZERS[name].buffers(opt.hyperparams):
            state[key] = [{"W": np.array([[1.0]]), "b": np.array([1.0])}]
        ours, theirs = hw.step(opt, params, grads, state), rt.step(opt, params, grads, state)
        twin = hw.step(opt, params, grads, torch_lerp_state(opt, state))
        assert_reports_ok(compare_step(twin, theirs, rtol=RTOL64, atol_scale=ATOL64_SCALE),
                          f"handwritten as torch rounds {weight} = {beta} vs torch")
        if kept:
            assert_reports_ok(compare_step(ours, twin, rtol=RTOL64, atol_scale=ATOL64_SCALE),
                              f"{weight} = {beta}: the twin is handwritten's own step")
            continue
        assert theirs[1][buffer][0]["b"][0] == grads[0]["b"][0]          # torch: m = g
        np.testing.assert_allclose(ours[1][buffer][0]["b"], beta * 1.0 + (1 - beta) * 1e-15,
                                   rtol=RTOL64)
        assert first_failure(compare_step(ours, theirs, rtol=RTOL64,
                                          atol_scale=ATOL64_SCALE)) is not None
        assert first_failure(compare_step(ours, theirs, rtol=RTOL64, atol_scale=ATOL64_SCALE,
                                          twin=twin)) is None

# Probability bce is left out of free-running training: its gradient (a - y) / (a (1 - a))
# has a relative rounding error of ~eps / min(a, 1 - a), and training drives outputs towards
# saturation, where equally valid forms of it (autograd's -y/a + (1-y)/(1-a), the hand-derived
# one) differ by 1e-8 and more.  That is the loss's conditioning, not an implementation's
# error (bce_with_logits is the well-conditioned form); bce stays covered by the trace,
# one-step, finite-difference and hand-picked checks, where outputs are not saturated.
# About a minute on one core (150 examples of up to 30 epochs in three implementations and a
# twin run, each step a JAX call): one long property, not split, because its examples are
# what Hypothesis shrinks together; pytest-xdist starts it first, beside the others.
@given(p=problems(max_depth=3, max_width=8, max_batch=12, exclude_losses=("bce",)),
       opt=optimizer_specs(), epochs=st.integers(5, 30), batch_size=st.integers(1, 12),
       shuffle=st.booleans())
def test_float64_trajectories_stay_within_a_growing_envelope(
        p: Problem, opt: hw.OptimizerSpec, epochs: int, batch_size: int, shuffle: bool) -> None:
    """Free-running training, full batch or mini-batch in a shared order: the recorded params
    and the losses of all three stay within trajectory_rtol(k) + TWIN_FACTOR * drift(k), where
    drift(k) is how far a twin run with gradient-rounding-sized perturbations drifts (see
    bpnet.tolerances)."""
    batch_size = min(batch_size, p.batch)
    if opt.hyperparams["maximize"]:
        # ascent on a loss unbounded above grows it without end, and a run that grows by
        # orders of magnitude is chaotic: two correct implementations part by far more than
        # rounding.  Small steps keep the ascent in the regime where trajectories compare.
        opt = dataclasses.replace(opt, lr=opt.lr / MAXIMIZE_LR_DIVISOR)
    order = (hw.make_batch_order(p.batch, epochs, np.random.default_rng(p.seed))
             if shuffle else None)
    kwargs = {"epochs": epochs, "batch_size": batch_size, "batch_order": order,
              "record_every": 5}
    try:
        ours = hw.train(p.spec, p.params, p.x, p.y, opt, **kwargs)
    except (FloatingPointError, RuntimeWarning):
        if not opt.hyperparams["maximize"]:
            raise
        # gradient ascent (maximize) on a loss unbounded above may run away to overflow:
        # nothing left to compare (maximize's steps are checked by the one-step property)
        reject()
    twin_losses, twin_params = twin_run(p.spec, p.params, p.x, p.y, opt,
                                        hw.Schedule(p.batch, epochs, batch_size, order, 5), p.seed)
    assert len(twin_params) == len(ours.params)
    allowed_at = envelope(ours.recorded_steps, ours.params, twin_params)
    for name, ref in supporting(opt, len(ours.losses)).items():
        theirs = ref.train(p.spec, p.params, p.x, p.y, opt, **kwargs)
        context = f"{opt}, {epochs} epochs of {batch_size}, vs {name}: {p!r}"
        worst = assert_trajectories_agree(ours, theirs, allowed_at, twin_losses, context)
        target(worst, label=f"trajectory vs {name}")


def _normwise(values: dict[str, np.ndarray], exact: dict[str, np.ndarray]) -> dict[str, float]:
    # relative to max|exact|, or for a sum over the batch (d_b) to its terms' (f32_scale)
    return {k: float(np.abs(values[k].astype(np.float64) - exact[k]).max())
            / f32_scale(exact, k) for k in exact}


@given(problems(max_batch=16))
def test_float32_error_is_within_the_frameworks_own(p: Problem) -> None:
    """Each quantity of handwritten's float32 trace is as close to the float64 result as the
    float32 references' are (F32_FACTOR times, above a floor of F32_FLOOR)."""
    exact = hw.trace(p.spec, p.params, p.x, p.y)
    p32 = p.astype("float32")
    traces = {"handwritten": hw.trace(p32.spec, p32.params, p32.x, p32.y)}
    traces |= {name: ref.trace(p32.spec, p32.params, p32.x, p32.y)
               for name, ref in AUTOGRAD.items()}
    worst = 0.0
    inherited = output_d_a_error(exact, traces, AUTOGRAD)
    for l, layer in enumerate(exact.layers):
        errors = {name: _normwise(t.layers[l], layer) for name, t in traces.items()}
        for key in layer:
            allowed = f32_allowed([errors[name][key] for name in AUTOGRAD],
                                  inherited if key in BACKWARD_QUANTITIES else 0.0)
            worst = max(worst, errors["handwritten"][key] / allowed)
            assert errors["handwritten"][key] <= allowed, (
                f"layer {l} {key}: float32 normwise error {errors['handwritten'][key]:.3g} > "
                f"allowed {allowed:.3g} (torch {errors['reference_torch'][key]:.3g}, "
                f"jax {errors['reference_jax'][key]:.3g}): {p!r}")
    target(worst, label="float32 error / allowed")


# one path for every spec: blocks and Sequentials through cross_check --------------------

def _block_problem() -> tuple[Any, ...]:
    from bpnet.check_all import BLOCK_CASES
    from bpnet.problems import Problem as Case

    p = Case(BLOCK_CASES[0], 6, 9)      # batch norm, layer norm, dropout, a skip
    return p.spec, p.params, p.x, p.y, p.masks


def _layers_problem() -> tuple[Any, ...]:
    from bpnet.check_all import LAYER_CASES
    from bpnet.problems import Problem as Case

    p = Case(LAYER_CASES[2], 5, 9)      # dropout inside a Residual around a Dense
    return p.spec, p.params, p.x, p.y, p.masks


def test_cross_check_takes_a_spec_with_hidden_blocks_and_its_masks() -> None:
    """Every block quantity against torch and JAX, and loss_and_grads' gradients of gamma
    and beta too, through the same function as a plain MLP."""
    spec, params, x, y, masks = _block_problem()
    report = cross_check(spec, params, x, y, {"handwritten": hw, **REFERENCES}, masks=masks)
    assert report.ok, report.message()
    for row in ("layer 0 mu", "layer 0 x_hat", "layer 1 d_h", "layer 1 d_x_hat",
                "layer 0 d_gamma", "layer 1 d_beta (loss_and_grads)", "loss (loss_and_grads)"):
        assert row in report.rows, row
    assert "(loss_and_grads)" not in " ".join(cross_check(
        spec, params, x, y, {"handwritten": hw, **REFERENCES}, masks=masks, grads=False).rows)


def test_cross_check_takes_a_sequential_rows_named_by_the_nodes_path() -> None:
    spec, params, x, y, masks = _layers_problem()
    report = cross_check(spec, params, x, y, {"handwritten": hw, **REFERENCES}, masks=masks)
    assert report.ok, report.message()
    for row in ("layer 2.1 d_W", "layer 2.0 d_out", "layer 3 d_b (loss_and_grads)"):
        assert row in report.rows, row


def test_cross_check_names_a_wrong_block_quantity(monkeypatch: pytest.MonkeyPatch) -> None:
    """A norm's d_gamma scaled by 1.5 in handwritten: the first failure is that layer's
    d_gamma, with the function that forms it."""
    from handwritten import blocks

    original = blocks.normalize_backward

    def scaled(*args: Any) -> dict[str, np.ndarray]:
        out = original(*args)
        return out | {"d_gamma": 1.5 * out["d_gamma"]}

    monkeypatch.setattr(blocks, "normalize_backward", scaled)
    spec, params, x, y, masks = _block_problem()
    report = cross_check(spec, params, x, y, {"handwritten": hw, **REFERENCES}, masks=masks)
    assert not report.ok
    verdict = report.verdict()
    assert "first disagreement in derivation order: layer 1 d_gamma " in verdict, verdict
    assert "handwritten.blocks.normalize_backward" in verdict, verdict


def test_cross_check_names_a_wrong_node_quantity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dense.backward's d_W scaled by 1.5: the first failure names the last Dense's path
    (the backward runs from the output down) and d_W, with the method that forms it."""
    from handwritten.layers.dense import Dense

    original = Dense.backward

    def scaled(self: Dense, *args: Any, **kwargs: Any) -> Any:
        d_h, grads, extra = original(self, *args, **kwargs)
        return d_h, grads | {"W": 1.5 * grads["W"]}, extra

    monkeypatch.setattr(Dense, "backward", scaled)
    spec, params, x, y, masks = _layers_problem()
    report = cross_check(spec, params, x, y, {"handwritten": hw, **REFERENCES}, masks=masks)
    assert not report.ok
    verdict = report.verdict()
    assert "first disagreement in derivation order: layer 3 d_W " in verdict, verdict
    assert "handwritten.layers.dense.Dense.backward" in verdict, verdict


def test_cross_check_takes_finite_differences_of_blocks_and_sequentials() -> None:
    """Framework-free: every param's gradient (a norm's gamma and beta too) against central
    differences of handwritten's forward with the same masks, rows named as the trace's."""
    for problem, rows in ((_block_problem(), ("layer 0 d_gamma", "layer 1 d_beta", "layer 2 d_W")),
                          (_layers_problem(), ("layer 2.1 d_W", "layer 3 d_b"))):
        spec, params, x, y, masks = problem
        report = cross_check(spec, params, x, y, {"handwritten": hw}, masks=masks,
                             finite_differences=True)
        assert report.ok, report.message()
        assert report.columns == (FINITE_DIFFERENCES,)
        for row in rows:
            assert row in report.rows and (row, FINITE_DIFFERENCES) in report.cells, row


def test_finite_differences_alone_name_a_wrong_block_gradient(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without torch or JAX in the comparison, finite differences catch a d_gamma scaled by
    1.5 and name that layer's d_gamma first."""
    from handwritten import blocks

    original = blocks.normalize_backward
    monkeypatch.setattr(blocks, "normalize_backward", lambda *args: (
        lambda out: out | {"d_gamma": 1.5 * out["d_gamma"]})(original(*args)))
    spec, params, x, y, masks = _block_problem()
    report = cross_check(spec, params, x, y, {"handwritten": hw}, masks=masks,
                         finite_differences=True)
    assert "first disagreement in derivation order: layer 1 d_gamma (handwritten vs finite " \
        "differences)" in report.verdict(), report.verdict()


def test_cross_check_refuses_masks_for_a_spec_without_dropout() -> None:
    spec = hw.NetworkSpec((2, 3, 1), ("tanh", "identity"))
    x, y = np.ones((4, 2)), np.ones((4, 1))
    with pytest.raises(ValueError, match="this spec has no dropout: give masks=None"):
        cross_check(spec, hw.init_params(spec, np.random.default_rng(0)), x, y,
                    {"handwritten": hw}, masks=[np.ones((4, 3))])


def test_a_gradient_of_the_wrong_shape_fails_against_finite_differences_too() -> None:
    """d_W transposed (the transpose on the wrong factor, a non-square layer): a failing
    cell in every column, finite differences included, and the diagnosis says "transposed"
    -- not a traceback from the finite-difference column."""
    spec = hw.NetworkSpec((3, 5, 2), ("tanh", "identity"), "mse")
    params = hw.init_params(spec, np.random.default_rng(0))
    x, y = (np.random.default_rng(s).normal(size=(4, n)) for s, n in ((1, 3), (2, 2)))
    transposed = ModuleType("transposed")

    def trace(*args: Any) -> hw.Trace:
        found = hw.trace(*args)
        return found._replace(layers=[{**layer, "d_W": layer["d_W"].T}
                                      for layer in found.layers])

    transposed.trace = trace                                       # type: ignore[attr-defined]
    report = cross_check(spec, params, x, y, {"transposed": transposed, **REFERENCES},
                         finite_differences=True, grads=False)
    assert not report.ok
    assert not report.cells["layer 1 d_W", FINITE_DIFFERENCES].ok
    assert "a transposed match" in " ".join(report.diagnosis()), report.diagnosis()
