"""Second order and float32 of random Sequentials (every layer kind -- Dense, Activation,
BatchNorm1d and LayerNorm in training mode, Dropout with its masks, Residual -- in any valid
order) against torch and JAX: handwritten's hvp and gnvp (each layer's R-operator, folded
back: handwritten.layers.fold) against torch's double backward and JAX's forward over
reverse (reference_torch.layers / reference_jax.layers); a NetworkSpec with hidden blocks,
whose jvp, hvp, gnvp and per-example gradients handwritten takes through its compiled
Sequential's layers, against the references' own NetworkSpec forwards; and handwritten's
float32 trace of a Sequential as close to the float64 one as the frameworks' own float32
traces are.  What the products must be on their own (symmetric, a central difference of the
gradient, positive semi-definite, the compiled spec's) is in tests/test_layers.py.

Float64 at the suite's policy (bpnet.tolerances), as tests/test_second_order.py holds a
NetworkSpec's products: RTOL64 with the absolute floor ATOL64_SCALE * max|reference|.  A
Hessian product is a few operations deeper than the gradient (a tangent pass up, then R-terms
down beside the gradient's), so its rounding is still ~1e-15 relative, five orders below
RTOL64.  As for the gradients of Sequentials (tests/test_layer_references.py), a quantity
may also differ from one reference by SPREAD_FACTOR times the two references' own
difference in it: a norm's backward, and so its R-backward, is the residue of a cancellation
whose rounding depends on the evaluation order.  And every entry of H v and G v is a sum
over the batch (R{d_W} = sum_i R{h}_i^T d_z_i + h_i^T R{d_z}_i, R{d_b} = sum_i R{d_z}_i, ...;
the weight decay's lambda W_dot aside): it is judged on the scale of its terms, as the
gradients' batch sums are (bpnet.tolerances.batch_sum_terms), since where a norm makes the
loss invariant to a shift or a scale of its input -- a bias, or a one-wide W, that a batch
norm follows -- such a sum is 0 in exact arithmetic, and every implementation leaves its own
rounding of the terms in it (seen: a 1x1 W before two BatchNorm1d(1), its H v 6.5e-13 where
its terms sum to ~0.1, torch and JAX alike and handwritten 2.4e-17 away).  The terms come from
JAX (``_batch_sum_terms``): for H v, the tangent along v of autograd's gradient at every
node's output and of every node's forward quantities; for G v, the pullback of H_loss J v.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, target
from hypothesis import strategies as st

from bpnet.compare import compare_r_trace, first_failure
from bpnet.problems import Problem, make_params
from bpnet.tolerances import ATOL64_SCALE, RTOL64, f32_allowed, f32_scale
from handwritten import derivatives
from handwritten.layers import (
    Activation,
    Dense,
    LayerNorm,
    Residual,
    Sequential,
    compile_network,
    fold,
    network_masks,
    network_params,
)
from handwritten.spec import BACKWARD_QUANTITIES
from tests.helpers import assert_unchanged, at_most, output_d_a_error, snapshot
from tests.strategies import block_problems, sequential_problems

pytest.importorskip("torch")
pytest.importorskip("jax")
import jax
import jax.numpy as jnp

import reference_jax as rj
import reference_jax.derivatives as jax_derivatives
import reference_jax.layers as jax_layers
import reference_torch as rt
import reference_torch.derivatives as torch_derivatives
from reference_jax.losses import loss as jax_loss
from tests.test_layer_references import (
    CASES,
    OTHER,
    _assert_ok,
    _cases_first,
    _context,
    _leaf,
    _params_reports,
    _same_names,
)

# The entry points as the references expose them (their dispatch on Sequential included).
SECOND_ORDER: dict[str, Any] = {"reference_torch": torch_derivatives,
                                "reference_jax": jax_derivatives}
TRACES: dict[str, Any] = {"reference_torch": rt, "reference_jax": rj}

# Each example compiles a JAX program per entry point (the Sequential is static): few of them.
FEW = at_most(30)
SEQUENTIALS = sequential_problems(max_layers=4, max_width=5, max_batch=6)
SEEDS = st.integers(0, 2**32 - 1)


def _worst(reports: list[Any]) -> float:
    """The largest error as a share of its allowance, for Hypothesis's target()."""
    return max((r.used for r in reports if np.isfinite(r.used)), default=0.0)


