"""Every bad input: a clear ValueError/TypeError naming the argument, and nothing modified."""

from __future__ import annotations

import copy
import pickle
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from handwritten import (
    LRSchedule,
    NetworkSpec,
    OptimizerSpec,
    init_params,
    init_state,
    loss_and_grads,
    make_batch_order,
    predict,
    step,
    trace,
    train,
)
from tests.helpers import assert_unchanged, snapshot

SPEC = NetworkSpec((3, 4, 2), ("tanh", "sigmoid"), "half_mse", "mean")
CE = NetworkSpec((3, 4, 2), ("tanh", "softmax"), "softmax_cross_entropy", "mean")
BCE = NetworkSpec((3, 4, 2), ("tanh", "sigmoid"), "bce", "mean")
SGD = OptimizerSpec("sgd", 0.1)


def good() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {"params": init_params(SPEC, rng, "glorot_uniform"),
            "x": rng.normal(size=(5, 3)), "y": rng.uniform(size=(5, 2))}


def _matrix(a: np.ndarray) -> np.ndarray:
    """np.matrix, which NumPy itself discourages (it warns on creation)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix(a)


def with_nan(a: np.ndarray, value: float = np.nan) -> np.ndarray:
    a = a.copy()
    a.flat[0] = value
    return a


# (case id, how to spoil the good inputs, spec, error type, words the message must contain)
Spoil = Callable[[dict[str, Any]], None]
CASES: list[tuple[str, Spoil, NetworkSpec, type[Exception], str]] = [
    ("x 1-D", lambda d: d.update(x=d["x"][:, 0]), SPEC, ValueError, "x must be a 2-D"),
    ("x wrong width", lambda d: d.update(x=d["x"][:, :2]), SPEC, ValueError, "x must have shape"),
    ("x empty batch", lambda d: d.update(x=d["x"][:0], y=d["y"][:0]), SPEC, ValueError, "empty"),
    ("x NaN", lambda d: d.update(x=with_nan(d["x"])), SPEC, ValueError, "x must be finite"),
    ("x inf", lambda d: d.update(x=with_nan(d["x"], np.inf)), SPEC, ValueError, "x must be finite"),
    ("x integer", lambda d: d.update(x=d["x"].astype(int)), SPEC, TypeError, "x must have dtype"),
    ("x list", lambda d: d.update(x=d["x"].tolist()), SPEC, TypeError, "x must be a numpy"),
    ("x float16", lambda d: d.update(x=d["x"].astype(np.float16)), SPEC, TypeError, "float32 or"),
    ("y wrong shape", lambda d: d.update(y=d["y"][:, :1]), SPEC, ValueError, "y must have shape"),
    ("y wrong batch", lambda d: d.update(y=d["y"][:4]), SPEC, ValueError, "y must have shape"),
    ("y 1-D", lambda d: d.update(y=d["y"][:, 0]), SPEC, ValueError, "y must be a 2-D"),
    ("y NaN", lambda d: d.update(y=with_nan(d["y"])), SPEC, ValueError, "y must be finite"),
    ("y float32 vs x float64", lambda d: d.update(y=d["y"].astype(np.float32)), SPEC,
     TypeError, "mixed dtypes"),
    ("params float32 vs x float64",
     lambda d: d["params"][1].update(W=d["params"][1]["W"].astype(np.float32)), SPEC,
     TypeError, "params[1]['W'] has dtype float32"),
    ("params W NaN", lambda d: d["params"][0].update(W=with_nan(d["params"][0]["W"])), SPEC,
     ValueError, "params[0]['W'] must be finite"),
    ("params b inf", lambda d: d["params"][1].update(b=with_nan(d["params"][1]["b"], -np.inf)),
     SPEC, ValueError, "params[1]['b'] must be finite"),
    ("params do not chain",
     lambda d: d["params"][1].update(W=np.ones((5, 2))), SPEC, ValueError,
     "params[1]['W'] must have shape (4, 2)"),
    ("params b wrong shape", lambda d: d["params"][0].update(b=np.ones((1, 4))), SPEC,
     ValueError, "params[0]['b'] must be a 1-D"),
    ("params missing layer", lambda d: d.update(params=d["params"][:1]), SPEC, ValueError,
     "params must have 2 layers"),
    ("params extra key", lambda d: d["params"][0].update(c=np.ones(4)), SPEC, TypeError,
     "params[0] must be a dict with keys 'W' and 'b'"),
    ("params integer", lambda d: d["params"][0].update(b=np.zeros(4, dtype=int)), SPEC,
     TypeError, "params[0]['b'] must have dtype"),
    ("bce targets out of [0, 1]", lambda d: d.update(y=d["y"] + 1), BCE, ValueError,
     "probabilities in [0, 1]"),
    ("labels out of range", lambda d: d.update(y=np.array([0, 1, 2, 0, 1])), CE, ValueError,
     "y labels must lie in [0, 2)"),
    ("negative labels", lambda d: d.update(y=np.array([0, -1, 1, 0, 1])), CE, ValueError,
     "y labels must lie in [0, 2)"),
    ("float labels", lambda d: d.update(y=np.array([0.0, 1, 1, 0, 1])), CE, TypeError,
     "integer array"),
    ("class rows not summing to 1", lambda d: d.update(y=np.full((5, 2), 0.3)), CE, ValueError,
     "y rows must sum to 1"),
    ("x np.matrix", lambda d: d.update(x=_matrix(d["x"])), SPEC, TypeError,
     "x must be a plain numpy.ndarray, not the subclass matrix"),
    ("y masked", lambda d: d.update(y=np.ma.masked_invalid(with_nan(d["y"]))), SPEC, TypeError,
     "y must be a plain numpy.ndarray, not the subclass MaskedArray"),
    ("params W masked", lambda d: d["params"][0].update(W=np.ma.asarray(d["params"][0]["W"])),
     SPEC, TypeError, "params[0]['W'] must be a plain numpy.ndarray"),
]


@pytest.mark.parametrize("entry", ["loss_and_grads", "trace", "train"])
@pytest.mark.parametrize(("case", "spoil", "spec", "error", "words"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_data_is_refused_and_nothing_changes(entry: str, case: str, spoil: Spoil,
                                                 spec: NetworkSpec, error: type[Exception],
                                                 words: str) -> None:
    d = good()
    if spec is CE:
        d["y"] = np.eye(2)[[0, 1, 1, 0, 1]]
    spoil(d)
    before = snapshot(d)
    call = {"loss_and_grads": lambda: loss_and_grads(spec, d["params"], d["x"], d["y"]),
            "trace": lambda: trace(spec, d["params"], d["x"], d["y"]),
            "train": lambda: train(spec, d["params"], d["x"], d["y"], SGD, epochs=2)}[entry]
    with pytest.raises(error, match=None) as info:
        call()
    assert words in str(info.value), str(info.value)
    assert_unchanged(before, d)


def test_predict_checks_x_and_params() -> None:
    d = good()
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 3\)"):
        predict(SPEC, d["params"], d["x"][:, :2])
    with pytest.raises(ValueError, match=r"params\[0\]\['W'\] must be finite"):
        predict(SPEC, [{"W": with_nan(d["params"][0]["W"]), "b": d["params"][0]["b"]},
                       d["params"][1]], d["x"])


SPEC_CASES: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"layer_sizes": (3,)}, ValueError, "layer_sizes needs at least"),
    ({"layer_sizes": (3, 0, 2)}, ValueError, "layer_sizes[1] must be a positive integer"),
    ({"layer_sizes": (3, 4.0, 2)}, TypeError, "layer_sizes[1] must be an int"),
    ({"layer_sizes": "32"}, TypeError, "layer_sizes must be a tuple"),
    ({"activations": ("tanh",)}, ValueError, "activations needs one name per layer"),
    ({"activations": ("tanh", "sigmod")}, ValueError, "activations[1] is unknown: 'sigmod'"),
    ({"activations": ("softmax", "sigmoid")}, ValueError, "allowed only on the output layer"),
    ({"activations": ("tanh:2", "sigmoid")}, ValueError,
     "activations[0] is not valid: activation 'tanh' takes no parameter"),
    ({"activations": ("celu:-1", "sigmoid")}, ValueError,
     "activations[0] is not valid: celu's alpha must be a positive finite number"),
    ({"loss": "hinge"}, ValueError, "loss is unknown: 'hinge'"),
    ({"loss": "softmax_cross_entropy"}, ValueError, "needs the output activation"),
    ({"loss": "bce_with_logits", "activations": ("tanh", "identity")}, ValueError,
     "needs the output activation"),
    ({"reduction": "avg"}, ValueError, "reduction must be one of"),
    ({"weight_decay": -0.1}, ValueError, "weight_decay must be a finite number"),
    ({"weight_decay": float("nan")}, ValueError, "weight_decay must be a finite number"),
    ({"loss": ["half_mse"]}, TypeError, "loss must be a name (str), got list"),
    ({"activations": ("tanh", None)}, TypeError, "activations[1] must be a name (str)"),
    ({"reduction": 1}, TypeError, "reduction must be a name (str), got int"),
]


@pytest.mark.parametrize(("change", "error", "words"), SPEC_CASES,
                         ids=[c[2] for c in SPEC_CASES])
def test_bad_spec_is_refused(change: dict[str, Any], error: type[Exception], words: str) -> None:
    fields = {"layer_sizes": (3, 4, 2), "activations": ("tanh", "sigmoid"),
              "loss": "half_mse", "reduction": "mean", "weight_decay": 0.0} | change
    with pytest.raises(error) as info:
        NetworkSpec(**fields)
    assert words in str(info.value), str(info.value)


OPT_CASES: list[tuple[tuple[Any, ...], type[Exception], str]] = [
    (("sgdd", 0.1), ValueError, "optimizer name is unknown: 'sgdd'"),
    (("sgd", -1.0), ValueError, "lr must be a finite number in [0.0"),
    (("sgd", float("inf")), ValueError, "lr must be a finite number"),
    (("sgd", "0.1"), TypeError, "lr must be a real number"),
    (("adam", 0.1, {"beta1": 1.0}), ValueError, "beta1 must be a finite number in [0.0, 1.0)"),
    (("adam", 0.1, {"eps": -1e-8}), ValueError, "eps must be a finite number in [0.0"),
    (("momentum", 0.1, {"momentum": -0.5}), ValueError, "momentum must be a finite number"),
    (("nesterov", 0.1, {"momentum": 0.0}), ValueError, "momentum must be a finite number in (0.0"),
    (("nesterov", 0.1, {"dampening": 0.1}), ValueError,
     "(torch refuses nesterov with dampening)"),
    (("sgd", 0.1, {"momentum": 0.9}), ValueError, "hyperparams ['momentum'] are unknown"),
    (("rmsprop", 0.1, {"alpha": -0.5}), ValueError, "alpha must be a finite number"),
    (("rmsprop", 0.1, {"momentum": -0.5}), ValueError, "momentum must be a finite number in [0.0"),
    (("adam", 0.1, {"amsgrad": 1}), TypeError, "amsgrad must be a bool, got int"),
    (("adagrad", 0.1, {"lr_decay": -1}), ValueError, "lr_decay must be a finite number in [0.0"),
    (("adagrad", 0.1, {"initial_accumulator_value": -1}), ValueError,
     "initial_accumulator_value must be a finite number in [0.0"),
    ((["adam"], 0.1), TypeError, "name must be a name (str), got list"),
    (("sgd", 0.1, {}, "cosine"), TypeError, "schedule must be an LRSchedule or None, got str"),
    (("sgd", 0.1, {}, None, 0.0), ValueError, "clip_norm must be a finite number in (0.0"),
    (("sgd", 0.1, {}, None, None, -1.0), ValueError, "clip_value must be a finite number"),
    (("sgd", 0.1, {}, None, 1.0, 1.0), ValueError, "give clip_norm or clip_value, not both"),
    # values torch takes: the message says why bpnet does not
    (("sgd", np.inf), ValueError, "torch takes inf, but then the first step makes the params"),
    (("adam", 0.1, {"eps": np.inf}), ValueError, "torch takes inf, but then every update is 0"),
    (("momentum", 0.1, {"momentum": np.inf}), ValueError,
     "momentum must be a finite number in (0.0, inf), got inf: torch takes inf, but then the "
     "params are inf or NaN"),
    (("sgd", 0.1, {}, None, 0.0), ValueError, "torch takes 0 (and less), but then every "
     "gradient is clipped to 0"),
    (("sgd", 0.1, {}, None, None, np.inf), ValueError, "torch takes inf, which clips nothing"),
    (("sgd", 0.1, {}, None, np.inf), ValueError, "torch takes inf, which clips nothing"),
]
@pytest.mark.parametrize(("args", "error", "words"), OPT_CASES, ids=[c[2] for c in OPT_CASES])
def test_bad_optimizer_is_refused(args: tuple[Any, ...], error: type[Exception],
                                  words: str) -> None:
    with pytest.raises(error) as info:
        OptimizerSpec(*args)
    assert words in str(info.value), str(info.value)


SCHEDULE_CASES: list[tuple[tuple[Any, ...], type[Exception], str]] = [
    (("cosinus",), ValueError, "schedule name is unknown: 'cosinus'"),
    (("cosine",), ValueError, "schedule 'cosine' needs ['t_max'] (no default)"),
    (("cosine", {"t_max": 10, "T_max": 3}), ValueError, "schedule settings ['T_max'] are unknown"),
    (("step", {"step_size": 0}), ValueError, "step_size must be a positive integer"),
    (("step", {"step_size": 2.5}), TypeError, "step_size must be an int"),
    (("exponential", {"gamma": 0.0}), ValueError, "gamma must be a finite number in (0.0"),
    (("multistep", {"milestones": (3, -1)}), ValueError, "milestones[1] must be a step count"),
    (("multistep", {"milestones": 3}), TypeError, "milestones must be a tuple or list"),
    # values torch takes: the message says why bpnet does not
    (("multistep", {"milestones": (3, -1)}), ValueError,
     "got -1: torch takes a negative milestone, but no step ever reaches it"),
    (("step", {"step_size": 2, "gamma": 0.0}), ValueError,
     "torch takes gamma <= 0, but 0 makes the learning rate 0"),
    (("exponential", {"gamma": -0.5}), ValueError, "a negative gamma makes it negative"),
    (("onecycle", {"total_steps": 10, "pct_start": 0.05}), ValueError,
     "needs 1 < pct_start * total_steps < total_steps"),
    (("onecycle", {"total_steps": 10}, 3), ValueError, "warmup does not combine with 'onecycle'"),
    (("constant", {}, -1), ValueError, "warmup must be a number of steps >= 0"),
    (("constant", {}, 5, 0.0), ValueError, "warmup_start must be a finite number in (0.0, 1.0]"),
    (("constant", []), TypeError, "schedule settings must be a mapping"),
]


@pytest.mark.parametrize(("args", "error", "words"), SCHEDULE_CASES,
                         ids=[c[2] for c in SCHEDULE_CASES])
def test_bad_schedule_is_refused(args: tuple[Any, ...], error: type[Exception],
                                 words: str) -> None:
    with pytest.raises(error) as info:
        LRSchedule(*args)
    assert words in str(info.value), str(info.value)


def test_a_run_longer_than_onecycle_is_refused_before_any_step() -> None:
    """torch's OneCycleLR refuses to step beyond total_steps: so do train and step, up front."""
    d = good()
    opt = OptimizerSpec("sgd", 0.1, schedule=LRSchedule("onecycle", {"total_steps": 9}))
    before = snapshot(d)
    with pytest.raises(ValueError, match="the schedule's total_steps is 9, but the optimizer "
                                         "would take step 10"):
        train(SPEC, d["params"], d["x"], d["y"], opt, epochs=10)
    assert_unchanged(before, d)
    train(SPEC, d["params"], d["x"], d["y"], opt, epochs=9)          # 9 steps fit
    state = init_state(opt, d["params"]) | {"t": 9}
    with pytest.raises(ValueError, match="would take step 10"):
        step(opt, d["params"], d["params"], state)


