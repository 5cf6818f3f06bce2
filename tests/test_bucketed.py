"""reference_jax.bucketed (padded, compiled once per shape bucket) equals the plain reference_jax.

The suite's many-shape properties use the bucketed path for JAX; this is what entitles
them to: on drawn networks, every trace quantity of the two agrees to the float64 policy.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import handwritten as hw
from bpnet.check import cross_check
from tests.helpers import assert_unchanged, snapshot
from tests.strategies import Problem, problems

pytest.importorskip("jax")
import reference_jax as rj
from reference_jax import bucketed


# Over a minute with a cold JAX cache (~100 s on 2 cores), and so on purpose: its point is
# the plain reference_jax on every drawn architecture, so each of its 150 examples compiles a
# program for a new shape (~0.6 s), the cost bucketing spares every other property.  With
# .cache/jax warm they are loaded, not compiled.
@given(problems())
def test_bucketed_equals_plain_reference_jax(p: Problem) -> None:
    before = snapshot(p.params, p.x, p.y)
    report = cross_check(p.spec, p.params, p.x, p.y, {"bucketed": bucketed, "reference_jax": rj})
    assert_unchanged(before, p.params, p.x, p.y)
    assert report.ok, f"{report.verdict()}\n{p!r}"


@pytest.mark.parametrize("spec", [
    hw.NetworkSpec((3, 4, 4, 4, 4, 2), ("tanh",) * 4 + ("softmax",), "softmax_cross_entropy"),
    hw.NetworkSpec((40, 17, 3), ("relu", "sigmoid"), "bce", "sum", weight_decay=0.2),
    hw.NetworkSpec((1, 1), ("identity",), "half_mse", "sum"),
], ids=["depth 5", "width 40", "(1, 1)"])
@pytest.mark.parametrize("batch", [1, 33])
def test_bucketed_beyond_the_default_bucket(spec: hw.NetworkSpec, batch: int) -> None:
    """Deeper, wider and larger-batch networks take a larger bucket and still agree."""
    for labels in (False, True) if spec.loss == "softmax_cross_entropy" else (False,):
        p = Problem(spec, batch, seed=5, labels=labels)
        report = cross_check(p.spec, p.params, p.x, p.y,
                             {"bucketed": bucketed, "reference_jax": rj})
        assert report.ok, f"{report.verdict()}\n{p!r}"


def test_bucketed_keeps_float32() -> None:
    p = Problem(hw.NetworkSpec((3, 5, 2), ("gelu", "sigmoid"), "bce_with_logits"), 6, 1,
                dtype="float32")
    t = bucketed.trace(p.spec, p.params, p.x, p.y)
    assert np.asarray(t.loss).dtype == np.float32
    assert all(v.dtype == np.float32 for layer in t.layers for v in layer.values())
    loss, grads = bucketed.loss_and_grads(p.spec, p.params, p.x, p.y)
    assert loss == t.loss and grads[0]["W"].shape == (3, 5)


def test_bucketed_refuses_hidden_blocks() -> None:
    """Padding would enter a norm's statistics: the block properties use the plain reference."""
    from reference_jax import bucketed

    spec = hw.NetworkSpec((2, 3, 3, 1), ("tanh", "tanh", "identity"), norms=("layer", None))
    params = hw.init_params(spec, np.random.default_rng(0))
    with pytest.raises(ValueError, match="does not take hidden blocks"):
        bucketed.trace(spec, params, np.zeros((4, 2)), np.zeros((4, 1)))
