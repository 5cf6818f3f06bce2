"""Input checks shared by every implementation's public entry points.

Every check raises before anything is computed, names the argument, and says
what was expected.  Nothing here mutates its arguments.  ``reference_torch``
and ``reference_jax`` call the same checks, so all three refuse the same inputs
with the same messages.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from handwritten.layers.norm import BatchNorm1d
from handwritten.layers.sequential import Sequential
from handwritten.losses import LOSSES
from handwritten.spec import NetworkSpec, OptimizerSpec, Shuffle, finite_real, positive_int

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

T = TypeVar("T")

__all__ = [
    "FLOAT_DTYPES",
    "check_batch_order",
    "check_float_array",
    "check_ndarray",
    "check_optimizer",
    "check_params",
    "check_problem",
    "check_rng",
    "check_step",
    "check_training_args",
    "check_x",
    "check_y",
    "counterpart",
    "finite_real",
    "no_counterpart",
    "positive_int",
]


def check_ndarray(name: str, value: object) -> np.ndarray[Any, Any]:
    """A plain numpy.ndarray: subclasses (np.matrix, masked arrays) change what operators
    mean (a masked NaN is still NaN to the frameworks), so they are refused."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(value).__name__}")
    if type(value) is not np.ndarray:
        raise TypeError(f"{name} must be a plain numpy.ndarray, not the subclass "
                        f"{type(value).__name__}: convert it with np.asarray")
    return value


def check_float_array(name: str, value: object, ndim: int) -> np.dtype[Any]:
    """A finite float32/float64 ndarray of the given ndim; returns its dtype."""
    value = check_ndarray(name, value)
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {value.dtype}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {value.shape}")
    if not np.isfinite(value).all():
        raise ValueError(f"{name} must be finite, but it contains NaN or inf")
    return value.dtype


