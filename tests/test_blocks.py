"""Hidden blocks (handwritten/blocks.py): batch norm, layer norm, dropout with given masks and
residual skips, every trace quantity against torch (F.batch_norm, F.layer_norm) and JAX
(jax.numpy through jax.grad), against finite differences, and at the traps the classic
gradient checks fall into."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import handwritten as hw
from bpnet.compare import compare_trace
from bpnet.problems import Problem, replay_command
from bpnet.tolerances import ATOL64_SCALE, FD_ATOL_SCALE, FD_RTOL, RTOL64, SPREAD_FACTOR, fd_step
from handwritten import blocks
from handwritten.spec import BATCH_NORM_MOMENTUM, NORM_EPS
from tests.helpers import assert_leaf_close, assert_reports_ok, assert_unchanged, snapshot
from tests.strategies import block_problems

pytest.importorskip("torch")
pytest.importorskip("jax")
import reference_jax
import reference_torch

REFERENCES = {"reference_torch": reference_torch, "reference_jax": reference_jax}
# JAX compiles the trace once per shape (~0.3 s): fewer examples than the bucketed properties
FEW = settings(max_examples=60)


@FEW
@given(p=block_problems())
def test_every_block_quantity_matches_torch_and_jax(p: Problem) -> None:
    """Every trace quantity -- z, mu, var, x_hat, n, h, a from the input up, then d_a, d_h,
    d_n, d_x_hat, d_z, d_W, d_b, d_gamma, d_beta from the output down -- at the suite's float64
    tolerances; a failure names the first that disagrees.  d_b of a batch-norm layer is 0 in
    exact arithmetic (the bias is cancelled by the mean): held to the rounding of its terms;
    and a norm's backward may cancel, so each quantity may also differ by SPREAD_FACTOR times
    the two references' own difference (bpnet.tolerances)."""
    before = snapshot(p.params, p.x, p.y, p.masks)
    ours = hw.trace(p.spec, p.params, p.x, p.y, p.masks)
    assert_unchanged(before, p.params, p.x, p.y, p.masks)
    theirs = {name: ref.trace(p.spec, p.params, p.x, p.y, p.masks)
              for name, ref in REFERENCES.items()}
    for name, other in (("reference_torch", "reference_jax"), ("reference_jax", "reference_torch")):
        assert_reports_ok(compare_trace(ours, theirs[name], rtol=RTOL64, atol_scale=ATOL64_SCALE,
                                        spread=theirs[other]),
                          f"trace vs {name}: {p!r}\nreplay: {replay_command(repr(p))}")


@FEW
@given(p=block_problems())
def test_loss_and_grads_match_and_keep_the_params_structure(p: Problem) -> None:
    """handwritten's loss_and_grads is its trace's d_W, d_b, d_gamma, d_beta bit for bit;
    each reference's has the params' structure (gamma and beta on a normalized layer) and
    agrees with handwritten's as the traces do (RTOL64, the d_b rule, the references' spread)."""
    loss, grads = hw.loss_and_grads(p.spec, p.params, p.x, p.y, p.masks)
    t = hw.trace(p.spec, p.params, p.x, p.y, p.masks)
    for layer, g, q in zip(t.layers, grads, p.params):
        assert sorted(g) == sorted(q)
        for k in q:
            np.testing.assert_array_equal(g[k], layer[f"d_{k}"])
    assert loss == t.loss
    theirs = {name: ref.loss_and_grads(p.spec, p.params, p.x, p.y, p.masks)[1]
              for name, ref in REFERENCES.items()}
    for name, other in (("reference_torch", "reference_jax"), ("reference_jax", "reference_torch")):
        for l, (ours_l, theirs_l, other_l) in enumerate(zip(grads, theirs[name], theirs[other])):
            assert sorted(theirs_l) == sorted(ours_l), name
            d_z = np.abs(t.layers[l]["d_z"])
            for k in ours_l:
                spread = SPREAD_FACTOR * float(np.abs(theirs_l[k] - other_l[k]).max())
                terms = RTOL64 * float(d_z.sum(axis=0).max()) if k == "b" else 0.0
                assert_leaf_close(ours_l[k], theirs_l[k], f"layer {l} {k} vs {name}: {p!r}",
                                  rtol=RTOL64, atol_scale=ATOL64_SCALE, atol=spread + terms)


SMOOTH = [name for name, entry in hw.ACTIVATIONS.items() if not entry.kinked]


