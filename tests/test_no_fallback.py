"""A name registered in handwritten without its counterpart in a reference is refused there,
by name, with the line ``bpnet check`` prints -- never run as something else.

For each registry of handwritten (bpnet.check_all.REGISTRIES: activations, losses,
optimizers, schedules, init schemes, norms) a new name is added to handwritten alone, as a
student would add one, and every reference entry point that meets it must raise
NotImplementedError naming it.  Before this test, reference_torch ran an unknown schedule as
a constant learning rate and an unknown norm as layer norm.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest

import handwritten as hw
from bpnet import check_all
from bpnet.problems import Problem, make_params, make_targets
from handwritten import checks, network, schedules, spec
from handwritten.layers import LAYERS, Activation, Dense, Sequential
from handwritten.layers.base import Stateless

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")

import reference_jax as rj  # noqa: E402
import reference_torch as rt  # noqa: E402
from reference_jax import bucketed  # noqa: E402
from reference_jax import network as jax_network  # noqa: E402
from reference_jax import schedules as jax_schedules  # noqa: E402
from reference_torch import network as torch_network  # noqa: E402
from reference_torch import schedules as torch_schedules  # noqa: E402

REFERENCES = {"reference_torch": rt, "reference_jax": rj}


def _problem(net: hw.NetworkSpec) -> tuple[Any, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    params = make_params(net, rng, np.float64)
    x = rng.uniform(-1.0, 1.0, (5, net.layer_sizes[0]))
    return params, x, make_targets(net, rng, 5, np.float64, True)


def _refused(kind: str, name: str, where: str, call: Callable[[], object]) -> None:
    with pytest.raises(NotImplementedError) as error:
        call()
    assert str(error.value) == checks.no_counterpart(kind, name, where)


def _network_calls(net: hw.NetworkSpec) -> dict[str, list[Callable[[], object]]]:
    """Every reference entry point a network reaches, by reference."""
    params, x, y = _problem(net)
    opt = hw.OptimizerSpec("sgd", 0.1)
    calls: dict[str, list[Callable[[], object]]] = {}
    for name, ref in REFERENCES.items():
        calls[name] = [lambda ref=ref: ref.loss_and_grads(net, params, x, y),
                       lambda ref=ref: ref.trace(net, params, x, y),
                       lambda ref=ref: ref.train(net, params, x, y, opt, epochs=1,
                                                 batch_size=5)]
    return calls


# adding a name to handwritten alone, one registry at a time --------------------------------

def _activation(monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, Any]]:
    monkeypatch.setitem(hw.ACTIVATIONS, "mish", hw.ACTIVATIONS["tanh"])
    net = hw.NetworkSpec((2, 3, 1), ("mish", "identity"), "mse")
    calls = _network_calls(net)
    params, x, _ = _problem(net)
    calls["reference_jax"].append(lambda: bucketed.trace(net, *_problem(net)))
    for ref in REFERENCES.values():
        calls[ref.__name__].append(lambda ref=ref: ref.predict(net, params, x))
    return "mish", calls


def _loss(monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, Any]]:
    monkeypatch.setitem(hw.LOSSES, "huber", hw.LOSSES["mse"])
    net = hw.NetworkSpec((2, 3, 1), ("tanh", "identity"), "huber")
    calls = _network_calls(net)
    params, x, y = _problem(net)
    v = [{k: np.ones_like(a) for k, a in p.items()} for p in params]
    calls["reference_jax"].append(lambda: bucketed.trace(net, params, x, y))
    for ref in ("reference_torch", "reference_jax"):
        derivatives = __import__(f"{ref}.derivatives", fromlist=["gnvp"])
        calls[ref] += [lambda d=derivatives: d.gnvp(net, params, x, y, v),
                       lambda d=derivatives: d.hvp(net, params, x, y, v)]
    return "huber", calls


def _optimizer(monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, Any]]:
    monkeypatch.setattr(spec, "OPTIMIZER_DEFAULTS", MappingProxyType(
        {**spec.OPTIMIZER_DEFAULTS, "lion": spec.OPTIMIZER_DEFAULTS["sgd"]}))
    monkeypatch.setitem(hw.OPTIMIZERS, "lion", hw.OPTIMIZERS["sgd"])
    opt = hw.OptimizerSpec("lion", 0.1)
    net = hw.NetworkSpec((2, 3, 1), ("tanh", "identity"), "mse")
    params, x, y = _problem(net)
    state = hw.init_state(opt, params)
    return "lion", {name: [lambda ref=ref: ref.step(opt, params, params, state),
                           lambda ref=ref: ref.train(net, params, x, y, opt, epochs=1)]
                    for name, ref in REFERENCES.items()}


def _schedule(monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, Any]]:
    monkeypatch.setattr(spec, "SCHEDULE_SETTINGS", MappingProxyType(
        {**spec.SCHEDULE_SETTINGS, "linear": {"total_steps": schedules.REQUIRED}}))
    monkeypatch.setitem(schedules.SCHEDULES, "linear",
                        lambda lr, k, s: lr * (1 - k / s["total_steps"]))
    schedule = hw.LRSchedule("linear", {"total_steps": 10})
    warm = hw.LRSchedule("linear", {"total_steps": 10}, warmup=2)
    net = hw.NetworkSpec((2, 3, 1), ("tanh", "identity"), "mse")
    params, x, y = _problem(net)
    calls: dict[str, list[Callable[[], object]]] = {}
    for (name, ref), module in zip(REFERENCES.items(), (torch_schedules, jax_schedules)):
        calls[name] = [lambda module=module: module.learning_rates(schedule, 0.1, 3),
                       lambda module=module: module.learning_rates(warm, 0.1, 3)]
        for s in (schedule, warm):
            opt = hw.OptimizerSpec("sgd", 0.1, schedule=s)
            calls[name] += [
                lambda ref=ref, opt=opt: ref.step(opt, params, params,
                                                  hw.init_state(opt, params)),
                lambda ref=ref, opt=opt: ref.train(net, params, x, y, opt, epochs=1)]
    return "linear", calls


def _init_scheme(monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, Any]]:
    monkeypatch.setattr(network, "INIT_SCHEMES", (*network.INIT_SCHEMES, "lecun_normal"))
    return "lecun_normal", {
        name: [lambda module=module: module.init_weight("lecun_normal", 3, 2, 0)]
        for name, module in (("reference_torch", torch_network),
                             ("reference_jax", jax_network))}


def _norm(monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, Any]]:
    monkeypatch.setattr(spec, "NORMS", (*spec.NORMS, "group"))
    net = hw.NetworkSpec((2, 3, 1), ("tanh", "identity"), "mse", norms=("group",))
    params, x, _ = _problem(net)
    calls = _network_calls(net)
    for ref in REFERENCES.values():
        calls[ref.__name__].append(lambda ref=ref: ref.predict(net, params, x))
    return "group", calls


class Identity(Stateless):
    """A layer kind handwritten might add next (torch.nn.Identity): the input unchanged,
    no params and no state (``Stateless``: every layer declares its state, and a
    Sequential reads it when built)."""

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return in_shape

    def __repr__(self) -> str:
        return "Identity()"


def _layer(monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, Any]]:
    monkeypatch.setitem(LAYERS, "Identity", Identity)
    seq = Sequential([Dense(3, 2), Identity(), Activation("tanh")], "mse")
    p = Problem(seq, batch=4, seed=0)
    calls: dict[str, list[Any]] = {}
    for ref in REFERENCES.values():
        derivatives = __import__(f"{ref.__name__}.derivatives", fromlist=["jvp"])
        calls[ref.__name__] = [
            lambda ref=ref: ref.loss_and_grads(seq, p.params, p.x, p.y),
            lambda ref=ref: ref.trace(seq, p.params, p.x, p.y),
            lambda ref=ref: ref.predict(seq, p.params, p.x),
            lambda d=derivatives: d.jvp(seq, p.params, p.x, p.params)]
    return "Identity", calls


ADD = {"activation": _activation, "loss": _loss, "optimizer": _optimizer,
       "schedule": _schedule, "init scheme": _init_scheme, "norm": _norm, "layer": _layer}


def test_every_registry_of_handwritten_is_tried() -> None:
    assert set(ADD) == set(check_all.REGISTRIES)


@pytest.mark.parametrize("kind", sorted(ADD))
def test_a_name_only_handwritten_has_is_refused_by_each_reference_by_name(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    name, calls = ADD[kind](monkeypatch)
    assert name in check_all._registry("handwritten", kind)
    gaps = check_all.registry_gaps(REFERENCES)
    assert len(gaps) == len(REFERENCES), gaps         # bpnet check's line, once per reference
    for ref, entry_points in calls.items():
        where = check_all._where(ref, kind)
        assert checks.no_counterpart(kind, name, where) in gaps
        for call in entry_points:
            _refused(kind, name, where, call)


@pytest.mark.parametrize("kind", sorted(ADD))
def test_every_registered_name_has_its_counterpart_in_both_references(kind: str) -> None:
    ours = set(check_all._registry("handwritten", kind))
    for ref in REFERENCES:
        assert set(check_all._registry(ref, kind)) == ours, (kind, ref)


def test_the_init_counterparts_draw_what_check_all_drew_before() -> None:
    """reference_torch.network.init_weight is the torch.nn.init draw check --all made
    (moved here from bpnet.check_all, bit for bit)."""
    gen = torch.Generator().manual_seed(0)
    w = torch.empty(4, 3, dtype=torch.float64)
    expected = torch.nn.init.xavier_uniform_(w, generator=gen).numpy().T
    np.testing.assert_array_equal(torch_network.init_weight("glorot_uniform", 3, 4, 0),
                                  expected)
    with jax.enable_x64(True):
        expected = np.asarray(jax.nn.initializers.he_normal()(
            jax.random.key(0), (3, 4), jax.numpy.float64))
    np.testing.assert_array_equal(jax_network.init_weight("he_normal", 3, 4, 0), expected)


def test_handwritten_refuses_an_init_scheme_it_has_no_rule_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """handwritten itself: a scheme added to INIT_SCHEMES without its rule in init_params was
    drawn as he_normal; now it is refused by name."""
    monkeypatch.setattr(network, "INIT_SCHEMES", (*network.INIT_SCHEMES, "lecun_normal"))
    net = hw.NetworkSpec((2, 3, 1), ("tanh", "identity"), "mse")
    with pytest.raises(NotImplementedError, match="'lecun_normal' is in INIT_SCHEMES but "
                                                  "draw_weight has no rule"):
        network.init_params(net, np.random.default_rng(0), scheme="lecun_normal")


@pytest.mark.parametrize("command", ["compare", "check"])
def test_the_command_line_refuses_an_optimizer_without_counterpart_on_one_line(
        command: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An optimizer (as a schedule, an init scheme, a norm) registered in handwritten alone
    is a usage error before anything runs -- exit 2, one line -- as an activation or a loss
    is; it reached the references and ended in a traceback before."""
    from bpnet.cli import main

    name, _ = _optimizer(monkeypatch)
    argv = [command, "--optimizer", name, "--quiet"]
    argv += ["--epochs", "1", "--out", str(tmp_path / "c.png")] if command == "compare" else []
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"bpnet {command}: error: "), err
    assert f"optimizer {name!r} is registered in handwritten but has no counterpart" in err[0]
