"""The convolution chapter in handwritten alone: random convolutional Sequentials (Conv1d,
Conv2d with every argument, max and average pooling with non-square windows, global
average pooling, BatchNorm2d, GroupNorm, Flatten, Residual and dropout in any valid order)
through the framework-free properties of tests/test_layers.py
-- finite differences of the loss, of the output along a direction and of the gradient
(H v), gnvp positive semidefinite, per-example gradients summing to the gradient -- then
the geometry stated from first principles (a one-hot kernel is a shift; 'same' pads the
odd one at the bottom and right; max pooling's ties go to the window's first maximum;
average pooling's divisor at the border) and the refusals.  Against torch and JAX:
tests/test_conv_references.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import handwritten as hw
from bpnet.compare import compare_trace
from bpnet.problems import Problem
from bpnet.tolerances import ATOL64_SCALE, RTOL64
from handwritten.layers import (
    Activation,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Context,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    GroupNorm,
    MaxPool2d,
    Residual,
    Sequential,
    fold,
)
from handwritten.spec import BACKWARD_QUANTITIES, FORWARD_QUANTITIES
from tests.helpers import assert_leaf_close, assert_unchanged, snapshot
from tests.strategies import conv_problems
from tests.test_layers import (
    check_per_example_grads_sum_to_the_data_term_or_are_refused,
    check_random_sequential_gnvp_is_positive_semidefinite,
    check_random_sequential_grads_match_finite_differences,
    check_random_sequential_hvp_is_symmetric_and_a_derivative_of_the_gradient,
    check_random_sequential_jvp_matches_a_central_difference,
)

SEEDS = st.integers(0, 2**32 - 1)


# random convolutional Sequentials: the framework-free oracles -------------------------------


# GroupNorm on rows of features (batch, C): no spatial axes, which the image draws never meet
ROWS = Problem(Sequential([Dense(3, 6), GroupNorm(2, 6), Activation("tanh"), Dense(6, 2)],
                          "mse", "mean", 0.1), batch=3, seed=4)


@given(conv_problems())
@example(ROWS)
def test_random_conv_grads_match_finite_differences(p: Problem) -> None:
    """Every kernel, bias, gamma and beta of a random convolutional network against central
    differences of the loss (a coordinate whose step moves a max pooling window's winner,
    or a unit across a relu kink, is not comparable and is skipped)."""
    check_random_sequential_grads_match_finite_differences(p)


@given(conv_problems())
@example(ROWS)
def test_random_conv_jvp_matches_a_central_difference(p: Problem) -> None:
    check_random_sequential_jvp_matches_a_central_difference(p)


@given(conv_problems(), SEEDS)
@example(ROWS, 0)
def test_random_conv_hvp_is_symmetric_and_a_derivative_of_the_gradient(p: Problem,
                                                                        seed: int) -> None:
    check_random_sequential_hvp_is_symmetric_and_a_derivative_of_the_gradient(p, seed)


@given(conv_problems(), SEEDS)
def test_random_conv_gnvp_is_positive_semidefinite(p: Problem, seed: int) -> None:
    check_random_sequential_gnvp_is_positive_semidefinite(p, seed)


@given(conv_problems())
@example(ROWS)
def test_conv_per_example_grads_sum_to_the_data_term_or_are_refused(p: Problem) -> None:
    """A convolution's per-example kernel gradient is each sample's own correlation; the sum
    over the batch is the gradient.  BatchNorm2d in training mode is refused by name."""
    check_per_example_grads_sum_to_the_data_term_or_are_refused(p)


@given(conv_problems(max_batch=4))
def test_conv_entry_points_leave_their_inputs_untouched(p: Problem) -> None:
    before = snapshot(p.params, p.x, p.y, p.masks)
    hw.loss_and_grads(p.spec, p.params, p.x, p.y, p.masks)
    hw.trace(p.spec, p.params, p.x, p.y, p.masks)
    fold.jvp(p.spec, p.params, p.x, p.params, p.masks)
    assert_unchanged(before, p.params, p.x, p.y, p.masks)



def _stored_batch_last(x: np.ndarray) -> np.ndarray:
    """x's values, stored (C, *spatial, batch) in memory: the layout the conv layers make."""
    return np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 0, -1)), -1, 0)


