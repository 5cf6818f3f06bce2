"""train(): the loop equals repeated loss_and_grads + step, over any batching."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from handwritten import (
    OPTIMIZERS,
    NetworkSpec,
    OptimizerSpec,
    Schedule,
    Shuffle,
    init_params,
    init_state,
    loss_and_grads,
    make_batch_order,
    step,
    train,
)
from handwritten.layers import (
    Activation,
    Conv2d,
    Dense,
    Flatten,
    Residual,
    Sequential,
    compile_network,
    network_params,
)
from tests.helpers import assert_unchanged, snapshot

SPEC = NetworkSpec((2, 5, 3), ("tanh", "softmax"), "softmax_cross_entropy", "mean")


def _data(n: int, seed: int = 0) -> tuple[list[dict[str, np.ndarray]], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (init_params(SPEC, rng, "glorot_uniform"), rng.normal(size=(n, 2)),
            rng.integers(0, 3, n))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@given(n=st.integers(1, 9), batch_size=st.integers(1, 9), epochs=st.integers(1, 3),
       shuffle=st.booleans(), seed=st.integers(0, 1000))
def test_train_equals_manual_loop(name: str, n: int, batch_size: int, epochs: int,
                                  shuffle: bool, seed: int) -> None:
    """Same batches in the same order, the same updates: bit-for-bit the same params."""
    batch_size = min(batch_size, n)
    params, x, y = _data(n, seed)
    opt = OptimizerSpec(name, 0.05)
    order = make_batch_order(n, epochs, np.random.default_rng(seed)) if shuffle else None
    before = snapshot(params, x, y, order)
    history = train(SPEC, params, x, y, opt, epochs=epochs, batch_size=batch_size,
                    batch_order=order)
    assert_unchanged(before, params, x, y, order)

    p, state, losses = params, init_state(opt, params), []
    rows = order if order is not None else np.tile(np.arange(n), (epochs, 1))
    for e in range(epochs):
        for start in range(0, n, batch_size):
            idx = rows[e, start:start + batch_size]
            loss, grads = loss_and_grads(SPEC, p, x[idx], y[idx])
            p, state = step(opt, p, grads, state)
            losses.append(loss)
    assert len(history.losses) == epochs * -(-n // batch_size)
    np.testing.assert_array_equal(history.losses, losses)
    for a, b in zip(history.final_params, p):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert history.state["t"] == state["t"]


def test_record_every_records_initial_every_kth_and_last() -> None:
    params, x, y = _data(6)
    h = train(SPEC, params, x, y, OptimizerSpec("sgd", 0.1), epochs=7, batch_size=2,
              record_every=5)
    assert h.recorded_steps == (0, 5, 10, 15, 20, 21)
    assert h.params[0] is not params         # a copy: changing the History cannot touch params
    for a, b in zip(h.params[0], params):
        assert all(np.array_equal(a[k], b[k]) and a[k] is not b[k] for k in a)
    assert len(h.params) == len(h.recorded_steps)
    # recorded params are snapshots, not views of the params training updates in place
    assert not any(np.array_equal(h.params[i][0]["W"], h.params[i + 1][0]["W"])
                   for i in range(len(h.params) - 1))
    by_default = train(SPEC, params, x, y, OptimizerSpec("sgd", 0.1), epochs=7, batch_size=2)
    assert by_default.recorded_steps == (0, 21)
    np.testing.assert_array_equal(by_default.final_params[0]["W"], h.final_params[0]["W"])


def test_float32_training_stays_float32() -> None:
    params, x, y = _data(5)
    p32 = [{k: v.astype(np.float32) for k, v in p.items()} for p in params]
    h = train(SPEC, p32, x.astype(np.float32), y, OptimizerSpec("adam", 0.01), epochs=3)
    assert h.losses.dtype == np.float32
    assert all(v.dtype == np.float32 for p in h.final_params for v in p.values())


def test_training_loss_decreases_on_the_blog_problem() -> None:
    """Sanity, not a tolerance: 200 full-batch sgd steps reduce the blog's loss."""
    from handwritten import seed
    x, y, *weights = seed.blog_problem(np.random.default_rng(0))
    h = train(seed.BLOG_SPEC, seed.to_params(*weights), x, y, OptimizerSpec("sgd", 0.1),
              epochs=200)
    assert h.losses[-1] < 0.5 * h.losses[0]


