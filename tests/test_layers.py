"""The layer contract in handwritten alone: a NetworkSpec's per-layer quantities are its compiled
Sequential's, bit for bit, random Sequentials against finite differences (gradients and forward
mode), per-example gradients, the spec's checks and the refusals.  The cross-framework
properties of random Sequentials are in tests/test_layer_references.py."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import handwritten as hw
from bpnet.check_all import CONV_CASES, LAYER_CASES
from bpnet.finite_diff import network_grads
from bpnet.problems import Problem, make_params
from bpnet.tolerances import (
    EPS64,
    FD_ATOL_SCALE,
    FD_RTOL,
    FD_STEP_SCALE,
    batch_sum_terms,
    fd_step,
)
from handwritten import checks, derivatives, network
from handwritten.activations import activation
from handwritten.layers import (
    LAYERS,
    Activation,
    BatchNorm1d,
    Dense,
    Dropout,
    LayerNorm,
    MaxPool2d,
    Residual,
    Sequential,
    compile_network,
    fold,
    network_masks,
    network_params,
    network_running,
)
from handwritten.layers import (
    network_grads as to_network_grads,
)
from handwritten.layers.base import Stateless
from handwritten.layers.sequential import layer_of_node, network_blocks
from tests.helpers import assert_leaf_close, assert_unchanged, snapshot
from tests.strategies import block_problems, optimizer_specs, problems, sequential_problems

# the compiled network's quantities, by the name the NetworkSpec trace gives each ------------

SAME_NAME = ("z", "d_z", "d_W", "d_b", "mu", "var", "x_hat", "n", "d_n", "d_x_hat", "d_gamma",
             "d_beta")


def _network_names(spec: hw.NetworkSpec, seq: Sequential) -> list[dict[str, tuple[int, str]]]:
    """Per NetworkSpec layer, each trace quantity's (node, name) in the compiled Sequential:
    a Dense's and a norm's under their own names; the activation's output is ``a`` (or ``h``
    where dropout or a skip follows it) and the layer's last node's output is ``a``."""
    owners = layer_of_node(spec)
    names: list[dict[str, tuple[int, str]]] = [{} for _ in range(spec.n_layers)]
    for i, ((_, layer), l) in enumerate(zip(seq.nodes, owners)):
        if isinstance(layer, (Dense, BatchNorm1d, LayerNorm)):
            names[l] |= {q: (i, q) for q in SAME_NAME if q in layer.FORWARD + layer.BACKWARD}
        elif isinstance(layer, Activation):
            names[l] |= {"h": (i, "a"), "d_h": (i, "d_a"), "a": (i, "a"), "d_a": (i, "d_a")}
    for l in range(spec.n_layers):
        nodes = [i for i, owner in enumerate(owners) if owner == l]
        last = next((i for i in nodes if isinstance(seq.nodes[i][1], Residual)), nodes[-1])
        if not isinstance(seq.nodes[last][1], Activation):        # dropout or a skip: h, then a
            names[l] |= {"a": (last, "out"), "d_a": (last, "d_out")}
    return names


def _assert_same(ours: Any, theirs: Any, what: str) -> None:
    assert np.asarray(ours).dtype == np.asarray(theirs).dtype, what
    assert np.array_equal(ours, theirs), f"{what}: not bit for bit"


@given(problems(max_depth=4, max_width=6, max_batch=8))
def test_a_network_specs_quantities_are_its_compiled_networks(p: Problem) -> None:
    _assert_compiled_agrees(p)


@given(block_problems())
def test_a_block_specs_quantities_are_its_compiled_networks(p: Problem) -> None:
    _assert_compiled_agrees(p)


def _assert_compiled_agrees(p: Problem) -> None:
    """A NetworkSpec runs as the fold of ``compile_network(spec)``; what can go wrong is its
    per-layer view.  Every quantity of the NetworkSpec's trace is the compiled Sequential's
    of the node ``_network_names`` (written apart from handwritten.network's translation)
    names; the building blocks that take a per-layer cache back to the nodes --
    ``network.backward``, and each layer's ``hidden_block`` / ``hidden_block_backward``
    (the layer's own Sequential) -- give the trace's numbers bit for bit; and fresh params
    draw what the Sequential's do from the same seed."""
    spec = p.spec
    seq = compile_network(spec)
    params, masks = network_params(spec, p.params), network_masks(spec, p.masks)
    t, seq_t = hw.trace(spec, p.params, p.x, p.y, p.masks), hw.trace(seq, params, p.x, p.y, masks)
    _assert_same(seq_t.loss, t.loss, f"{spec} trace loss")
    for l, (layer, names) in enumerate(zip(t.layers, _network_names(spec, seq))):
        for q, value in layer.items():
            i, name = names[q]
            _assert_same(seq_t.layers[i][name], value, f"{spec} layer {l} {q} (node "
                                                       f"{seq.paths[i]} {name})")
    _, cache = network.forward(spec, p.params, p.x, p.masks)
    grads, deltas = network.backward(spec, p.params, p.x, p.y, cache, masks=p.masks)
    a_prev = p.x
    for l, layer in enumerate(t.layers):
        found = cache[l] | deltas[l] | {f"d_{k}": g for k, g in grads[l].items()}
        assert found.keys() == layer.keys(), f"{spec} layer {l}"
        for q, value in layer.items():
            _assert_same(found[q], value, f"{spec} layer {l} {q} (network.backward)")
        mask = network.layer_mask(p.masks, l, a_prev.dtype)
        block = network.hidden_block(spec, l, p.params[l], a_prev, mask)
        assert list(block) == list(cache[l]), f"{spec} layer {l} hidden_block"
        for q, value in block.items():
            _assert_same(value, layer[q], f"{spec} layer {l} {q} (hidden_block)")
        if "d_a" in layer:
            back = network.hidden_block_backward(spec, l, p.params[l], cache[l], layer["d_a"],
                                                 mask)
            for q, value in back.items():
                _assert_same(value, layer[q], f"{spec} layer {l} {q} (hidden_block_backward)")
        a_prev = cache[l]["a"]
    for scheme in hw.INIT_SCHEMES:
        fresh = hw.init_params(spec, np.random.default_rng(p.seed), scheme)
        seq_fresh = hw.init_params(seq, np.random.default_rng(p.seed), scheme)
        for ours, theirs in zip(seq_fresh, network_params(spec, fresh)):
            for key in theirs:
                _assert_same(ours[key], theirs[key], f"{spec} init {scheme} {key}")


@given(block_problems())
def test_a_compiled_spec_predicts_and_keeps_running_statistics_bit_for_bit(p: Problem) -> None:
    """Evaluation mode (batch norm with running statistics) and the state a training step
    carries: the layers' ``init_state`` / ``update_state`` are the network's own."""
    spec, seq = p.spec, compile_network(p.spec)
    params = network_params(spec, p.params)
    running = hw.init_running(spec)
    state = hw.init_running(seq)
    assert [s.keys() for s in network_running(spec, running) or []] == [s.keys() for s in state]
    _, caches = fold.forward(seq, params, p.x, fold.Pass(masks=network_masks(spec, p.masks)))
    state = fold.update_state(seq, state, caches)
    _, cache = hw.forward(spec, p.params, p.x, p.masks)
    from handwritten.training import update_running
    update_running(running, cache, p.batch)
    for ours, theirs in zip(state, network_running(spec, running) or []):
        for key in theirs:
            _assert_same(ours[key], theirs[key], f"{spec} running {key}")
    _assert_same(hw.predict(seq, params, p.x, state), hw.predict(spec, p.params, p.x, running),
                 f"{spec} predict")


# random Sequentials: framework-free oracles --------------------------------------------------


NORM_VAR_MIN = 1e-2
"""A norm's x_hat = (h - mu) / sqrt(var + eps) curves on the scale sqrt(var) of its input:
a central difference of step h ~ 6e-6 errs by ~(h / sqrt(var))**2 relative, beyond FD_RTOL
once var falls to ~1e-3 (a width-1 input spread over a batch of four can make one).  The
finite-difference oracles need var >= NORM_VAR_MIN: (6e-6 / 0.1)**2 ~ 4e-9."""


def _well_conditioned(p: Problem) -> None:
    """Where central differences are accurate: bce's third derivative ~ 2/a**3 keeps a away
    from 0 and 1; a norm's input keeps a variance of at least NORM_VAR_MIN."""
    _, caches = fold.forward(p.spec, p.params, p.x, fold.Pass(masks=p.masks))
    if p.spec.loss == "bce":
        a = fold.loss_inputs(p.spec, caches)[1]
        assume(min(a.min(), (1 - a).min()) >= 0.05)
    assume(all(c["var"].min() >= NORM_VAR_MIN for c in caches if "var" in c))


@given(sequential_problems())
def test_random_sequential_grads_match_finite_differences(p: Problem) -> None:
    """Every parameter of a Sequential in any valid order (norms first, two activations in a
    row, dropout anywhere, a Residual around several layers) against central differences."""
    check_random_sequential_grads_match_finite_differences(p)


def check_random_sequential_grads_match_finite_differences(p: Problem) -> None:
    _well_conditioned(p)
    loss, grads = hw.loss_and_grads(p.spec, p.params, p.x, p.y, p.masks)
    fd, masks = network_grads(p.spec, p.params, p.x, p.y, p.masks)
    n_valid = sum(int(m.sum()) for layer in masks for m in layer.values())
    n_all = sum(m.size for layer in masks for m in layer.values())
    assume(n_valid >= n_all // 2)     # a coordinate crossing a relu kink is not comparable
    atol = FD_ATOL_SCALE * max(1.0, abs(float(loss)))
    for path, g, f, m in zip(p.spec.paths, grads, fd, masks):
        assert g.keys() == f.keys()
        for key in f:
            assert_leaf_close(g[key], f[key], f"{p.spec} layer {path} d_{key}", rtol=FD_RTOL,
                              atol=atol, mask=m[key])


def _kink_signature(seq: Sequential, params: hw.Params, x: np.ndarray, masks: Any) -> bytes:
    """Which side of each kink every unit is on: a kinked activation's z > 0, and each max
    pooling window's winner (a central difference across either means nothing)."""
    _, caches = fold.forward(seq, params, x, fold.Pass(masks=masks))
    return b"".join((caches[i]["z"] > 0).tobytes() if isinstance(layer, Activation)
                    else caches[i]["arg"].tobytes() for i, (_, layer) in enumerate(seq.nodes)
                    if (isinstance(layer, Activation) and activation(layer.name).kinked)
                    or isinstance(layer, MaxPool2d))


@given(sequential_problems())
def test_random_sequential_jvp_matches_a_central_difference(p: Problem) -> None:
    """jvp's output tangent along v = the params themselves (a direction of every layer's
    params' own scale) against (f(theta + h v) - f(theta - h v)) / 2h."""
    check_random_sequential_jvp_matches_a_central_difference(p)


def check_random_sequential_jvp_matches_a_central_difference(p: Problem) -> None:
    seq, v = p.spec, p.params
    _well_conditioned(p)
    out, out_dot = fold.jvp(seq, p.params, p.x, v, p.masks)
    h = fd_step(1.0)
    up = [{k: w + h * v[i][k] for k, w in node.items()} for i, node in enumerate(p.params)]
    down = [{k: w - h * v[i][k] for k, w in node.items()} for i, node in enumerate(p.params)]
    base = _kink_signature(seq, p.params, p.x, p.masks)
    assume(_kink_signature(seq, up, p.x, p.masks) == base ==
           _kink_signature(seq, down, p.x, p.masks))
    f_up = fold.forward(seq, up, p.x, fold.Pass(masks=p.masks))[0]
    f_down = fold.forward(seq, down, p.x, fold.Pass(masks=p.masks))[0]
    _assert_same(out, fold.forward(seq, p.params, p.x, fold.Pass(masks=p.masks))[0],
                 f"{seq} jvp's output")
    # the central difference's own error: h**2 |f'''| / 6 plus rounding eps |f| / h, each
    # on the scale of the output (FD_RTOL and FD_ATOL_SCALE are the loss-level versions)
    scale = max(1.0, float(np.abs(out).max()))
    assert_leaf_close(out_dot, (f_up - f_down) / (2 * h), f"{seq} output tangent",
                      rtol=FD_RTOL, atol=FD_ATOL_SCALE * scale)


@given(sequential_problems())
def test_per_example_grads_sum_to_the_data_term_or_are_refused(p: Problem) -> None:
    """Each sample's own gradient; summed over the batch, the gradient without weight decay.
    A Sequential with batch norm (training mode) is refused, naming the layer and why."""
    check_per_example_grads_sum_to_the_data_term_or_are_refused(p)


def check_per_example_grads_sum_to_the_data_term_or_are_refused(p: Problem) -> None:
    seq = p.spec
    if seq.has_batch_norm:
        with pytest.raises(NotImplementedError, match=r"BatchNorm[12]d.*whole batch"):
            fold.per_example_grads(seq, p.params, p.x, p.y, p.masks)
        return
    per = fold.per_example_grads(seq, p.params, p.x, p.y, p.masks)
    plain = replace(seq, weight_decay=0.0)
    _, grads = hw.loss_and_grads(plain, p.params, p.x, p.y, p.masks)
    trace = hw.trace(plain, p.params, p.x, p.y, p.masks)
    for path, mine, g, node in zip(seq.paths, per, grads, trace.layers):
        assert mine.keys() == g.keys()
        terms = batch_sum_terms(node)
        for key in g:
            assert mine[key].shape == (p.batch, *g[key].shape)
            # a sum of batch terms: each term exact to eps, the sum's rounding ~ batch eps;
            # a bias's, beta's or gamma's sum over the batch (and an image's positions) on
            # the scale of its terms: it is 0 in exact arithmetic where a norm follows
            # that removes it (a shift before a batch or group norm, the affine of a group
            # norm before another over the same elements), and then only rounding is left
            scale = terms.get(f"d_{key}")
            atol = 0.0 if scale is None else 1e-12 * float(scale.sum(axis=0).max())
            assert_leaf_close(mine[key].sum(axis=0), g[key], f"{seq} {path} {key}",
                              rtol=1e-12, atol_scale=1e-12 * p.batch, atol=atol)


@given(sequential_problems(max_batch=6))
def test_sequential_entry_points_leave_their_inputs_untouched(p: Problem) -> None:
    before = snapshot(p.params, p.x, p.y, p.masks)
    hw.loss_and_grads(p.spec, p.params, p.x, p.y, p.masks)
    hw.trace(p.spec, p.params, p.x, p.y, p.masks)
    fold.jvp(p.spec, p.params, p.x, p.params, p.masks)
    assert_unchanged(before, p.params, p.x, p.y, p.masks)


def test_the_trace_names_each_layers_quantities_in_pass_order() -> None:
    seq = Sequential([Dense(3, 4), BatchNorm1d(4), Activation("tanh"), Dropout(0.5),
                      Residual([Dense(4, 4), Activation("relu")]), Dense(4, 2),
                      Activation("sigmoid")], "bce_with_logits")
    p = Problem(seq, 5, 0)
    t = hw.trace(seq, p.params, p.x, p.y, p.masks)
    assert seq.paths == ("0", "1", "2", "3", "4", "4.0", "4.1", "5", "6")
    assert [list(node) for node in t.layers] == [
        ["z", "d_z", "d_W", "d_b"],
        ["mu", "var", "x_hat", "n", "d_n", "d_x_hat", "d_gamma", "d_beta"],
        ["a", "d_a"], ["out", "d_out"], ["out", "d_out"], ["z", "d_z", "d_W", "d_b"],
        ["a", "d_a"], ["z", "d_z", "d_W", "d_b"],
        ["a"]]                                   # fused: the backward starts at its input
    residual, body_last = t.layers[4], t.layers[6]
    assert residual["d_out"] is body_last["d_a"] or np.array_equal(residual["d_out"],
                                                                   body_last["d_a"])


# the spec: checks at construction, repr, refusals ----------------------------------------


def test_a_sequential_is_frozen_hashable_and_its_repr_replays() -> None:
    seq = Sequential([LayerNorm(4), Dense(4, 4), Activation("leaky_relu:0.2"),
                      Activation("tanh"), Residual([Dense(4, 4), Dropout(0.25)]),
                      Dense(4, 3), Activation("softmax")], "softmax_cross_entropy", "sum", 0.1)
    again = eval(repr(seq), {k: v for k, v in vars(__import__("handwritten.layers",
                                                               fromlist=["*"])).items()})
    assert again == seq and hash(again) == hash(seq)
    assert repr(again) == repr(seq)
    with pytest.raises(AttributeError):
        seq.loss = "mse"                                      # type: ignore[misc]
    assert {seq: 1}[again] == 1


@pytest.mark.parametrize(("build", "error", "message"), [
    (lambda: Sequential([Dense(3, 4), Dense(5, 2)]), ValueError,
     r"layers\[1\]: Dense\(in_features=5, out_features=2\) needs inputs of shape \(batch, 5\), "
     r"got \(batch, 4\)"),
    (lambda: Sequential([Dense(3, 4), Residual([Dense(4, 4), Dense(3, 3)])]), ValueError,
     r"layers\[1\]\.body\[1\]: Dense\(in_features=3"),
    (lambda: Sequential([Dense(3, 4), Residual([Dense(4, 2)])]), ValueError,
     r"layers\[1\] Residual.*a skip needs the shape kept"),
    (lambda: Sequential([Dense(3, 4), BatchNorm1d(3)]), ValueError,
     r"layers\[1\]: BatchNorm1d\(num_features=3\) needs inputs of shape \(batch, 3\)"),
    (lambda: Sequential([Dense(3, 4), Activation("softmax"), Dense(4, 2)]), ValueError,
     r"layers\[1\] is Activation\(name='softmax'\).*only as the last layer"),
    (lambda: Sequential([Dense(3, 2), Activation("tanh")], "bce_with_logits"), ValueError,
     r"loss 'bce_with_logits' needs the last layer to be an Activation, one of \['sigmoid'\]"),
    (lambda: Sequential([Dense(3, 2)], "softmax_cross_entropy"), ValueError,
     r"needs the last layer to be an Activation"),
    (lambda: Sequential([Activation("tanh")]), ValueError, r"in_features is required"),
    (lambda: Sequential([]), ValueError, r"layers is empty"),
    (lambda: Sequential([Dense(3, 4), "relu"]), TypeError,
     r"layers\[1\] must be a layer \(one of \['Activation', .*'Dense', .*'Residual'"),
    (lambda: Sequential([Dense(3, 4)], "hinge"), ValueError, r"loss is unknown: 'hinge'"),
    (lambda: Sequential([Dense(3, 4)], reduction="max"), ValueError, r"reduction must be one"),
    (lambda: Sequential([Dense(3, 4)], weight_decay=-1.0), ValueError, r"weight_decay"),
    (lambda: Dense(0, 3), ValueError, r"in_features must be"),
    (lambda: Dense(2.0, 3), TypeError, r"in_features must be an int"),
    (lambda: Activation("swishy"), ValueError, r"Activation name is unknown: 'swishy'"),
    (lambda: Activation("tanh:2"), ValueError, r"Activation name is not valid"),
    (lambda: Dropout(1.0), ValueError, r"Dropout p"),
    (lambda: Residual([]), ValueError, r"Residual's body is empty"),
    (lambda: LayerNorm(-1), ValueError, r"normalized_shape must be"),
])
def test_an_invalid_sequential_is_refused_naming_the_layer_and_the_shape(
        build: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        build()


def test_bad_inputs_to_a_sequential_are_refused_by_name_before_anything_runs() -> None:
    seq = Sequential([Dense(3, 4), Dropout(0.5), Dense(4, 1)])
    p = Problem(seq, 4, 0)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 3\) for the first layer"):
        hw.loss_and_grads(seq, p.params, p.x[:, :2], p.y, p.masks)
    with pytest.raises(ValueError, match=r"params must have 3 entries \(one per node"):
        hw.loss_and_grads(seq, p.params[:2], p.x, p.y, p.masks)
    bad = [dict(node) for node in p.params]
    bad[1] = {"W": p.params[0]["W"]}
    with pytest.raises(TypeError, match=r"params\[1\] \(layer 1, Dropout\(p=0.5\)\) must be a "
                                        r"dict with keys \[\]"):
        hw.loss_and_grads(seq, bad, p.x, p.y, p.masks)
    with pytest.raises(ValueError, match="masks are required: the Sequential has dropout"):
        hw.loss_and_grads(seq, p.params, p.x, p.y)
    wrong = [None, np.ones((4, 3)), None]
    with pytest.raises(ValueError, match=r"masks\[1\] \(layer 1, Dropout\(p=0.5\)\) must have "
                                         r"shape \(4, 4\)"):
        hw.loss_and_grads(seq, p.params, p.x, p.y, wrong)
    with pytest.raises(ValueError, match="x is a batch of one, and batch norm"):
        norm = Sequential([Dense(3, 4), BatchNorm1d(4), Dense(4, 1)])
        q = Problem(norm, 1, 0)
        hw.loss_and_grads(norm, q.params, q.x, q.y)
    with pytest.raises(ValueError, match="running is required: the Sequential has batch norm"):
        hw.predict(norm, q.params, q.x)
    with pytest.raises(ValueError, match="scheme is unknown: 'lecun'"):
        hw.init_params(seq, np.random.default_rng(0), "lecun")
    with pytest.raises(TypeError, match=r"spec must be a NetworkSpec or a Sequential, got list"):
        hw.predict([Dense(3, 1)], p.params, p.x)               # type: ignore[arg-type]


@given(block_problems(max_depth=3, max_width=5, max_batch=10), optimizer_specs())
def test_a_compiled_spec_trains_bit_for_bit(p: Problem, optimizer: hw.OptimizerSpec) -> None:
    """train on ``compile_network(spec)``: every step's loss, the recorded params, the
    optimizer state and the running statistics are the NetworkSpec's exactly, and so is the
    diagnosis (a saturated layer named by its Activation node).  Both run the same fold;
    what differs is the NetworkSpec's layout carried across each step (its masks drawn per
    hidden layer by ``draw_masks`` and put on the Dropout nodes, its gradients and running
    statistics taken back per layer)."""
    spec, seq = p.spec, compile_network(p.spec)
    size = p.batch if "batch" not in spec.norms or p.batch % 2 == 0 else p.batch - 1
    size = max(size, 2)
    assume(p.batch % size != 1)
    kwargs: dict[str, Any] = {"epochs": 2, "batch_size": size, "record_every": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hw.TrainingWarning)
        try:
            ours = hw.train(spec, p.params, p.x, p.y, optimizer,
                            rng=np.random.default_rng(p.seed), **kwargs)
        except FloatingPointError:
            with pytest.raises(FloatingPointError):
                hw.train(seq, network_params(spec, p.params), p.x, p.y, optimizer,
                         rng=np.random.default_rng(p.seed), **kwargs)
            return
        theirs = hw.train(seq, network_params(spec, p.params), p.x, p.y, optimizer,
                          rng=np.random.default_rng(p.seed), **kwargs)
    _assert_same(theirs.losses, ours.losses, f"{spec} losses")
    assert theirs.recorded_steps == ours.recorded_steps
    for step, (mine, expected) in enumerate(zip(theirs.params, ours.params)):
        for l, (a, b) in enumerate(zip(to_network_grads(spec, mine), expected)):
            for key in b:
                _assert_same(a[key], b[key], f"{spec} params after step {step}, layer {l} {key}")
    for a, b in zip(theirs.running, network_running(spec, ours.running) or []):
        for key in b:
            _assert_same(a[key], b[key], f"{spec} running {key}")
    assert theirs.diagnostics == tuple(_by_node(spec, n) for n in ours.diagnostics)


def _by_node(spec: hw.NetworkSpec, note: str) -> str:
    """A NetworkSpec's diagnosis note as its compiled Sequential's: "layer l: all ..." names
    layer l's Activation node by path and layer; every other note reads the same."""
    head, sep, rest = note.partition(": all ")
    if not (sep and head.startswith("layer ")):
        return note
    path, layer = compile_network(spec).nodes[network_blocks(spec)[int(head[6:])].activation]
    return f"node {path} ({layer!r}): all {rest}"


# second order: the R-operator through every layer -----------------------------------------


def _dot(u: hw.Params, v: hw.Params) -> float:
    return float(sum(np.vdot(a[k], b[k]) for a, b in zip(u, v) for k in a))


def _norm(u: hw.Params) -> float:
    return float(np.sqrt(_dot(u, u)))


def _step(params: hw.Params, c: float, v: hw.Params) -> hw.Params:
    return [{k: w + c * v[i][k] for k, w in node.items()} for i, node in enumerate(params)]


@given(sequential_problems(), st.integers(0, 2**32 - 1))
def test_random_sequential_hvp_is_symmetric_and_a_derivative_of_the_gradient(
        p: Problem, seed: int) -> None:
    """u^T H v = v^T H u through every layer kind in any order; and H v is the central
    difference of the hand-derived gradient along v (no kink within reach of the step)."""
    check_random_sequential_hvp_is_symmetric_and_a_derivative_of_the_gradient(p, seed)


def check_random_sequential_hvp_is_symmetric_and_a_derivative_of_the_gradient(
        p: Problem, seed: int) -> None:
    seq = p.spec
    u = make_params(seq, np.random.default_rng(seed), np.float64)
    v = make_params(seq, np.random.default_rng(seed + 1), np.float64)
    hu = derivatives.hvp(seq, p.params, p.x, p.y, u, p.masks)
    hv = derivatives.hvp(seq, p.params, p.x, p.y, v, p.masks)
    # each inner product sums ~n_params products of size <= |u||Hv|: rounding ~n eps |u||Hv|
    n = sum(w.size for node in u for w in node.values())
    scale = max(_norm(u) * _norm(hv), _norm(v) * _norm(hu))
    assert abs(_dot(u, hv) - _dot(v, hu)) <= 16 * n * EPS64 * scale, p
    # central differences of the gradient along v / |v|, step h = FD_STEP_SCALE max(1,
    # |params|): error ~h**2 |g'''| + eps |g| / h, the loss's bounds with g in place of L
    h = FD_STEP_SCALE * max(1.0, max(float(np.abs(w).max()) for node in p.params
                                     for w in node.values()))
    step = h / _norm(v)
    up, down = _step(p.params, step, v), _step(p.params, -step, v)
    base = _kink_signature(seq, p.params, p.x, p.masks)
    assume(_kink_signature(seq, up, p.x, p.masks) == base ==
           _kink_signature(seq, down, p.x, p.masks))
    _well_conditioned(p)
    g_up = hw.loss_and_grads(seq, up, p.x, p.y, p.masks)[1]
    g_down = hw.loss_and_grads(seq, down, p.x, p.y, p.masks)[1]
    g_scale = max(1.0, max(float(np.abs(w).max()) for node in g_up for w in node.values()))
    for path, mine, a, b in zip(seq.paths, hv, g_up, g_down):
        for key in mine:
            assert_leaf_close(mine[key], (a[key] - b[key]) / (2 * step),
                              f"{seq} layer {path} (Hv)_{key}", rtol=FD_RTOL,
                              atol=FD_ATOL_SCALE * g_scale * _norm(v))


@given(sequential_problems(), st.integers(0, 2**32 - 1))
def test_random_sequential_gnvp_is_positive_semidefinite(p: Problem, seed: int) -> None:
    """Every loss is convex in its input: v^T G v >= 0 through every layer kind, up to the
    rounding of the inner product (n eps |v| |G v|)."""
    check_random_sequential_gnvp_is_positive_semidefinite(p, seed)


def check_random_sequential_gnvp_is_positive_semidefinite(p: Problem, seed: int) -> None:
    v = make_params(p.spec, np.random.default_rng(seed), np.float64)
    gv = derivatives.gnvp(p.spec, p.params, p.x, p.y, v, p.masks)
    n = sum(w.size for node in v for w in node.values())
    assert _dot(v, gv) >= -16 * n * EPS64 * _norm(v) * _norm(gv), p


def test_a_sequential_ending_in_a_residual_has_its_second_order() -> None:
    """The tangent fold keeps a Residual's output as the forward does (the loss reads the
    last node's): a network that ends in a skip has hvp and gnvp."""
    seq = Sequential([Dense(2, 2), Residual([Activation("tanh")])], "mse")
    p = Problem(seq, 3, 0)
    for fn in (derivatives.hvp, derivatives.gnvp):
        product = fn(seq, p.params, p.x, p.y, p.params)
        assert [set(node) for node in product] == [{"W", "b"}, set(), set()]


# a new layer joins by its own file: its params and its state are named by the layer ----------


@dataclass(frozen=True)
class RunningMean(Stateless):
    """A layer with state and nothing else (not a batch norm): the identity on its input,
    and across training steps a running mean of that input, batch norm's momentum rule
    without the variance: mean <- 0.9 mean + 0.1 h.mean(axis=0)."""

    num_features: int

    OUT: ClassVar[str] = "out"
    FORWARD: ClassVar[tuple[str, ...]] = ("out",)
    BACKWARD: ClassVar[tuple[str, ...]] = ("d_out",)
    EQUATIONS: ClassVar[dict[str, str]] = {"out": "out = h", "d_out": "d_out = d_h_next"}
    D_IN: ClassVar[str] = "d_h = d_out"

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return in_shape

    def forward(self, p: dict[str, Any], h: np.ndarray, ctx: Any) -> tuple[np.ndarray, Any]:
        return h, {"h": h}

    def backward(self, p: dict[str, Any], cache: Any, d_out: np.ndarray, ctx: Any,
                 need_d_in: bool = True) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        return d_out, {}, {}

    def init_state(self, in_shape: tuple[int, ...], dtype: np.dtype[Any]
                   ) -> dict[str, np.ndarray]:
        return {"mean": np.zeros(in_shape, dtype=dtype)}

    def update_state(self, state: dict[str, np.ndarray], cache: Any
                     ) -> dict[str, np.ndarray]:
        return {"mean": 0.9 * state["mean"] + 0.1 * cache["h"].mean(axis=0)}


@dataclass(frozen=True)
class Scale(Stateless):
    """A layer whose one param is named as torch.nn names an Embedding's: out = h * weight,
    one weight per feature; d_h = d_out * weight, d_weight = sum over the batch of
    d_out * h."""

    num_features: int

    OUT: ClassVar[str] = "out"
    FORWARD: ClassVar[tuple[str, ...]] = ("out",)
    BACKWARD: ClassVar[tuple[str, ...]] = ("d_out", "d_weight")
    EQUATIONS: ClassVar[dict[str, str]] = {"out": "out = h * weight",
                                           "d_out": "d_out = d_h_next",
                                           "d_weight": "d_weight = (d_out * h).sum(axis=0)"}
    D_IN: ClassVar[str] = "d_h = d_out * weight"

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return in_shape

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.num_features,)}

    def init(self, in_shape: tuple[int, ...], rng: np.random.Generator, scheme: str,
             dtype: np.dtype[Any]) -> dict[str, np.ndarray]:
        return {"weight": np.ones(self.num_features, dtype=dtype)}

    def forward(self, p: dict[str, Any], h: np.ndarray, ctx: Any) -> tuple[np.ndarray, Any]:
        return h * p["weight"], {"h": h}

    def backward(self, p: dict[str, Any], cache: Any, d_out: np.ndarray, ctx: Any,
                 need_d_in: bool = True) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        return d_out * p["weight"], {"weight": (d_out * cache["h"]).sum(axis=0)}, {}


def test_a_stateful_layer_that_is_no_batch_norm_has_its_state_trained_and_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``train`` updates the state of any layer that declares some (its ``init_state`` is
    not empty), not only batch norm's, and hands it back in History.running; the checks
    hold ``running`` to the keys and shapes that layer declares.  Before, train updated
    state only when the network had a batch norm (this layer's mean stayed at 0), and a
    network without one took no ``running`` at all."""
    monkeypatch.setitem(LAYERS, "RunningMean", RunningMean)
    seq = Sequential([Dense(3, 4), RunningMean(4), Activation("tanh"), Dense(4, 1)], "mse")
    rng = np.random.default_rng(0)
    params = hw.init_params(seq, rng, "glorot_uniform")
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 1))
    history = hw.train(seq, params, x, y, hw.OptimizerSpec("sgd", 0.1), epochs=2,
                       batch_size=2, record_every=1)
    mean = np.zeros(4)                             # by hand: the Dense's output, each step
    for step, before in enumerate(history.params[:-1]):
        rows = x[2 * (step % 3):2 * (step % 3) + 2]
        mean = 0.9 * mean + 0.1 * (rows @ before[0]["W"] + before[0]["b"]).mean(axis=0)
    assert [set(node) for node in history.running] == [set(), {"mean"}, set(), set()]
    assert_leaf_close(history.running[1]["mean"], mean, "running mean after 6 steps",
                      rtol=1e-13)
    final = history.params[-1]
    checks.check_params(seq, final)
    checks.check_running(seq, history.running, np.dtype(np.float64))
    hw.predict(seq, final, x, history.running)
    with pytest.raises(ValueError, match="running is required: the Sequential has layers "
                                         "that carry state"):
        hw.predict(seq, final, x)
    wrong = [{}, {"mean": np.zeros(3)}, {}, {}]
    with pytest.raises(ValueError, match=r"running\[1\]\['mean'\] must have shape \(4,\)"):
        hw.predict(seq, final, x, wrong)
    with pytest.raises(TypeError, match=r"running\[1\] \(layer 1, RunningMean\(num_features="
                                        r"4\)\) must be a dict with 'mean'"):
        hw.predict(seq, final, x, [{}, {"var": np.ones(4)}, {}, {}])


def test_a_param_named_by_its_layer_passes_the_optimizers_checks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A param named ``weight`` (an Embedding's, an LSTM's ``weight_ih``: torch's names, no
    W or b) is taken by every check that has no spec at hand -- the optimizers'
    ``init_state``, ``step`` and ``update``, so ``train`` too -- and held to the layer's
    ``param_shapes`` by those that have one.  Before, the optimizers refused any key set
    but a Dense's, a norm's or a convolution's."""
    monkeypatch.setitem(LAYERS, "Scale", Scale)
    seq = Sequential([Dense(3, 4), Scale(4), Activation("tanh"), Dense(4, 1)], "mse")
    rng = np.random.default_rng(0)
    params = hw.init_params(seq, rng, "glorot_uniform")
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 1))
    loss, grads = hw.loss_and_grads(seq, params, x, y)
    sgd = hw.OptimizerSpec("sgd", 0.1)
    for opt in (sgd, hw.OptimizerSpec("adam", 0.01)):
        state = hw.init_state(opt, params)
        stepped, _ = hw.step(opt, params, grads, state)
        hw.update(opt, grads, state, params)
        assert [set(node) for node in stepped] == [{"W", "b"}, {"weight"}, set(), {"W", "b"}]
    stepped, _ = hw.step(sgd, params, grads, hw.init_state(sgd, params))
    np.testing.assert_array_equal(stepped[1]["weight"],
                                  params[1]["weight"] - 0.1 * grads[1]["weight"])
    history = hw.train(seq, params, x, y, sgd, epochs=2)
    assert history.losses[0] == loss and history.losses[1] < loss
    with pytest.raises(TypeError, match=r"params\[1\] \(layer 1, Scale\(num_features=4\)\) "
                                        r"must be a dict with keys \['weight'\], got \['W'\]"):
        hw.loss_and_grads(seq, [params[0], {"W": params[1]["weight"]}, *params[2:]], x, y)