# a GroupNorm's d_beta under a BatchNorm2d: 0 in exact arithmetic, a residue of rounding
# that the input's layout changes (found by the dev profile)
CANCELLING = Problem(Sequential([Activation("gelu"), GroupNorm(1, 1), BatchNorm2d(1), Flatten(),
                                 Dense(8, 1)], "mse", in_shape=(1, 4, 2)), batch=4, seed=0)


@given(conv_problems(max_batch=4))
@example(CANCELLING)
def test_the_inputs_memory_layout_changes_no_number(p: Problem) -> None:
    """The layers store the images they make batch-last (conv.py's docstring) and take an
    input stored any way: torch's order, Fortran's, or batch-last.  A write into a copy a
    reshape made (a layout bug) would change a value by O(1); the only difference allowed
    is the order of a reduction's terms (a batch sum over a differently strided array),
    a few ulps: RTOL64, the suite's bound for the same equations summed in another
    order.  A batch sum (d_b, d_beta, d_gamma) is judged on the scale of its terms
    (``compare_trace``, ``bpnet.tolerances.batch_sum_terms``): where it cancels to 0 -- a
    GroupNorm's d_beta under a BatchNorm2d -- another order leaves another residue."""
    expected = hw.trace(p.spec, p.params, p.x, p.y, p.masks)
    for layout in (np.asfortranarray, _stored_batch_last):
        got = hw.trace(p.spec, p.params, layout(p.x), p.y, p.masks)
        for ours, theirs in zip(got.layers, expected.layers):
            assert ours.keys() == theirs.keys()
            assert set(ours) <= {*FORWARD_QUANTITIES, *BACKWARD_QUANTITIES}  # all compared
        reports = compare_trace(got, expected, rtol=RTOL64, atol_scale=ATOL64_SCALE)
        failed = [str(r) for r in reports if not r.ok]
        assert not failed, f"input stored as {layout.__name__}: {failed[0]}"


@given(conv_problems(max_batch=4))
def test_d_w_summed_block_by_block_is_the_whole_sum(p: Problem) -> None:
    """``corr`` sums d_W over the columns (n, y, x) CORR_BLOCK at a time, and the drawn
    networks' columns fit in one block (the sum the references check).  In blocks of 3
    columns -- many blocks, the last one partial -- every gradient must be the same sum in
    another order: equal to RTOL64.  A block left out, or counted twice, changes d_W by
    O(1)."""
    from unittest import mock

    from handwritten.layers import conv

    _, expected = hw.loss_and_grads(p.spec, p.params, p.x, p.y, p.masks)
    with mock.patch.object(conv, "CORR_BLOCK", 3):
        _, got = hw.loss_and_grads(p.spec, p.params, p.x, p.y, p.masks)
    for path, ours, theirs in zip(p.spec.paths, got, expected):
        assert ours.keys() == theirs.keys()
        for name in theirs:
            assert_leaf_close(ours[name], theirs[name], f"node {path} d_{name}", rtol=RTOL64,
                              atol_scale=ATOL64_SCALE)


# the geometry from first principles ----------------------------------------------------------

CTX = Context()


def _one_hot_kernel(shape: tuple[int, ...], at: tuple[int, ...]) -> np.ndarray:
    w = np.zeros(shape)
    w[(0, 0, *at)] = 1.0
    return w


@pytest.mark.parametrize(("stride", "dilation", "padding"),
                         [(1, 1, 0), (2, 1, 1), (1, 2, 2), ((2, 1), (1, 2), (0, 1))])
