"""reference_torch and reference_jax: in lock step with handwritten, and themselves checked.

Hand-picked cases here; the Hypothesis properties over random networks are in
test_cross_framework.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import handwritten as hw
from bpnet.check import cross_check
from bpnet.compare import compare_params
from bpnet.problems import make_params, make_targets
from bpnet.tolerances import ATOL64_SCALE, RTOL64
from handwritten.seed import BLOG_SPEC
from tests.helpers import assert_reports_ok, assert_unchanged, snapshot

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
import optax  # noqa: E402

import reference_jax as rj  # noqa: E402
import reference_torch as rt  # noqa: E402

REFERENCES = {"reference_torch": rt, "reference_jax": rj}

HAND_PICKED = {
    "blog (1, 10, 1)": BLOG_SPEC,
    "3 hidden tanh/relu": hw.NetworkSpec((4, 8, 6, 5, 3), ("tanh", "relu", "tanh", "identity"),
                                         "mse", "mean"),
    "multi-output half_mse mean": hw.NetworkSpec((3, 7, 4), ("elu", "identity"), "half_mse",
                                                 "mean", weight_decay=0.05),
    "softmax CE, integer labels": hw.NetworkSpec((5, 9, 4), ("gelu", "softmax"),
                                                 "softmax_cross_entropy", "mean"),
}


def _case(spec: hw.NetworkSpec, seed: int = 0, batch: int = 11, labels: bool = True,
          dtype: type = np.float64):
    rng = np.random.default_rng(seed)
    params = make_params(spec, rng, dtype)
    x = rng.uniform(-1.5, 1.5, (batch, spec.layer_sizes[0])).astype(dtype)
    return params, x, make_targets(spec, rng, batch, dtype, labels)


def _assert_agree(spec: hw.NetworkSpec, params, x, y) -> None:
    """Loss, grads and every trace quantity of both references agree with handwritten
    (float64 through bpnet.check.cross_check), and so do their predictions."""
    report = cross_check(spec, params, x, y, {"handwritten": hw, **REFERENCES})
    assert report.ok, f"{report.message()}\n{spec}, batch {x.shape[0]}"
    expected = hw.predict(spec, params, x)
    for ref in REFERENCES.values():
        np.testing.assert_allclose(ref.predict(spec, params, x), expected, rtol=RTOL64, atol=0)


@pytest.mark.parametrize("label", list(HAND_PICKED))
def test_hand_picked_specs_agree(label: str) -> None:
    spec = HAND_PICKED[label]
    params, x, y = _case(spec)
    before = snapshot(params, x, y)
    _assert_agree(spec, params, x, y)
    assert_unchanged(before, params, x, y)


@pytest.mark.parametrize("activation", sorted(hw.ACTIVATIONS))
def test_every_activation_agrees(activation: str) -> None:
    if hw.ACTIVATIONS[activation].output_only:
        spec = hw.NetworkSpec((3, 5, 4), ("tanh", activation), "mse", "sum")
    else:
        spec = hw.NetworkSpec((3, 5, 5, 2), (activation, activation, "identity"), "half_mse")
    _assert_agree(spec, *_case(spec, seed=1))


@pytest.mark.parametrize("loss", sorted(hw.LOSSES))
@pytest.mark.parametrize("reduction", hw.REDUCTIONS)
def test_every_loss_agrees(loss: str, reduction: str) -> None:
    accepted = hw.LOSSES[loss].output_activations
    out = sorted(accepted)[0] if accepted else "tanh"
    spec = hw.NetworkSpec((3, 6, 4), ("silu", out), loss, reduction)
    _assert_agree(spec, *_case(spec, seed=2, labels=False))


@pytest.mark.parametrize("name", sorted(hw.OPTIMIZERS))
def test_every_optimizer_step_agrees_from_the_same_state(name: str) -> None:
    """Three steps, each taken by all three from handwritten's state after the previous one."""
    spec = HAND_PICKED["3 hidden tanh/relu"]
    params, x, y = _case(spec, seed=3)
    opt = hw.OptimizerSpec(name, 0.05)
    state = hw.init_state(opt, params)
    for t in range(3):
        _, grads = hw.loss_and_grads(spec, params, x, y)
        new_params, new_state = hw.step(opt, params, grads, state)
        for ref_name, ref in REFERENCES.items():
            if ref.unsupported(opt, t + 1):      # adagrad's default eps in optax
                continue
            before = snapshot(params, grads, state)
            ref_params, ref_state = ref.step(opt, params, grads, state)
            assert_unchanged(before, params, grads, state)
            context = f"{name} step {t + 1}: handwritten vs {ref_name}"
            assert_reports_ok(compare_params(new_params, ref_params, rtol=RTOL64,
                                             atol_scale=ATOL64_SCALE), context)
            assert ref_state["t"] == new_state["t"]
            for key in new_state.keys() - {"t"}:
                assert_reports_ok(compare_params(new_state[key], ref_state[key], rtol=RTOL64,
                                                 atol_scale=ATOL64_SCALE), f"{context} {key}")
        params, state = new_params, new_state


