"""Hidden blocks (handwritten/blocks.py): batch norm, layer norm, dropout with given masks and
residual skips, every trace quantity against torch (F.batch_norm, F.layer_norm) and JAX
(jax.numpy through jax.grad), in float64 and float32, batch norm's running statistics against
torch's, and bad input refused by name.  The framework-free checks (finite differences, the
node-by-node backward, the traps of classic gradient checks) are in test_blocks_by_hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import handwritten as hw
from bpnet.compare import compare_trace
from bpnet.problems import Problem, replay_command
from bpnet.tolerances import (
    ATOL64_SCALE,
    RTOL64,
    SPREAD_FACTOR,
    batch_sum_terms,
    f32_allowed,
    f32_scale,
)
from handwritten import blocks
from handwritten.spec import BACKWARD_QUANTITIES, BATCH_NORM_MOMENTUM, NORM_EPS
from tests.helpers import (
    assert_leaf_close,
    assert_reports_ok,
    assert_unchanged,
    at_most,
    output_d_a_error,
    snapshot,
)
from tests.strategies import block_problems

pytest.importorskip("torch")
pytest.importorskip("jax")
import reference_jax
import reference_torch

REFERENCES = {"reference_torch": reference_torch, "reference_jax": reference_jax}
# JAX compiles the trace once per shape (~0.3 s): fewer examples than the bucketed properties
FEW = at_most(60)


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
    agrees with handwritten's as the traces do (RTOL64, the d_b rule -- here for d_beta and
    d_gamma too -- and the references' spread)."""
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
            # each of d_b, d_beta, d_gamma is a sum over the batch, 0 in exact arithmetic
            # where a batch norm follows (a shift, and after an identity activation a
            # scale, that the next norm removes): judged on the scale of its terms
            terms_of = {k.removeprefix("d_"): v for k, v in batch_sum_terms(t.layers[l]).items()}
            for k in ours_l:
                spread = SPREAD_FACTOR * float(np.abs(theirs_l[k] - other_l[k]).max())
                terms = RTOL64 * float(terms_of[k].sum(axis=0).max()) if k in terms_of else 0.0
                assert_leaf_close(ours_l[k], theirs_l[k], f"layer {l} {k} vs {name}: {p!r}",
                                  rtol=RTOL64, atol_scale=ATOL64_SCALE, atol=spread + terms)


@FEW
@given(p=block_problems())
def test_float32_block_error_is_within_the_frameworks_own(p: Problem) -> None:
    """The suite's float32 policy for every block quantity: handwritten's float32 trace is as
    close to the float64 one as torch's and JAX's float32 traces are (F32_FACTOR times, above
    F32_FLOOR), normwise per quantity."""
    exact = hw.trace(p.spec, p.params, p.x, p.y, p.masks)
    p32 = p.astype("float32")
    traces = {"handwritten": hw.trace(p32.spec, p32.params, p32.x, p32.y, p32.masks)}
    traces |= {name: ref.trace(p32.spec, p32.params, p32.x, p32.y, p32.masks)
               for name, ref in REFERENCES.items()}
    inherited = output_d_a_error(exact, traces, REFERENCES)
    for l, layer in enumerate(exact.layers):
        for key, value in layer.items():
            scale = f32_scale(layer, key)     # a batch sum: its terms' scale
            errors = {name: float(np.abs(t.layers[l][key].astype(np.float64) - value).max())
                      / scale for name, t in traces.items()}
            assert traces["handwritten"].layers[l][key].dtype == np.float32, (l, key)
            allowed = f32_allowed([errors[name] for name in REFERENCES],
                                  inherited if key in BACKWARD_QUANTITIES else 0.0)
            assert errors["handwritten"] <= allowed, (
                f"layer {l} {key}: float32 normwise error {errors['handwritten']:.3g} > "
                f"allowed {allowed:.3g} (torch {errors['reference_torch']:.3g}, "
                f"jax {errors['reference_jax']:.3g}): {p!r}")


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


# bad input -------------------------------------------------------------------------------

SPEC = hw.NetworkSpec((3, 4, 4, 2), ("tanh", "tanh", "identity"), norms=("batch", None),
                      dropout=(0.0, 0.5), residual=(False, True))


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