def test_a_one_hot_kernel_reads_the_input_at_its_offset_and_sends_d_z_back_there(
        stride: Any, dilation: Any, padding: Any) -> None:
    """z[y, x] = hp[y s + i d, x s + j d] for the kernel W = e_(i, j): the forward is a
    strided read of the padded input at the offset, and d_h is d_z written back at the same
    places (zero where no window reads) -- the definition, with no flip anywhere."""
    rng = np.random.default_rng(0)
    layer = Conv2d(1, 1, 3, stride=stride, padding=padding, dilation=dilation, bias=False)
    h = rng.normal(size=(2, 1, 7, 8))
    s, d, pad = layer.stride, layer.dilation, layer.padding
    hp = np.pad(h, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))   # type: ignore[index]
    for at in [(0, 0), (1, 2), (2, 1)]:
        w = _one_hot_kernel((1, 1, 3, 3), at)
        z, cache = layer.forward({"W": w}, h, CTX)
        ho, wo = z.shape[2:]
        rows = at[0] * d[0] + s[0] * np.arange(ho)                       # type: ignore[index]
        cols = at[1] * d[1] + s[1] * np.arange(wo)                       # type: ignore[index]
        np.testing.assert_array_equal(z, hp[:, :, rows[:, None], cols[None, :]])
        d_z = rng.normal(size=z.shape)
        d_h = layer.backward({"W": w}, cache, d_z, CTX)[0]
        d_hp = np.zeros_like(hp)
        d_hp[:, :, rows[:, None], cols[None, :]] = d_z
        np.testing.assert_array_equal(d_h, d_hp[:, :, pad[0]:pad[0] + 7, pad[1]:pad[1] + 8])  # type: ignore[index]


@pytest.mark.parametrize(("kernel", "dilation", "before", "after"),
                         [(2, 1, 0, 1), (4, 1, 1, 2), (3, 2, 2, 2), (2, 3, 1, 2)])
def test_same_padding_keeps_the_size_and_pads_the_odd_one_at_the_bottom_and_right(
        kernel: int, dilation: int, before: int, after: int) -> None:
    """'same': d (k - 1) zeros in all, the odd one after the input (torch's and JAX's
    'SAME'): the output equals the 'valid' convolution of the input padded by hand."""
    rng = np.random.default_rng(1)
    same = Conv1d(2, 3, kernel, padding="same", dilation=dilation)
    valid = Conv1d(2, 3, kernel, padding="valid", dilation=dilation)
    p = {"W": rng.normal(size=(3, 2, kernel)), "b": rng.normal(size=3)}
    h = rng.normal(size=(2, 2, 9))
    z = same.forward(p, h, CTX)[0]
    assert z.shape == (2, 3, 9)
    np.testing.assert_array_equal(z, valid.forward(p, np.pad(h, ((0, 0), (0, 0), (before, after))),
                                                   CTX)[0])


