"""Random convolutional Sequentials against torch (torch.nn.functional: conv1d, conv2d,
max_pool2d, avg_pool2d, adaptive_avg_pool2d, batch_norm, flatten) and JAX
(jax.lax.conv_general_dilated, jax.lax.reduce_window): every trace quantity of every node,
loss and gradients, predict in evaluation mode, jvp, per-example gradients, hvp and gnvp,
the float32 policy, one optimizer step and free-running trajectories -- the properties of
tests/test_layer_references.py, test_layer_second_order.py and test_layer_training.py,
drawn over images and sequences (bpnet.problems.draw_conv_sequential).

Ties in max pooling are met on purpose: a relu in front of a pool makes windows of exact
zeros, where the gradient (and the tangent) must go to the window's first maximum in all
three; the hand-picked CASES below hold such windows (``test_the_cases_hold_ties``), and
the drawn networks put relus before pools too.  Tolerances: the references' modules (the
suite's policy in bpnet.tolerances)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import handwritten as hw
from bpnet.check_all import CONV_CASES
from bpnet.problems import Problem
from handwritten.layers import (
    LAYERS,
    Activation,
    Dense,
    GroupNorm,
    MaxPool2d,
    Sequential,
    fold,
)
from tests.helpers import at_most
from tests.strategies import conv_problems

pytest.importorskip("torch")
pytest.importorskip("jax")
from tests.strategies import optimizer_specs
from tests.test_layer_references import (
    _cases_first as _layer_cases_first,
)
from tests.test_layer_references import (
    check_every_node_quantity_matches_torch_and_jax,
    check_jvp_matches_torch_func_and_jax_jvp,
    check_loss_and_grads_match_torch_and_jax,
    check_per_example_grads_match_or_all_three_refuse_batch_norm,
    check_predict_in_evaluation_mode_matches_torch_and_jax,
)
from tests.test_layer_second_order import (
    check_float32_sequential_error_is_within_the_frameworks_own,
    check_hvp_and_gnvp_match_torch_and_jax,
    check_r_trace_matches_torch_and_jax,
)
from tests.test_layer_training import (
    check_one_optimizer_step_on_sequential_params_matches_torch_optim_and_optax,
    check_sequential_trajectories_match_torch_and_jax,
    training_cases,
)

# Each example compiles a JAX program per entry point and shape: few of them.
FEW = at_most(20)
CONVS = conv_problems(max_layers=3, max_channels=4, max_size=6, max_batch=5)
SEEDS = st.integers(0, 2**32 - 1)

CASES = [Problem(CONV_CASES[0], batch=4, seed=1, labels=True),
         Problem(CONV_CASES[1], batch=3, seed=2), Problem(CONV_CASES[2], batch=3, seed=3),
         Problem(Sequential([Dense(3, 6), GroupNorm(2, 6), Activation("tanh"), Dense(6, 2)],
                            "mse", "mean", 0.1), batch=3, seed=4)]
"""bpnet check --all's convolution cases (``CONV_CASES``), run first by every property: a
strided padded Conv2d, spatial batch norm, relu then max pooling (ties at its zeros), a
grouped dilated 'same' Conv2d, average pooling counting only the input's elements, labels;
sequences through a depthwise Conv1d without bias with an even 'same' kernel, group norm,
dropout, a strided dilated Conv1d; a residual conv block, non-square overlapping padded
max pooling after a relu, global average pooling; and a GroupNorm on rows of features."""


def _cases_first(**drawn: Any) -> Any:
    return _layer_cases_first(CASES, **drawn)


def test_the_cases_hold_ties_and_every_conv_layer_kind() -> None:
    """The hand-picked cases meet every new kind, and max pooling windows with several
    equal maxima (the relu's zeros): the tie rule is exercised whatever the draws."""
    kinds = {type(layer).__name__ for p in CASES for _, layer in p.spec.nodes}
    assert {"Conv1d", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten",
            "BatchNorm2d", "GroupNorm"} <= kinds <= set(LAYERS)
    ties = 0
    for p in CASES:
        _, caches = fold.forward(p.spec, p.params, p.x, fold.Pass(masks=p.masks))
        for i, (_, layer) in enumerate(p.spec.nodes):
            if isinstance(layer, MaxPool2d):
                h = caches[i - 1][p.spec.nodes[i - 1][1].OUT]
                ties += int((h == 0).sum())
    assert ties >= 10


@FEW
@given(p=CONVS)
@_cases_first()
def test_every_conv_node_quantity_matches_torch_and_jax(p: Problem) -> None:
    check_every_node_quantity_matches_torch_and_jax(p)


@FEW
@given(p=CONVS)
@_cases_first()
def test_conv_loss_and_grads_match_torch_and_jax(p: Problem) -> None:
    check_loss_and_grads_match_torch_and_jax(p)


@FEW
@given(p=CONVS, seed=SEEDS)
@_cases_first(seed=0)
def test_conv_predict_in_evaluation_mode_matches_torch_and_jax(p: Problem, seed: int) -> None:
    """BatchNorm2d with drawn running statistics, one per channel."""
    check_predict_in_evaluation_mode_matches_torch_and_jax(p, seed)


@FEW
@given(p=CONVS, seed=SEEDS)
@_cases_first(seed=0)
def test_conv_jvp_matches_torch_func_and_jax_jvp(p: Problem, seed: int) -> None:
    """The tangent through a max pooling window goes to its winner in all three."""
    check_jvp_matches_torch_func_and_jax_jvp(p, seed)


@FEW
@given(p=CONVS)
@_cases_first()
def test_conv_per_example_grads_match_or_all_three_refuse_batch_norm(p: Problem) -> None:
    """A convolution's per-example kernel gradients (what private training clips) against
    torch.func.vmap(grad) and jax.vmap(jax.grad); BatchNorm2d refused by all three."""
    check_per_example_grads_match_or_all_three_refuse_batch_norm(p)


@FEW
@given(p=CONVS, seed=SEEDS)
@_cases_first(seed=0)
def test_conv_hvp_and_gnvp_match_torch_and_jax(p: Problem, seed: int) -> None:
    check_hvp_and_gnvp_match_torch_and_jax(p, seed)


@FEW
@given(p=CONVS, seed=SEEDS)
@_cases_first(seed=0)
def test_conv_r_trace_matches_torch_and_jax(p: Problem, seed: int) -> None:
    check_r_trace_matches_torch_and_jax(p, seed)


@FEW
@given(p=CONVS)
@_cases_first()
def test_float32_conv_error_is_within_the_frameworks_own(p: Problem) -> None:
    check_float32_sequential_error_is_within_the_frameworks_own(p)


@at_most(20)      # each example compiles optax's update for its params' shapes
@given(p=CONVS, opt=optimizer_specs(), t=st.integers(0, 5))
@example(p=CASES[0], opt=hw.OptimizerSpec("adam", 0.01, {}), t=3)
def test_one_optimizer_step_on_conv_params_matches_torch_optim_and_optax(
        p: Problem, opt: hw.OptimizerSpec, t: int) -> None:
    check_one_optimizer_step_on_sequential_params_matches_torch_optim_and_optax(p, opt, t)


@at_most(15)      # each example compiles a JAX training step per batch shape
@given(case=training_cases(conv_problems(max_layers=3, max_channels=3, max_size=6,
                                         max_batch=10, exclude_losses=("bce",))))
@example(case=(CASES[2], hw.OptimizerSpec("momentum", 0.05, {"momentum": 0.9}), 3, 2, True))
@example(case=(CASES[0], hw.OptimizerSpec("sgd", 0.05, {}), 2, 4, False))   # BatchNorm2d's state
def test_conv_trajectories_match_torch_and_jax(
        case: tuple[Problem, hw.OptimizerSpec, int, int, bool]) -> None:
    """Training a convolutional network (BatchNorm2d's running statistics included)."""
    check_sequential_trajectories_match_torch_and_jax(case)
