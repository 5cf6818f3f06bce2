"""The one comparison helper: walk params- or trace-shaped structures, report every leaf.

Checks keys, then shape, then dtype, then values, and names each leaf
("layer 1 d_W").  A trace is reported in the order the derivation computes it —
forward z and a from the input up, then the loss, then d_a, d_z, d_W, d_b from
the output layer down — so the first failing report is the first derivation step
that disagrees.  ``bpnet.check.cross_check`` builds on it; ``param_divergence``
is the one measure of how far two sets of params have drifted apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import handwritten as hw
from bpnet.tolerances import (
    SPREAD_FACTOR,
    TWIN_FACTOR,
    TWIN_GRADIENT_NOISE,
    batch_sum_terms,
    trajectory_rtol,
)
from handwritten.layers import Sequential
from handwritten.spec import BACKWARD_QUANTITIES as BACKWARD
from handwritten.spec import FORWARD_QUANTITIES as FORWARD
from handwritten.spec import State
from handwritten.training import update_running


@dataclass(frozen=True)
class LeafReport:
    """How one array of one implementation compares with the same array of another."""

    quantity: str              # "loss", "z", "a", "d_a", "d_z", "d_W", "d_b", "W", "b", ...
    layer: int | None          # None for the loss
    max_abs: float
    max_rel: float
    rtol: float
    atol: float
    ok: bool
    problem: str = ""          # a structural mismatch (missing key, shape, dtype), if any
    used: float = 0.0          # the largest error as a share of what the tolerance allows
                               # there (<= 1 passes): meaningful where max_rel is not (an
                               # entry of the reference is 0, or below the absolute floor)
    path: str | None = None    # a Sequential's node path ("4.1"), named in place of layer

    @property
    def label(self) -> str:
        if self.layer is None:
            return self.quantity
        return f"layer {self.path if self.path is not None else self.layer} {self.quantity}"

    def __str__(self) -> str:
        if self.problem:
            return f"{self.label}: {self.problem}"
        verdict = "ok" if self.ok else "FAIL"
        return (f"{self.label}: max abs err {self.max_abs:.3g}, max rel err {self.max_rel:.3g} "
                f"(rtol {self.rtol:.3g}, atol {self.atol:.3g}) {verdict}")


def compare_leaf(actual: Any, expected: Any, quantity: str, layer: int | None, *, rtol: float,
                 atol_scale: float = 0.0, atol: float = 0.0, check_dtype: bool = True,
                 mask: np.ndarray | None = None) -> LeafReport:
    """|actual - expected| <= atol + atol_scale * max|expected| + rtol * |expected|, everywhere.

    The absolute floor scales with the array's largest magnitude: entries that cancel
    to ~0 carry no relative accuracy (see bpnet.tolerances).
    """
    a, e = np.asarray(actual), np.asarray(expected)
    if a.shape != e.shape:
        return LeafReport(quantity, layer, np.inf, np.inf, rtol, atol, False,
                          f"shape {a.shape}, expected {e.shape}")
    if check_dtype and a.dtype != e.dtype:
        return LeafReport(quantity, layer, np.inf, np.inf, rtol, atol, False,
                          f"dtype {a.dtype}, expected {e.dtype}")
    if mask is not None:
        a, e = a[mask], e[mask]
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    diff, ref = np.abs(a64 - e64), np.abs(e64)
    floor = atol + atol_scale * (float(ref.max()) if ref.size else 0.0)
    ok = bool(np.all(diff <= floor + rtol * ref))            # NaN anywhere fails
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(ref > 0, diff / ref, np.where(diff > 0, np.inf, 0.0))
    # a NaN on either side is a NaN error (np.where would turn a NaN reference into 0)
    rel[np.isnan(diff)] = np.nan
    max_abs = float(np.max(diff)) if diff.size else 0.0
    max_rel = float(np.max(rel)) if rel.size else 0.0
    allowed = floor + rtol * ref
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(allowed > 0, diff / allowed, np.where(diff > 0, np.inf, 0.0))
    share[np.isnan(diff)] = np.nan
    used = float(np.max(share)) if share.size else 0.0
    return LeafReport(quantity, layer, max_abs, max_rel, rtol, floor, ok, used=used)


def compare_layers(actual: Sequence[Mapping[str, Any]], expected: Sequence[Mapping[str, Any]],
                   keys: Sequence[str], *, rtol: float, atol_scale: float = 0.0,
                   reverse: bool = False, check_dtype: bool = True) -> list[LeafReport]:
    """Reports for the given keys of every layer (output layer first if ``reverse``)."""
    reports = []
    if len(actual) != len(expected):
        return [LeafReport("layers", None, np.inf, np.inf, rtol, 0.0, False,
                           f"{len(actual)} layers, expected {len(expected)}")]
    order = range(len(expected) - 1, -1, -1) if reverse else range(len(expected))
    for l in order:
        for key in keys:
            if key not in expected[l] and key not in actual[l]:
                continue
            if key not in expected[l] or key not in actual[l]:
                side = "expected" if key not in expected[l] else "actual"
                reports.append(LeafReport(key, l, np.inf, np.inf, rtol, 0.0, False,
                                          f"missing from the {side} side"))
                continue
            reports.append(compare_leaf(actual[l][key], expected[l][key], key, l, rtol=rtol,
                                        atol_scale=atol_scale, check_dtype=check_dtype))
    return reports


def compare_trace(actual: Any, expected: Any, *, rtol: float, atol_scale: float,
                  check_dtype: bool = True, spread: Any | None = None) -> list[LeafReport]:
    """Every quantity of two traces, in derivation order (forward, loss, backward).

    ``spread``: a second reference's trace of the same case.  Each quantity may then also
    differ from ``expected`` by SPREAD_FACTOR times the two references' own largest
    difference in it -- where a quantity is the residue of a cancellation (a norm's
    backward over few entries), equally valid evaluation orders differ by more than a
    fixed relative tolerance, and the references' disagreement measures by how much."""
    forward = compare_layers(actual.layers, expected.layers, FORWARD, rtol=rtol,
                             atol_scale=atol_scale, check_dtype=check_dtype)
    loss = compare_leaf(actual.loss, expected.loss, "loss", None, rtol=rtol,
                        atol_scale=atol_scale, check_dtype=check_dtype)
    backward = compare_layers(actual.layers, expected.layers, BACKWARD, rtol=rtol,
                              atol_scale=atol_scale, reverse=True, check_dtype=check_dtype)
    reports = [*forward, loss, *(_bias_on_its_terms(r, actual, expected, rtol, atol_scale,
                                                    check_dtype) for r in backward)]
    if spread is None:
        return reports
    return [_within_the_spread(r, actual, expected, spread, rtol, atol_scale, check_dtype)
            for r in reports]


