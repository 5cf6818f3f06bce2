"""`bpnet check --all`, the diagnosis of a failure, --replay and the registry-gap message."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, settings

import handwritten as hw
from bpnet import check_all, cli
from bpnet.check import CheckReport, cross_check
from bpnet.diagnose import error_shape, implementing
from bpnet.problems import Problem, make_params, replay_command
from handwritten.activations import Activation
from tests.mutations import MUTATIONS, ROOT, Mutation, run

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")

PLANTED = [m for m in MUTATIONS if m.planted]


# the whole command, on the code as it is and on each planted mistake ---------------------

def test_check_all_passes_and_covers_every_registered_name(capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    assert cli.main(["check", "--all", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and all(e["ok"] for e in result["entries"])
    names = {(e["group"], e["name"].split(" ")[0]) for e in result["entries"]}
    for group, registry in (("activation", hw.ACTIVATIONS), ("loss", hw.LOSSES),
                            ("optimizer", hw.OPTIMIZERS)):
        assert {(group, n) for n in registry} <= names, group
    assert {("init", s) for s in hw.INIT_SCHEMES} <= names
    assert {e["name"] for e in result["entries"] if e["group"] == "loss"} >= {
        f"{n} ({r}" + ("" if hw.LOSSES[n].targets != "class" else ", labels") + ")"
        for n in hw.LOSSES for r in hw.REDUCTIONS}
    assert any(e["group"] == "blog" for e in result["entries"])


def test_there_are_the_five_planted_mistakes() -> None:
    assert {m.name for m in PLANTED} == {
        "tanh_grad_1_minus_a", "db_mean_not_sum", "adam_no_second_bias_correction",
        "softmax_ce_divided_by_batch_twice", "weight_decay_on_biases"}
    assert all(m.shown for m in PLANTED)


NAMED = [m for m in MUTATIONS if m.shown]
"""The planted mistakes, every curated one of the hidden blocks, amsgrad's and clipping's:
check --all must catch each and name, first, the quantity and the function where it is."""


@pytest.mark.mutation
@pytest.mark.parametrize("mutation", NAMED, ids=[m.name for m in NAMED])
def test_check_all_catches_a_mistake_and_names_its_function_first(
        mutation: Mutation, record_property: Callable[[str, object], None]) -> None:
    caught, output, seconds = run(mutation, check_all=True)
    record_property("mutation", (f"{mutation.name} (check --all)",
                                 "bpnet check --all" if caught else "MISSED", seconds))
    assert caught, f"{mutation.name} passed bpnet check --all:\n{output}"
    verdict = output[output.index(" cases FAIL ("):]
    for text in mutation.shown:
        assert text in verdict, f"{mutation.name}: {text!r} not in\n{verdict}"


def test_the_readmes_softmax_example_catches_the_gradient_divided_twice() -> None:
    """With "mean" now the default off the blog's network, the README's `bpnet check` example
    sees softmax-CE divided by the batch twice (with the blog's "sum" it passed)."""
    mutation = next(m for m in PLANTED if m.name == "softmax_ce_divided_by_batch_twice")
    readme = (ROOT / "README.md").read_text()
    line = next(x for x in readme.splitlines() if "bpnet check --layers" in x)
    args = line.split("bpnet ", 1)[1].split()
    caught, output, _ = run(mutation, command=["-m", "bpnet.cli", *args, "--quiet"])
    assert caught, output
    assert "handwritten.losses.softmax_cross_entropy_grad" in output
    # the old default: with "sum", n = 1 and the second division is invisible
    caught, output, _ = run(mutation, command=["-m", "bpnet.cli", *args, "--quiet",
                                               "--reduction", "sum"])
    assert not caught, output


# the diagnosis -----------------------------------------------------------------------------

SPEC = hw.NetworkSpec((3, 4, 2), ("tanh", "identity"), "mse", "mean", weight_decay=0.1)
RNG = np.random.default_rng(0)
E = RNG.uniform(0.5, 2.0, (8, 4)) * RNG.choice([-1, 1], (8, 4))


def _shape(ours: np.ndarray, theirs: np.ndarray = E, **kw: object) -> str:
    return error_shape(ours, theirs, rtol=1e-10, atol=1e-14, spec=SPEC, batch=8, **kw)


@pytest.mark.parametrize("factor, name", [(1 / 8, "1/batch"), (8.0, "batch"), (-1.0, "-1"),
                                          (2.0, "2"), (0.5, "1/n_outputs"), (0.1, "weight_decay")])
def test_a_constant_ratio_is_named(factor: float, name: str) -> None:
    shape = _shape(E * factor)
    assert shape.startswith("a constant ratio") and shape.endswith(" x reference")
    assert f"= {name} " in shape


def test_an_unnamed_constant_ratio_is_given_as_a_number() -> None:
    assert _shape(E * 3.7).startswith("a constant ratio: handwritten = 3.7 x reference")
    assert "= 1/sqrt(1 - beta2**t)" in _shape(E * 11.2, constants={"1/sqrt(1 - beta2**t)": 11.2})


def test_a_transposed_match_is_named() -> None:
    square = RNG.normal(size=(4, 4))
    assert "transposed" in _shape(square.T, square)
    assert "transposed" in _shape(E.T)          # a shape mismatch that is a transpose


def test_an_error_in_one_sample_or_one_unit_is_located() -> None:
    row, col = E.copy(), E.copy()
    row[3, :] += 1.0
    col[:, 2] *= 1.5
    assert "one row (sample 3)" in _shape(row)
    assert "one column (unit 2)" in _shape(col)


def test_an_error_on_one_side_of_z_or_in_the_saturated_entries_is_located() -> None:
    z = RNG.normal(0, 3, E.shape)
    negative, saturated = E.copy(), E.copy()
    negative[z <= 0] *= 0.3
    saturated[np.abs(z) > 2] += 1e-3
    assert "where z <= 0" in _shape(negative, z=z)
    assert "saturated entries (|z| > 2)" in _shape(saturated, z=z, saturation=2.0)


def test_an_error_proportional_to_a_param_is_named() -> None:
    b = RNG.normal(size=4)
    d_b = RNG.normal(size=4)
    assert "= 0.1 = weight_decay x b1" in error_shape(
        d_b + 0.1 * b, d_b, rtol=1e-10, atol=1e-14, spec=SPEC, batch=8, related={"b1": b})


def test_no_pattern_says_so_with_the_range_of_ratios() -> None:
    noisy = E * RNG.uniform(0.5, 1.5, E.shape)
    assert _shape(noisy).startswith("no simple pattern (32 of 32 entries wrong); handwritten / "
                                    "reference from 0.5")


def _specs() -> list[hw.NetworkSpec]:
    """A small network per registered activation and per registered loss."""
    specs = []
    for name, act in sorted(hw.ACTIVATIONS.items()):
        specs.append(hw.NetworkSpec((2, 3, 3), ("tanh", name) if act.output_only
                                    else (name, "identity"), "mse"))
    for name, loss in sorted(hw.LOSSES.items()):
        out = sorted(loss.output_activations)[0] if loss.output_activations else "identity"
        specs.append(hw.NetworkSpec((2, 3, 3), ("tanh", out), name))
    return specs


@pytest.mark.parametrize("spec", _specs(), ids=str)
def test_every_trace_quantity_names_an_existing_function(spec: hw.NetworkSpec) -> None:
    import importlib

    labels = ["loss"] + [f"layer {l} {q}" for l in range(spec.n_layers)
                         for q in ("z", "a", "d_a", "d_z", "d_W", "d_b")]
    for label in labels:
        found = implementing(spec, label)
        assert found is not None, label
        module, _, function = found[1].rpartition(".")
        assert callable(getattr(importlib.import_module(module), function)), found


def _resolve(name: str) -> Any:
    """The object a dotted name such as handwritten.layers.norm.LayerNorm.r_backward
    names: the longest importable module, then attributes."""
    import importlib

    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute)
        return found
    raise ImportError(name)