def test_float64_is_really_float64_in_every_framework() -> None:
    """x = 1 + 2**-40 rounds to 1 in float32; only a float64 computation sees (2**-40)**2 / 2."""
    spec = hw.NetworkSpec((1, 1), ("identity",), "half_mse", "sum")
    params = [{"W": np.array([[1.0]]), "b": np.array([0.0])}]
    x, y = np.array([[1.0 + 2.0**-40]]), np.array([[1.0]])
    for impl in (hw, rt, rj):
        loss, grads = impl.loss_and_grads(spec, params, x, y)
        assert loss == 2.0**-81, impl.__name__
        assert grads[0]["b"][0] == 2.0**-40, impl.__name__


@pytest.mark.parametrize("impl", [rt, rj], ids=["torch", "jax"])
def test_float32_stays_float32_end_to_end(impl) -> None:
    spec = HAND_PICKED["softmax CE, integer labels"]
    params, x, y = _case(spec, dtype=np.float32)
    t = impl.trace(spec, params, x, y)
    assert np.asarray(t.loss).dtype == np.float32
    assert all(v.dtype == np.float32 for layer in t.layers for v in layer.values())
    h = impl.train(spec, params, x, y, hw.OptimizerSpec("adam", 0.01), epochs=2)
    assert h.losses.dtype == np.float32
    assert all(v.dtype == np.float32 for p in h.final_params for v in p.values())


@pytest.mark.parametrize("label", ["blog (1, 10, 1)", "3 hidden tanh/relu",
                                   "softmax CE, integer labels"])