TRAIN_CASES: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"epochs": 0}, ValueError, "epochs must be a positive integer"),
    ({"epochs": 2.5}, TypeError, "epochs must be an int"),
    ({"batch_size": 0}, ValueError, "batch_size must be a positive integer"),
    ({"batch_size": 6}, ValueError, "batch_size must be in [1, 5]"),
    ({"record_every": 0}, ValueError, "record_every must be a positive integer"),
    ({"batch_order": np.zeros((2, 5), dtype=int)}, ValueError, "permutation of range(5)"),
    ({"batch_order": np.tile(np.arange(5), (3, 1))}, ValueError, "batch_order must have shape"),
    ({"batch_order": np.tile(np.arange(5.0), (2, 1))}, TypeError, "batch_order must be an integer"),
    ({"optimizer": "sgd"}, TypeError, "optimizer must be an OptimizerSpec"),
    ({"callback": 5}, TypeError, "callback must be callable"),
    ({"batch_order": _matrix(np.tile(np.arange(5), (2, 1)))}, TypeError,
     "batch_order must be an integer numpy.ndarray"),
]


@pytest.mark.parametrize(("change", "error", "words"), TRAIN_CASES,
                         ids=[c[2] for c in TRAIN_CASES])
def test_bad_training_arguments_are_refused(change: dict[str, Any], error: type[Exception],
                                            words: str) -> None:
    d = good()
    kwargs = {"optimizer": SGD, "epochs": 2} | change
    before = snapshot(d, kwargs)
    with pytest.raises(error) as info:
        train(SPEC, d["params"], d["x"], d["y"], **kwargs)
    assert words in str(info.value), str(info.value)
    assert_unchanged(before, d, kwargs)