@pytest.mark.parametrize("seq", [*check_all.LAYER_CASES, *check_all.CONV_CASES],
                         ids=lambda seq: ", ".join(type(l).__name__ for _, l in seq.nodes))
def test_every_r_quantity_of_a_sequential_names_its_layers_method(seq: hw.Sequential) -> None:
    """check --all's R-trace rows: every R-quantity that r_trace gives a node has an
    equation and names a function that exists -- the layer's tangent (tangents, a
    Residual's join), its r_backward, the r_backward of the layer above (a Residual's
    join_backward), or the loss's second derivative."""
    from handwritten import derivatives
    from handwritten.layers import Residual

    p = Problem(seq, 4, 0, labels=seq.loss == "softmax_cross_entropy")
    v = make_params(seq, np.random.default_rng(1), np.float64)
    methods = {"tangent", "tangents", "join", "r_backward", "join_backward"}
    for (path, layer), node in zip(seq.nodes, derivatives.r_trace(seq, p.params, p.x, p.y, v,
                                                                   p.masks)):
        for q in node:
            found = implementing(seq, f"layer {path} {q}")
            assert found is not None and "R{" in found[0], (path, q, found)
            assert callable(_resolve(found[1])), found
            owner, _, name = found[1].rpartition(".")
            assert name in methods or owner.startswith("handwritten.losses"), found
            if q.removeprefix("R{").removesuffix("}") in layer.FORWARD:
                assert owner.endswith(type(layer).__name__), found
        if isinstance(layer, Residual):
            assert implementing(seq, f"layer {path} R{{out}}") == (
                "R{out}: out = body(h) + h, differentiated along v",
                "handwritten.layers.residual.Residual.join")


