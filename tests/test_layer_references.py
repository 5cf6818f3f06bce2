"""Random Sequentials (layers in any valid order) through handwritten's fold against
reference_torch's and reference_jax's layers (the forward in each framework, autograd for
the rest): every trace quantity of every node, the loss and gradients, predict in
evaluation mode, jvp, per-example gradients, and a layer kind without its counterpart in a
reference refused by name.  The framework-free checks of Sequentials (finite differences,
the compiled NetworkSpec) are in tests/test_layers.py.

Float64 throughout, at the suite's policy (bpnet.tolerances): RTOL64 with the absolute
floor ATOL64_SCALE * max|reference|; a sum over the batch (d_b, d_beta, d_gamma) judged on
the scale of its terms (it cancels to 0 where a batch norm follows); and, as for hidden
blocks, SPREAD_FACTOR times the two references' own difference, since a norm's backward
(and its tangent) is the residue of a cancellation whose rounding depends on the order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bpnet.check_all import CONV_CASES
from bpnet.compare import LeafReport, compare_leaf, compare_trace, first_failure
from bpnet.problems import Problem, replay_command
from bpnet.tolerances import ATOL64_SCALE, RTOL64, SPREAD_FACTOR, batch_sum_terms
from handwritten import checks
from handwritten.layers import (
    LAYERS,
    Activation,
    BatchNorm1d,
    Dense,
    Dropout,
    LayerNorm,
    Residual,
    Sequential,
    fold,
)
from handwritten.layers.base import Stateless
from tests.helpers import assert_unchanged, at_most, snapshot
from tests.strategies import sequential_problems

pytest.importorskip("torch")
pytest.importorskip("jax")
import reference_jax as rj
import reference_jax.derivatives as jax_derivatives
import reference_jax.layers as jax_layers
import reference_torch as rt
import reference_torch.derivatives as torch_derivatives
import reference_torch.layers as torch_layers

# Every entry point as the references expose it (the dispatch on Sequential included).
REFERENCES: dict[str, Any] = {
    "reference_torch": {"trace": rt.trace, "loss_and_grads": rt.loss_and_grads,
                        "predict": rt.predict, "jvp": torch_derivatives.jvp,
                        "per_example_grads": torch_derivatives.per_example_grads},
    "reference_jax": {"trace": rj.trace, "loss_and_grads": rj.loss_and_grads,
                      "predict": rj.predict, "jvp": jax_derivatives.jvp,
                      "per_example_grads": jax_derivatives.per_example_grads},
}
OTHER = {"reference_torch": "reference_jax", "reference_jax": "reference_torch"}
LAYER_TABLES = {"reference_torch": torch_layers, "reference_jax": jax_layers}

# Each example compiles a JAX program per entry point (the Sequential is static): few of them.
FEW = at_most(30)
SEQUENTIALS = sequential_problems(max_layers=4, max_width=5, max_batch=6)
SEEDS = st.integers(0, 2**32 - 1)

# Hand-picked cases, run first by every property, so that each part of the contract is met
# whatever the draws: a norm first, two activations in a row, a Residual around several
# layers (one inside another), dropout with p = 0 and with a mask, a network that starts
# with an activation or ends with a Residual, each fused loss, labels.
CASES = [
    Problem(Sequential([LayerNorm(4), Dense(4, 4), Activation("tanh"), Activation("elu:1.7"),
                        Residual([Dense(4, 4), BatchNorm1d(4), Activation("gelu"),
                                  Dropout(0.4)]),
                        Dropout(0.0), Dense(4, 3), Activation("softmax")],
                       "softmax_cross_entropy", "mean", 0.1), batch=5, seed=1, labels=True),
    Problem(Sequential([Activation("sigmoid"), Dense(3, 3),
                        Residual([Residual([Activation("silu"), Dropout(0.3)]), Dense(3, 4),
                                  LayerNorm(4), Dense(4, 3)]),
                        Activation("selu"), Dense(3, 2), Activation("sigmoid")],
                       "bce_with_logits", "sum", 0.0, in_features=3), batch=4, seed=2),
    Problem(Sequential([Dense(2, 4), BatchNorm1d(4), Dense(4, 4), Activation("softplus"),
                        Residual([Activation("leaky_relu:0.2"), Dense(4, 4)])],
                       "half_mse", "mean", 0.1), batch=6, seed=3),
    Problem(Sequential([Dense(3, 4), LayerNorm(4), Activation("celu:0.5"),
                        Dropout(0.5), Dense(4, 2), Activation("sigmoid")],
                       "bce", "sum", 0.0), batch=3, seed=4),
]


def _cases_first(cases: Sequence[Problem] | None = None, **drawn: Any) -> Any:
    """Every one of ``cases`` (CASES) as an explicit example (the other drawn arguments as
    given)."""
    def decorate(prop: Any) -> Any:
        for case in reversed(CASES if cases is None else cases):
            prop = example(p=case, **drawn)(prop)
        return prop
    return decorate


def _context(p: Problem) -> str:
    return f"{p!r}\nreplay: {replay_command(repr(p))}"


# zeros into leaky_relu: the derivative's convention at 0 ------------------------------------


def _exact_zero_into_leaky_relu(seq: Sequential, params: Any, x: np.ndarray, masks: Any
                                ) -> bool:
    """Whether an input of a leaky_relu Activation is exactly 0: a dropped unit or a relu's
    negative side (or a chain of f(0) = 0 after either) delivers one.  handwritten and
    torch take the slope there (z > 0 ? 1 : slope); jax.nn.leaky_relu takes 1 (z >= 0), so
    reference_jax writes the where itself.  A difference would show only in the trace, in
    the d_ quantities between the zero's source and the leaky_relu (the source's own
    derivative there is 0: the mask, relu's flat side)."""
    _, caches = fold.forward(seq, params, x, fold.Pass(masks=masks))
    return any((caches[i]["z"] == 0).any() for i, (_, layer) in enumerate(seq.nodes)
               if isinstance(layer, Activation) and layer.name.startswith("leaky_relu"))