def _with_floor(report: LeafReport, actual: Any, expected: Any, extra: float, rtol: float,
                check_dtype: bool) -> LeafReport:
    """``report``'s quantity compared again, its absolute floor (``report.atol``, which
    holds atol_scale's share already) raised by ``extra``."""
    return compare_leaf(actual, expected, report.quantity, report.layer, rtol=rtol,
                        atol=report.atol + extra, check_dtype=check_dtype)


def _within_the_spread(report: LeafReport, actual: Any, expected: Any, spread: Any,
                       rtol: float, atol_scale: float, check_dtype: bool) -> LeafReport:
    if report.ok or report.problem or report.layer is None:
        return report
    l, q = report.layer, report.quantity
    if q not in spread.layers[l]:
        return report
    theirs = np.asarray(expected.layers[l][q], dtype=np.float64)
    other = np.asarray(spread.layers[l][q], dtype=np.float64)
    if theirs.shape != other.shape:
        return report
    extra = SPREAD_FACTOR * float(np.abs(theirs - other).max(initial=0.0))
    return _with_floor(report, actual.layers[l][q], expected.layers[l][q], extra, rtol,
                       check_dtype)


def _bias_on_its_terms(report: LeafReport, actual: Any, expected: Any, rtol: float,
                       atol_scale: float, check_dtype: bool) -> LeafReport:
    """d_b = sum of d_z over the batch (and a norm's d_beta, d_gamma: sums of d_n, d_n
    x_hat, ``bpnet.tolerances.batch_sum_terms``).  Where the sum cancels (exactly 0 in a
    layer with batch norm, whose d_z sums to 0 over the batch) no tolerance on its own
    scale holds: it is as accurate as its terms, each allowed rtol |term| + the terms'
    floor.  So its absolute floor is what those allowances add up to over the batch -- the
    tolerance the terms passed with, carried through the sum (a wrong sum is wrong on the
    scale of the terms)."""
    l, q = report.layer, report.quantity
    if report.ok or l is None or report.problem:
        return report
    terms = batch_sum_terms(expected.layers[l]).get(q)
    if terms is None or terms.size == 0:
        return report
    extra = float((rtol * terms.sum(axis=0)).max()) + atol_scale * terms.shape[0] * float(
        terms.max())
    return _with_floor(report, actual.layers[l][q], expected.layers[l][q], extra, rtol,
                       check_dtype)


