"""handwritten.seed: the blog's functions, reproduced, and equal to the general network."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpnet.tolerances import BLOG_WEIGHTS_ATOL
from handwritten import (
    OptimizerSpec,
    init_params,
    loss_and_grads,
    predict,
    seed,
    trace,
    train,
)
from tests.blog_program import blog_training_run
from tests.helpers import assert_unchanged, snapshot


def test_1000_epochs_land_on_the_blog_programs_weights() -> None:
    """The blog's run (data, init, lr 0.1, 1000 epochs) to within 1e-9, and its printed log."""
    x, y, w1, b1, w2, b2 = seed.blog_problem(np.random.default_rng(2024))
    before = snapshot(x, y, w1, b1, w2, b2)
    *ours, log = seed.train(x, y, w1, b1, w2, b2, lr=0.1, epoch=1000, verbose=False)
    *blogs, printed = blog_training_run(x, y, w1, b1, w2, b2, lr=0.1, epochs=1000)
    assert_unchanged(before, x, y, w1, b1, w2, b2)
    worst = max(float(np.abs(a - b).max()) for a, b in zip(ours, blogs))
    assert worst <= BLOG_WEIGHTS_ATOL, f"max weight difference {worst:.3g}"
    assert [i for i, _ in log] == list(range(0, 1000, 10))
    np.testing.assert_allclose([v for _, v in log], printed, rtol=1e-9)


def test_train_prints_like_the_blog(capsys: pytest.CaptureFixture[str]) -> None:
    x, y, *weights = seed.blog_problem(np.random.default_rng(0))
    *_, log = seed.train(x, y, *weights, lr=0.1, epoch=21)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"epoch: {i}, loss: {v}" for i, v in log]
    assert [i for i, _ in log] == [0, 10, 20]


@given(seed_value=st.integers(0, 2**32 - 1), n=st.integers(1, 50))
def test_blog_functions_equal_the_general_network(seed_value: int, n: int) -> None:
    """forward/backward/predict/train of the blog = the general network with BLOG_SPEC."""
    rng = np.random.default_rng(seed_value)
    x = rng.uniform(-1, 1, (n, 1))
    y = x**2 + rng.normal(0, 0.1, (n, 1))
    params = init_params(seed.BLOG_SPEC, rng, "blog")
    w1, b1, w2, b2 = seed.from_params(params)

    z1, a1, z2, a2 = seed.forward(x, w1, b1, w2, b2)
    t = trace(seed.BLOG_SPEC, params, x, y)
    for name, value in (("z", z1), ("a", a1)):
        np.testing.assert_array_equal(t.layers[0][name], value)
    np.testing.assert_array_equal(t.layers[1]["a"], a2)
    np.testing.assert_array_equal(predict(seed.BLOG_SPEC, params, x),
                                  seed.predict(x, w1, b1, w2, b2))

    dw1, db1, dw2, db2 = seed.backward(x, y, w1, b1, w2, b2, z1, a1, z2, a2)
    assert [g.shape for g in (dw1, db1, dw2, db2)] == [(1, 10), (10,), (10, 1), (1,)]
    _, grads = loss_and_grads(seed.BLOG_SPEC, params, x, y)
    # d_sigmoid(z) and a (1 - a) round differently: ~1 ulp per element
    for ours, theirs in ((grads[0]["W"], dw1), (grads[0]["b"], db1),
                         (grads[1]["W"], dw2), (grads[1]["b"], db2)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)

    # the general network with reduction "sum" reports N times the blog's printed loss
    assert t.loss == pytest.approx(n * float(seed.loss(y, a2)), rel=1e-13)

    *blog_w, _ = seed.train(x, y, w1, b1, w2, b2, lr=0.1, epoch=5, verbose=False)
    h = train(seed.BLOG_SPEC, params, x, y, OptimizerSpec("sgd", 0.1), epochs=5)
    for a, b in zip(seed.from_params(h.final_params), blog_w):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_blog_gradient_is_n_times_the_printed_losss_gradient() -> None:
    """The blog's backward is the gradient of sum((y - a)**2 / 2), N = 100 times that of the
    printed mean: checked against the general network with reduction "mean"."""
    x, y, w1, b1, w2, b2 = seed.blog_problem(np.random.default_rng(1))
    params = seed.to_params(w1, b1, w2, b2)
    mean_spec = dataclasses.replace(seed.BLOG_SPEC, reduction="mean")
    printed_loss, mean_grads = loss_and_grads(mean_spec, params, x, y)
    assert printed_loss == pytest.approx(float(seed.loss(y, seed.predict(x, w1, b1, w2, b2))),
                                         rel=1e-14)
    blog_grads = seed.backward(x, y, w1, b1, w2, b2, *seed.forward(x, w1, b1, w2, b2))
    for blog_g, mean_g in zip(blog_grads, (mean_grads[0]["W"], mean_grads[0]["b"],
                                           mean_grads[1]["W"], mean_grads[1]["b"])):
        np.testing.assert_allclose(blog_g, 100 * mean_g, rtol=1e-12, atol=1e-14)


def test_update_returns_new_arrays_and_leaves_arguments_alone() -> None:
    x, y, w1, b1, w2, b2 = seed.blog_problem(np.random.default_rng(3))
    grads = seed.backward(x, y, w1, b1, w2, b2, *seed.forward(x, w1, b1, w2, b2))
    before = snapshot(w1, b1, w2, b2)
    new = seed.update(w1, b1, w2, b2, *grads, lr=0.1)
    assert_unchanged(before, w1, b1, w2, b2)
    for old, g, fresh in zip((w1, b1, w2, b2), grads, new):
        np.testing.assert_array_equal(fresh, old - 0.1 * g)
