"""Training random Sequentials (every layer kind in any valid order) in all three
implementations: one optimizer step from identical state with every optimizer against
torch.optim and optax, and free-running float64 trajectories (mini-batches, dropout's
masks drawn each step by the schedule from train's rng, batch norm's running statistics
carried node by node) within the growing envelope -- the properties tests/test_cross_framework.py
and tests/test_blocks_training.py hold NetworkSpecs to, on Sequentials.  handwritten trains
a Sequential by the fold of its layers, reference_torch and reference_jax by their layers'
forwards (reference_torch/layers.py, reference_jax/layers.py) with autograd and the
framework's own optimizer.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, target
from hypothesis import strategies as st

import handwritten as hw
from bpnet.check_all import random_state
from bpnet.compare import envelope, param_divergence
from bpnet.problems import MIN_NORM_COUNT, OPTIMIZER_DEFAULTS, Problem, draw_optimizer
from bpnet.tolerances import TWIN_FACTOR, TWIN_GRADIENT_NOISE, batch_sum_terms, trajectory_rtol
from handwritten.layers import (
    Activation,
    BatchNorm1d,
    Dense,
    Dropout,
    LayerNorm,
    Residual,
    Sequential,
    fold,
)
from tests.helpers import (
    assert_one_step_agrees,
    assert_trajectories_agree,
    assert_unchanged,
    at_most,
    snapshot,
)
from tests.strategies import HypothesisChooser, optimizer_specs, sequential_problems

pytest.importorskip("torch")
pytest.importorskip("jax")
import reference_jax
import reference_torch

REFERENCES = {"reference_torch": reference_torch, "reference_jax": reference_jax}


def _supporting(opt: hw.OptimizerSpec, steps: int) -> dict[str, object]:
    """torch always; optax where it has every option of ``opt`` as torch has it."""
    chosen = {name: ref for name, ref in REFERENCES.items() if ref.unsupported(opt, steps) is None}
    assert "reference_torch" in chosen
    return chosen


def _context(p: Problem) -> str:
    from bpnet.problems import replay_command

    return f"{p!r}\nreplay: {replay_command(repr(p))}"


# Hand-picked Sequentials, run first: each layer kind (a norm first, a Residual around
# several layers, dropout inside and outside it, layer norm) and a first node without params
# (an Activation), so that torch.optim's and optax's state of a node without params is met
# whatever the draws.  Batches of MIN_NORM_COUNT and more (batch norm's smallest).
CASES = [
    Problem(Sequential([BatchNorm1d(3), Dense(3, 4), Activation("tanh"), Dropout(0.3),
                        Residual([Dense(4, 4), LayerNorm(4), Activation("gelu"), Dropout(0.2)]),
                        Dense(4, 2)], "mse", "mean", 0.1), batch=8, seed=11),
    Problem(Sequential([Activation("sigmoid"), Dense(3, 5), Activation("elu:1.7"),
                        Residual([Dropout(0.4), Dense(5, 5), Activation("silu")]),
                        Dense(5, 3), Activation("softmax")],
                       "softmax_cross_entropy", "sum", 0.0, in_features=3),
            batch=7, seed=12, labels=True),
]


# one step from identical state ---------------------------------------------------------------


@at_most(60)      # each example compiles optax's update for its params' shapes
@given(p=sequential_problems(max_layers=4, max_width=5, max_batch=6), opt=optimizer_specs(),
       t=st.integers(0, 5))
@example(p=CASES[0], opt=hw.OptimizerSpec("adam", 0.01, {}), t=3)
@example(p=CASES[1], opt=hw.OptimizerSpec("rmsprop", 0.01, {"centered": True}), t=2)
def test_one_optimizer_step_on_sequential_params_matches_torch_optim_and_optax(
        p: Problem, opt: hw.OptimizerSpec, t: int) -> None:
    """From identical params (one dict per node, {} where a node has none), gradients and
    optimizer state (drawn as after t steps), one step of any optimizer with every option
    drawn agrees with torch.optim and optax (where optax has the options as torch has them):
    each param and each buffer, at RTOL64, node by node."""
    check_one_optimizer_step_on_sequential_params_matches_torch_optim_and_optax(p, opt, t)


def check_one_optimizer_step_on_sequential_params_matches_torch_optim_and_optax(
        p: Problem, opt: hw.OptimizerSpec, t: int) -> None:
    _, grads = hw.loss_and_grads(p.spec, p.params, p.x, p.y, p.masks)
    state = random_state(opt, p.params, t, np.random.default_rng(p.seed))
    before = snapshot(p.params, grads, state)
    ours = hw.step(opt, p.params, grads, state)
    assert [sorted(node) for node in ours[0]] == [sorted(node) for node in p.params]
    for name, ref in _supporting(opt, t + 1).items():
        assert_one_step_agrees(opt, p.params, grads, state, ours, name, ref,
                               f"{opt} from t={t}, handwritten vs {name}: {_context(p)}")
    assert_unchanged(before, p.params, grads, state)


# free-running trajectories ------------------------------------------------------------------

# With batch norm, only the optimizers that are not adaptive (tests/test_blocks_training.py
# says why: the bias of a Dense a batch norm follows has gradient 0 in exact arithmetic, and
# adam, rmsprop and adagrad turn each implementation's rounding noise there into steps of
# their own); without it, every optimizer.
NOT_ADAPTIVE = ("sgd", "momentum", "nesterov")


@st.composite
def training_cases(draw: st.DrawFn, problems: Any = None
                   ) -> tuple[Problem, hw.OptimizerSpec, int, int, bool]:
    """A Sequential problem (bce left out, as in tests/test_cross_framework.py: training
    saturates its outputs, where equally valid forms of its gradient differ by 1e-8), an
    optimizer (maximize off: ascent is covered by the NetworkSpec property), epochs, a batch
    size that leaves every batch of a batch norm at least MIN_NORM_COUNT samples (the last
    one too: the fewest a drawn norm averages over), shuffled or in order.  ``problems``:
    another strategy of such problems (tests/test_conv_references.py draws images)."""
    p = draw(problems if problems is not None else
             sequential_problems(max_layers=4, max_width=5, max_batch=12,
                                 exclude_losses=("bce",)))
    seq = p.spec
    names = NOT_ADAPTIVE if seq.has_batch_norm else tuple(sorted(OPTIMIZER_DEFAULTS))
    opt = draw_optimizer(HypothesisChooser(draw), draw(st.sampled_from(names)))
    if opt.hyperparams["maximize"]:
        opt = hw.OptimizerSpec(opt.name, opt.lr, {**opt.hyperparams, "maximize": False},
                               opt.schedule, opt.clip_norm, opt.clip_value)
    least = MIN_NORM_COUNT if seq.has_batch_norm else 1
    size = draw(st.integers(least, p.batch))
    while 0 < p.batch % size < least:
        size += 1                  # ends by size = p.batch at the latest (remainder 0)
    if seq.reduction == "sum":
        # the gradient of a sum is n times the mean's (n the terms "mean" divides by): the
        # drawn lr (up to 0.1, a mean's) would step n times as far, and a descent that runs
        # away to overflow compares nothing (nesterov at lr 0.0625 on an mse sum of 4
        # samples did).  The mean's step, taken on the sum:
        terms = size if hw.LOSSES[seq.loss].targets == "class" else size * seq.n_out
        opt = dataclasses.replace(opt, lr=opt.lr / terms)
    return p, opt, draw(st.integers(2, 6)), size, draw(st.booleans())


def _twin_run(p: Problem, opt: hw.OptimizerSpec, schedule: hw.Schedule
              ) -> tuple[list[float], list[hw.Params], list[dict[str, np.ndarray]]]:
    """bpnet.compare.twin_run for a Sequential (that one reads a NetworkSpec's layers): the
    same schedule (its masks drawn as train draws them), every gradient leaf perturbed by
    TWIN_GRADIENT_NOISE times its scale at the first step in a fixed sign pattern; the scale
    of a sum over the batch (d_b, d_beta, d_gamma) is its terms' (batch_sum_terms: a bias
    a batch norm follows sums to 0, and its rounding is on its terms' scale).  Its losses,
    recorded params, and the running statistics it carries as train does."""
    seq, params = p.spec, p.params
    signs = [{k: np.random.default_rng(p.seed + i).choice([-1.0, 1.0], w.shape)
              for k, w in node.items()} for i, node in enumerate(params)]
    state = hw.init_state(opt, params)
    running = hw.init_running(seq)
    losses, recorded = [], [params]
    scale: list[dict[str, float]] = []
    for batch in schedule:
        xb, yb = p.x[batch.rows], p.y[batch.rows]
        trace = fold.trace(seq, params, xb, yb, batch.masks)
        grads = [{k: node[f"d_{k}"] for k in p_node} for node, p_node in zip(trace.layers, params)]
        _, caches = fold.forward(seq, params, xb, fold.Pass(masks=batch.masks))
        running = fold.update_state(seq, running, caches)
        if not scale:
            scale = [{k: float(np.abs(g).max(initial=0.0)) for k, g in node.items()}
                     for node in grads]
            for node, layer in zip(scale, trace.layers):
                for key, terms in batch_sum_terms(layer).items():
                    k = key.removeprefix("d_")
                    if k in node:
                        node[k] = max(node[k], float(terms.sum(axis=0).max(initial=0.0)))
        noisy = [{k: g + TWIN_GRADIENT_NOISE * scale[i][k] * signs[i][k] for k, g in node.items()}
                 for i, node in enumerate(grads)]
        params, state = hw.step(opt, params, noisy, state)
        losses.append(float(trace.loss))
        if batch.record:
            recorded.append(params)
    return losses, recorded, running


@at_most(40)      # each example compiles a JAX training step per batch shape
@given(case=training_cases())
@example(case=(CASES[0], hw.OptimizerSpec("momentum", 0.05, {"momentum": 0.9}), 3, 4, True))
@example(case=(CASES[1], hw.OptimizerSpec("adam", 0.01, {}), 3, 3, False))
def test_sequential_trajectories_match_torch_and_jax(
        case: tuple[Problem, hw.OptimizerSpec, int, int, bool]) -> None:
    """Free-running training of a drawn Sequential (mini-batches, each step's masks from a
    Generator seeded alike in every implementation): the recorded params and the losses of
    all three within the trajectory envelope (trajectory_rtol(k) + TWIN_FACTOR * the twin
    run's drift, bpnet.tolerances), and the final running statistics of every BatchNorm1d
    node within the envelope's floor plus their own twin drift."""
    check_sequential_trajectories_match_torch_and_jax(case)


def check_sequential_trajectories_match_torch_and_jax(
        case: tuple[Problem, hw.OptimizerSpec, int, int, bool]) -> None:
    p, opt, epochs, size, shuffle = case
    seq = p.spec
    order = hw.Shuffle(p.seed) if shuffle else None
    kwargs = {"epochs": epochs, "batch_size": size, "batch_order": order, "record_every": 3}
    before = snapshot(p.params, p.x, p.y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hw.TrainingWarning)   # a run that did not train
        ours = hw.train(seq, p.params, p.x, p.y, opt, rng=np.random.default_rng(p.seed),
                        **kwargs)
        assert_unchanged(before, p.params, p.x, p.y)
        schedule = hw.Schedule(p.batch, epochs, size, order, 3, (seq, p.x, p.y),
                               rng=np.random.default_rng(p.seed) if seq.has_dropout else None)
        twin_losses, twin_params, twin_running = _twin_run(p, opt, schedule)
        allowed_at = envelope(ours.recorded_steps, ours.params, twin_params)
        steps = len(ours.losses)
        for name, ref in _supporting(opt, steps).items():
            theirs = ref.train(seq, p.params, p.x, p.y, opt,       # type: ignore[attr-defined]
                               rng=np.random.default_rng(p.seed), **kwargs)
            assert_unchanged(before, p.params, p.x, p.y)
            context = f"{opt}, {epochs} epochs of {size}, vs {name}: {_context(p)}"
            worst = assert_trajectories_agree(ours, theirs, allowed_at, twin_losses, context)
            target(worst, label=f"sequential trajectory vs {name}")
            assert len(theirs.running) == len(seq.nodes), context
            if not seq.has_batch_norm:
                assert ours.running == theirs.running == [{}] * len(seq.nodes), context
                continue
            # the running statistics average every step's batch statistics: held to the
            # envelope's rounding floor at the last step plus their own twin drift
            diff = param_divergence(ours.running, theirs.running)
            allowed = (trajectory_rtol(steps)
                       + TWIN_FACTOR * param_divergence(ours.running, twin_running))
            assert diff <= allowed, (f"{context}: running statistics differ by {diff:.3g} "
                                     f"(normwise) > allowed {allowed:.3g}")
            for (path, layer), mine, its in zip(seq.nodes, ours.running, theirs.running):
                assert sorted(its) == sorted(mine), f"{context}: node {path} {layer!r}"


def test_the_references_train_on_the_masks_handwritten_draws() -> None:
    """Each step's masks are the schedule's (draw_masks, per node, from train's rng): with
    p = 0.5 dropout at the input and a plain sgd step, another mask would move the params by
    O(lr) at once, so the first step alone tells -- equal to RTOL64 in all three, and not
    equal to a run with another rng."""
    seq = Sequential([Dropout(0.5), Dense(4, 3), Activation("tanh"), Dropout(0.5),
                      Dense(3, 2)], "mse", "mean", 0.0, in_features=4)
    p = Problem(seq, batch=6, seed=5)
    opt = hw.OptimizerSpec("sgd", 0.1, {})
    kwargs = {"epochs": 1, "batch_size": 3, "record_every": 1}
    ours = hw.train(seq, p.params, p.x, p.y, opt, rng=np.random.default_rng(9), **kwargs)
    other = hw.train(seq, p.params, p.x, p.y, opt, rng=np.random.default_rng(10), **kwargs)
    assert param_divergence(ours.params[1], other.params[1]) > 1e-4
    for name, ref in REFERENCES.items():
        theirs = ref.train(seq, p.params, p.x, p.y, opt,           # type: ignore[attr-defined]
                           rng=np.random.default_rng(9), **kwargs)
        for k, (mine, its) in enumerate(zip(ours.params, theirs.params)):
            assert param_divergence(mine, its) <= trajectory_rtol(k), (name, k)