def test_torch_loss_passes_gradcheck(label: str) -> None:
    """torch.autograd.gradcheck (float64 finite differences) on the reference's own loss."""
    from reference_torch.network import forward, loss_value, tensor

    spec = HAND_PICKED[label]
    params, x, y = _case(spec, batch=4)
    tx, ty = tensor(x), tensor(y)
    leaves = [torch.tensor(p[k], requires_grad=True) for p in params for k in ("W", "b")]

    def loss_of(*flat):
        tparams = [{"W": flat[2 * i], "b": flat[2 * i + 1]} for i in range(len(flat) // 2)]
        _, cache = forward(spec, tparams, tx)
        return loss_value(spec, tparams, cache, ty)

    assert torch.autograd.gradcheck(loss_of, leaves, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("label", ["blog (1, 10, 1)", "3 hidden tanh/relu",
                                   "softmax CE, integer labels"])
def test_jax_loss_passes_check_grads(label: str) -> None:
    """jax.test_util.check_grads, forward and reverse mode, on the reference's own loss."""
    from jax.test_util import check_grads

    from reference_jax.network import _loss, to_jax

    spec = HAND_PICKED[label]
    params, x, y = _case(spec, batch=4)
    with jax.enable_x64(True):                  # float64, scoped as reference_jax scopes it
        jx, jy = jax.numpy.asarray(x), jax.numpy.asarray(y)
        check_grads(lambda p: _loss(p, jx, jy, spec), (to_jax(params),), order=1,
                    modes=("fwd", "rev"))


def test_every_registered_entry_has_both_counterparts() -> None:
    """Adding an entry to handwritten without its references fails here, with the one line
    per missing name that `bpnet check` prints (bpnet.check_all.registry_gaps)."""
    from bpnet.check_all import registry_gaps

    gaps = registry_gaps(REFERENCES)
    assert not gaps, "\n".join(gaps)


def test_optax_rmsprop_default_puts_eps_inside_the_sqrt() -> None:
    """The documented difference: optax's default rmsprop divides by sqrt(v + eps); handwritten
    (torch) by sqrt(v) + eps.  With a tiny gradient the two differ by orders of magnitude, and
    eps_in_sqrt=False, which reference_jax uses, removes the difference."""
    g, lr, alpha, eps = 1e-6, 1.0, 0.99, 1e-8
    params = [{"W": np.zeros((1, 1)), "b": np.zeros(1)}]
    grads = [{"W": np.full((1, 1), g), "b": np.full(1, g)}]
    opt = hw.OptimizerSpec("rmsprop", lr, {"alpha": alpha, "eps": eps})
    ours, _ = hw.step(opt, params, grads, hw.init_state(opt, params))
    expected = -lr * g / (np.sqrt(1 - alpha) * g + eps)
    assert ours[0]["W"][0, 0] == pytest.approx(expected, rel=1e-12)
    for eps_in_sqrt, agrees in ((False, True), (True, False)):
        tx = optax.rmsprop(lr, decay=alpha, eps=eps, eps_in_sqrt=eps_in_sqrt)
        with jax.enable_x64(True):              # float64, scoped as reference_jax scopes it
            p = rj.to_jax(params)
            update, _ = tx.update(rj.to_jax(grads), tx.init(p), p)
            value = float(update[0]["W"][0, 0])
        assert bool(value == pytest.approx(expected, rel=1e-12)) is agrees, (eps_in_sqrt, value)


def test_adamw_decoupled_decay_agrees_between_torch_and_optax_forms() -> None:
    """torch scales theta by (1 - lr wd) before the adam step; optax subtracts lr wd theta with
    it.  Both decay the old theta, so one step from the same state agrees to rounding."""
    spec = HAND_PICKED["multi-output half_mse mean"]
    params, x, y = _case(spec)
    _, grads = hw.loss_and_grads(spec, params, x, y)
    opt = hw.OptimizerSpec("adamw", 0.1, {"weight_decay": 0.5})
    state = hw.init_state(opt, params)
    by_torch, _ = rt.step(opt, params, grads, state)
    by_optax, _ = rj.step(opt, params, grads, state)
    assert_reports_ok(compare_params(by_torch, by_optax, rtol=RTOL64, atol_scale=ATOL64_SCALE),
                      "adamw: torch vs optax")


@pytest.mark.parametrize(("module", "framework", "extra"),
                         [("reference_torch", "torch", "torch"),
                          ("reference_jax", "jax", "jax")])
def test_missing_framework_names_the_extra_to_install(module: str, framework: str,
                                                      extra: str) -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] == {framework!r}:\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import handwritten\n"
        f"import {module}\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode != 0
    assert f"pip install -e '.[{extra}]'" in result.stderr, result.stderr


@pytest.mark.parametrize("impl", [rt, rj], ids=["torch", "jax"])
def test_references_refuse_bad_input_like_handwritten(impl) -> None:
    spec = HAND_PICKED["blog (1, 10, 1)"]
    params, x, y = _case(spec)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 1\)"):
        impl.loss_and_grads(spec, params, np.ones((3, 2)), y[:3])
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        impl.train(spec, params, x, y, hw.OptimizerSpec("sgd", 0.1), epochs=0)


@pytest.mark.parametrize(("lr", "epochs", "words"), [
    (1e3, 500, r"training diverged: the loss is (inf|nan) at step \d+ \(epoch \d+, batch 1 of 1\)"),
    (1e307, 1, r"training diverged: the params are non-finite after step 1 \(epoch 1\)"),
], ids=["loss", "final params"])
def test_every_implementation_refuses_divergence_alike(lr: float, epochs: int, words: str) -> None:
    """One Schedule, one message: a non-finite loss, or non-finite final params, stops all three
    trainers with the same FloatingPointError (the references once returned inf params)."""
    spec = hw.NetworkSpec((1, 1), ("identity",), "mse", "sum")
    params = [{"W": np.array([[1.0]]), "b": np.array([0.0])}]
    x, y = np.array([[10.0]]), np.array([[0.0]])
    messages = []
    for impl in (hw, rt, rj):
        with pytest.raises(FloatingPointError, match=words) as error:
            with np.errstate(over="ignore", invalid="ignore"):
                impl.train(spec, params, x, y, hw.OptimizerSpec("sgd", lr), epochs=epochs)
        messages.append(str(error.value).replace("nan", "inf"))
    assert len(set(messages)) == 1, messages


def test_importing_reference_jax_leaves_jax_in_float32() -> None:
    """A user's own JAX code keeps JAX's float32 default after importing and using
    reference_jax (even with JAX_ENABLE_X64 unset), while reference_jax computes a float64
    problem in float64."""
    code = (
        "import os; os.environ.pop('JAX_ENABLE_X64', None)\n"
        "import numpy as np, jax.numpy as jnp\n"
        "import handwritten as hw, reference_jax\n"
        "assert jnp.array([1.0]).dtype == jnp.float32, 'import switched x64 on'\n"
        "spec = hw.NetworkSpec((1, 1), ('identity',), 'half_mse', 'sum')\n"
        "params = [{'W': np.array([[1.0]]), 'b': np.array([0.0])}]\n"
        "x, y = np.array([[1.0 + 2.0**-40]]), np.array([[1.0]])\n"
        "loss, _ = reference_jax.loss_and_grads(spec, params, x, y)\n"
        "assert loss == 2.0**-81 and loss.dtype == np.float64, loss\n"
        "assert jnp.array([1.0]).dtype == jnp.float32, 'a call left x64 on'\n"
        "print('float32')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "float32"


@pytest.mark.parametrize("impl", [rt, rj], ids=["torch", "jax"])
def test_references_refuse_every_bad_input_like_handwritten(impl) -> None:
    """The bad-input tables of test_bad_input, through each reference's entry points: the
    same error type and words (they share handwritten.checks), and nothing modified."""
    from tests.test_bad_input import CASES, CE, SGD, SPEC, STEP_CASES, TRAIN_CASES, good
    from tests.test_bad_input import _step_args as step_args

    for case, spoil, spec, error, words in CASES:
        for entry in ("loss_and_grads", "trace", "train"):
            d = good()
            if spec is CE:
                d["y"] = np.eye(2)[[0, 1, 1, 0, 1]]
            spoil(d)
            before = snapshot(d)
            args = (spec, d["params"], d["x"], d["y"])
            with pytest.raises(error) as info:
                if entry == "train":
                    impl.train(*args, SGD, epochs=2)
                else:
                    getattr(impl, entry)(*args)
            assert words in str(info.value), (case, entry, str(info.value))
            assert_unchanged(before, d)
    for change, error, words in TRAIN_CASES:
        d = good()
        with pytest.raises(error) as info:
            impl.train(SPEC, d["params"], d["x"], d["y"], **({"optimizer": SGD, "epochs": 2}
                                                              | change))
        assert words in str(info.value), str(info.value)
    for case, spoil, error, words in STEP_CASES:
        args = step_args()
        spoil(args)
        with pytest.raises(error) as info:
            impl.step(**args)
        assert words in str(info.value), (case, str(info.value))


# where optax has an option otherwise than torch: each difference as documented -------------

SCALAR = [{"W": np.zeros((1, 1)), "b": np.zeros(1)}]


def _grads(*values: float) -> list[list[dict[str, np.ndarray]]]:
    return [[{"W": np.full((1, 1), g), "b": np.full(1, g)}] for g in values]


def _optax_moves(tx: optax.GradientTransformation, grads: list[float]) -> list[float]:
    """The updates optax's transformation makes for a scalar parameter, step by step."""
    with jax.enable_x64(True):
        p = rj.to_jax(SCALAR)
        state, moves = tx.init(p), []
        for g in _grads(*grads):
            update, state = tx.update(rj.to_jax(g), state, p)
            moves.append(float(update[0]["W"][0, 0]))
    return moves


def _our_moves(opt: hw.OptimizerSpec, grads: list[float]) -> list[float]:
    params, state, moves = SCALAR, hw.init_state(opt, SCALAR), []
    for g in _grads(*grads):
        new, state = hw.step(opt, params, g, state)
        moves.append(float(new[0]["W"][0, 0] - params[0]["W"][0, 0]))
        params = new
    return moves


def test_unsupported_options_are_refused_by_reference_jax_and_run_by_torch() -> None:
    """Each option optax has otherwise is named, refused with the reason by reference_jax,
    and run by reference_torch (so bpnet checks it against torch alone)."""
    cases = {
        "dampening": hw.OptimizerSpec("momentum", 0.1, {"dampening": 0.5}),
        "amsgrad": hw.OptimizerSpec("adam", 0.1, {"amsgrad": True}),
        "adagrad eps": hw.OptimizerSpec("adagrad", 0.1),
        "clip_norm": hw.OptimizerSpec("sgd", 0.1, clip_norm=1.0),
        "rmsprop momentum": hw.OptimizerSpec("rmsprop", 0.1, {"momentum": 0.5},
                                             hw.LRSchedule("exponential", {"gamma": 0.9})),
    }
    assert set(cases) == set(rj.optimizers.UNSUPPORTED)
    for key, opt in cases.items():
        assert rj.unsupported(opt, 1) == rj.optimizers.UNSUPPORTED[key]
        assert rt.unsupported(opt, 1) is None
        with pytest.raises(NotImplementedError, match="reference_jax cannot run"):
            rj.step(opt, SCALAR, _grads(1.0)[0], hw.init_state(opt, SCALAR))
        rt.step(opt, SCALAR, _grads(1.0)[0], hw.init_state(opt, SCALAR))
    assert rj.unsupported(hw.OptimizerSpec("adagrad", 0.1, {"eps": 0.0}), 1) is None


def test_optax_amsgrad_takes_the_maximum_of_corrected_moments() -> None:
    """optax.amsgrad: nu_max = max(nu_max, v_t / (1 - b2**t)); torch: max(v_max, v_t), divided
    by sqrt(1 - b2**t) after.  A falling gradient (3 then 0.1, b2 = 0.5) separates them."""
    b1, b2, eps, lr = 0.9, 0.5, 1e-8, 0.1
    ours = _our_moves(hw.OptimizerSpec("adam", lr, {"beta1": b1, "beta2": b2, "eps": eps,
                                                    "amsgrad": True}), [3.0, 0.1])
    theirs = _optax_moves(optax.amsgrad(lr, b1=b1, b2=b2, eps=eps), [3.0, 0.1])
    v1, v2 = (1 - b2) * 9.0, b2 * (1 - b2) * 9.0 + (1 - b2) * 0.01
    m2_hat = (b1 * (1 - b1) * 3.0 + (1 - b1) * 0.1) / (1 - b1**2)
    optax_second = -lr * m2_hat / (np.sqrt(max(v1 / (1 - b2), v2 / (1 - b2**2))) + eps)
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)         # one step: no history yet
    assert theirs[1] == pytest.approx(optax_second, rel=1e-12)
    assert ours[1] != pytest.approx(theirs[1], rel=1e-3)


def test_optax_adagrad_puts_eps_inside_the_square_root() -> None:
    """optax: g / sqrt(s + eps); torch: g / (sqrt(s) + eps).  Equal at eps = 0 only."""
    g, lr = 1e-4, 0.1
    for eps in (0.0, 1e-6):
        opt = hw.OptimizerSpec("adagrad", lr, {"eps": eps})
        theirs = _optax_moves(optax.adagrad(lr, initial_accumulator_value=0.0, eps=eps), [g])
        assert _our_moves(opt, [g])[0] == pytest.approx(-lr * g / (g + eps), rel=1e-12)
        assert theirs[0] == pytest.approx(-lr * g / np.sqrt(g * g + eps), rel=1e-12)
        assert (theirs[0] == pytest.approx(-lr * g / (g + eps), rel=1e-6)) is (eps == 0.0)


def test_optax_clip_by_global_norm_omits_torchs_epsilon() -> None:
    """Clipped, optax scales g by limit / n, torch by limit / (n + 1e-6): exactly that ratio."""
    g, limit = 2.0, 0.5
    norm = np.sqrt(2) * g                              # W and b, one entry each
    ours = _our_moves(hw.OptimizerSpec("sgd", 1.0, clip_norm=limit), [g])[0]
    theirs = _optax_moves(optax.chain(optax.clip_by_global_norm(limit), optax.sgd(1.0)), [g])[0]
    assert ours == pytest.approx(-g * limit / (norm + 1e-6), rel=1e-14)
    assert theirs == pytest.approx(-g * limit / norm, rel=1e-14)
    assert theirs / ours == pytest.approx((norm + 1e-6) / norm, rel=1e-14)


def test_optax_rmsprop_momentum_carries_past_learning_rates() -> None:
    """optax traces -lr_t g / d (lr before the momentum), torch traces g / d and multiplies
    by the current lr: under a schedule, the second step differs by mu (lr_0 - lr_1) g / d_1."""
    lr, gamma, mu, alpha, g = 0.1, 0.5, 0.9, 0.9, 1.0
    schedule = hw.LRSchedule("exponential", {"gamma": gamma})
    ours = _our_moves(hw.OptimizerSpec("rmsprop", lr, {"alpha": alpha, "momentum": mu},
                                       schedule), [g, g])
    with jax.enable_x64(True):
        rate = rj.schedules.make(schedule, lr)         # a float64 schedule
    theirs = _optax_moves(optax.rmsprop(rate, decay=alpha, eps=1e-8, eps_in_sqrt=False,
                                        momentum=mu), [g, g])
    d1 = np.sqrt(1 - alpha) * g + 1e-8
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)
    assert theirs[1] - ours[1] == pytest.approx(-mu * (lr - lr * gamma) * g / d1, rel=1e-9)