R_FORWARD = tuple(f"R{{{q}}}" for q in FORWARD)
R_BACKWARD = tuple(f"R{{{q}}}" for q in BACKWARD)
"""The R-quantities a layer or node of an R-trace may hold, in the order the passes form
them: the tangents of the trace's forward quantities, then R of its backward ones."""


def compare_r_trace(actual: Sequence[Mapping[str, Any]], expected: Sequence[Mapping[str, Any]],
                    *, rtol: float, atol_scale: float, check_dtype: bool = True,
                    spread: Sequence[Mapping[str, Any]] | None = None,
                    terms: Sequence[Mapping[str, np.ndarray]] | None = None,
                    paths: Sequence[str] | None = None) -> list[LeafReport]:
    """Two R-operator traces (``handwritten.derivatives.r_trace``), in the order the passes
    form them: R{z}, R{a} (a Sequential's node: every forward quantity's R{.}) from the
    input up, then R{d_a}, R{d_z}, R{d_W}, R{d_b} (every backward quantity's) from the
    output layer down -- the first failing report is the first wrong second-order step.

    ``spread``: a second reference's R-trace of the same case, as in ``compare_trace``: a
    quantity may also differ from ``expected`` by SPREAD_FACTOR times the two references'
    own largest difference in it (a norm's R-backward, like its backward, is the residue of
    a cancellation).  ``terms``: per layer (node), {R-name: |terms|, leading batch axis} of
    each R-quantity that is a sum over the batch (R{d_W}, R{d_b}, R{d_gamma}, R{d_beta}):
    judged on the scale of its terms, as ``compare_trace`` judges d_b (it is 0 in exact
    arithmetic where a batch norm follows).  ``paths``: a Sequential's node paths, named in
    each report."""
    forward = compare_layers(actual, expected, R_FORWARD, rtol=rtol,
                             atol_scale=atol_scale, check_dtype=check_dtype)
    backward = compare_layers(actual, expected, R_BACKWARD, rtol=rtol, atol_scale=atol_scale,
                              reverse=True, check_dtype=check_dtype)
    reports = []
    for r in (*forward, *backward):
        l, q = r.layer, r.quantity
        if not r.ok and not r.problem and l is not None:
            extra = 0.0
            found = None if terms is None else terms[l].get(q)
            if found is not None and found.size:
                extra += float((rtol * found.sum(axis=0)).max()) + \
                    atol_scale * found.shape[0] * float(found.max())
            if spread is not None and q in spread[l]:
                theirs = np.asarray(expected[l][q], dtype=np.float64)
                other = np.asarray(spread[l][q], dtype=np.float64)
                if theirs.shape == other.shape:
                    extra += SPREAD_FACTOR * float(np.abs(theirs - other).max(initial=0.0))
            if extra:
                r = _with_floor(r, actual[l][q], expected[l][q], extra, rtol, check_dtype)
        reports.append(r if paths is None or l is None else dataclasses.replace(r, path=paths[l]))
    return reports


