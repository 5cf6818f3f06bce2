"""Training and evaluation with hidden blocks: free-running float64 trajectories of drawn
block networks (dropout's masks drawn each step from train's rng, batch norm's running
statistics carried) in all three implementations, one optimizer step on block params,
predict in evaluation mode against torch's F.batch_norm(training=False) and JAX, the norms
at their edges (a constant feature, a variance below eps, a huge scale, an outlier), the
README's figure, and the bad input of training and evaluation refused by name."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, target
from hypothesis import strategies as st

import handwritten as hw
from bpnet.compare import envelope, param_divergence, twin_run
from bpnet.problems import OPTIMIZER_DEFAULTS, Problem, draw_optimizer
from bpnet.tolerances import ATOL64_SCALE, RTOL64, TWIN_FACTOR, trajectory_rtol
from handwritten.training import draw_masks
from tests.helpers import (
    assert_leaf_close,
    assert_trajectories_agree,
    assert_unchanged,
    at_most,
    snapshot,
)
from tests.strategies import HypothesisChooser, block_problems

pytest.importorskip("torch")
pytest.importorskip("jax")
import reference_jax
import reference_torch

REFERENCES = {"reference_torch": reference_torch, "reference_jax": reference_jax}

# The bias b of a batch-norm layer has gradient 0 in exact arithmetic (the norm subtracts
# the batch mean, and b with it): every implementation's d_b there is rounding noise, ~1e-17,
# different in each.  sgd, momentum and nesterov move b by lr times that noise: nothing.
# adam, rmsprop, adagrad divide by the root of the gradient's own square average, so they turn
# that noise into steps of up to lr * noise / (noise + eps) -- b wanders by amounts that
# differ between torch, JAX and handwritten (seen: 1e-9 after 80 adam steps, every other
# leaf within 1e-15).  b has no effect on a batch-norm layer's output in training mode, so
# the network is unchanged; but b's trajectory is the noise's, not the derivation's.  So
# with batch norm only the non-adaptive optimizers are drawn; without it, every optimizer.
NOT_ADAPTIVE = ("sgd", "momentum", "nesterov")


@st.composite
def block_training_cases(draw: st.DrawFn) -> tuple[Problem, hw.OptimizerSpec, int, int, bool]:
    """A block problem, an optimizer (maximize off: ascent is covered by the plain
    property), epochs, a batch size that leaves no batch of one under batch norm, shuffle."""
    p = draw(block_problems(max_depth=3, max_width=8, max_batch=12))
    names = NOT_ADAPTIVE if "batch" in p.spec.norms else tuple(sorted(OPTIMIZER_DEFAULTS))
    opt = draw_optimizer(HypothesisChooser(draw), draw(st.sampled_from(names)))
    if opt.hyperparams["maximize"]:
        opt = hw.OptimizerSpec(opt.name, opt.lr, {**opt.hyperparams, "maximize": False},
                               opt.schedule, opt.clip_norm, opt.clip_value)
    size = draw(st.integers(2, p.batch))
    while "batch" in p.spec.norms and p.batch % size == 1:
        size += 1                  # ends by size = p.batch at the latest (remainder 0)
    return p, opt, draw(st.integers(2, 12)), size, draw(st.booleans())


def _supporting(opt: hw.OptimizerSpec, steps: int) -> dict[str, object]:
    return {name: ref for name, ref in REFERENCES.items() if ref.unsupported(opt, steps) is None}


@at_most(60)      # ~0.4 s each: one JAX compilation per spec and batch shape
@given(case=block_training_cases())
def test_block_trajectories_match_torch_and_jax(
        case: tuple[Problem, hw.OptimizerSpec, int, int, bool]) -> None:
    """Free-running training of a drawn block network (mini-batches, the masks each step's
    from a Generator seeded alike in every implementation): the recorded params, the losses
    and the final running statistics of all three within the trajectory envelope
    (trajectory_rtol(k) + TWIN_FACTOR * the twin run's drift, bpnet.tolerances) -- the same
    criterion as the plain networks' property in test_cross_framework."""
    p, opt, epochs, size, shuffle = case
    order = hw.Shuffle(p.seed) if shuffle else None
    kwargs = {"epochs": epochs, "batch_size": size, "batch_order": order, "record_every": 4}
    before = snapshot(p.params, p.x, p.y)
    ours = hw.train(p.spec, p.params, p.x, p.y, opt, rng=np.random.default_rng(p.seed),
                    **kwargs)
    assert_unchanged(before, p.params, p.x, p.y)
    twin_running = hw.init_running(p.spec)
    schedule = hw.Schedule(p.batch, epochs, size, order, 4, (p.spec, p.x, p.y),
                           rng=np.random.default_rng(p.seed))
    twin_losses, twin_params = twin_run(p.spec, p.params, p.x, p.y, opt, schedule, p.seed,
                                        twin_running)
    allowed_at = envelope(ours.recorded_steps, ours.params, twin_params)
    steps = len(ours.losses)
    for name, ref in _supporting(opt, steps).items():
        theirs = ref.train(p.spec, p.params, p.x, p.y, opt,    # type: ignore[attr-defined]
                           rng=np.random.default_rng(p.seed), **kwargs)
        context = f"{opt}, {epochs} epochs of {size}, vs {name}: {p!r}"
        worst = assert_trajectories_agree(ours, theirs, allowed_at, twin_losses, context)
        target(worst, label=f"block trajectory vs {name}")
        if "batch" in p.spec.norms:
            # the running statistics are averages of every step's batch statistics: held to
            # the envelope's rounding floor at the last step plus their own twin drift
            diff = param_divergence(ours.running, theirs.running)
            allowed = (trajectory_rtol(steps)
                       + TWIN_FACTOR * param_divergence(ours.running, twin_running))
            assert diff <= allowed, (f"{context}: running statistics differ by {diff:.3g} "
                                     f"(normwise) > allowed {allowed:.3g}")
        else:
            assert ours.running == theirs.running == [{}] * p.spec.n_layers, context


def _batch_norm_problem(dropout: float = 0.0) -> tuple[hw.NetworkSpec, hw.Params, np.ndarray,
                                                       np.ndarray]:
    spec = hw.NetworkSpec((3, 6, 6, 2), ("tanh", "relu", "identity"), "mse",
                          norms=("batch", "layer"), dropout=(dropout, 0.0),
                          residual=(False, True))
    rng = np.random.default_rng(7)
    params = hw.init_params(spec, rng, "glorot_uniform")
    return spec, params, rng.normal(size=(22, 3)), rng.normal(size=(22, 2))


def test_running_statistics_are_torch_batch_norm_modules_own() -> None:
    """A run's History.running against torch.nn.BatchNorm1d's own buffers, fed the same
    batches of z (z from handwritten's params before each step): the module's update is
    torch's, not the F.batch_norm call reference_torch makes."""
    import torch

    spec, params, x, y = _batch_norm_problem()
    opt = hw.OptimizerSpec("sgd", 0.1, {})
    history = hw.train(spec, params, x, y, opt, epochs=3, batch_size=8, record_every=1)
    module = torch.nn.BatchNorm1d(6, dtype=torch.float64).train()
    rows = [slice(s, s + 8) for s in range(0, 22, 8)] * 3
    for before, r in zip(history.params, rows):
        z = x[r] @ before[0]["W"] + before[0]["b"]
        module(torch.tensor(z))
    assert_leaf_close(history.running[0]["mean"], module.running_mean.numpy(),
                      "running mean vs BatchNorm1d", rtol=RTOL64, atol_scale=ATOL64_SCALE)
    assert_leaf_close(history.running[0]["var"], module.running_var.numpy(),
                      "running var vs BatchNorm1d", rtol=RTOL64, atol_scale=ATOL64_SCALE)
    assert history.running[1] == {} and history.running[2] == {}      # layer norm, output


def test_predict_evaluates_batch_norm_with_the_running_statistics() -> None:
    """predict in evaluation mode: no dropout, batch norm with History.running -- equal to
    torch's F.batch_norm(training=False) and JAX; each sample's output its own (a row alone
    or in the batch); not the training-mode output of the same batch."""
    spec, params, x, y = _batch_norm_problem(dropout=0.3)
    opt = hw.OptimizerSpec("momentum", 0.05, {"momentum": 0.9})
    history = hw.train(spec, params, x, y, opt, epochs=5, batch_size=6,
                       rng=np.random.default_rng(1))
    final, running = history.final_params, history.running
    before = snapshot(final, x, running)
    out = hw.predict(spec, final, x, running)
    assert_unchanged(before, final, x, running)
    for name, ref in REFERENCES.items():
        assert_leaf_close(out, ref.predict(spec, final, x, running), f"predict vs {name}",
                          rtol=RTOL64, atol_scale=ATOL64_SCALE)
    # alone, a row goes through other BLAS kernels: equal up to the matmul's rounding
    assert_leaf_close(hw.predict(spec, final, x[3:4], running), out[3:4], "one row alone",
                      rtol=RTOL64, atol_scale=ATOL64_SCALE)
    training_mode = hw.forward(spec, final, x)[0]              # the batch's own statistics
    assert np.abs(training_mode - out).max() > 1e-3 * np.abs(out).max()


def test_train_draws_the_masks_it_documents() -> None:
    """Each step's masks are draw_masks' from train's rng, in step order: replaying the
    draws by hand and the loss_and_grads steps gives train's losses bit for bit; and the
    keep rate is 1 - p (binomial: 4 standard deviations)."""
    spec, params, x, y = _batch_norm_problem(dropout=0.4)
    opt = hw.OptimizerSpec("sgd", 0.05, {})
    history = hw.train(spec, params, x, y, opt, epochs=2, batch_size=11,
                       rng=np.random.default_rng(3))
    rng, current = np.random.default_rng(3), [dict(p) for p in params]
    for k, start in enumerate([0, 11, 0, 11]):
        masks = draw_masks(spec, 11, rng, x.dtype)
        loss, grads = hw.loss_and_grads(spec, current, x[start:start + 11],
                                        y[start:start + 11], masks)
        assert loss == history.losses[k]
        current = [{key: v - 0.05 * g[key] for key, v in p.items()} for p, g in zip(current, grads)]
    masks = draw_masks(spec, 20000, np.random.default_rng(0), np.dtype(np.float64))
    kept, n = float(masks[0].mean()), masks[0].size
    assert masks[1] is None and set(np.unique(masks[0])) == {0.0, 1.0}
    assert abs(kept - 0.6) < 4 * np.sqrt(0.6 * 0.4 / n)


def test_training_and_evaluation_inputs_are_refused_by_name() -> None:
    """rng missing with dropout, a batch of one under batch norm (the last one too),
    running missing or misshapen in predict: each a ValueError/TypeError naming the
    argument, the caller's arrays untouched."""
    spec, params, x, y = _batch_norm_problem(dropout=0.3)
    opt = hw.OptimizerSpec("sgd", 0.1, {})
    before = snapshot(params, x, y)
    for impl in (hw, reference_torch, reference_jax):
        with pytest.raises(ValueError, match="rng is required"):
            impl.train(spec, params, x, y, opt, epochs=1)
        with pytest.raises(TypeError, match=r"rng must be a numpy\.random\.Generator"):
            impl.train(spec, params, x, y, opt, epochs=1, rng=3)
        with pytest.raises(ValueError, match="batch_size 1 leaves one sample in every batch"):
            impl.train(spec, params, x, y, opt, epochs=1, batch_size=1,
                       rng=np.random.default_rng(0))
        with pytest.raises(ValueError, match="the last batch of each epoch"):
            impl.train(spec, params, x, y, opt, epochs=1, batch_size=7,   # 22 = 3 * 7 + 1
                       rng=np.random.default_rng(0))
        with pytest.raises(ValueError, match="running is required"):
            impl.predict(spec, params, x)
        bad = hw.init_running(spec)
        bad[0]["mean"] = np.zeros(5)
        with pytest.raises(ValueError, match=r"running\[0\]\['mean'\] must have shape \(6,\)"):
            impl.predict(spec, params, x, bad)
        with pytest.raises(TypeError, match=r"running\[1\] must be a dict with no keys"):
            impl.predict(spec, params, x, [hw.init_running(spec)[0], {"mean": np.zeros(6)}, {}])
        with pytest.raises(TypeError, match="running must be a list of 3 dicts"):
            impl.predict(spec, params, x, {"mean": np.zeros(6)})
        negative = hw.init_running(spec)
        negative[0]["var"][0] = -1.0
        with pytest.raises(ValueError, match="must be >= 0"):
            impl.predict(spec, params, x, negative)
    assert_unchanged(before, params, x, y)


def test_the_readme_figure_shows_batch_norm_lifting_the_plateau(tmp_path: object) -> None:
    """bpnet.figures (the README's spirals figure), shortened to its first EARLY epochs: the
    deep sigmoid network with batch norm is far below the one without by then -- the claim
    the figure makes, from the same seed -- and the plot is written."""
    from pathlib import Path

    from bpnet import figures

    out = Path(str(tmp_path)) / "bn.png"
    curves = figures.spirals_batch_norm(out, epochs=figures.EARLY, early=figures.EARLY)
    without, with_bn = curves["without"], curves["with batch norm"]
    assert out.stat().st_size > 0
    assert without[-1] > 0.9 * without[0]              # still on the plateau
    assert with_bn[-1] < 0.25 * without[-1]


@at_most(40)
@given(p=block_problems(max_depth=3), data=st.data(), t=st.integers(0, 5))
def test_one_optimizer_step_on_block_params_matches_torch_optim_and_optax(
        p: Problem, data: st.DataObject, t: int) -> None:
    """From identical block params (gamma and beta included), gradients and optimizer state
    (drawn as after t steps), one step of any optimizer with every option drawn agrees with
    torch.optim and optax (where optax has the options as torch has them): each buffer and
    each param, at RTOL64 -- the plain networks' one-step property, on block params."""
    from bpnet.check_all import random_state
    from tests.helpers import assert_one_step_agrees

    opt = draw_optimizer(HypothesisChooser(data.draw))
    _, grads = hw.loss_and_grads(p.spec, p.params, p.x, p.y, p.masks)
    state = random_state(opt, p.params, t, np.random.default_rng(p.seed))
    ours = hw.step(opt, p.params, grads, state)
    assert [sorted(q) for q in ours[0]] == [sorted(q) for q in p.params]
    for name, ref in _supporting(opt, t + 1).items():
        assert_one_step_agrees(opt, p.params, grads, state, ours, name, ref,
                               f"{opt} from t={t}, handwritten vs {name}: {p!r}")


@pytest.mark.parametrize("edge", ["constant feature", "variance below eps", "huge scale",
                                  "one outlier"])
@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_norms_at_their_edges_match_torch_and_jax(norm: str, edge: str) -> None:
    """Where a norm's formulas are fragile: a feature (batch norm) or a sample (layer norm)
    that is constant (var = 0 exactly: x_hat = 0, s = eps^-1/2), a variance far below eps
    (eps dominates), a huge scale (1e150: var near the top of float64's range), and one
    outlier among equal entries (x_hat near +-sqrt(N - 1), the rest near 0).  Every trace
    quantity against torch and JAX (the spread rule: bpnet.tolerances), finite throughout;
    then a training step in evaluation mode is finite too."""
    from bpnet.compare import compare_trace
    from tests.helpers import assert_reports_ok

    spec = hw.NetworkSpec((4, 6, 3), ("tanh", "identity"), "mse", norms=(norm,))
    rng = np.random.default_rng(8)
    params = hw.init_params(spec, rng, "glorot_uniform")
    x = rng.normal(size=(8, 4))
    if edge == "constant feature":
        # W's column 0 zero: z[:, 0] = b[0] for every sample (batch norm: var = 0); a row of
        # x zero: z[0] = b, layer norm's sample 0 is b (made constant)
        params[0]["W"][:, 0] = 0.0
        x[0] = 0.0
        params[0]["b"][:] = 0.3
    elif edge == "variance below eps":
        params[0]["W"] *= 1e-6
    elif edge == "huge scale":
        params[0]["W"] *= 1e150
    else:
        x[:] = x[0]
        x[5] += 3.0
        params[0]["W"][:, 1:] *= -1.0
    y = rng.normal(size=(8, 3))
    ours = hw.trace(spec, params, x, y)
    for layer in ours.layers:
        for key, value in layer.items():
            assert np.isfinite(value).all(), (norm, edge, key)
    theirs = {name: ref.trace(spec, params, x, y) for name, ref in REFERENCES.items()}
    for name, other in (("reference_torch", "reference_jax"), ("reference_jax", "reference_torch")):
        assert_reports_ok(compare_trace(ours, theirs[name], rtol=RTOL64, atol_scale=ATOL64_SCALE,
                                        spread=theirs[other]), f"{norm}, {edge}, vs {name}")
    history = hw.train(spec, params, x, y, hw.OptimizerSpec("sgd", 1e-3), epochs=2)
    out = hw.predict(spec, history.final_params, x, history.running)
    assert np.isfinite(out).all()
    for name, ref in REFERENCES.items():
        assert_leaf_close(out, ref.predict(spec, history.final_params, x, history.running),
                          f"{norm}, {edge}: predict vs {name}", rtol=RTOL64,
                          atol_scale=ATOL64_SCALE)