# the comparisons, per node ---------------------------------------------------------------


def _same_names(seq: Sequential, ours: Sequence[Mapping[str, Any]],
                theirs: Sequence[Mapping[str, Any]], context: str) -> None:
    """One dict per node on both sides, with the same names in each."""
    assert len(theirs) == len(ours) == len(seq.nodes), f"{context}: {len(theirs)} nodes"
    for (path, layer), mine, ref in zip(seq.nodes, ours, theirs):
        assert sorted(ref) == sorted(mine), (f"{context}: layer {path} {layer!r} has "
                                             f"{sorted(ref)}, handwritten {sorted(mine)}")


def _trace_reports(seq: Sequential, ours: Any, theirs: Any, spread: Any | None
                   ) -> list[LeafReport]:
    """bpnet.compare.compare_trace (forward up, the loss, backward down; a batch sum on its
    terms' scale; the references' spread), each report named by its node's path."""
    return [r if r.layer is None else replace(r, path=seq.paths[r.layer])
            for r in compare_trace(ours, theirs, rtol=RTOL64, atol_scale=ATOL64_SCALE,
                                   spread=spread)]


def _leaf(actual: Any, expected: Any, other: Any, label: str,
          terms: np.ndarray | None = None) -> LeafReport:
    """compare_leaf at RTOL64 and ATOL64_SCALE, its absolute floor raised as compare_trace
    raises a trace quantity's: by SPREAD_FACTOR times the two references' own largest
    difference (``other``: the second reference's value), and for a sum over the batch by
    what its terms' allowances add up to (``terms``: bpnet.tolerances.batch_sum_terms)."""
    extra = SPREAD_FACTOR * float(np.abs(np.asarray(expected, dtype=np.float64)
                                         - np.asarray(other, dtype=np.float64)).max(
                                             initial=0.0))
    if terms is not None and terms.size:
        extra += float((RTOL64 * terms.sum(axis=0)).max()) + \
            ATOL64_SCALE * terms.shape[0] * float(terms.max())
    return compare_leaf(actual, expected, label, None, rtol=RTOL64, atol_scale=ATOL64_SCALE,
                        atol=extra)