def check_rng(rng: object) -> np.random.Generator:
    """An explicit numpy.random.Generator (never the global RNG)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    return rng


def check_params(spec: NetworkSpec | Sequential, params: object, dtype: np.dtype[Any] | None = None,
                 name: str = "params") -> np.dtype[Any]:
    """One {"W": (fan_in, fan_out), "b": (fan_out,)} dict per layer, one dtype, finite
    (a Sequential: one dict per node, its layer's ``param_shapes``)."""
    if isinstance(spec, Sequential):
        return _check_node_params(spec, params, dtype, name)
    if not isinstance(params, Sequence) or isinstance(params, (str, bytes)):
        raise TypeError(f"{name} must be a list of {{'W', 'b'}} dicts, got {type(params).__name__}")
    if len(params) != spec.n_layers:
        raise ValueError(f"{name} must have {spec.n_layers} layers for layer_sizes "
                         f"{spec.layer_sizes}, got {len(params)}")
    for i, layer in enumerate(params):
        normed = spec.norm(i) is not None
        keys = {"W", "b", "gamma", "beta"} if normed else {"W", "b"}
        if not isinstance(layer, dict) or set(layer) != keys:
            got = sorted(layer) if isinstance(layer, dict) else type(layer).__name__
            wanted = (f"'W', 'b', 'gamma' and 'beta' (norms[{i}] = {spec.norm(i)!r})"
                      if normed else "'W' and 'b'")
            raise TypeError(f"{name}[{i}] must be a dict with keys {wanted}, got {got}")
        fan_in, fan_out = spec.layer_sizes[i], spec.layer_sizes[i + 1]
        leaves = [("W", 2, (fan_in, fan_out)), ("b", 1, (fan_out,))]
        if normed:
            leaves += [("gamma", 1, (fan_out,)), ("beta", 1, (fan_out,))]
        for key, _, shape in leaves:
            dtype = _check_leaf(f"{name}[{i}][{key!r}]", layer[key], shape, dtype,
                                f"for layer_sizes {spec.layer_sizes}")
    assert dtype is not None
    return dtype


def _check_leaf(leaf: str, value: object, shape: tuple[int, ...], dtype: np.dtype[Any] | None,
                whose: str) -> np.dtype[Any]:
    """One params array: a finite float array of ``shape`` and of ``dtype`` (the first
    leaf's, when None); returns the dtype."""
    leaf_dtype = check_float_array(leaf, value, len(shape))
    assert isinstance(value, np.ndarray)
    if value.shape != shape:
        raise ValueError(f"{leaf} must have shape {shape} {whose}, got {value.shape}")
    if dtype is not None and leaf_dtype != dtype:
        raise TypeError(f"{leaf} has dtype {leaf_dtype}, but the rest is {dtype}: "
                        "mixed dtypes are not converted silently")
    return leaf_dtype


def check_x(spec: NetworkSpec | Sequential, x: object) -> np.dtype[Any]:
    """spec is a NetworkSpec or a Sequential; x of shape (batch, n_in), batch >= 1."""
    if not isinstance(spec, (NetworkSpec, Sequential)):
        raise TypeError(f"spec must be a NetworkSpec or a Sequential, got {type(spec).__name__}")
    sample = spec.in_shapes[0] if isinstance(spec, Sequential) else (spec.layer_sizes[0],)
    dtype = check_float_array("x", x, 1 + len(sample))
    assert isinstance(x, np.ndarray)
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch (shape[0] == 0); need at least one sample")
    if isinstance(spec, Sequential):
        if x.shape[1:] != sample:
            raise ValueError(f"x must have shape (batch, {', '.join(map(str, sample))}) for "
                             f"the first layer {spec.layers[0]!r}, got {x.shape}")
        return dtype
    if x.shape[1] != spec.layer_sizes[0]:
        raise ValueError(f"x must have shape (batch, {spec.layer_sizes[0]}) for layer_sizes "
                         f"{spec.layer_sizes}, got {x.shape}")
    return dtype


def check_y(spec: NetworkSpec | Sequential, y: object, batch: int, dtype: np.dtype[Any]) -> None:
    """Targets matching the loss: see the ``targets`` field of the loss registry."""
    n_out = spec.n_out
    kind = LOSSES[spec.loss].targets
    y = check_ndarray("y", y)
    if kind == "class" and y.ndim == 1:
        if y.dtype.kind not in "iu":
            raise TypeError(f"y as class labels (1-D) must be an integer array, got {y.dtype}")
        if y.shape[0] != batch:
            raise ValueError(f"y must hold {batch} labels (one per row of x), got {y.shape[0]}")
        if y.size and (y.min() < 0 or y.max() >= n_out):
            raise ValueError(f"y labels must lie in [0, {n_out}) for {n_out} classes, "
                             f"got values in [{y.min()}, {y.max()}]")
        return
    y_dtype = check_float_array("y", y, 2)
    if y.shape != (batch, n_out):
        raise ValueError(f"y must have shape ({batch}, {n_out}) (batch of x, n_out), got {y.shape}")
    if y_dtype != dtype:
        raise TypeError(f"y has dtype {y_dtype} but x and params are {dtype}: "
                        "mixed dtypes are not converted silently")
    if kind in ("probability", "class") and ((y < 0).any() or (y > 1).any()):
        raise ValueError(f"y must hold probabilities in [0, 1] for loss {spec.loss!r}")
    if kind == "class":
        # rows of class probabilities must sum to 1: the fused gradient a - y relies on it.
        tol = 4 * n_out * np.finfo(dtype).eps
        if np.abs(y.sum(axis=1) - 1).max() > tol:
            raise ValueError(f"y rows must sum to 1 (one-hot or class probabilities) for loss "
                             f"{spec.loss!r}; pass integer labels of shape ({batch},) otherwise")


def check_problem(spec: NetworkSpec | Sequential, params: object, x: object, y: object,
                  masks: object = None, training: bool = False) -> np.dtype[Any]:
    """params, x and y together: shapes chain, one float dtype, all finite; and dropout's
    masks where the spec has dropout (``check_masks``; not for ``training``, which draws
    its own each step)."""
    x_dtype = check_x(spec, x)
    assert isinstance(x, np.ndarray)
    check_params(spec, params, x_dtype)
    check_y(spec, y, x.shape[0], x_dtype)
    if not training:
        check_masks(spec, masks, x.shape[0])
    if x.shape[0] == 1 and batch_norm_positions(spec) == 1:
        raise ValueError("x is a batch of one, and batch norm in training mode needs at least "
                         "two samples (its batch variance is 0; torch refuses it too)")
    return x_dtype


def batch_norm_positions(spec: NetworkSpec | Sequential) -> int | None:
    """The fewest values a batch norm averages per sample: 1 for BatchNorm1d, H W for a
    BatchNorm2d on (C, H, W) images (torch refuses a batch norm over a single value);
    None without batch norm."""
    if not isinstance(spec, Sequential):
        return 1 if "batch" in spec.norms else None
    counts = [math.prod(shape[1:]) for (_, layer), shape in zip(spec.nodes, spec.in_shapes)
              if isinstance(layer, BatchNorm1d)]          # BatchNorm2d is one too
    return min(counts) if counts else None


def check_masks(spec: NetworkSpec | Sequential, masks: object, batch: int) -> None:
    """One keep-mask per hidden layer: a (batch, fan_out) array of 0s and 1s (bool or any
    number dtype) where the layer has dropout, None where it has none.  Masks are inputs,
    never drawn here: the three implementations use the same ones."""
    if isinstance(spec, Sequential):
        return _check_node_masks(spec, masks, batch)
    hidden = spec.n_layers - 1
    if masks is None:
        if any(spec.dropout):
            raise ValueError(f"masks are required: the spec has dropout {spec.dropout}; give "
                             "one (batch, fan_out) array of 0s and 1s per hidden layer (None "
                             "where p = 0)")
        return
    if not isinstance(masks, Sequence) or isinstance(masks, (str, bytes)):
        raise TypeError(f"masks must be None or a list of {hidden} entries (one per hidden "
                        f"layer), got {type(masks).__name__}")
    if not any(spec.dropout):
        if any(m is not None for m in masks):
            raise ValueError("masks are given, but the spec has no dropout (dropout="
                             f"{spec.dropout})")
        return
    if len(masks) != hidden:
        raise TypeError(f"masks must be a list of {hidden} entries (one per hidden layer), "
                        f"got {len(masks)}")
    for l, (p, mask) in enumerate(zip(spec.dropout, masks)):
        if not p:
            if mask is not None:
                raise ValueError(f"masks[{l}] must be None: dropout[{l}] is 0")
            continue
        shape = (batch, spec.layer_sizes[l + 1])
        if not isinstance(mask, np.ndarray):
            raise TypeError(f"masks[{l}] must be a numpy array of shape {shape}, "
                            f"got {type(mask).__name__}")
        check_ndarray(f"masks[{l}]", mask)        # np.matrix's * is a matrix product
        if mask.shape != shape:
            raise ValueError(f"masks[{l}] must have shape {shape}, got {mask.shape}")
        if mask.dtype.kind not in "biuf" or not np.isin(mask, (0, 1)).all():
            raise ValueError(f"masks[{l}] must hold only 0s and 1s (a keep-mask)")


def check_trainable(spec: NetworkSpec | Sequential, n_samples: int, batch_size: int,
                    rng: object) -> None:
    """train with hidden blocks: dropout needs ``rng`` (a numpy.random.Generator) to draw its
    keep-masks each step; batch norm needs every batch to hold at least 2 samples (a batch
    of one has no variance, and the running variance divides by N - 1; torch refuses it
    too)."""
    batch_norm = batch_norm_positions(spec) == 1   # a BatchNorm2d averages over H W as well
    if isinstance(spec, Sequential):
        dropout = spec.has_dropout
        has = "the Sequential has dropout"
        norms = "the Sequential has BatchNorm1d"
    else:
        dropout = any(spec.dropout)
        has = f"the spec has dropout {spec.dropout}"
        norms = "norms has 'batch'"
    if rng is None and dropout:
        raise ValueError(f"rng is required: {has}, and train "
                         "draws its keep-masks from rng each step; give "
                         "rng=np.random.default_rng(seed)")
    if rng is not None:
        check_rng(rng)
    if batch_norm:
        last = n_samples % batch_size
        if batch_size < 2 or last == 1:
            which = "every batch" if batch_size < 2 else (
                f"the last batch of each epoch ({n_samples} samples in batches of {batch_size})")
            raise ValueError(f"batch_size {batch_size} leaves one sample in {which}: batch "
                             f"norm ({norms}) needs at least 2 samples per batch; "
                             "choose another batch_size")


def check_running(spec: NetworkSpec | Sequential, running: object, dtype: np.dtype[Any]) -> None:
    """Evaluation mode (``predict``) normalizes batch norm with its running statistics:
    ``running`` is required when the spec has batch norm (``History.running``), one dict
    per layer, {"mean", "var"} of shape (fan_out,) where norms[l] = 'batch', {} elsewhere
    (None is accepted as "no running statistics" for a spec without batch norm)."""
    if isinstance(spec, Sequential):
        return _check_node_running(spec, running, dtype)
    if running is None:
        if "batch" in spec.norms:
            raise ValueError("running is required: the spec has batch norm (norms="
                             f"{spec.norms}), and evaluation mode normalizes with the running "
                             "statistics a training run returns (History.running)")
        return
    if not isinstance(running, Sequence) or isinstance(running, (str, bytes)) \
            or len(running) != spec.n_layers:
        raise TypeError(f"running must be a list of {spec.n_layers} dicts (one per layer, "
                        f"as History.running), got {type(running).__name__}")
    for l, stats in enumerate(running):
        batch = spec.norm(l) == "batch"
        keys = {"mean", "var"} if batch else set()
        if not isinstance(stats, dict) or set(stats) != keys:
            wanted = "'mean' and 'var'" if batch else "no keys ({})"
            raise TypeError(f"running[{l}] must be a dict with {wanted} (norms: {spec.norms})")
        for key in sorted(keys):
            name = f"running[{l}][{key!r}]"
            if check_float_array(name, stats[key], 1) != dtype:
                raise TypeError(f"{name} has dtype {stats[key].dtype}, but params are {dtype}")
            if stats[key].shape != (spec.layer_sizes[l + 1],):
                raise ValueError(f"{name} must have shape ({spec.layer_sizes[l + 1]},), got "
                                 f"{stats[key].shape}")
        if batch and not (stats["var"] >= 0).all():
            raise ValueError(f"running[{l}]['var'] must be >= 0 (a variance)")


def _node(spec: Sequential, i: int) -> str:
    path, layer = spec.nodes[i]
    return f"(layer {path}, {layer!r})"


def _check_node_params(spec: Sequential, params: object, dtype: np.dtype[Any] | None,
                       name: str) -> np.dtype[Any]:
    """One dict per node of a Sequential: its layer's ``param_shapes`` ({} for a layer
    without params), one dtype, finite."""
    n = len(spec.nodes)
    if not isinstance(params, Sequence) or isinstance(params, (str, bytes)):
        raise TypeError(f"{name} must be a list of {n} dicts (one per node of the "
                        f"Sequential), got {type(params).__name__}")
    if len(params) != n:
        raise ValueError(f"{name} must have {n} entries (one per node: {spec.paths}), "
                         f"got {len(params)}")
    for i, ((_, layer), node) in enumerate(zip(spec.nodes, params)):
        shapes = layer.param_shapes() if hasattr(layer, "param_shapes") else {}
        if not isinstance(node, dict) or set(node) != set(shapes):
            got = sorted(node) if isinstance(node, dict) else type(node).__name__
            raise TypeError(f"{name}[{i}] {_node(spec, i)} must be a dict with keys "
                            f"{sorted(shapes)}, got {got}")
        for key, shape in shapes.items():
            dtype = _check_leaf(f"{name}[{i}][{key!r}]", node[key], shape, dtype,
                                f"for {_node(spec, i)[1:-1]}")
    if dtype is None:
        raise ValueError(f"{name}: the Sequential has no params at all; nothing to learn")
    return dtype


def _check_node_masks(spec: Sequential, masks: object, batch: int) -> None:
    """One entry per node: a (batch, *shape) keep-mask of 0s and 1s on a Dropout with
    p > 0, None everywhere else."""
    n = len(spec.nodes)
    if masks is None:
        if spec.has_dropout:
            raise ValueError("masks are required: the Sequential has dropout; give one entry "
                             f"per node ({n}), a (batch, features) array of 0s and 1s on "
                             "each Dropout and None elsewhere")
        return
    if not isinstance(masks, Sequence) or isinstance(masks, (str, bytes)) or len(masks) != n:
        raise TypeError(f"masks must be None or a list of {n} entries (one per node: "
                        f"{spec.paths})")
    for i, ((_, layer), mask, shape) in enumerate(zip(spec.nodes, masks, spec.in_shapes)):
        dropping = type(layer).__name__ == "Dropout" and layer.p
        if not dropping:
            if mask is not None:
                raise ValueError(f"masks[{i}] {_node(spec, i)} must be None: only a Dropout "
                                 "with p > 0 takes a mask")
            continue
        want = (batch, *shape)
        if not isinstance(mask, np.ndarray):
            raise TypeError(f"masks[{i}] {_node(spec, i)} must be a numpy array of shape "
                            f"{want}, got {type(mask).__name__}")
        check_ndarray(f"masks[{i}]", mask)
        if mask.shape != want:
            raise ValueError(f"masks[{i}] {_node(spec, i)} must have shape {want}, got "
                             f"{mask.shape}")
        if mask.dtype.kind not in "biuf" or not np.isin(mask, (0, 1)).all():
            raise ValueError(f"masks[{i}] must hold only 0s and 1s (a keep-mask)")


def _check_node_running(spec: Sequential, running: object, dtype: np.dtype[Any]) -> None:
    """One dict per node, exactly what its layer's ``init_state`` declares for its input
    shape -- the same keys, each a finite array of that shape in the params' dtype ({} on a
    node without state) -- and within the layer's own ``check_state`` where it has one;
    None only for a Sequential without state."""
    n = len(spec.nodes)
    if running is None:
        if spec.has_state:
            what = "batch norm" if spec.has_batch_norm else "layers that carry state"
            raise ValueError(f"running is required: the Sequential has {what}, and "
                             "evaluation mode reads their state (History.running)")
        return
    if not isinstance(running, Sequence) or isinstance(running, (str, bytes)) \
            or len(running) != n:
        raise TypeError(f"running must be a list of {n} dicts (one per node: {spec.paths})")
    for i, ((_, layer), stats, shape) in enumerate(zip(spec.nodes, running, spec.in_shapes)):
        declared = layer.init_state(shape, dtype)
        if not isinstance(stats, dict) or set(stats) != set(declared):
            keys = [repr(k) for k in sorted(declared)]
            wanted = (f"{', '.join(keys[:-1])} and {keys[-1]}" if len(keys) > 1 else
                      keys[0] if keys else "no keys ({})")
            raise TypeError(f"running[{i}] {_node(spec, i)} must be a dict with {wanted}")
        for key in sorted(declared):
            leaf = f"running[{i}][{key!r}]"
            if check_float_array(leaf, stats[key], declared[key].ndim) != dtype:
                raise TypeError(f"{leaf} has dtype {stats[key].dtype}, but params are {dtype}")
            if stats[key].shape != declared[key].shape:
                raise ValueError(f"{leaf} must have shape {declared[key].shape}, got "
                                 f"{stats[key].shape}")
        if declared and hasattr(layer, "check_state"):
            layer.check_state(stats, f"running[{i}]")


# training arguments ----------------------------------------------------------


def check_batch_order(batch_order: object, epochs: int, n: int) -> Any:
    """An (epochs, n) integer array whose rows are permutations of range(n), or a
    ``handwritten.training.Shuffle`` (drawn one epoch at a time)."""
    if isinstance(batch_order, Shuffle):
        return batch_order
    if type(batch_order) is not np.ndarray or batch_order.dtype.kind not in "iu":
        raise TypeError("batch_order must be an integer numpy.ndarray of shape (epochs, n_samples)")
    if batch_order.shape != (epochs, n):
        raise ValueError(f"batch_order must have shape (epochs, n_samples) = ({epochs}, {n}), "
                         f"got {batch_order.shape}")
    if not (np.sort(batch_order, axis=1) == np.arange(n)).all():
        raise ValueError(f"every row of batch_order must be a permutation of range({n})")
    return batch_order.astype(np.intp)


def check_training_args(optimizer: object, n_samples: int, epochs: object, batch_size: object,
                        batch_order: object, record_every: object, callback: object
                        ) -> tuple[int, int, Any, int | None]:
    """train()'s arguments besides the problem (checked first with ``check_problem``).

    Returns (epochs, batch_size, batch_order, record_every), each checked; the
    default batch_size (None) is the full batch.
    """
    check_optimizer(optimizer)
    epochs = positive_int("epochs", epochs)
    every = None if record_every is None else positive_int("record_every", record_every)
    size = positive_int("batch_size", n_samples if batch_size is None else batch_size)
    if size > n_samples:
        raise ValueError(f"batch_size must be in [1, {n_samples}] (the number of samples), "
                         f"got {size}")
    order = None if batch_order is None else check_batch_order(batch_order, epochs, n_samples)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(epoch, params), "
                        f"got {type(callback).__name__}")
    assert isinstance(optimizer, OptimizerSpec)
    check_schedule_room(optimizer, 0, epochs * -(-n_samples // size))
    return epochs, size, order, every



# optimizer steps -------------------------------------------------------------


def check_optimizer(optimizer: object) -> OptimizerSpec:
    """An OptimizerSpec (a bare name such as "adam" is refused: it carries no lr)."""
    if not isinstance(optimizer, OptimizerSpec):
        raise TypeError(f"optimizer must be an OptimizerSpec (e.g. OptimizerSpec('adam', "
                        f"lr=1e-3)), got {type(optimizer).__name__}: {optimizer!r}")
    return optimizer


def check_schedule_room(optimizer: OptimizerSpec, taken: int, steps: int) -> None:
    """``steps`` more steps after ``taken`` fit the schedule (onecycle's total_steps)."""
    limit = None if optimizer.schedule is None else optimizer.schedule.max_steps
    if limit is not None and taken + steps > limit:
        raise ValueError(f"the schedule's total_steps is {limit}, but the optimizer would take "
                         f"step {taken + steps} (torch's OneCycleLR refuses to step beyond "
                         "total_steps): raise total_steps or train fewer steps")


def check_like(name: str, tree: object, like: Sequence[dict[str, Any]], dtype: np.dtype[Any]
               ) -> None:
    """A params-shaped structure with exactly the layers, keys, shapes and dtype of ``like``
    (the params: the messages name the params' entry each leaf must match)."""
    if not isinstance(tree, Sequence) or isinstance(tree, (str, bytes)) or len(tree) != len(like):
        raise TypeError(f"{name} must be a list of {len(like)} dicts shaped like params, "
                        f"got {type(tree).__name__}")
    for i, (layer, ref) in enumerate(zip(tree, like)):
        if not isinstance(layer, dict) or set(layer) != set(ref):
            raise TypeError(f"{name}[{i}] must be a dict with keys {sorted(ref)}, those of "
                            f"params[{i}]")
        for key, leaf in layer.items():
            leaf_name = f"{name}[{i}][{key!r}]"
            if check_float_array(leaf_name, leaf, np.ndim(leaf)) != dtype:
                raise TypeError(f"{leaf_name} has dtype {leaf.dtype}, but params are {dtype}: "
                                "mixed dtypes are not converted silently")
            if leaf.shape != ref[key].shape:
                raise ValueError(f"{leaf_name} must have shape {ref[key].shape}, like "
                                 f"params[{i}][{key!r}], got {leaf.shape}")


BLOG_KEYS = (frozenset({"W", "b"}), frozenset({"W", "b", "gamma", "beta"}))
"""A NetworkSpec layer's keys: the blog's Dense, with a norm's scale and shift."""


def check_params_tree(params: object) -> np.dtype[Any]:
    """params of some network, without its spec (an optimizer's ``init_state``, ``step``,
    ``update``): a non-empty list of dicts, one per layer or node, each naming its arrays
    by str keys -- the layer's own names ("W", "b", "gamma", an embedding's "weight", ...),
    which only the spec can hold to a layer (``check_params``) -- every array finite and
    all of one float dtype.  What the list alone still shows is checked too: in a
    NetworkSpec's layout (every dict {"W": (fan_in, fan_out), "b": (fan_out,)}, with
    "gamma", "beta" (fan_out,) on a layer with a norm) the shapes must chain."""
    if not isinstance(params, Sequence) or isinstance(params, (str, bytes)) or not params:
        raise TypeError(f"params must be a non-empty list of dicts (one per layer, its arrays "
                        f"by name), got {type(params).__name__}")
    dtype = None
    for i, layer in enumerate(params):
        if not isinstance(layer, dict):
            raise TypeError(f"params[{i}] must be a dict of arrays by name, got "
                            f"{type(layer).__name__}")
        for key in layer:
            if not isinstance(key, str):
                raise TypeError(f"params[{i}] has the key {key!r}: a layer names its params "
                                "with str keys")
        for key in sorted(layer):
            leaf = f"params[{i}][{key!r}]"
            leaf_dtype = check_float_array(leaf, layer[key], np.ndim(layer[key]))
            if dtype is not None and leaf_dtype != dtype:
                raise TypeError(f"{leaf} has dtype {leaf_dtype}, but the first is {dtype}: "
                                "mixed dtypes are not converted silently")
            dtype = dtype or leaf_dtype
    if dtype is None:
        raise TypeError("params has no arrays at all: nothing to optimize")
    if all(frozenset(layer) in BLOG_KEYS and layer["W"].ndim == 2 for layer in params):
        _check_chain(params)
    return dtype


def _check_chain(params: Sequence[dict[str, Any]]) -> None:
    """A NetworkSpec's params: each W (fan_in, fan_out) takes the last one's fan_out, and
    its b (and gamma, beta) are (fan_out,)."""
    fan_out = None
    for i, layer in enumerate(params):
        fan_in, width = layer["W"].shape
        if fan_out is not None and fan_in != fan_out:
            raise ValueError(f"params[{i}] has W {layer['W'].shape} and b {layer['b'].shape}: "
                             "the shapes do not chain as (fan_in, fan_out), (fan_out,)")
        for key in sorted(set(layer) - {"W"}):
            if layer[key].shape != (width,):
                raise ValueError(f"params[{i}][{key!r}] must have shape ({width},) beside W "
                                 f"{layer['W'].shape} (fan_in, fan_out), got {layer[key].shape}")
        fan_out = width


def check_step(optimizer: object, params: object, grads: object, state: object,
               buffers: Collection[str]) -> None:
    """One optimizer step's arguments: an OptimizerSpec, params, grads shaped and typed like
    them, and a state as ``init_state`` makes it: a step count "t" and the rule's
    params-shaped ``buffers``."""
    name = check_optimizer(optimizer).name
    dtype = check_params_tree(params)
    assert isinstance(params, Sequence)
    check_like("grads", grads, params, dtype)
    if not isinstance(state, dict) or set(state) != {"t", *buffers}:
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise TypeError(f"state must be the dict init_state returns for "
                        f"{name!r} (keys {sorted({'t', *buffers})}), got {got}")
    t = state["t"]
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
        raise ValueError(f"state['t'] must be a step count >= 0, got {t!r}")
    for key in buffers:
        check_like(f"state[{key!r}]", state[key], params, dtype)


def no_counterpart(kind: str, name: str, where: str) -> str:
    """The one line for a name registered in handwritten that a reference lacks (``bpnet
    check`` prints it; a reference refuses the name with it)."""
    return (f"{kind} {name!r} is registered in handwritten but has no counterpart in {where}: "
            "add it there (the reference's autograd version)")


def counterpart(registry: Mapping[str, T], kind: str, name: str, where: str) -> T:
    """A reference's entry for a name: ``registry[name]``, or NotImplementedError with the
    line of ``no_counterpart`` -- never a default in its place."""
    if name not in registry:
        raise NotImplementedError(no_counterpart(kind, name, where))
    return registry[name]
