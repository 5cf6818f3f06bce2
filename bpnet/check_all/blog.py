"""The blog group: the blog's program (handwritten/seed.py) against each reference's general
network."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any

import handwritten as hw
from bpnet.check import CheckReport
from bpnet.check_all.report import Case
from bpnet.compare import LeafReport, compare_leaf
from bpnet.equations import qualname
from bpnet.problems import Problem
from bpnet.tolerances import ATOL64_SCALE, RTOL64
from handwritten import seed


def blog_cases(impls: Mapping[str, ModuleType]) -> Iterator[Case]:
    """seed.forward, backward, loss, update and train against each reference's general
    network on BLOG_SPEC (random non-zero biases)."""
    p = Problem(seed.BLOG_SPEC, 20, 6)

    def run() -> CheckReport:
        w1, b1, w2, b2 = seed.from_params(p.params)
        z1, a1, z2, a2 = seed.forward(p.x, w1, b1, w2, b2)
        dw1, db1, dw2, db2 = seed.backward(p.x, p.y, w1, b1, w2, b2, z1, a1, z2, a2)
        lr, epochs = 0.1, 5
        stepped = seed.update(w1, b1, w2, b2, dw1, db1, dw2, db2, lr)
        trained = seed.train(p.x, p.y, w1, b1, w2, b2, lr, epochs, verbose=False)[:4]
        ours: dict[str, tuple[Any, Callable[..., Any], str]] = {
            "z1": (z1, seed.forward, "z1 = x @ w1 + b1"),
            "a1": (a1, seed.forward, "a1 = sigmoid(z1)"),
            "z2": (z2, seed.forward, "z2 = a1 @ w2 + b2"),
            "a2": (a2, seed.forward, "a2 = sigmoid(z2)"),
            "printed loss": (seed.loss(p.y, a2), seed.loss, "mean((y - a2)**2 / 2)"),
            "dw2": (dw2, seed.backward, "dw2 = a1.T @ dz2"),
            "db2": (db2, seed.backward, "db2 = dz2.sum(axis=0)"),
            "dw1": (dw1, seed.backward, "dw1 = x.T @ dz1"),
            "db1": (db1, seed.backward, "db1 = dz1.sum(axis=0)"),
            **{f"update: {k}": (v, seed.update, f"{k} - lr * d{k}")
               for k, v in zip(("w1", "b1", "w2", "b2"), stepped)},
            **{f"train {epochs} epochs: {k}": (v, seed.train, "the update, epoch times")
               for k, v in zip(("w1", "b1", "w2", "b2"), trained)}}
        cells: dict[tuple[str, str], LeafReport] = {}
        values: dict[tuple[str, str], tuple[Any, Any]] = {}
        mean_spec = dataclasses.replace(seed.BLOG_SPEC, reduction="mean")
        opt = hw.OptimizerSpec("sgd", lr)
        for name, impl in list(impls.items())[1:]:
            t = impl.trace(seed.BLOG_SPEC, p.params, p.x, p.y)
            g = impl.loss_and_grads(seed.BLOG_SPEC, p.params, p.x, p.y)[1]
            one, _ = impl.step(opt, p.params, g, hw.init_state(opt, p.params))
            run_ = impl.train(seed.BLOG_SPEC, p.params, p.x, p.y, opt, epochs=epochs)
            theirs = {"z1": t.layers[0]["z"], "a1": t.layers[0]["a"], "z2": t.layers[1]["z"],
                      "a2": t.layers[1]["a"],
                      "printed loss": impl.trace(mean_spec, p.params, p.x, p.y).loss,
                      "dw2": t.layers[1]["d_W"], "db2": t.layers[1]["d_b"],
                      "dw1": t.layers[0]["d_W"], "db1": t.layers[0]["d_b"],
                      **{f"update: {k}": v for k, v in zip(
                          ("w1", "b1", "w2", "b2"), seed.from_params(one))},
                      **{f"train {epochs} epochs: {k}": v for k, v in zip(
                          ("w1", "b1", "w2", "b2"), seed.from_params(run_.final_params))}}
            for row, (a, _, _) in ours.items():
                cells[row, name] = dataclasses.replace(compare_leaf(
                    a, theirs[row], row, None, rtol=RTOL64, atol_scale=ATOL64_SCALE),
                    quantity=row)
                values[row, name] = (a, theirs[row])
        where = {row: (eq, qualname(fn)) for row, (_, fn, eq) in ours.items()}
        return CheckReport(seed.BLOG_SPEC, p.batch, "handwritten.seed", tuple(list(impls)[1:]),
                           tuple(ours), cells, values, where)

    yield "blog", "seed.py vs the general network", repr(p), run