def _params_reports(seq: Sequential, ours: Sequence[Mapping[str, Any]],
                    theirs: Sequence[Mapping[str, Any]], other: Sequence[Mapping[str, Any]],
                    terms: Sequence[Mapping[str, np.ndarray]] | None = None
                    ) -> list[LeafReport]:
    """Params-shaped lists (gradients, per-example gradients), node by node: ``terms`` per
    node, by param name, for the gradients that are sums over the batch."""
    return [_leaf(mine[k], ref[k], oth[k], f"layer {path} {k}",
                  None if terms is None else terms[i].get(k))
            for i, ((path, _), mine, ref, oth) in enumerate(zip(seq.nodes, ours, theirs, other))
            for k in mine]


def _assert_ok(reports: Sequence[LeafReport], context: str) -> None:
    bad = first_failure(reports)
    assert bad is None, f"{context}\nfirst disagreement: {bad}"


def _both(name: str, *args: Any) -> dict[str, Any]:
    return {ref: calls[name](*args) for ref, calls in REFERENCES.items()}


# the properties --------------------------------------------------------------------------


@FEW
@given(p=SEQUENTIALS)
@_cases_first()
def test_every_node_quantity_matches_torch_and_jax(p: Problem) -> None:
    """Each node's forward quantities (z, a, mu, var, x_hat, n, out), the loss, then its d_
    quantities (d_out, d_a, d_n, d_x_hat, d_z, d_W, d_b, d_gamma, d_beta) from the output
    down: the same names per node, shapes, dtypes, values.  No input is modified."""
    check_every_node_quantity_matches_torch_and_jax(p)


def check_every_node_quantity_matches_torch_and_jax(p: Problem) -> None:
    seq = p.spec
    ours = fold.trace(seq, p.params, p.x, p.y, p.masks)
    before = snapshot(p.params, p.x, p.y, p.masks)
    theirs = _both("trace", seq, p.params, p.x, p.y, p.masks)
    assert_unchanged(before, p.params, p.x, p.y, p.masks)
    for name, trace in theirs.items():
        context = f"trace vs {name}: {_context(p)}"
        _same_names(seq, ours.layers, trace.layers, context)
        _assert_ok(_trace_reports(seq, ours, trace, theirs[OTHER[name]]), context)


@FEW
@given(p=SEQUENTIALS)
@_cases_first()
def test_loss_and_grads_match_torch_and_jax(p: Problem) -> None:
    """The loss, and every node's gradients with its params' keys ({} where it has none);
    d_b, d_beta, d_gamma on the scale of their terms."""
    check_loss_and_grads_match_torch_and_jax(p)


def check_loss_and_grads_match_torch_and_jax(p: Problem) -> None:
    seq = p.spec
    loss, grads = fold.loss_and_grads(seq, p.params, p.x, p.y, p.masks)
    terms = [{k.removeprefix("d_"): v for k, v in batch_sum_terms(node).items()}
             for node in fold.trace(seq, p.params, p.x, p.y, p.masks).layers]
    theirs = _both("loss_and_grads", seq, p.params, p.x, p.y, p.masks)
    for name, (their_loss, their_grads) in theirs.items():
        context = f"loss_and_grads vs {name}: {_context(p)}"
        _same_names(seq, p.params, their_grads, context)
        other_loss, other = theirs[OTHER[name]]
        _assert_ok([_leaf(loss, their_loss, other_loss, "loss"),
                    *_params_reports(seq, grads, their_grads, other, terms)], context)