def test_divergence_names_the_step() -> None:
    """A huge learning rate drives the loss to inf; the error names the step and epoch."""
    spec = NetworkSpec((1, 1), ("identity",), "mse", "sum")
    params = [{"W": np.array([[1.0]]), "b": np.array([0.0])}]
    x, y = np.array([[10.0]]), np.array([[0.0]])
    with pytest.raises(FloatingPointError, match=r"at step \d+ \(epoch \d+, batch 1 of 1\)"):
        with np.errstate(over="ignore", invalid="ignore"):
            train(spec, params, x, y, OptimizerSpec("sgd", 1e3), epochs=500)


def test_running_statistics_beyond_the_float_range_are_divergence() -> None:
    """Batch norm's running variance can overflow while the loss, computed from the batch's
    own statistics, stays finite (measured: loss 1.3e200, every running var inf): the run
    has diverged -- its network for prediction is gone -- and says so, as for the loss."""
    spec = NetworkSpec((2, 8, 3), ("sigmoid", "softmax"), "softmax_cross_entropy", "mean",
                       norms=("batch",))
    rng = np.random.default_rng(0)
    params = init_params(spec, rng)
    x, y = rng.normal(size=(30, 2)), rng.integers(0, 3, 30)
    with pytest.raises(FloatingPointError, match=r"running statistics are non-finite after "
                                                 r"step 3 \(epoch 3\)"):
        with np.errstate(all="ignore"):
            train(spec, params, x, y, OptimizerSpec("sgd", 1e200), epochs=3)


@pytest.mark.parametrize(("n", "batch_size", "epochs", "record_every"),
                         [(7, 3, 2, None), (7, 3, 3, 2), (6, 6, 4, 1), (5, 1, 2, 10)])