def test_a_problem_draws_a_new_layers_params_from_its_own_init(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``Problem`` (the suite's and ``bpnet check``'s cases) names and shapes a node's
    params by its layer's ``init``, moved off its start (weight 1 + U(-1, 1) / 2), with no
    line of bpnet/problems.py for the layer.  Before, a layer it did not know got {}."""
    monkeypatch.setitem(LAYERS, "Scale", Scale)
    seq = Sequential([Dense(3, 4), Scale(4), Activation("tanh"), Dense(4, 1)], "mse")
    p = Problem(seq, 5, 0)
    assert [set(node) for node in p.params] == [{"W", "b"}, {"weight"}, set(), {"W", "b"}]
    weight = p.params[1]["weight"]
    assert weight.dtype == np.float64 and np.all(np.abs(weight - 1.0) <= 0.5)
    assert len(set(weight.tolist())) == 4
    hw.loss_and_grads(seq, p.params, p.x, p.y)


@dataclass(frozen=True)
class DecayedScale(Scale):
    """Scale whose ``weight`` the spec's weight decay covers, as an Embedding's would be:
    it declares it, and its backward adds lambda * weight to d_weight."""

    DECAYED: ClassVar[tuple[str, ...]] = ("weight",)

    def backward(self, p: dict[str, Any], cache: Any, d_out: np.ndarray, ctx: Any,
                 need_d_in: bool = True) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        d_h, grads, inner = super().backward(p, cache, d_out, ctx, need_d_in)
        return d_h, {"weight": grads["weight"] + ctx.weight_decay * p["weight"]}, inner


def _decay_parts(seq: Sequential, params: list[dict[str, np.ndarray]], x: np.ndarray,
                 y: np.ndarray, masks: Any, decay: float) -> tuple[float, float, Any, Any]:
    """(loss with decay, loss without, grads with, grads without) of one problem."""
    with_decay, without = (replace(seq, weight_decay=w) for w in (decay, 0.0))
    loss_w, grads_w = hw.loss_and_grads(with_decay, params, x, y, masks)
    loss_0, grads_0 = hw.loss_and_grads(without, params, x, y, masks)
    return float(loss_w), float(loss_0), grads_w, grads_0


def _assert_decay_is_what_the_layers_declare(seq: Sequential, params: Any, x: np.ndarray,
                                             y: np.ndarray, masks: Any = None) -> None:
    decay = 0.3
    loss_w, loss_0, grads_w, grads_0 = _decay_parts(seq, params, x, y, masks, decay)
    penalty = decay / 2 * sum(float(np.sum(p[k] ** 2)) for (_, layer), p
                              in zip(seq.nodes, params) for k in layer.DECAYED)
    assert penalty > 0, "the case holds no decayed param: it could not fail"
    # the two losses share their data term bit for bit, and the penalty above is formed as
    # the fold forms it (the same squares summed in the same order), so what is left is
    # one rounding in adding it to the data term and one in subtracting that again
    assert loss_w - loss_0 == pytest.approx(penalty, rel=0, abs=4 * EPS64 * abs(loss_w))
    for (path, layer), p, g_w, g_0 in zip(seq.nodes, params, grads_w, grads_0):
        assert set(layer.DECAYED) <= set(p), f"node {path}: DECAYED names no param of its"
        for k in g_0:
            if k in layer.DECAYED:    # d_p + lambda p, then minus d_p: one rounding of each
                np.testing.assert_allclose(g_w[k] - g_0[k], decay * p[k], rtol=0,
                                           atol=4 * EPS64 * np.max(np.abs(g_w[k])),
                                           err_msg=f"node {path} d_{k}")
            else:                     # the decay touches nothing else: bit for bit
                np.testing.assert_array_equal(g_w[k], g_0[k], err_msg=f"node {path} d_{k}")


def test_weight_decay_covers_the_params_a_layer_declares(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The loss's L2 penalty sums over each layer's ``DECAYED`` params, whatever they are
    named (an Embedding's ``weight``), and the layer's gradient carries lambda p for each.
    Before, the loss (and both references') summed every param named ``W`` and nothing
    else: this layer's weight went undecayed in the loss while its backward decayed it."""
    monkeypatch.setitem(LAYERS, "DecayedScale", DecayedScale)
    seq = Sequential([Dense(3, 4), DecayedScale(4), Activation("tanh"), Dense(4, 1)], "mse")
    rng = np.random.default_rng(0)
    params = hw.init_params(seq, rng, "glorot_uniform")
    params[1]["weight"] = params[1]["weight"] + rng.uniform(-0.5, 0.5, 4)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 1))
    _assert_decay_is_what_the_layers_declare(seq, params, x, y)