def test_bad_init_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match=r"rng must be a numpy\.random\.Generator"):
        init_params(SPEC, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scheme is unknown: 'xavier'"):
        init_params(SPEC, np.random.default_rng(0), "xavier")
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        init_params(SPEC, np.random.default_rng(0), dtype=np.float16)
    with pytest.raises(TypeError, match=r"rng must be a numpy\.random\.Generator"):
        make_batch_order(5, 2, None)  # type: ignore[arg-type]


def test_numpy_integer_sizes_are_stored_as_python_ints() -> None:
    """np.uint8(200) + np.uint8(100) would wrap to 44 in the glorot scale."""
    spec = NetworkSpec((np.uint8(200), np.uint8(100), np.int64(3)), ("tanh", "identity"))
    assert all(type(n) is int for n in spec.layer_sizes)
    w = init_params(spec, np.random.default_rng(0), "glorot_uniform")[0]["W"]
    assert np.abs(w).max() <= np.sqrt(6 / 300) and np.abs(w).max() > np.sqrt(6 / 300) * 0.9


def test_optimizer_spec_is_immutable_and_hashable() -> None:
    opt = OptimizerSpec("adam", 0.1)
    with pytest.raises(TypeError):
        opt.hyperparams["beta1"] = 1.0  # type: ignore[index]
    assert opt.hyperparams["beta1"] == 0.9
    assert {opt: 1}[OptimizerSpec("adam", 0.1, {"beta1": 0.9})] == 1
    assert repr(opt) == "OptimizerSpec('adam', lr=0.1, hyperparams={})"
    assert pickle.loads(pickle.dumps(opt)) == opt == copy.deepcopy(opt)
    full = OptimizerSpec("rmsprop", 0.1, {"centered": True, "momentum": 0.5},
                         LRSchedule("cosine", {"t_max": 9}, warmup=2), clip_value=0.5)
    assert eval(repr(full), {"OptimizerSpec": OptimizerSpec, "LRSchedule": LRSchedule}) == full
    assert {full: 1}[copy.deepcopy(full)] == 1 and pickle.loads(pickle.dumps(full)) == full
    with pytest.raises(TypeError):
        full.schedule.settings["t_max"] = 3  # type: ignore[union-attr, index]


def test_history_does_not_share_the_callers_arrays() -> None:
    d = good()
    before = snapshot(d)
    history = train(SPEC, d["params"], d["x"], d["y"], SGD, epochs=2)
    history.params[0][0]["W"][...] = 7.0
    assert_unchanged(before, d)


def _step_args() -> dict[str, Any]:
    d = good()
    opt = OptimizerSpec("adam", 0.1)
    return {"optimizer": opt, "params": d["params"], "grads": loss_and_grads(
        SPEC, d["params"], d["x"], d["y"])[1], "state": init_state(opt, d["params"])}


def _float32(tree: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    return [{k: v.astype(np.float32) for k, v in layer.items()} for layer in tree]


# (case id, how to spoil step's arguments, error type, words the message must contain)
STEP_CASES: list[tuple[str, Callable[[dict[str, Any]], None], type[Exception], str]] = [
    ("optimizer str", lambda a: a.update(optimizer="adam"), TypeError,
     "optimizer must be an OptimizerSpec"),
    ("grads float32", lambda a: a.update(grads=_float32(a["grads"])), TypeError,
     "grads[0]['W'] has dtype float32, but params are float64"),
    ("grads wrong shape", lambda a: a["grads"][1].update(b=np.ones(3)), ValueError,
     "grads[1]['b'] must have shape (2,)"),
    ("grads missing layer", lambda a: a.update(grads=a["grads"][:1]), TypeError,
     "grads must be a list of 2 dicts"),
    ("params do not chain", lambda a: a["params"][1].update(W=np.ones((3, 2))), ValueError,
     "params[1] has W (3, 2)"),
    ("state of another optimizer", lambda a: a.update(state={"t": 0}), TypeError,
     "state must be the dict init_state returns for 'adam'"),
    ("state negative t", lambda a: a["state"].update(t=-1), ValueError, "state['t']"),
    ("state buffer float32", lambda a: a["state"].update(m=_float32(a["state"]["m"])),
     TypeError, "state['m'][0]['W'] has dtype float32"),
]


@pytest.mark.parametrize(("case", "spoil", "error", "words"), STEP_CASES,
                         ids=[c[0] for c in STEP_CASES])
def test_bad_step_arguments_are_refused(case: str, spoil: Callable[[dict[str, Any]], None],
                                        error: type[Exception], words: str) -> None:
    args = _step_args()
    spoil(args)
    before = snapshot(args)
    with pytest.raises(error) as info:
        step(**args)
    assert words in str(info.value), str(info.value)
    assert_unchanged(before, args)


def test_init_state_refuses_a_name_and_bad_params() -> None:
    with pytest.raises(TypeError, match="optimizer must be an OptimizerSpec"):
        init_state("adam", good()["params"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="params must be a non-empty list"):
        init_state(SGD, [])


DROPOUT = NetworkSpec((3, 4, 2), ("tanh", "identity"), dropout=(0.5,))


def _dropout_problem() -> tuple[list[dict[str, np.ndarray]], np.ndarray, np.ndarray,
                                np.ndarray]:
    """batch 4, width 4, dropout 0.5, and a keep-mask with both 0s and 1s in every row."""
    rng = np.random.default_rng(0)
    params = init_params(DROPOUT, rng, "glorot_uniform")
    mask = np.array([[1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1]], dtype=float)
    return params, rng.normal(size=(4, 3)), rng.uniform(size=(4, 2)), mask


@pytest.mark.parametrize("entry", [loss_and_grads, trace])
@pytest.mark.parametrize(("masks", "error", "words"), [
    (lambda m: [_matrix(m)], TypeError, "masks[0] must be a plain numpy.ndarray, not the "
     "subclass matrix"),
    (lambda m: [np.ma.asarray(m)], TypeError, "masks[0] must be a plain numpy.ndarray, not "
     "the subclass MaskedArray"),
    (lambda m: 5, TypeError, "masks must be None or a list of 1 entries"),
], ids=["matrix", "masked", "int"])
def test_masks_are_refused_like_every_other_array(entry: Callable[..., Any],
                                                   masks: Callable[[np.ndarray], Any],
                                                   error: type[Exception], words: str) -> None:
    """np.matrix's * is a matrix product: a (4, 4) matrix mask once gave a wrong loss."""
    params, x, y, mask = _dropout_problem()
    with pytest.raises(error) as info:
        entry(DROPOUT, params, x, y, masks=masks(mask))
    assert words in str(info.value), str(info.value)
    with pytest.raises(TypeError, match=r"masks must be None or a list of 1 entries .*got int"):
        entry(SPEC, good()["params"], good()["x"], good()["y"], masks=5)   # no dropout


@pytest.mark.parametrize("mask_dtype", [np.float64, np.int32, np.int64, np.bool_])
def test_a_float32_network_stays_float32_whatever_the_masks_dtype(mask_dtype: Any) -> None:
    params, x, y, mask = _dropout_problem()
    params32 = [{k: v.astype(np.float32) for k, v in layer.items()} for layer in params]
    x32, y32, mask = x.astype(np.float32), y.astype(np.float32), mask.astype(mask_dtype)
    loss, grads = loss_and_grads(DROPOUT, params32, x32, y32, masks=[mask])
    assert loss.dtype == np.float32
    assert {g.dtype for layer in grads for g in layer.values()} == {np.dtype(np.float32)}
    t = trace(DROPOUT, params32, x32, y32, masks=[mask])
    assert t.loss.dtype == np.float32
    assert {v.dtype for layer in t.layers for v in layer.values()} == {np.dtype(np.float32)}
    # and the same numbers as with a float32 mask
    same, _ = loss_and_grads(DROPOUT, params32, x32, y32, masks=[mask.astype(np.float32)])
    assert loss == same