def test_schedule_visits_every_sample_once_per_epoch(n: int, batch_size: int, epochs: int,
                                                     record_every: int | None) -> None:
    """Rows of each epoch partition range(n) in batch_order's order; steps count up from 1;
    the recorded steps are 0, every k-th and the last, and Batch.record marks exactly them."""
    order = make_batch_order(n, epochs, np.random.default_rng(n))
    for batch_order in (None, order):
        schedule = Schedule(n, epochs, batch_size, batch_order, record_every)
        batches = list(schedule)
        assert [b.step for b in batches] == list(range(1, schedule.n_steps + 1))
        assert schedule.n_steps == epochs * -(-n // batch_size)
        for e in range(epochs):
            rows = [np.arange(n)[b.rows] for b in batches if b.epoch == e]
            expected = np.arange(n) if batch_order is None else batch_order[e]
            np.testing.assert_array_equal(np.concatenate(rows), expected)
            assert [b.end_of_epoch for b in batches if b.epoch == e][-1]
            assert sum(b.end_of_epoch for b in batches if b.epoch == e) == 1
        assert (0, *[b.step for b in batches if b.record]) == schedule.recorded_steps
        assert schedule.recorded_steps[-1] == schedule.n_steps


def test_non_finite_final_params_are_refused() -> None:
    """A finite last loss, then an update that overflows: the final check names the step."""
    spec = NetworkSpec((1, 1), ("identity",), "mse", "sum")
    params = [{"W": np.array([[1.0]]), "b": np.array([0.0])}]
    x, y = np.array([[10.0]]), np.array([[0.0]])
    with pytest.raises(FloatingPointError, match=r"params are non-finite after step 1 \(epoch 1\)"):
        with np.errstate(over="ignore", invalid="ignore"):
            train(spec, params, x, y, OptimizerSpec("sgd", 1e307), epochs=1)


def test_shuffle_draws_make_batch_orders_rows_one_epoch_at_a_time() -> None:
    order = make_batch_order(7, 4, np.random.default_rng(11))
    lazy = [b.rows for b in Schedule(7, 4, 7, Shuffle(11))]
    np.testing.assert_array_equal(np.stack(lazy), order)
    params, x, y = _data(7)
    opt = OptimizerSpec("adam", 0.05)
    a = train(SPEC, params, x, y, opt, epochs=4, batch_size=3, batch_order=order)
    b = train(SPEC, params, x, y, opt, epochs=4, batch_size=3, batch_order=Shuffle(11))
    np.testing.assert_array_equal(a.losses, b.losses)
    with pytest.raises(ValueError, match="Shuffle seed must be a non-negative int"):
        Shuffle(-1)


def test_a_run_that_does_not_train_warns_once_and_says_why() -> None:
    """lr 1000 on the blog problem pins every sigmoid at 0 or 1: History.diagnostics says so,
    and train warns once with a TrainingWarning (a UserWarning a user can filter)."""
    from handwritten import TrainingWarning, seed

    x, y, *weights = seed.blog_problem(np.random.default_rng(0))
    with pytest.warns(TrainingWarning) as record:
        h = train(seed.BLOG_SPEC, seed.to_params(*weights), x, y, OptimizerSpec("sgd", 1000.0),
                  epochs=100)
    assert len(record) == 1 and issubclass(TrainingWarning, UserWarning)
    assert "every gradient is exactly zero at the final params" in h.diagnostics
    assert any("all 10 sigmoid units saturated" in d for d in h.diagnostics)
    good = train(seed.BLOG_SPEC, seed.to_params(*weights), x, y, OptimizerSpec("sgd", 0.1),
                 epochs=100)
    assert good.diagnostics == ()


def test_a_rising_loss_is_diagnosed() -> None:
    from handwritten.training import diagnose

    params, x, y = _data(6)
    worse = [{k: v * 3 + 1 for k, v in p.items()} for p in params]
    notes = diagnose(SPEC, x, y, params, worse)
    assert notes and notes[0].startswith("the loss on all the data rose from")


def _diagnose(spec: NetworkSpec | Sequential, params: list[dict[str, np.ndarray]],
              x: np.ndarray, y: np.ndarray) -> tuple[str, ...]:
    from handwritten.training import diagnose

    return diagnose(spec, x, y, params, params)


def test_a_dead_relu_node_of_a_sequential_is_named_by_its_path() -> None:
    """Every hidden Activation node is read, a Residual's body's too, and named by path
    and layer; the output Activation is not (as a NetworkSpec's output layer is not: a
    pinned output can be a fit, a sigmoid at 1 where y is 1)."""
    seq = Sequential([Dense(3, 16), Activation("relu"), Residual([Dense(16, 16),
                      Activation("tanh")]), Dense(16, 2), Activation("sigmoid")])
    rng = np.random.default_rng(0)
    params = init_params(seq, rng)
    x, y = rng.normal(size=(7, 3)), rng.uniform(size=(7, 2))
    assert not any("saturated" in n for n in _diagnose(seq, params, x, y))
    params[0]["b"] = params[0]["b"] - 100.0     # relu dead: z < 0 on every sample
    params[3]["b"] = params[3]["b"] + 100.0     # then tanh's z = b: pinned at 1
    params[5]["b"] = params[5]["b"] + 100.0     # and the sigmoid output pinned at 1
    notes = _diagnose(seq, params, x, y)
    assert [n for n in notes if "saturated" in n] == [
        "node 1 (Activation(name='relu')): all 16 relu units saturated "
        "(relu' < 1e-08 on every sample)",
        "node 2.1 (Activation(name='tanh')): all 16 tanh units saturated "
        "(tanh' < 1e-08 on every sample)"]


def test_a_dead_relu_over_images_counts_every_channel_and_position() -> None:
    """A unit of an (N, C, H, W) activation is each (c, h, w): 2 channels of 4 x 4."""
    seq = Sequential([Conv2d(1, 2, 3), Activation("relu"), Flatten(), Dense(32, 1)],
                     in_shape=(1, 6, 6))
    rng = np.random.default_rng(1)
    params = init_params(seq, rng)
    x, y = rng.normal(size=(5, 1, 6, 6)), rng.normal(size=(5, 1))
    params[0]["b"] = params[0]["b"] - np.array([100.0, 0.0])      # one channel dead
    assert not any("saturated" in n for n in _diagnose(seq, params, x, y))
    params[0]["b"] = params[0]["b"] - 100.0                         # both
    assert "node 1 (Activation(name='relu')): all 32 relu units saturated (relu' < 1e-08 " \
           "on every sample)" in _diagnose(seq, params, x, y)


def test_a_normalized_layers_saturation_is_read_at_the_norms_output() -> None:
    """In a block f takes the norm's n, not z: a layer whose z is far below 0 but whose n
    is normalized lives; one whose beta pushes n below 0 is dead, named by its layer (by
    its Activation node in the compiled Sequential, on the same arrays)."""
    spec = NetworkSpec((3, 5, 1), ("relu", "identity"), norms=("batch",))
    rng = np.random.default_rng(2)
    params = init_params(spec, rng)
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 1))
    params[0]["b"] = params[0]["b"] - 100.0
    assert not any("saturated" in n for n in _diagnose(spec, params, x, y))
    params[0]["b"] = params[0]["b"] + 200.0
    params[0]["beta"] = params[0]["beta"] - 100.0
    assert _diagnose(spec, params, x, y)[-1] == ("layer 0: all 5 relu units saturated "
                                                 "(relu' < 1e-08 on every sample)")
    seq = compile_network(spec)
    assert _diagnose(seq, network_params(spec, params), x, y)[-1] == (
        "node 2 (Activation(name='relu')): all 5 relu units saturated (relu' < 1e-08 on "
        "every sample)")
