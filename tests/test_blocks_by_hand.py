"""Hidden blocks by hand, framework-free (mutmut runs these): finite differences of every
block param, batch norm's backward node by node against the compact form, the two norms'
axes, the `sum(batchnorm(z))` trap, and every block option validated or refused by name.
tests/test_blocks.py checks the same blocks against torch and JAX."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import handwritten as hw
from bpnet.problems import Problem
from bpnet.tolerances import FD_ATOL_SCALE, FD_RTOL, fd_step
from handwritten import blocks
from handwritten.spec import NORM_EPS
from tests.helpers import at_most
from tests.strategies import block_problems
from tests.test_layers import NORM_VAR_MIN

SMOOTH = [name for name, entry in hw.ACTIVATIONS.items() if not entry.kinked]


@at_most(40)
@given(p=block_problems(max_depth=3, max_width=5, max_batch=6, activations=SMOOTH))
def test_block_gradients_match_finite_differences(p: Problem) -> None:
    """Framework-free: central differences of the loss in every param (W, b, gamma, beta), the
    masks held fixed, at the suite's finite-difference tolerances; smooth activations only (a
    kink within a step of some n would break the difference), and a norm's input with a
    variance of at least NORM_VAR_MIN, where central differences are accurate (tests/
    test_layers.py says why).  Found by the dev profile: in 3,000 draws, 5 with a norm's
    variance between 8e-5 and 5e-3 missed by 1.0 to 3.1 times the tolerance, and half the
    step cut each error by 4 -- the difference's truncation error, not the gradient's."""
    trace = hw.trace(p.spec, p.params, p.x, p.y, p.masks)
    assume(all(layer["var"].min() >= NORM_VAR_MIN for layer in trace.layers if "var" in layer))
    _, grads = hw.loss_and_grads(p.spec, p.params, p.x, p.y, p.masks)
    loss0 = abs(float(hw.loss_and_grads(p.spec, p.params, p.x, p.y, p.masks)[0]))
    for l, layer in enumerate(p.params):
        for key, value in layer.items():
            fd = np.zeros_like(value)
            for i in np.ndindex(value.shape):
                h = fd_step(float(value[i]))
                old = value[i]
                value[i] = old + h
                up = float(hw.loss_and_grads(p.spec, p.params, p.x, p.y, p.masks)[0])
                value[i] = old - h
                down = float(hw.loss_and_grads(p.spec, p.params, p.x, p.y, p.masks)[0])
                value[i] = old
                fd[i] = (up - down) / (2 * h)
            np.testing.assert_allclose(grads[l][key], fd, rtol=FD_RTOL,
                                       atol=FD_ATOL_SCALE * max(1.0, loss0),
                                       err_msg=f"layer {l} {key}: {p!r}")


def test_the_sum_of_batch_norm_outputs_hides_a_wrong_backward() -> None:
    """Why the suite's targets are never a degenerate function of the output: with
    L = sum(batchnorm(z)) (gamma = 1, beta = 0), d_z is identically 0 -- each feature's
    normalized column sums to 0 whatever z is -- so a backward that drops the mean path or
    the variance path still 'passes' a gradient check against it.  With the suite's losses
    (here half_mse against drawn targets) the same mistakes are far from autograd."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 3))
    ones = np.ones(3)
    out = blocks.normalize("batch", z, ones, np.zeros(3))
    d_n = np.ones_like(z)                                    # dL/dn of L = sum(n)
    right = blocks.normalize_backward("batch", out["x_hat"], out["var"], ones, d_n)["d_z"]
    no_mean = d_n / np.sqrt(out["var"] + NORM_EPS)           # the x_hat path alone
    assert np.abs(right).max() < 1e-15
    assert np.abs(no_mean - right).max() > 0.1               # a wrong backward ...
    centred = (no_mean - no_mean.mean(axis=0))               # ... whose error sums to ...
    assert np.abs(centred).max() < 1e-15                     # ... a constant per column,
    # which the degenerate loss cannot see: its d_z is a constant per column too, and only
    # sum(d_z) along the batch reaches the params of the layer before through W and b
    y = rng.normal(size=(6, 3))
    d_n = out["n"] - y                                       # half_mse against drawn y
    right = blocks.normalize_backward("batch", out["x_hat"], out["var"], ones, d_n)["d_z"]
    no_mean = d_n / np.sqrt(out["var"] + NORM_EPS)
    assert np.abs(no_mean - right).max() > 0.1 * np.abs(right).max()