# accepted exactly where torch accepts ------------------------------------------------------

EDGE_VALUES = {"lr": [-1.0, 0.0, 0.1], "momentum": [-0.5, 0.0, 0.9, 1.5],
               "dampening": [-0.5, 0.0, 0.5, 2.0], "beta1": [-0.1, 0.0, 0.999, 1.0],
               "beta2": [-0.1, 0.0, 1.0], "alpha": [-0.1, 0.0, 0.99, 2.0],
               "eps": [-1e-8, 0.0, 1e-8], "weight_decay": [-0.1, 0.0, 0.1],
               "lr_decay": [-0.1, 0.0, 0.1], "initial_accumulator_value": [-0.1, 0.0, 0.1]}


def _torch_accepts(name: str, lr: float, hyper: dict[str, float]) -> bool:
    h = dict(hw.OptimizerSpec(name, 0.1).hyperparams) | hyper
    if name == "sgd":
        h |= {"momentum": 0.0, "dampening": 0.0}
    try:
        rt.optimizers.MAKERS[name](rt.optimizers.flat(rt.to_torch(SCALAR)), lr,
                                   h | {"dampening": h.get("dampening", 0.0)})
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(hw.OPTIMIZERS))
def test_hyperparameters_are_refused_exactly_where_torch_refuses_them(name: str) -> None:
    """Every hyperparameter of every optimizer at the edges of its range: OptimizerSpec
    accepts a value if and only if torch.optim's constructor does.  Except momentum 0
    for "momentum" (torch's plain SGD: use "sgd"), refused with that reason."""
    keys = ["lr", *(k for k in hw.OPTIMIZER_DEFAULTS[name] if k in EDGE_VALUES)]
    for key in keys:
        for value in EDGE_VALUES[key]:
            lr, hyper = (value, {}) if key == "lr" else (0.1, {key: value})
            try:
                hw.OptimizerSpec(name, lr, hyper)
                ours = True
            except ValueError:
                ours = False
            torch_says = _torch_accepts(name, lr, hyper)
            if (name, key, value) == ("momentum", "momentum", 0.0):
                assert torch_says and not ours
                continue
            assert ours is torch_says, f"{name} {key}={value}: ours {ours}, torch {torch_says}"