@settings(max_examples=40)
@given(p=block_problems(max_depth=3, max_width=5, max_batch=6, activations=SMOOTH))
def test_block_gradients_match_finite_differences(p: Problem) -> None:
    """Framework-free: central differences of the loss in every param (W, b, gamma, beta), the
    masks held fixed, at the suite's finite-difference tolerances; smooth activations only (a
    kink within a step of some n would break the difference)."""
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


def test_running_statistics_follow_torch_batch_norm() -> None:
    """handwritten.blocks.running_update against torch's own update inside F.batch_norm
    (training mode, momentum 0.1): the unbiased variance goes into the running variance,
    the biased one normalizes."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(1)
    z = rng.normal(size=(5, 4))
    mean0, var0 = rng.normal(size=4), rng.uniform(0.5, 2, size=4)
    stats = blocks.normalize("batch", z, np.ones(4), np.zeros(4))
    ours = blocks.running_update(mean0, var0, stats["mu"], stats["var"], batch=5)
    tm, tv = torch.tensor(mean0), torch.tensor(var0)
    F.batch_norm(torch.tensor(z), tm, tv, training=True, momentum=BATCH_NORM_MOMENTUM,
                 eps=NORM_EPS)
    np.testing.assert_allclose(ours[0], tm.numpy(), rtol=1e-15)
    np.testing.assert_allclose(ours[1], tv.numpy(), rtol=1e-14)
    assert not np.allclose(ours[1], 0.9 * var0 + 0.1 * stats["var"])     # biased: different


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


# bad input -------------------------------------------------------------------------------

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


def test_masks_and_batch_norm_inputs_are_refused_by_name() -> None:
    params = hw.init_params(SPEC, np.random.default_rng(0))
    assert sorted(params[0]) == ["W", "b", "beta", "gamma"] and sorted(params[1]) == ["W", "b"]
    x, y = np.zeros((4, 3)), np.zeros((4, 2))
    good = [None, np.ones((4, 4))]
    before = snapshot(params, x, y, good)
    for impl in (hw, *REFERENCES.values()):
        with pytest.raises(ValueError, match="masks are required"):
            impl.loss_and_grads(SPEC, params, x, y)
        with pytest.raises(ValueError, match=r"masks\[1\] must have shape \(4, 4\)"):
            impl.trace(SPEC, params, x, y, [None, np.ones((3, 4))])
        with pytest.raises(ValueError, match=r"masks\[1\] must hold only 0s and 1s"):
            impl.loss_and_grads(SPEC, params, x, y, [None, np.full((4, 4), 0.5)])
        with pytest.raises(ValueError, match=r"masks\[0\] must be None: dropout\[0\] is 0"):
            impl.loss_and_grads(SPEC, params, x, y, [np.ones((4, 4)), np.ones((4, 4))])
        with pytest.raises(ValueError, match="batch of one, and batch norm"):
            impl.loss_and_grads(SPEC, params, x[:1], y[:1], [None, np.ones((1, 4))])
        with pytest.raises(TypeError, match=r"params\[0\] must be a dict with keys 'W', 'b', "
                                            r"'gamma' and 'beta' \(norms\[0\] = 'batch'\)"):
            impl.loss_and_grads(SPEC, [{"W": params[0]["W"], "b": params[0]["b"]},
                                       *params[1:]], x, y, good)
        with pytest.raises(ValueError, match="running statistics"):
            impl.predict(SPEC, params, x)
    assert_unchanged(before, params, x, y, good)


def test_what_is_not_written_yet_is_refused_by_name() -> None:
    """train (masks each step, running statistics) and the derivatives beyond the gradient
    (forward mode, R-operator, per-example) do not take blocks yet: each says so."""
    from handwritten import derivatives

    params = hw.init_params(SPEC, np.random.default_rng(0))
    x, y = np.zeros((4, 3)), np.zeros((4, 2))
    with pytest.raises(ValueError, match="train does not take hidden blocks yet"):
        hw.train(SPEC, params, x, y, hw.OptimizerSpec("sgd", 0.1), epochs=1)
    with pytest.raises(ValueError, match=r"spec.norms\[0\] = 'batch': a hidden block"):
        derivatives.hvp(SPEC, params, x, y, params)
    with pytest.raises(ValueError, match=r"spec.norms\[0\] = 'batch': a hidden block"):
        derivatives.jvp(SPEC, params, x, params)
    with pytest.raises(ValueError, match=r"spec.norms\[0\] = 'batch': a hidden block"):
        derivatives.per_example_grads(SPEC, params, x, y)