BLOCK_SPEC = hw.NetworkSpec((3, 4, 4, 4, 2), ("tanh", "relu", "silu", "identity"), "mse",
                            norms=("layer", None, "batch"), dropout=(0.0, 0.25, 0.0),
                            residual=(False, True, True))


def test_a_blocks_equations_carry_the_mask_and_the_skip() -> None:
    """The equations a failure prints for a block layer are the layer's own: dropout's mask
    and 1/(1 - p), the skip's + a_prev in the forward and + d_a in d_a_prev, the
    activation's derivative taken at n and h behind a norm or dropout."""
    a1, f1 = implementing(BLOCK_SPEC, "layer 1 a")            # type: ignore[misc]
    assert a1 == "a1 = h1 * m1 / (1 - 0.25) + a0" and f1 == "handwritten.blocks.dropout"
    a2, f2 = implementing(BLOCK_SPEC, "layer 2 a")            # type: ignore[misc]
    assert a2 == "a2 = h2 + a1" and f2 == "handwritten.network.hidden_block"
    assert implementing(BLOCK_SPEC, "layer 0 d_a")[0] == (    # type: ignore[index]
        "d_a0 = d_z1 @ W1.T + d_a1")
    assert implementing(BLOCK_SPEC, "layer 2 d_a") == ("d_a2 = d_z3 @ W3.T",
                                                        "handwritten.network.backward")
    d_z1 = implementing(BLOCK_SPEC, "layer 1 d_z")
    assert d_z1 == ("d_z1 = d_h1 * [z1 > 0]", "handwritten.activations.relu_backward"), d_z1
    d_z0, function = implementing(BLOCK_SPEC, "layer 0 d_z")  # type: ignore[misc]
    assert d_z0.startswith("d_z0 = s/N (N d_x_hat0") and function.endswith("normalize_backward")
    assert implementing(BLOCK_SPEC, "layer 3 a") == ("a3 = identity(z3)",
                                                     "handwritten.activations.identity")


def test_random_states_make_every_buffer_act() -> None:
    """amsgrad's v_max >= v, equal in some entries and above in others: a maximum taken
    with anything but v_max changes the next step (the issue-21 mistake)."""
    opt = hw.OptimizerSpec("adam", 0.01, {"amsgrad": True})
    params = make_params(SPEC, np.random.default_rng(0), np.float64)
    state = check_all.random_state(opt, params, 4, np.random.default_rng(1))
    for v_layer, top_layer in zip(state["v"], state["v_max"]):
        for k in v_layer:
            v, top = v_layer[k], top_layer[k]
            assert np.all(top >= v)
            if v.size >= 8:
                assert np.any(top == v) and np.any(top > v), k