def _jax_terms(params: Any, v: Any, x: jax.Array, y: jax.Array, masks: Any,
               seq: Sequential) -> tuple[Any, Any, Any, Any, Any]:
    """In JAX, per node: the forward quantities and their tangents along v; autograd's
    gradient at every graph quantity (z, a, x_hat, n, out: against zero perturbations, as
    reference_jax.layers' trace) and its tangent along v; and the Gauss-Newton pullback of
    H_loss J v to every graph quantity."""
    shapes = jax_layers.Pass(params, masks=masks)
    jax_layers.forward(seq, shapes, x)
    zero = [{k: jnp.zeros_like(t) for k, t in node.items() if k in jax_layers.GRAPH}
            for node in shapes.nodes]

    def gradient(p: Any) -> Any:
        def loss(dq: Any) -> Any:
            run = jax_layers.Pass(p, masks=masks, dq=dq)
            z, a = jax_layers.forward(seq, run, x)
            return jax_layers.loss_value(seq, p, z, a, y), run.nodes
        d_q, nodes = jax.grad(loss, has_aux=True)(zero)
        return nodes, d_q

    (nodes, d_q), (r_nodes, r_d_q) = jax.jvp(gradient, (params,), (v,))

    def loss_input(p: Any, dq: Any) -> jax.Array:
        z, a = jax_layers.forward(seq, jax_layers.Pass(p, masks=masks, dq=dq), x)
        return z if seq.fused_output else a

    def loss_of(o: jax.Array) -> jax.Array:           # each loss reads only its own input
        return jax_loss(seq.loss)(o, o, y, seq.reduction)

    o, j_v = jax.jvp(lambda p: loss_input(p, zero), (params,), (v,))
    _, h_j_v = jax.jvp(jax.grad(loss_of), (o,), (j_v,))
    (gn_q,) = jax.vjp(lambda dq: loss_input(params, dq), zero)[1](h_j_v)
    return nodes, r_nodes, d_q, r_d_q, gn_q


_jax_terms_jitted = jax.jit(_jax_terms, static_argnums=5)


def _inputs(seq: Sequential, outputs: list[np.ndarray], x: np.ndarray) -> list[np.ndarray]:
    """Every node's input from every node's output: the previous node of its body (or of
    the network), the input of its Residual for the first of a body, x for the first node."""
    index = {path: i for i, path in enumerate(seq.paths)}
    inputs: list[np.ndarray] = []
    for path in seq.paths:                  # pre-order: a Residual before its body
        head, _, last = path.rpartition(".")
        k = int(last)
        if k:
            inputs.append(outputs[index[f"{head}.{k - 1}" if head else str(k - 1)]])
        else:
            inputs.append(inputs[index[head]] if head else x)
    return inputs