@given(seed=st.integers(0, 2**16), norm=st.sampled_from(["batch", "layer"]))
def test_the_compact_norm_backward_is_the_graph_node_by_node(seed: int, norm: str) -> None:
    """docs/derivation.md §12: the backward written node by node -- affine, scale, inverse
    std, variance, centre, mean -- equals blocks.normalize_backward's three-term form."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(6, 5)) * 2
    gamma, d_n = rng.normal(size=5), rng.normal(size=(6, 5))
    ax = 0 if norm == "batch" else 1
    count = z.shape[ax]
    mu = z.mean(axis=ax, keepdims=True)
    c = z - mu
    var = (c * c).mean(axis=ax, keepdims=True)
    s = (var + NORM_EPS) ** -0.5
    x_hat = c * s
    d_x_hat = d_n * gamma                                     # affine
    d_c = d_x_hat * s                                         # scale, through c
    d_s = np.sum(d_x_hat * c, axis=ax, keepdims=True)         # scale, through s
    d_var = -0.5 * s**3 * d_s                                 # inverse std
    d_c = d_c + 2 / count * c * d_var                         # variance
    d_mu = -np.sum(d_c, axis=ax, keepdims=True)               # centre
    d_z = d_c + d_mu / count                                  # mean
    compact = blocks.normalize_backward(norm, x_hat, var.squeeze(ax), gamma, d_n)
    np.testing.assert_allclose(compact["d_z"], d_z, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(compact["d_gamma"], np.sum(d_n * x_hat, axis=0), rtol=1e-13)
    np.testing.assert_allclose(np.sum(d_z, axis=ax), 0, atol=1e-12)    # sums to 0 along it


@given(seed=st.integers(0, 2**16))
def test_layer_norm_normalizes_each_sample_and_batch_norm_each_feature(seed: int) -> None:
    """The axis is the whole difference between the two norms: batch norm's x_hat has mean 0
    and (biased) variance var / (var + eps) down each column, layer norm's along each row."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(7, 5)) * 3 + 1
    for norm, axis in (("batch", 0), ("layer", 1)):
        x_hat = blocks.normalize(norm, z, np.ones(5), np.zeros(5))["x_hat"]
        np.testing.assert_allclose(x_hat.mean(axis=axis), 0, atol=1e-14)
        var = z.var(axis=axis)
        np.testing.assert_allclose(x_hat.var(axis=axis), var / (var + NORM_EPS), rtol=1e-12)



SPEC = hw.NetworkSpec((3, 4, 4, 2), ("tanh", "tanh", "identity"), norms=("batch", None),
                      dropout=(0.0, 0.5), residual=(False, True))


def test_block_specs_are_validated_by_name() -> None:
    base = dict(layer_sizes=(3, 4, 4, 2), activations=("tanh", "tanh", "identity"))
    with pytest.raises(ValueError, match=r"residual\[0\] needs fan_in == fan_out, got "
                                         r"layer_sizes 3 -> 4"):
        hw.NetworkSpec(**base, residual=(True, False))
    with pytest.raises(ValueError, match=r"norms\[1\] must be one of"):
        hw.NetworkSpec(**base, norms=(None, "group"))
    with pytest.raises(ValueError, match=r"dropout\[0\] must be a finite number in \[0.0, 1.0\)"):
        hw.NetworkSpec(**base, dropout=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"norms needs one entry per hidden layer \(2"):
        hw.NetworkSpec(**base, norms=("batch",))
    with pytest.raises(TypeError, match=r"residual\[1\] must be a bool"):
        hw.NetworkSpec(**base, residual=(False, 1))
    plain = hw.NetworkSpec(**base)
    assert "norms" not in repr(plain) and plain.norms == (None, None) and not plain.has_blocks
    assert "norms=('batch', None)" in repr(SPEC)


def test_what_is_not_written_yet_is_refused_by_name() -> None:
    """r_trace and the per-example gradient norms name dense layers' quantities: a block is
    refused there, by name (jvp, hvp, gnvp and per-example gradients take blocks: through
    the layers, tests/test_layers.py and tests/test_layer_second_order.py)."""
    from handwritten import derivatives

    params = hw.init_params(SPEC, np.random.default_rng(0))
    x, y = np.zeros((4, 3)), np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"spec.norms\[0\] = 'batch': r_trace and the "
                                         "per-example gradient norms"):
        derivatives.r_trace(SPEC, params, x, y, params)
    with pytest.raises(ValueError, match=r"spec.norms\[0\] = 'batch': r_trace"):
        derivatives.per_example_grad_norms(SPEC, params, x, y)
    masks = [None, np.ones((4, 4))]
    with pytest.raises(NotImplementedError, match=r"BatchNorm1d\(num_features=.*\) in "
                                                  "training mode has no per-example"):
        derivatives.per_example_grads(SPEC, params, x, y, masks)