def test_the_cases_run_from_the_most_local_to_training() -> None:
    """Units and traces before whole runs: the clipping cases before any optimizer case
    that clips, block traces before the block training run, which is last."""
    impls = {"handwritten": hw, "reference_torch": None, "reference_jax": None}
    order = [(group, name) for group, name, _, _ in check_all.cases(impls)]  # type: ignore[arg-type]
    assert order[-1] == ("blocks", "training and evaluation")
    first_clipping = next(i for i, (g, _) in enumerate(order) if g == "clipping")
    assert all(not n.endswith("option)") and "drawn" not in n and "random state" not in n
               for g, n in order[:first_clipping] if g == "optimizer")
    blocks = [n for g, n in order if g == "blocks"]
    assert blocks.index("running statistics") > max(
        i for i, n in enumerate(blocks) if n.startswith("("))
    assert ("optimizer", "adam (every option, a random state)") in order


def test_a_case_that_raises_is_one_failing_line_naming_handwritten() -> None:
    """A mistake that breaks a shape raises inside handwritten: check --all reports the
    exception and the innermost function of handwritten, not a traceback."""
    from handwritten import blocks

    try:
        blocks.normalize_backward("batch", np.ones((4, 3)), np.ones((1, 2)), np.ones(3),
                                  np.ones((4, 3)))
    except ValueError as error:
        report = check_all.raised_report(error, {"handwritten": hw, "reference_torch": None})
    else:
        pytest.fail("normalize_backward took mismatched shapes")
    verdict = report.verdict()
    assert not report.ok and "\n" not in verdict
    assert "ValueError" in verdict and verdict.endswith("-- handwritten.blocks.normalize_backward")


def test_a_column_without_meaningful_relative_errors_shows_its_share_of_the_tolerance(
        ) -> None:
    """--all prints each case's largest relative error; where a reference entry is 0 (any
    relative error, inf included, may pass under the absolute floor) it prints the largest
    error as a share of what the tolerance allows instead."""
    from bpnet.compare import compare_leaf

    exact = compare_leaf(np.array([1.0, 2.0]), np.array([1.0, 2.0 * (1 + 1e-15)]), "q", 0,
                         rtol=1e-10, atol_scale=1e-12)
    near_zero = compare_leaf(np.array([1.0, 1e-13]), np.array([1.0, 0.0]), "q", 1,
                             rtol=1e-10, atol_scale=1e-12)
    assert near_zero.ok and near_zero.max_rel == np.inf and near_zero.used == pytest.approx(0.1)
    report = CheckReport(SPEC, 8, "handwritten", ("reference_torch",), ("a", "b"),
                         {("a", "reference_torch"): exact, ("b", "reference_torch"): near_zero})
    assert report.worst_text("reference_torch") == "10% of tol"
    alone = dataclasses.replace(report, rows=("a",), cells={("a", "reference_torch"): exact})
    assert alone.worst_text("reference_torch") == f"{exact.max_rel:.1e}"
    wrong = compare_leaf(np.array([1.0, 3.0]), np.array([1.0, 0.0]), "q", 1, rtol=1e-10,
                         atol_scale=1e-12)
    assert dataclasses.replace(report, cells={("b", "reference_torch"): wrong}).worst_text(
        "reference_torch").endswith("x tol")


def test_a_failing_report_carries_the_diagnosis_and_the_replay_line() -> None:
    class HalfGradient:                      # handwritten with d_b divided by the batch
        trace = staticmethod(hw.trace)

        @staticmethod
        def loss_and_grads(*args):  # type: ignore[no-untyped-def]
            loss, grads = hw.loss_and_grads(*args)
            return loss, [{"W": g["W"], "b": g["b"] / 8} for g in grads]

    import reference_torch

    p = Problem(SPEC, 8, 1)
    report = cross_check(p.spec, p.params, p.x, p.y,
                         {"handwritten": HalfGradient, "reference_torch": reference_torch})
    message = report.message(repr(p))
    assert "layer 1 d_b (loss_and_grads)" in message
    assert "handwritten.network.backward" in message
    assert "= 1/batch x reference" in message
    assert replay_command(repr(p)) in message