def _running(seq: Sequential, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Running statistics as a training run leaves them: a mean, a positive variance."""
    return [{"mean": rng.uniform(-1, 1, shape), "var": rng.uniform(0.5, 2, shape)}
            if isinstance(layer, BatchNorm1d) else {}          # BatchNorm2d: one per channel
            for (_, layer), shape in zip(seq.nodes, (s[:1] for s in seq.in_shapes))]


@FEW
@given(p=SEQUENTIALS, seed=SEEDS)
@_cases_first(seed=0)
def test_predict_in_evaluation_mode_matches_torch_and_jax(p: Problem, seed: int) -> None:
    """Evaluation mode: no dropout, batch norm with drawn running statistics."""
    check_predict_in_evaluation_mode_matches_torch_and_jax(p, seed)


def check_predict_in_evaluation_mode_matches_torch_and_jax(p: Problem, seed: int) -> None:
    seq = p.spec
    running = _running(seq, np.random.default_rng(seed))
    ours = fold.predict(seq, p.params, p.x, running)
    theirs = _both("predict", seq, p.params, p.x, running)
    for name, out in theirs.items():
        _assert_ok([_leaf(ours, out, theirs[OTHER[name]], "predict's output")],
                   f"predict vs {name}: {_context(p)}")


def _direction(params: Sequence[Mapping[str, np.ndarray]], rng: np.random.Generator
               ) -> list[dict[str, np.ndarray]]:
    """A params-shaped direction v, each entry in [-1, 1]."""
    return [{k: rng.uniform(-1, 1, w.shape) for k, w in node.items()} for node in params]


@FEW
@given(p=SEQUENTIALS, seed=SEEDS)
@_cases_first(seed=0)
def test_jvp_matches_torch_func_and_jax_jvp(p: Problem, seed: int) -> None:
    """The output (training mode, the given masks) and its tangent along a drawn v."""
    check_jvp_matches_torch_func_and_jax_jvp(p, seed)


def check_jvp_matches_torch_func_and_jax_jvp(p: Problem, seed: int) -> None:
    seq = p.spec
    v = _direction(p.params, np.random.default_rng(seed))
    out, out_dot = fold.jvp(seq, p.params, p.x, v, p.masks)
    theirs = _both("jvp", seq, p.params, p.x, v, p.masks)
    for name, (their_out, their_dot) in theirs.items():
        other_out, other_dot = theirs[OTHER[name]]
        _assert_ok([_leaf(out, their_out, other_out, "jvp's output"),
                    _leaf(out_dot, their_dot, other_dot, "jvp's output tangent")],
                   f"jvp vs {name}: {_context(p)}")


@FEW
@given(p=SEQUENTIALS)
@_cases_first()
def test_per_example_grads_match_or_all_three_refuse_batch_norm(p: Problem) -> None:
    """Each sample's own gradient, one dict per node with a leading batch axis; with a
    BatchNorm1d (training mode couples the samples) all three refuse, naming it."""
    check_per_example_grads_match_or_all_three_refuse_batch_norm(p)


def check_per_example_grads_match_or_all_three_refuse_batch_norm(p: Problem) -> None:
    seq = p.spec
    args = (seq, p.params, p.x, p.y, p.masks)
    if seq.has_batch_norm:
        with pytest.raises(NotImplementedError, match=r"BatchNorm[12]d.*whole batch"):
            fold.per_example_grads(*args)
        for calls in REFERENCES.values():
            with pytest.raises(NotImplementedError, match=r"BatchNorm[12]d.*whole batch"):
                calls["per_example_grads"](*args)
        return
    ours = fold.per_example_grads(*args)
    assert [{k: g.shape for k, g in n.items()} for n in ours] == \
        [{k: (p.batch, *w.shape) for k, w in n.items()} for n in p.params]
    theirs = _both("per_example_grads", *args)
    for name, per in theirs.items():
        context = f"per_example_grads vs {name}: {_context(p)}"
        _same_names(seq, ours, per, context)
        _assert_ok(_params_reports(seq, ours, per, theirs[OTHER[name]]), context)


# an exact zero into leaky_relu --------------------------------------------------------------

ZERO_INTO_LEAKY = Problem(Sequential([Dense(3, 4), Dropout(0.5), Activation("leaky_relu:0.3"),
                                      Dense(4, 4), Activation("relu"), Activation("leaky_relu"),
                                      Dense(4, 2)], "mse", "mean", 0.1), batch=6, seed=5)


def test_an_exact_zero_into_leaky_relu_changes_no_gradient_tangent_or_output() -> None:
    """Dropped units and relu's flat side feed leaky_relu exact zeros
    (``_exact_zero_into_leaky_relu``): every param's gradient, the per-example gradients and
    the tangent agree there too."""
    p = ZERO_INTO_LEAKY
    assert _exact_zero_into_leaky_relu(p.spec, p.params, p.x, p.masks)
    for prop in (test_loss_and_grads_match_torch_and_jax,
                 test_per_example_grads_match_or_all_three_refuse_batch_norm):
        prop.hypothesis.inner_test(p=p)
    test_jvp_matches_torch_func_and_jax_jvp.hypothesis.inner_test(p=p, seed=0)


def test_both_references_take_the_slope_of_leaky_relu_at_zero() -> None:
    """The trace's d_ quantities between the zero's source and the leaky_relu (a dropout's
    d_out, a relu's d_a): at exactly 0, torch's derivative is the slope, and so are
    handwritten's and reference_jax's (jax.nn.leaky_relu's is 1: reference_jax/
    activations.py writes the where itself)."""
    p = ZERO_INTO_LEAKY
    ours = fold.trace(p.spec, p.params, p.x, p.y, p.masks)
    theirs = _both("trace", p.spec, p.params, p.x, p.y, p.masks)
    for name in ("reference_torch", "reference_jax"):     # torch first: it must agree
        # no spread: the other reference is the one in question
        _assert_ok(_trace_reports(p.spec, ours, theirs[name], None),
                   f"trace vs {name}: {_context(p)}")


# a layer kind without its counterpart ------------------------------------------------------

EVERY_KIND = [CASES[0], *(Problem(seq, 4, 7, labels=seq.loss == "softmax_cross_entropy")
                          for seq in CONV_CASES)]
"""Sequentials that hold every kind of layer between them (CASES[0], the convolution
chapter's cases of check --all)."""


def _holding(kind: str) -> Problem:
    return next(p for p in EVERY_KIND
                if kind in {type(layer).__name__ for _, layer in p.spec.nodes})


def _calls(p: Problem, calls: Mapping[str, Any]) -> list[Any]:
    running = _running(p.spec, np.random.default_rng(0))
    return [lambda: calls["trace"](p.spec, p.params, p.x, p.y, p.masks),
            lambda: calls["loss_and_grads"](p.spec, p.params, p.x, p.y, p.masks),
            lambda: calls["predict"](p.spec, p.params, p.x, running),
            lambda: calls["jvp"](p.spec, p.params, p.x, p.params, p.masks),
            lambda: calls["per_example_grads"](p.spec, p.params, p.x, p.y, p.masks)]


def test_every_layer_kind_has_its_counterpart_in_each_reference() -> None:
    assert {type(layer).__name__ for p in EVERY_KIND for _, layer in p.spec.nodes} == set(LAYERS)
    for module in LAYER_TABLES.values():
        assert set(module.LAYERS) == set(LAYERS), module.__name__


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_a_layer_kind_missing_from_a_reference_is_refused_by_name(
        name: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each entry point refuses a Sequential holding a kind its LAYERS lacks, with
    checks.no_counterpart's line -- before anything runs (no jitted program of the same
    Sequential, traced earlier, is reused in its place)."""
    monkeypatch.delitem(LAYER_TABLES[name].LAYERS, kind)
    where = f"{name}/layers.py (LAYERS)"
    for call in _calls(_holding(kind), REFERENCES[name]):
        with pytest.raises(NotImplementedError) as error:
            call()
        assert str(error.value) == checks.no_counterpart("layer", kind, where)


class Identity(Stateless):
    """A layer kind handwritten might add next (torch.nn.Identity): the input unchanged,
    no params and no state (``Stateless``: every layer declares its state, and a
    Sequential reads it when built)."""

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return in_shape

    def __repr__(self) -> str:
        return "Identity()"


def test_a_layer_kind_added_to_handwritten_alone_is_refused_by_both(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(LAYERS, "Identity", Identity)
    seq = Sequential([Dense(3, 2), Identity(), Activation("tanh")], "mse")
    p = Problem(seq, batch=4, seed=0)
    for name, calls in REFERENCES.items():
        for call in _calls(p, calls):
            with pytest.raises(NotImplementedError) as error:
                call()
            assert str(error.value) == checks.no_counterpart(
                "layer", "Identity", f"{name}/layers.py (LAYERS)")