def compare_params(actual: Sequence[Mapping[str, Any]], expected: Sequence[Mapping[str, Any]],
                   *, rtol: float, atol_scale: float, check_dtype: bool = True
                   ) -> list[LeafReport]:
    """Params- or grads-shaped structures, leaf by leaf (W, b, and a norm's gamma, beta;
    input layer first)."""
    return compare_layers(actual, expected, ("W", "b", "gamma", "beta"), rtol=rtol,
                          atol_scale=atol_scale, check_dtype=check_dtype)


LERP_BUFFERS = {"adam": ("m", "beta1"), "adamw": ("m", "beta1"), "rmsprop": ("gbar", "alpha")}
"""The running means torch.optim evaluates as a lerp, m + fl(1 - beta) (g - m) (Adam's and
AdamW's exp_avg.lerp_(grad, 1 - beta1), centered RMSprop's grad_avg.lerp_(grad, 1 - alpha)):
the buffer and the hyperparameter that weights it."""


def torch_lerp_state(optimizer: hw.OptimizerSpec, state: State) -> State:
    """``state`` with each lerp buffer (LERP_BUFFERS) scaled by beta' / beta, where
    beta' = 1 - fl(1 - beta) is the weight torch's lerp gives the old value: handwritten's
    beta m + (1 - beta) g from this state is then torch's m + fl(1 - beta) (g - m).

    The two differ by a rounding of beta itself (the lerp's terms are m and g, so it rounds
    on the scale of |m| + |g|): nothing for beta1 = 0.9, but for beta below 2**-53
    fl(1 - beta) is 1 and torch's m is g exactly, dropping beta m -- which shows where g is
    rounding noise far below m (the bias of a batch-norm layer, a dead unit's 0).  One step
    from this state is the one-step properties' twin (``compare_step``)."""
    buffer, weight = LERP_BUFFERS.get(optimizer.name, ("", ""))
    if buffer not in state or state.get("t", 0) == 0:
        return state
    beta = float(optimizer.hyperparams[weight])
    effective = 1.0 - (1.0 - beta)
    ratio = effective / beta if beta else 1.0
    return {**state, buffer: [{k: v * v.dtype.type(ratio) for k, v in layer.items()}
                              for layer in state[buffer]]}


def compare_step(actual: tuple[hw.Params, State], expected: tuple[hw.Params, State], *,
                 rtol: float, atol_scale: float,
                 twin: tuple[hw.Params, State] | None = None) -> list[LeafReport]:
    """One optimizer step, (new params, new state) of two implementations: the params, then
    every buffer of the state (named "m W", "v b", ...; t is an integer and not compared).

    ``twin``: the primary's step from ``torch_lerp_state`` -- a leaf may then also differ
    by its own difference from the twin (the rounding of the lerp's weight, as torch
    evaluates it), entry by entry summed into the absolute floor as the largest one."""
    (params, state), (their_params, their_state) = actual, expected
    pairs = [("", params, their_params, None if twin is None else twin[0])]
    pairs += [(f"{key} ", state[key], their_state.get(key, []), None if twin is None
               else twin[1][key]) for key in sorted(state.keys() - {"t"})]
    reports = []
    for prefix, ours, theirs, other in pairs:
        for report in compare_params(ours, theirs, rtol=rtol, atol_scale=atol_scale):
            if not report.ok and not report.problem and other is not None \
                    and report.layer is not None:
                l, k = report.layer, report.quantity
                spread = float(np.abs(np.asarray(ours[l][k], np.float64)
                                      - np.asarray(other[l][k], np.float64)).max(initial=0.0))
                report = _with_floor(report, ours[l][k], theirs[l][k], spread, rtol,
                                     check_dtype=True)
            reports.append(dataclasses.replace(report, quantity=prefix + report.quantity))
    return reports


def first_failure(reports: Sequence[LeafReport]) -> LeafReport | None:
    """The first report that failed: the first derivation step that disagrees."""
    return next((r for r in reports if not r.ok), None)