def test_hypothesis_profiles_have_no_explain_phase() -> None:
    """Its "explanation" was always the failure message's own formatting: a red herring."""
    assert Phase.explain not in settings().phases


# --replay ----------------------------------------------------------------------------------

def test_the_suites_problem_line_replays_exactly() -> None:
    p = Problem(hw.NetworkSpec((3, 5, 4), ("elu", "softmax"), "softmax_cross_entropy", "sum",
                               0.1), batch=6, seed=123, labels=True, scale=6.0)
    again = check_all.parse_problem(repr(p))
    assert repr(again) == repr(p)
    for a, b in zip(again.params, p.params):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    assert np.array_equal(again.x, p.x) and np.array_equal(again.y, p.y)


@pytest.mark.parametrize("text", ["os.system('ls')", "Problem(NetworkSpec(*open('x')))",
                                  "Problem(", "3"])
def test_replay_evaluates_nothing_but_literals(text: str) -> None:
    with pytest.raises(ValueError, match="--replay"):
        check_all.parse_problem(text)


def test_check_replay_equals_the_plain_check_of_the_same_case(
        capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--layers", "3,4,2", "--activations", "tanh,identity", "--loss", "mse",
            "--reduction", "mean", "--batch", "5", "--seed", "9"]
    assert cli.main(["check", *args, "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert cli.main(["check", "--replay", plain["case"], "--json"]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["rows"] == plain["rows"]


# honest defaults and the optimizer ---------------------------------------------------------

@pytest.mark.parametrize("args, reduction", [
    ([], "sum"),                                                      # the blog's network
    (["--layers", "3,5,4", "--activations", "tanh,softmax", "--loss",
      "softmax_cross_entropy"], "mean"),
    (["--loss", "mse"], "mean"),
    (["--layers", "1,10,1", "--reduction", "sum", "--loss", "mse"], "sum")])
def test_the_blogs_sum_is_the_default_only_for_the_blogs_network(
        args: list[str], reduction: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", *args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["spec"]["reduction"] == reduction


def test_check_with_an_optimizer_shows_every_buffer(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "--optimizer", "adam"]) == 0
    out = capsys.readouterr().out
    for row in ("step 1: m of layer 0 W", "step 1: v of layer 1 b", "step 3: update of layer 0 W",
                "step 3: layer 1 b"):
        assert row in out


def test_check_uses_non_zero_biases(capsys: pytest.CaptureFixture[str]) -> None:
    """Weight decay wrongly applied to the biases is invisible with zero biases."""
    p = Problem(hw.NetworkSpec((3, 4, 2), ("tanh", "identity"), "mse", "mean", 0.1), 8, 0)
    assert all(np.all(layer["b"] != 0) for layer in p.params)


# a registered name without its references --------------------------------------------------

@pytest.fixture
def mish(monkeypatch: pytest.MonkeyPatch) -> None:
    """An activation added to handwritten only, as a student would add one."""
    act = Activation(lambda z: z * np.tanh(np.log1p(np.exp(z))), lambda z, a, d: d, "d_a * ?")
    monkeypatch.setitem(hw.ACTIVATIONS, "mish", act)


@pytest.mark.usefixtures("mish")
@pytest.mark.parametrize("args", [
    ["check", "--all"], ["check", "--layers", "2,3,1", "--activations", "mish,identity"],
    ["compare", "--activations", "mish,identity", "--epochs", "2"],
    ["explain", "--layers", "2,3,1", "--activations", "mish,identity", "--values", "2"]])
def test_a_name_without_a_reference_counterpart_is_one_line_and_exit_2(
        args: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    extra = ["--out", str(tmp_path / "c.png")] if args[0] == "compare" else []
    assert cli.main([*args, *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"bpnet {args[0]}: error: activation 'mish' is registered "
                                   "in handwritten but has no counterpart in reference_torch/")


@pytest.mark.usefixtures("mish")
def test_the_suite_reports_the_gap_with_the_same_line() -> None:
    import reference_jax
    import reference_torch

    gaps = check_all.registry_gaps({"reference_torch": reference_torch,
                                    "reference_jax": reference_jax})
    assert len(gaps) == 2 and all("'mish'" in g for g in gaps)