# where a framework's own op is less accurate than its definition ---------------------------


def test_torch_celu_backward_loses_digits_so_the_reference_writes_its_definition() -> None:
    """F.celu's derivative for alpha != 1 is off by ~2e-8 (relative), its value is not;
    reference_torch's alpha * F.elu(z / alpha) is exact to a few ulps against the float80
    oracle."""
    from bpnet.oracle import L, oracle_pair

    alpha, z = 1.5659224640621539, np.array([-0.0279, -0.5, -3.0])
    exact = oracle_pair(f"celu:{alpha!r}")[1](z.astype(L)).astype(np.float64)
    for fn, worst in ((lambda t: torch.nn.functional.celu(t, alpha=alpha), 1e-9),
                      (rt.activations.activation(f"celu:{alpha!r}"), None)):
        t = torch.tensor(z, requires_grad=True)
        fn(t).sum().backward()
        error = np.abs(t.grad.numpy() - exact) / exact
        if worst is None:
            assert error.max() < 1e-15, error
        else:
            assert error.max() > worst, error          # torch 2.13's documented imprecision


def test_jax_expm1_derivative_cancels_so_the_reference_avoids_it() -> None:
    """jnp.expm1's derivative rule is (ans + 1): jax.nn.elu's derivative at z = -27 keeps only
    ~4 digits of e^-27.  reference_jax's elu, celu and selu go through an expm1 whose
    derivative is exp(u) itself below u = -1, exact to a few ulps."""
    z = np.array([-27.0, -5.0, -1.0, -0.5, 0.0, 1.0])
    with jax.enable_x64(True):
        theirs = np.array([float(jax.grad(lambda t: jax.nn.elu(t))(v)) for v in z])
        ours = np.array([float(jax.grad(rj.activations.activation("elu"))(v)) for v in z])
    exact = np.where(z > 0, 1.0, np.exp(np.minimum(z, 0)))
    assert np.abs(theirs[0] - exact[0]) / exact[0] > 1e-6
    np.testing.assert_allclose(ours, exact, rtol=4e-16)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="Linux's /proc only")
def test_jax_programs_are_released_near_the_kernels_map_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each compiled JAX program holds ~90 memory mappings; a process that compiles thousands
    (the thorough profile) crashed XLA at the kernel's limit.  Past half the limit, every
    MAPS_CHECKED_EVERY-th reference call clears JAX's program caches; below it, nothing."""
    import jax
    import jax.numpy as jnp

    from reference_jax import precision

    twice = jax.jit(lambda v: 2 * v)
    twice(jnp.ones(3))
    assert twice._cache_size() == 1
    monkeypatch.setattr(precision, "_calls", 0)
    monkeypatch.setattr(precision, "_map_limit", lambda: 10**9)   # far above: nothing
    assert not any(precision.release_programs_near_the_map_limit()
                   for _ in range(precision.MAPS_CHECKED_EVERY))
    assert twice._cache_size() == 1
    monkeypatch.setattr(precision, "_map_limit", lambda: 2)       # "past half" of 2
    cleared = [precision.release_programs_near_the_map_limit()
               for _ in range(precision.MAPS_CHECKED_EVERY)]
    assert cleared == [False] * (precision.MAPS_CHECKED_EVERY - 1) + [True]
    assert twice._cache_size() == 0