def test_max_pooling_sends_a_tie_to_the_windows_first_maximum_and_sums_overlaps() -> None:
    """torch's rule (and jax.lax.reduce_window's): among equal maxima the first in row-major
    window order wins; an element that wins several overlapping windows gets their sum."""
    h = np.ones((1, 1, 3, 3))
    pool = MaxPool2d(2, stride=1)
    out, cache = pool.forward({}, h, CTX)
    d_h = pool.backward({}, cache, np.ones_like(out), CTX)[0]
    # windows at (0,0), (0,1), (1,0), (1,1): each's first element is its top-left
    np.testing.assert_array_equal(d_h[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    # forward mode reads h_dot at the same winner: each window's top-left element
    tangent = pool.tangent({}, cache, np.arange(9.0).reshape(1, 1, 3, 3), {}, CTX)
    np.testing.assert_array_equal(tangent[0, 0], [[0, 1], [3, 4]])
    h = np.zeros((1, 1, 3, 3))
    h[0, 0, 1, 1] = 9.0                                   # the maximum of all four windows
    out, cache = pool.forward({}, h, CTX)
    d_h = pool.backward({}, cache, np.ones_like(out), CTX)[0]
    np.testing.assert_array_equal(d_h[0, 0], [[0, 0, 0], [0, 4, 0], [0, 0, 0]])
    tangent = pool.tangent({}, cache, np.arange(9.0).reshape(1, 1, 3, 3), {}, CTX)
    np.testing.assert_array_equal(tangent, np.full((1, 1, 2, 2), 4.0))   # h_dot at the winner



def test_max_pooling_keeps_an_inf_d_out_at_the_winner() -> None:
    """torch scatters d_out to the winner only; a product with the winners' mask would put
    0 * inf = nan at the window's other elements."""
    h = np.arange(16.0).reshape(1, 1, 4, 4)
    pool = MaxPool2d(2)
    _, cache = pool.forward({}, h, CTX)
    d_out = np.array([[[[np.inf, 1.0], [-np.inf, 2.0]]]])
    d_h = pool.backward({}, cache, d_out, CTX)[0]
    expected = np.zeros((4, 4))
    expected[1::2, 1::2] = d_out[0, 0]                 # each window's maximum: bottom right
    np.testing.assert_array_equal(d_h[0, 0], expected)


def test_max_pooling_never_picks_the_padding() -> None:
    h = -np.arange(1.0, 5.0).reshape(1, 1, 2, 2) - 10     # all negative: -inf pads, not 0
    out, _ = MaxPool2d(2, stride=1, padding=1).forward({}, h, CTX)
    np.testing.assert_array_equal(out[0, 0], [[-11, -11, -12], [-11, -11, -12],
                                              [-13, -13, -14]])


@pytest.mark.parametrize("include", [True, False])
def test_average_pooling_divides_by_the_window_or_by_its_elements_inside_the_input(
        include: bool) -> None:
    """An input of ones, kernel 3, stride 2, padding 1 on 4 x 4: a corner window holds 4
    of the input's elements, an edge window 6, an inner one 9 -- out is 4/9, 6/9, 1
    (count_include_pad) or 1 everywhere (its elements counted)."""
    pool = AvgPool2d(3, stride=2, padding=1, count_include_pad=include)
    out, cache = pool.forward({}, np.ones((1, 1, 4, 4)), CTX)
    expected = np.array([[4, 6], [6, 9]]) / 9 if include else np.ones((2, 2))
    np.testing.assert_allclose(out[0, 0], expected, rtol=4 * np.finfo(float).eps)
    # the backward spreads each window's d_out = 1 over the input elements it averaged:
    # each window hands down (its elements inside the input) / count
    d_h = pool.backward({}, cache, np.ones_like(out), CTX)[0]
    np.testing.assert_allclose(d_h.sum(), (4 + 6 + 6 + 9) / 9 if include else 4.0,
                               rtol=16 * np.finfo(float).eps)


def test_flatten_orders_channels_then_rows_then_columns() -> None:
    h = np.arange(24.0).reshape(2, 3, 2, 2)
    out = Flatten().forward({}, h, CTX)[0]
    assert out.shape == (2, 12)
    n, c, y, x = 1, 2, 1, 0
    assert out[n, c * 4 + y * 2 + x] == h[n, c, y, x]


def test_global_average_pooling_is_each_channels_mean() -> None:
    h = np.random.default_rng(2).normal(size=(2, 3, 4, 5))
    out = AdaptiveAvgPool2d().forward({}, h, CTX)[0]
    np.testing.assert_allclose(out[:, :, 0, 0], h.reshape(2, 3, -1).mean(axis=2), rtol=1e-15)


def test_grouped_convolution_never_mixes_the_groups_channels() -> None:
    """groups=2: the first output channel's gradient with respect to the second group's
    input channels is 0, and changing those channels leaves it unchanged."""
    rng = np.random.default_rng(3)
    layer = Conv2d(4, 2, 3, padding=1, groups=2)
    p = {"W": rng.normal(size=(2, 2, 3, 3)), "b": np.zeros(2)}
    h = rng.normal(size=(1, 4, 5, 5))
    z, cache = layer.forward(p, h, CTX)
    d_z = np.zeros_like(z)
    d_z[:, 0] = 1.0
    d_h = layer.backward(p, cache, d_z, CTX)[0]
    assert not d_h[:, 2:].any() and d_h[:, :2].any()
    other = h.copy()
    other[:, 2:] += 1.0
    np.testing.assert_array_equal(layer.forward(p, other, CTX)[0][:, 0], z[:, 0])


# the refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(("build", "error", "message"), [
    (lambda: Conv2d(3, 4, 3, groups=2), ValueError, r"in_channels must be divisible by groups"),
    (lambda: Conv2d(2, 3, 3, groups=2), ValueError, r"out_channels must be divisible by groups"),
    (lambda: Conv2d(2, 4, 3, stride=2, padding="same"), ValueError,
     r"padding='same' needs stride 1"),
    (lambda: Conv2d(2, 4, 3, padding="full"), ValueError, r"padding must be an int, a tuple"),
    (lambda: Conv2d(2, 4, (3, 3, 3)), ValueError, r"kernel_size must be an int or a tuple of 2"),
    (lambda: Conv2d(2, 4, 0), ValueError, r"kernel_size must be >= 1"),
    (lambda: Conv2d(2, 4, 3, bias=1), TypeError, r"bias must be a bool"),
    (lambda: MaxPool2d(2, padding=2), ValueError, r"padding must be at most half the kernel"),
    (lambda: AdaptiveAvgPool2d((2, 2)), ValueError, r"output_size must be \(1, 1\)"),
    (lambda: Sequential([Conv2d(1, 2, 3), Flatten(), Dense(2, 1)]), ValueError,
     r"in_shape is required: layers\[0\] Conv2d"),
    (lambda: Sequential([Conv2d(1, 2, 3), Dense(2, 1)], in_shape=(1, 5, 5)), ValueError,
     r"layers\[1\]: Dense\(.*\) takes inputs of shape \(batch, features\), got a sample shape "
     r"\(2, 3, 3\)"),
    (lambda: Sequential([Conv2d(1, 2, 3)], in_shape=(1, 5, 5)), ValueError,
     r"the network's output is \(batch, 2, 3, 3\).*end with Flatten"),
    (lambda: Sequential([Conv2d(2, 2, 3), Flatten(), Dense(8, 1)], in_shape=(1, 4, 4)),
     ValueError, r"layers\[0\]: Conv2d\(.*\) needs inputs of shape \(batch, 2, H, W\), got "
                 r"\(batch, 1, 4, 4\)"),
    (lambda: Sequential([Conv2d(1, 2, 5), Flatten(), Dense(2, 1)], in_shape=(1, 3, 3)),
     ValueError, r"the padded input \(3 \+ 0\) is smaller than the dilated kernel \(5\)"),
    (lambda: Sequential([BatchNorm2d(2), Flatten(), Dense(8, 1)], in_shape=(2, 4)), ValueError,
     r"BatchNorm2d\(num_features=2\) needs inputs of shape \(batch, 2, H, W\)"),
    (lambda: Sequential([Dense(2, 2)], in_features=2, in_shape=(3,)), ValueError,
     r"in_features=2 and in_shape=\(3,\) disagree"),
])
def test_an_invalid_conv_layer_or_network_is_refused_naming_it(
        build: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        build()


def test_an_image_of_the_wrong_shape_is_refused_before_anything_runs() -> None:
    seq = Sequential([Conv2d(1, 2, 3), Activation("relu"), Flatten(), Dense(8, 1)],
                     in_shape=(1, 4, 4))
    p = Problem(seq, 3, 0)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 1, 4, 4\) for the first "
                                         r"layer Conv2d"):
        hw.loss_and_grads(seq, p.params, p.x[:, :, :3], p.y)
    with pytest.raises(ValueError, match=r"x must be a 4-D array"):
        hw.loss_and_grads(seq, p.params, p.x.reshape(3, -1), p.y)
    bad = [dict(node) for node in p.params]
    bad[0] = {"W": p.params[0]["W"][:, :, :2], "b": p.params[0]["b"]}
    with pytest.raises(ValueError, match=r"params\[0\]\['W'\] must have shape \(2, 1, 3, 3\)"):
        hw.loss_and_grads(seq, bad, p.x, p.y)


def test_a_conv_sequential_repr_replays() -> None:
    seq = Sequential([Conv2d(2, 4, 3, stride=2, padding=1, groups=2, bias=False),
                      BatchNorm2d(4), Activation("relu"), MaxPool2d(2),
                      Residual([Conv2d(4, 4, 2, padding="same")]),
                      AvgPool2d(2, count_include_pad=False, padding=1), AdaptiveAvgPool2d(),
                      Dropout(0.2), Flatten(), Dense(4, 2)], in_shape=(2, 9, 9))
    names = vars(__import__("handwritten.layers", fromlist=["*"]))
    again = eval(repr(seq), dict(names))
    assert again == seq and hash(again) == hash(seq)