def param_divergence(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> float:
    """Normwise distance of two params-shaped structures: max |a - b| over every leaf,
    relative to max |a| over every leaf (the parameter-divergence metric of every
    trajectory comparison: ``bpnet compare`` and the suite's trajectory envelope)."""
    scale = max(float(np.abs(v).max()) for p in a for v in p.values())
    diff = max(float(np.abs(np.asarray(p[k], np.float64) - np.asarray(q[k], np.float64)).max())
               for p, q in zip(a, b) for k in p)
    return diff / max(scale, float(np.finfo(np.float64).tiny))


def twin_run(spec: hw.NetworkSpec | Sequential, params: hw.Params, x: np.ndarray, y: np.ndarray,
             optimizer: hw.OptimizerSpec, schedule: hw.Schedule, seed: int,
             running: hw.Running | None = None) -> tuple[list[float], list[hw.Params]]:
    """handwritten's training replayed over the same schedule, with every gradient leaf
    perturbed by TWIN_GRADIENT_NOISE times that leaf's largest magnitude at the first step,
    in a fixed sign pattern drawn from ``seed``: its losses and recorded params.  (Near
    convergence a gradient is a cancellation whose rounding error stays at the scale of its
    terms, so the noise keeps the first step's scale.)  How far it drifts from the unperturbed
    run is the growth the trajectory envelope allows (bpnet.tolerances).

    Hidden blocks: the schedule's dropout masks are used (a Schedule built with the problem
    and an rng draws them as ``train`` does), batch norm's running statistics play no part
    in training; and the bias of a batch-norm layer, whose gradient is 0 in exact arithmetic
    (a sum of d_z that cancels), is perturbed on the scale of its terms, sum |d_z| over the
    batch -- the rounding every implementation leaves in it.  ``running`` (from
    ``hw.init_running``), if given, is updated in place as ``train`` updates it."""
    signs = [{k: np.random.default_rng(seed + l).choice([-1.0, 1.0], v.shape)
              for k, v in layer.items()} for l, layer in enumerate(params)]
    state = hw.init_state(optimizer, params)
    losses, recorded = [], [params]
    scale: list[dict[str, float]] = []
    for batch in schedule:
        xb, yb = x[batch.rows], y[batch.rows]
        loss, grads = hw.loss_and_grads(spec, params, xb, yb, batch.masks)
        if running is not None:
            assert isinstance(spec, hw.NetworkSpec), "running: a NetworkSpec's (train keeps a " \
                "Sequential's)"
            update_running(running, hw.forward(spec, params, xb, batch.masks)[1], xb.shape[0])
        if not scale:
            scale = [{k: float(np.abs(g).max(initial=0.0)) for k, g in layer.items()}
                     for layer in grads]
            if isinstance(spec, Sequential):
                # a sum over the batch (d_b, d_beta, d_gamma) on its terms' scale: a bias a
                # batch norm follows sums to 0, and its rounding is on the terms' scale
                if spec.has_batch_norm:
                    found = hw.trace(spec, params, xb, yb, batch.masks).layers
                    for node, layer in zip(scale, found):
                        for key, terms in batch_sum_terms(layer).items():
                            if key.removeprefix("d_") in node:
                                node[key.removeprefix("d_")] = max(
                                    node[key.removeprefix("d_")],
                                    float(terms.sum(axis=0).max(initial=0.0)))
            elif "batch" in spec.norms:
                layers = hw.trace(spec, params, xb, yb, batch.masks).layers
                for l, norm in enumerate(spec.norms):
                    if norm == "batch":
                        scale[l]["b"] = float(np.abs(layers[l]["d_z"]).sum(axis=0).max())
        noisy: hw.Params = [{k: g + TWIN_GRADIENT_NOISE * scale[l][k] * signs[l][k]
                             for k, g in layer.items()} for l, layer in enumerate(grads)]
        params, state = hw.step(optimizer, params, noisy, state)
        losses.append(float(loss))
        if batch.record:
            recorded.append(params)
    return losses, recorded


def envelope(steps: Sequence[int], ours: Sequence[Any], twin: Sequence[Any]) -> np.ndarray:
    """The largest param_divergence allowed between two implementations' params after each
    recorded step k: trajectory_rtol(k) + TWIN_FACTOR * (the twin's drift at k)."""
    return np.array([trajectory_rtol(k) + TWIN_FACTOR * param_divergence(a, b)
                     for k, a, b in zip(steps, ours, twin)])