def _batch_sum_terms(seq: Sequential, params: Any, x: np.ndarray, y: np.ndarray, v: Any,
                     masks: Any) -> dict[str, list[dict[str, np.ndarray]]]:
    """|terms| of every entry of H v and of G v, per node by param name, with a leading
    batch axis (``_params_reports``' ``terms``): with h a node's input, d its gradient at
    the node's output and R{.} a tangent along v,

        hvp   R{d_W}     = sum_i R{h}_i^T d_i + h_i^T R{d}_i   (+ lambda W_dot: exact)
              R{d_b}     = sum_i R{d}_i
              R{d_beta}  = sum_i R{d_n}_i
              R{d_gamma} = sum_i R{d_n}_i x_hat_i + d_n_i R{x_hat}_i
        gnvp  the same with the pullback g of H_loss J v in place of R{d}, and no term of
              the loss's gradient: h_i^T g_i, g_i, g_n_i, g_n_i x_hat_i
    """
    with jax.enable_x64(True):
        jmasks = None if masks is None else [None if m is None else jnp.asarray(m)
                                             for m in masks]
        out = _jax_terms_jitted(rj.to_jax(params), rj.to_jax(v), jnp.asarray(x),
                                jnp.asarray(y), jmasks, seq)
        nodes, r_nodes, d_q, r_d_q, gn_q = (
            [{k: np.asarray(t) for k, t in node.items()} for node in tree] for tree in out)
    layers = [layer for _, layer in seq.nodes]
    h = _inputs(seq, [node[layer.OUT] for node, layer in zip(nodes, layers)], x)
    r_h = _inputs(seq, [node[layer.OUT] for node, layer in zip(r_nodes, layers)],
                  np.zeros_like(x))

    def outer(u: np.ndarray, w: np.ndarray, layer: Any) -> np.ndarray:
        """|u_i| |w_i| per sample: (batch, fan_in, fan_out); for a convolution a bound of
        its correlation's terms, (batch, O, C / groups, *kernel): each output channel's
        sum of |w| over the positions times the largest |u| of each input channel of its
        group (every term of d_W[o, c, i, j] is at most that, and there are no more of
        them than positions)."""
        if u.ndim == 2:
            return np.abs(u[:, :, None] * w[:, None, :])
        groups = layer.groups
        w_sum = np.abs(w).sum(axis=tuple(range(2, w.ndim)))         # (batch, O)
        u_max = np.abs(u).max(axis=tuple(range(2, u.ndim)))         # (batch, C)
        u_max = np.repeat(u_max.reshape(u.shape[0], groups, -1),    # each o's group's
                          w.shape[1] // groups, axis=1)             # (batch, O, C / G)
        bound = w_sum[:, :, None] * u_max
        return np.broadcast_to(bound.reshape(*bound.shape, *(1,) * (w.ndim - 2)),
                               (*bound.shape, *layer.kernel_size))

    def rows(t: np.ndarray) -> np.ndarray:
        """An image's per-position terms as rows (batch * positions, C)."""
        return t if t.ndim <= 2 else np.moveaxis(t, 1, -1).reshape(-1, t.shape[1])

    terms: dict[str, list[dict[str, np.ndarray]]] = {"hvp": [], "gnvp": []}
    for i, node_params in enumerate(params):
        hvp: dict[str, np.ndarray] = {}
        gnvp: dict[str, np.ndarray] = {}
        if "W" in node_params:
            d, r_d, g = d_q[i]["z"], r_d_q[i]["z"], gn_q[i]["z"]
            hvp["W"] = outer(r_h[i], d, layers[i]) + outer(h[i], r_d, layers[i])
            gnvp["W"] = outer(h[i], g, layers[i])
            if "b" in node_params:
                hvp["b"], gnvp["b"] = rows(np.abs(r_d)), rows(np.abs(g))
        if "gamma" in node_params:
            d, r_d, g = d_q[i]["n"], r_d_q[i]["n"], gn_q[i]["n"]
            x_hat, r_x_hat = nodes[i]["x_hat"], r_nodes[i]["x_hat"]
            hvp["gamma"] = rows(np.abs(r_d * x_hat) + np.abs(d * r_x_hat))
            hvp["beta"], gnvp["gamma"], gnvp["beta"] = (rows(np.abs(r_d)), rows(np.abs(g * x_hat)),
                                                        rows(np.abs(g)))
        terms["hvp"].append(hvp)
        terms["gnvp"].append(gnvp)
    return terms


@FEW
@given(p=SEQUENTIALS, seed=SEEDS)
@_cases_first(seed=0)
def test_hvp_and_gnvp_match_torch_and_jax(p: Problem, seed: int) -> None:
    """H v and the Gauss-Newton G v along a drawn v (training mode, the given masks), node by
    node with the params' keys ({} where a node has none), against torch and JAX: the Hessian
    through a norm's batch statistics, a dropout's fixed mask, a skip's sum.  No input is
    modified."""
    check_hvp_and_gnvp_match_torch_and_jax(p, seed)


def check_hvp_and_gnvp_match_torch_and_jax(p: Problem, seed: int) -> None:
    seq = p.spec
    v = make_params(seq, np.random.default_rng(seed), np.float64)
    before = snapshot(p.params, p.x, p.y, v, p.masks)
    terms = _batch_sum_terms(seq, p.params, p.x, p.y, v, p.masks)
    for fn in ("hvp", "gnvp"):
        ours = getattr(derivatives, fn)(seq, p.params, p.x, p.y, v, p.masks)
        theirs = {name: getattr(ref, fn)(seq, p.params, p.x, p.y, v, p.masks)
                  for name, ref in SECOND_ORDER.items()}
        assert_unchanged(before, p.params, p.x, p.y, v, p.masks)
        for name, product in theirs.items():
            context = f"{fn} vs {name}: {_context(p)}"
            _same_names(seq, p.params, product, context)
            reports = _params_reports(seq, ours, product, theirs[OTHER[name]], terms[fn])
            target(_worst(reports), label=f"{fn} vs {name}")
            _assert_ok(reports, context)


def r_trace_terms(seq: Sequential, params: Any, x: np.ndarray, y: np.ndarray, v: Any,
                  masks: Any) -> list[dict[str, np.ndarray]]:
    """|terms| of the R-trace's batch sums, per node by R-name: R{d_<key>} is H v's entry
    (``_batch_sum_terms``' hvp part)."""
    return [{f"R{{d_{k}}}": t for k, t in node.items()}
            for node in _batch_sum_terms(seq, params, x, y, v, masks)["hvp"]]


@FEW
@given(p=SEQUENTIALS, seed=SEEDS)
@_cases_first(seed=0)
def test_r_trace_matches_torch_and_jax(p: Problem, seed: int) -> None:
    """Every R-quantity of hvp along a drawn v, node by node with the trace's names (R{z},
    a norm's R{mu}, R{var}, R{x_hat}, R{n}, R{out}, ..., then R{d_<out>}, R{d_x_hat} and
    the params' R{d_W}, R{d_b}, R{d_gamma}, R{d_beta}), against jax.jvp of reference_jax's
    trace and torch's double backward of reference_torch's (training mode, the given
    masks), in the order the passes form them (``compare_r_trace``): RTOL64, the
    references' spread (a norm's R-backward is a cancellation's residue, as its backward
    is) and a batch sum on its terms' scale, as the products themselves are held (module
    docstring).  Its R{d_<key>} are hvp's arrays, bit for bit.  No input is modified."""
    check_r_trace_matches_torch_and_jax(p, seed)


def check_r_trace_matches_torch_and_jax(p: Problem, seed: int) -> None:
    seq = p.spec
    v = make_params(seq, np.random.default_rng(seed), np.float64)
    before = snapshot(p.params, p.x, p.y, v, p.masks)
    ours = derivatives.r_trace(seq, p.params, p.x, p.y, v, p.masks)
    theirs = {name: ref.r_trace(seq, p.params, p.x, p.y, v, p.masks)
              for name, ref in SECOND_ORDER.items()}
    assert_unchanged(before, p.params, p.x, p.y, v, p.masks)
    terms = r_trace_terms(seq, p.params, p.x, p.y, v, p.masks)
    for name, trace in theirs.items():
        context = f"r_trace vs {name}: {_context(p)}"
        _same_names(seq, ours, trace, context)
        reports = compare_r_trace(ours, trace, rtol=RTOL64, atol_scale=ATOL64_SCALE,
                                  spread=theirs[OTHER[name]], terms=terms, paths=seq.paths)
        target(_worst(reports), label=f"r_trace vs {name}")
        _assert_ok(reports, context)
    product = derivatives.hvp(seq, p.params, p.x, p.y, v, p.masks)
    for path, node, h in zip(seq.paths, ours, product):
        for key, value in h.items():
            assert np.array_equal(node[f"R{{d_{key}}}"], value), (path, key)


def _without_first_order(method: Any) -> Any:
    """A layer's R-operator that forgets every term carrying the first-order gradient (its
    Gauss-Newton part only): the mistake of one layer's r_backward."""
    def wrong(self: Any, p: Any, cache: Any, h_dot: Any, p_dot: Any, d_out: Any, r_d_out: Any,
              ctx: Any, need_d_in: bool = True) -> Any:
        return method(self, p, cache, h_dot, p_dot, None, r_d_out, ctx, need_d_in)
    return wrong


def _without_the_input_tangent(method: Any) -> Any:
    """A layer's R-operator that forgets its input's tangent h_dot (R{h}.T @ d_z in a
    Dense's R{d_W})."""
    def wrong(self: Any, p: Any, cache: Any, h_dot: Any, p_dot: Any, d_out: Any, r_d_out: Any,
              ctx: Any, need_d_in: bool = True) -> Any:
        return method(self, p, cache, None, p_dot, d_out, r_d_out, ctx, need_d_in)
    return wrong


PLANTED_SEQ = Sequential([Dense(3, 4), Residual([LayerNorm(4), Activation("tanh")]),
                          Dense(4, 2)], "mse", "mean", 0.1)


@pytest.mark.parametrize(("kind", "planted", "named"), [
    (LayerNorm, _without_first_order, "layer 1.0 R{d_x_hat}"),
    (Dense, _without_the_input_tangent, "layer 2 R{d_W}"),
])
def test_a_wrong_r_op_in_one_layer_is_named_by_its_node_and_quantity(
        kind: type, planted: Any, named: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted mistake in one layer kind's r_backward: the R-trace's first disagreement
    with each reference is that node's own quantity, by its path -- the LayerNorm inside
    the Residual forgets d_n gamma_dot in R{d_x_hat} (and every other first-order term), the
    last Dense forgets R{h}.T @ d_z in R{d_W} (the Dense below it has no input tangent: x
    is data) -- while the unplanted R-trace agrees."""
    p = Problem(PLANTED_SEQ, batch=5, seed=3)
    v = make_params(PLANTED_SEQ, np.random.default_rng(4), np.float64)
    args = (PLANTED_SEQ, p.params, p.x, p.y, v, p.masks)
    theirs = {name: ref.r_trace(*args) for name, ref in SECOND_ORDER.items()}

    def first(ours: Any, name: str) -> Any:
        return first_failure(compare_r_trace(ours, theirs[name], rtol=RTOL64,
                                             atol_scale=ATOL64_SCALE,
                                             spread=theirs[OTHER[name]],
                                             paths=PLANTED_SEQ.paths))

    right = derivatives.r_trace(*args)
    assert all(first(right, name) is None for name in theirs)
    monkeypatch.setattr(kind, "r_backward", planted(kind.r_backward))
    wrong = derivatives.r_trace(*args)
    for name in theirs:
        bad = first(wrong, name)
        assert bad is not None and bad.label == named, f"{name}: {bad}"


@at_most(15)      # four entry points and the terms, each a JAX program per spec
@given(p=block_problems(max_depth=3, max_width=5, max_batch=8), seed=SEEDS)
def test_a_block_specs_derivatives_match_torch_and_jax(p: Problem, seed: int) -> None:
    """A NetworkSpec with hidden blocks (norms in training mode, dropout with its masks,
    residual skips): handwritten takes its jvp, hvp, gnvp and per-example gradients through
    its compiled Sequential's layers, the references through their own NetworkSpec forward
    (reference_torch.network, reference_jax.network) -- the same products, in the spec's
    layout, compared node by node as a Sequential's (each layer's W, b on its Dense node,
    gamma, beta on its norm's).  With batch norm, all three refuse per-example gradients."""
    spec = p.spec
    seq = compile_network(spec)

    def nodes(tree: Any) -> Any:
        return network_params(spec, tree)

    v = make_params(spec, np.random.default_rng(seed), np.float64)
    args = (spec, p.params, p.x, p.y)
    terms = _batch_sum_terms(seq, nodes(p.params), p.x, p.y, nodes(v),
                             network_masks(spec, p.masks))
    for fn in ("hvp", "gnvp"):
        ours = getattr(derivatives, fn)(*args, v, p.masks)
        theirs = {name: getattr(ref, fn)(*args, v, p.masks) for name, ref in SECOND_ORDER.items()}
        for name, product in theirs.items():
            context = f"{fn} vs {name}: {_context(p)}"
            _same_names(seq, nodes(ours), nodes(product), context)
            _assert_ok(_params_reports(seq, nodes(ours), nodes(product),
                                       nodes(theirs[OTHER[name]]), terms[fn]), context)
    out, out_dot = derivatives.jvp(spec, p.params, p.x, v, p.masks)
    tangents = {name: ref.jvp(spec, p.params, p.x, v, p.masks)
                for name, ref in SECOND_ORDER.items()}
    for name, (their_out, their_dot) in tangents.items():
        other_out, other_dot = tangents[OTHER[name]]
        _assert_ok([_leaf(out, their_out, other_out, "jvp's output"),
                    _leaf(out_dot, their_dot, other_dot, "jvp's output tangent")],
                   f"jvp vs {name}: {_context(p)}")
    refusal = r"per-example gradient: a sample's output depends on the whole batch"
    if "batch" in spec.norms:
        for module in (derivatives, *SECOND_ORDER.values()):
            with pytest.raises(NotImplementedError, match=refusal):
                module.per_example_grads(*args, p.masks)
        return
    per = derivatives.per_example_grads(*args, p.masks)
    others = {name: ref.per_example_grads(*args, p.masks) for name, ref in SECOND_ORDER.items()}
    for name, theirs_per in others.items():
        context = f"per_example_grads vs {name}: {_context(p)}"
        _same_names(seq, nodes(per), nodes(theirs_per), context)
        _assert_ok(_params_reports(seq, nodes(per), nodes(theirs_per),
                                   nodes(others[OTHER[name]])), context)


def _normwise(value: np.ndarray, exact: dict[str, np.ndarray], key: str) -> float:
    """A float32 quantity's error relative to its float64 scale (a batch sum: its terms')."""
    return float(np.abs(value.astype(np.float64) - exact[key]).max()) / f32_scale(exact, key)


@FEW
@given(p=SEQUENTIALS)
@_cases_first()
def test_float32_sequential_error_is_within_the_frameworks_own(p: Problem) -> None:
    """The suite's float32 policy for every node's quantity: handwritten's float32 trace of a
    Sequential is as close to the float64 one as torch's and JAX's float32 traces are
    (F32_FACTOR times, above F32_FLOOR), normwise per quantity; a backward quantity may also
    carry the output d_a's error, which every implementation inherits alike
    (bpnet.tolerances.f32_allowed)."""
    check_float32_sequential_error_is_within_the_frameworks_own(p)


def check_float32_sequential_error_is_within_the_frameworks_own(p: Problem) -> None:
    seq = p.spec
    exact = fold.trace(seq, p.params, p.x, p.y, p.masks)
    p32 = p.astype("float32")
    traces = {"handwritten": fold.trace(seq, p32.params, p32.x, p32.y, p32.masks)}
    traces |= {name: ref.trace(seq, p32.params, p32.x, p32.y, p32.masks)
               for name, ref in TRACES.items()}
    inherited = output_d_a_error(exact, traces, TRACES)
    worst = 0.0
    for i, ((path, layer), node) in enumerate(zip(seq.nodes, exact.layers)):
        for key in node:
            assert traces["handwritten"].layers[i][key].dtype == np.float32, (path, key)
            errors = {name: _normwise(t.layers[i][key], node, key) for name, t in traces.items()}
            allowed = f32_allowed([errors[name] for name in TRACES],
                                  inherited if key in BACKWARD_QUANTITIES else 0.0)
            worst = max(worst, errors["handwritten"] / allowed)
            assert errors["handwritten"] <= allowed, (
                f"layer {path} {layer!r} {key}: float32 normwise error "
                f"{errors['handwritten']:.3g} > allowed {allowed:.3g} (torch "
                f"{errors['reference_torch']:.3g}, jax {errors['reference_jax']:.3g}): "
                f"{_context(p)}")
    target(worst, label="float32 error / allowed")


def test_every_case_holds_every_layer_kind() -> None:
    """The hand-picked cases run first by both properties hold each kind of layer (norms in
    training mode, dropout with a mask, a Residual), so every R-operator is met whatever the
    draws; the convolution chapter's kinds, in its cases (``CONV_CASES``, run first by
    tests/test_conv_references.py)."""
    from bpnet.check_all import CONV_CASES
    from handwritten.layers import LAYERS, Dropout

    kinds = {type(layer).__name__ for case in CASES for _, layer in case.spec.nodes}
    kinds |= {type(layer).__name__ for seq in CONV_CASES for _, layer in seq.nodes}
    assert kinds == set(LAYERS)
    assert any(isinstance(layer, Dropout) and layer.p and case.masks is not None
               for case in CASES for _, layer in case.spec.nodes)


@pytest.mark.parametrize("fn", ["hvp", "gnvp"])
@pytest.mark.parametrize("name", sorted(SECOND_ORDER))
def test_a_plain_network_specs_products_take_no_masks(name: str, fn: str) -> None:
    """masks belong to a Sequential (or to a NetworkSpec's hidden blocks): a plain
    NetworkSpec's hvp and gnvp refuse them by name, as handwritten's do."""
    import handwritten as hw

    spec = hw.NetworkSpec((2, 3, 1), ("tanh", "identity"))
    params = hw.init_params(spec, np.random.default_rng(0))
    x, y = np.zeros((4, 2)), np.zeros((4, 1))
    with pytest.raises(ValueError, match=f"a NetworkSpec's {fn} takes none"):
        getattr(SECOND_ORDER[name], fn)(spec, params, x, y, params, [None])


def test_a_sequential_ending_in_a_residual_has_hvp_and_gnvp() -> None:
    """The loss's input is then the Residual's output (out = body(h) + h): the products'
    forward fold must keep it as the plain forward does (tests/test_layer_references.py's
    CASES[2] ends so too; the random draws end with a Dense or an Activation)."""
    seq = Sequential([Dense(2, 2), Residual([Activation("tanh"), Dense(2, 2)])], "mse")
    p = Problem(seq, batch=3, seed=0)
    v = make_params(seq, np.random.default_rng(1), np.float64)
    for fn in ("hvp", "gnvp"):
        ours = getattr(derivatives, fn)(seq, p.params, p.x, p.y, v, p.masks)
        theirs = {name: getattr(ref, fn)(seq, p.params, p.x, p.y, v, p.masks)
                  for name, ref in SECOND_ORDER.items()}
        for name, product in theirs.items():
            _assert_ok(_params_reports(seq, ours, product, theirs[OTHER[name]]),
                       f"{fn} vs {name}: {_context(p)}")