LAYER_CASE = LAYER_CASES[1]
"""Dense, BatchNorm1d and LayerNorm (inside a Residual); CONV_CASES hold the rest."""


@pytest.mark.parametrize("case", range(1 + len(CONV_CASES)))
def test_every_layer_kind_decays_what_it_declares(case: int) -> None:
    """Every layer kind with params (Dense, the convolutions, every norm, between them the
    cases below) adds to its gradients the decay of exactly the params it names in
    ``DECAYED``, as the loss adds their penalty: its backward is held to its declaration
    (the references, which differentiate the loss, hold the rest)."""
    seq = [LAYER_CASE, *CONV_CASES][case]
    p = Problem(seq, 4, 7, labels=seq.loss == "softmax_cross_entropy")
    kinds = {type(layer).__name__ for _, layer in seq.nodes if layer.DECAYED}
    assert kinds, "the case decays nothing"
    _assert_decay_is_what_the_layers_declare(seq, p.params, p.x, p.y, p.masks)


def test_every_layer_kind_declares_its_decayed_params() -> None:
    """DECAYED is part of the contract: every registered kind states it, a kind with params
    in its own class (not by Stateless's default none: an Embedding that mixed it in would
    go undecayed without a word), and it names only params the kind has."""
    for name, cls in LAYERS.items():
        assert isinstance(getattr(cls, "DECAYED", None), tuple), f"{name} declares no DECAYED"
        owner = next(k for k in cls.__mro__ if "DECAYED" in vars(k))
        if hasattr(cls, "param_shapes"):
            assert owner is not Stateless, f"{name} has params but Stateless's DECAYED"
    for seq in (LAYER_CASE, *CONV_CASES):
        for path, layer in seq.nodes:
            shapes = layer.param_shapes() if hasattr(layer, "param_shapes") else {}
            assert set(layer.DECAYED) <= set(shapes), f"node {path} {layer!r}"
    assert {name for name, cls in LAYERS.items() if cls.DECAYED} == {"Dense", "Conv1d",
                                                                     "Conv2d"}
