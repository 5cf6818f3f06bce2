"""Sequential: a network as a sequence of layers, and the MLP spec compiled to one.

``Sequential(layers, loss, reduction, weight_decay)`` is a frozen, hashable spec whose repr
replays.  Its layers may come in any valid order (a norm before a Dense, two activations
in a row, a ``Residual`` around several layers, dropout anywhere); the shapes are checked
here, when the spec is built, with the layer's position and the shape it expected named.

Every node of the network (a layer, and each layer inside a ``Residual``) has a *path*:
its index, and inside a Residual the Residual's path, a dot and the index in its body
("3", "3.0", "3.1").  Params, gradients, masks, running statistics and the trace are
lists with one entry per node in that order (``Sequential.paths``): a node without params
has ``{}``, a node without a mask ``None``.

``compile_network(spec)`` turns a ``NetworkSpec`` into the Sequential that computes the
same numbers, bit for bit: each hidden layer is Dense, then its norm, its activation, its
dropout, all inside a Residual where the layer has a skip (torchvision.ops.MLP's order);
``network_params`` / ``network_grads`` carry params and gradients across.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from handwritten.activations import split_name
from handwritten.layers.activation import Activation
from handwritten.layers.base import Shape
from handwritten.layers.conv import Conv1d, Conv2d, spatial
from handwritten.layers.dense import Dense
from handwritten.layers.dropout import Dropout
from handwritten.layers.norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from handwritten.layers.pool import AdaptiveAvgPool2d, AvgPool2d, Flatten, MaxPool2d
from handwritten.layers.residual import Residual
from handwritten.losses import LOSSES, REDUCTIONS
from handwritten.spec import Masks, NetworkSpec, Params, Running, finite_real, positive_int

LAYERS: dict[str, type] = {cls.__name__: cls for cls in
                           (Dense, Activation, BatchNorm1d, LayerNorm, Dropout, Residual,
                            Conv1d, Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten,
                            BatchNorm2d, GroupNorm)}
"""Every layer kind by name: the registry each reference holds the same keys of."""


def _walk(layers: Sequence[object], prefix: str = "") -> list[tuple[str, object]]:
    """(path, layer) of every node, in pre-order: a Residual before its body."""
    nodes: list[tuple[str, object]] = []
    for i, layer in enumerate(layers):
        path = f"{prefix}{i}"
        nodes.append((path, layer))
        if isinstance(layer, Residual):
            nodes += _walk(layer.body, f"{path}.")
    return nodes


def _where(path: str) -> str:
    """"3.1" -> "layers[3].body[1]": a path as the constructor call spells it."""
    head, *rest = path.split(".")
    return f"layers[{head}]" + "".join(f".body[{i}]" for i in rest)


@dataclass(frozen=True, repr=False)
class Sequential:
    """A network: layers in order, then the loss on the last layer's output.

    Parameters
    ----------
    layers : sequence of layers
        ``Dense``, ``Activation``, ``BatchNorm1d``, ``LayerNorm``, ``Dropout``,
        ``Residual`` (``LAYERS``).  The input width is the first layer's that declares one
        (``in_features`` of a Dense, ``num_features`` of a BatchNorm1d, ...), unless
        ``in_features`` is given.
    loss, reduction, weight_decay
        As in ``NetworkSpec``: the loss's (z, a) are the last layer's input and output when
        it is an Activation (its output otherwise); a fused loss (bce_with_logits,
        softmax_cross_entropy) needs that last Activation to be the one it fuses.
        weight_decay adds lambda / 2 * ||p||^2 of every param a layer names in its
        ``DECAYED`` (every W of a Dense or a convolution; no bias, no norm's gamma, beta).
    in_features : int, optional
        The input width, when no layer declares it (a network that starts with an
        activation).
    in_shape : tuple of ints, optional
        One sample's shape, for inputs that are not rows of features: (C, H, W) for
        images into a Conv2d, (C, L) for a Conv1d -- a convolution declares its channels,
        not the image size.  The network's output must be (batch, features) (end an image
        network with Flatten and a Dense).
    """

    layers: Sequence[Any]
    loss: str = "half_mse"
    reduction: str = "mean"
    weight_decay: float = 0.0
    in_features: int | None = None
    in_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.layers, (str, bytes)) or not isinstance(self.layers, Sequence):
            raise TypeError(f"layers must be a sequence of layers, got "
                            f"{type(self.layers).__name__}")
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("layers is empty: a Sequential needs at least one layer")
        nodes = _walk(self.layers)
        for path, layer in nodes:
            if LAYERS.get(type(layer).__name__) is not type(layer):
                raise TypeError(f"{_where(path)} must be a layer (one of {sorted(LAYERS)}), "
                                f"got {type(layer).__name__}")
        for name in ("loss", "reduction"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a str, got {type(getattr(self, name)).__name__}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss is unknown: {self.loss!r}; expected one of {sorted(LOSSES)}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        object.__setattr__(self, "weight_decay",
                           finite_real("weight_decay", self.weight_decay, low=0.0))
        if self.in_features is not None:
            object.__setattr__(self, "in_features",
                               positive_int("in_features", self.in_features))
        if self.in_shape is not None:
            if not isinstance(self.in_shape, tuple) or not self.in_shape:
                raise TypeError(f"in_shape must be a non-empty tuple of ints (one sample's "
                                f"shape), got {self.in_shape!r}")
            object.__setattr__(self, "in_shape",
                               spatial("in_shape", self.in_shape, len(self.in_shape)))
            if self.in_features is not None and self.in_shape != (self.in_features,):
                raise ValueError(f"in_features={self.in_features} and in_shape="
                                 f"{self.in_shape} disagree: give one of them")
        shapes = self._check_shapes(nodes)
        self._check_output()
        object.__setattr__(self, "_nodes", tuple(nodes))
        object.__setattr__(self, "_shapes", shapes)
        # what every pass reads, worked out once: each level's node indices (the top level
        # starts at 0, a Residual's body at the Residual's index + 1), and the kinds
        paths = [path for path, _ in nodes]
        levels: dict[int, tuple[int, ...]] = {}
        for start, prefix in [(0, ""), *((i + 1, f"{p}.") for i, (p, layer) in
                                         enumerate(nodes) if isinstance(layer, Residual))]:
            levels[start] = tuple(i for i, p in enumerate(paths)
                                  if p.startswith(prefix) and "." not in p[len(prefix):])
        object.__setattr__(self, "_levels", levels)
        object.__setattr__(self, "_flags", (any(
            isinstance(layer, BatchNorm1d) for _, layer in nodes), any(
            isinstance(layer, Dropout) and layer.p for _, layer in nodes), any(
            layer.init_state(shape, np.dtype(np.float64))       # what each layer declares
            for (_, layer), shape in zip(self.nodes, shapes))))

    def _input_shape(self, nodes: list[tuple[str, Any]]) -> Shape:
        if self.in_shape is not None:
            return self.in_shape
        if self.in_features is not None:
            return (self.in_features,)
        for path, layer in nodes:
            if hasattr(layer, "in_channels"):
                raise ValueError(f"in_shape is required: {_where(path)} {layer!r} declares "
                                 "its channels, not the input's size (give Sequential(..., "
                                 "in_shape=(channels, height, width)))")
            for field in ("in_features", "num_features", "normalized_shape"):
                if hasattr(layer, field):
                    return (getattr(layer, field),)
        raise ValueError("in_features is required: no layer declares the input width "
                         "(give Sequential(..., in_features=n), or start with a Dense)")

    def _check_shapes(self, nodes: list[tuple[str, Any]]) -> tuple[Shape, ...]:
        """Every node's input shape (one sample), checked as the layers chain."""
        shapes: dict[str, Shape] = {}

        def chain(layers: Sequence[Any], shape: Shape, prefix: str) -> Shape:
            for i, layer in enumerate(layers):
                path = f"{prefix}{i}"
                shapes[path] = shape
                if isinstance(layer, Activation) and layer.output_only and \
                        not (prefix == "" and i == len(self.layers) - 1):
                    raise ValueError(f"{_where(path)} is {layer!r}, which couples a row's "
                                     "units and is allowed only as the last layer")
                if isinstance(layer, Residual):
                    out = chain(layer.body, shape, f"{path}.")
                    if out != shape:
                        raise ValueError(f"{_where(path)} {layer!r}: its body maps "
                                         f"(batch, {', '.join(map(str, shape))}) to (batch, "
                                         f"{', '.join(map(str, out))}); a skip needs the "
                                         "shape kept")
                    continue
                try:
                    shape = layer.out_shape(shape)
                except ValueError as error:
                    raise ValueError(f"{_where(path)}: {error}") from None
            return shape

        out = chain(self.layers, self._input_shape(nodes), "")
        if len(out) != 1:
            raise ValueError(f"the network's output is (batch, {', '.join(map(str, out))}); "
                             "a loss takes (batch, features): end with Flatten() (and a "
                             "Dense)")
        object.__setattr__(self, "_out_shape", out)
        return tuple(shapes[path] for path, _ in nodes)

    def _check_output(self) -> None:
        last = self.layers[-1]
        name = split_name(last.name)[0] if isinstance(last, Activation) else "identity"
        entry = LOSSES[self.loss]
        accepted = entry.output_activations
        if accepted is not None and name not in accepted:
            raise ValueError(f"loss {self.loss!r} needs the last layer to be an Activation, "
                             f"one of {sorted(accepted)}; got {last!r}")
        if entry.fused_with is not None and name != entry.fused_with:
            raise ValueError(f"loss {self.loss!r} is fused with {entry.fused_with!r}: the "
                             f"last layer must be Activation({entry.fused_with!r}), got {last!r}")

    def __repr__(self) -> str:
        fields = [f"[{', '.join(map(repr, self.layers))}]", f"loss={self.loss!r}",
                  f"reduction={self.reduction!r}", f"weight_decay={self.weight_decay!r}"]
        if self.in_features is not None:
            fields.append(f"in_features={self.in_features!r}")
        if self.in_shape is not None:
            fields.append(f"in_shape={self.in_shape!r}")
        return f"Sequential({', '.join(fields)})"

    # what the passes read -------------------------------------------------------

    @property
    def nodes(self) -> tuple[tuple[str, Any], ...]:
        """(path, layer) of every node in pass order (a Residual before its body)."""
        return self._nodes     # type: ignore[attr-defined]  # __post_init__

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(path for path, _ in self.nodes)

    @property
    def in_shapes(self) -> tuple[Shape, ...]:
        """Every node's input shape (one sample), in pass order."""
        return self._shapes    # type: ignore[attr-defined]  # __post_init__

    @property
    def n_in(self) -> int:
        return self.in_shapes[0][0]

    @property
    def n_out(self) -> int:
        return self._out_shape[0]   # type: ignore[attr-defined]

    @property
    def fused_output(self) -> bool:
        """True when the loss is fused with the last Activation: the backward starts at
        that activation's input, and the last layer has no d_a."""
        return LOSSES[self.loss].fused_with is not None

    @property
    def has_batch_norm(self) -> bool:
        """True when some node is a BatchNorm1d or BatchNorm2d: what needs batch norm
        itself (training batches of at least 2 samples, statistics of a whole dataset).
        State in general is ``has_state``."""
        return bool(self._flags[0])      # type: ignore[attr-defined]  # __post_init__

    @property
    def has_state(self) -> bool:
        """True when some node carries state across training steps: its layer's
        ``init_state`` is not empty for its input shape (batch norm's running statistics,
        or any layer's that declares some).  ``train`` updates it; ``predict`` reads it."""
        return bool(self._flags[2])      # type: ignore[attr-defined]  # __post_init__

    @property
    def has_dropout(self) -> bool:
        """True when some node is a Dropout with p > 0 (it takes a mask)."""
        return bool(self._flags[1])      # type: ignore[attr-defined]  # __post_init__

    def level(self, start: int) -> tuple[int, ...]:
        """The node indices of one level's layers: the top level's (``start`` 0), or a
        Residual's body's (``start``: the Residual's index + 1)."""
        return self._levels[start]       # type: ignore[attr-defined]


# the MLP spec, compiled ----------------------------------------------------------


def _hidden_block(spec: NetworkSpec, l: int) -> list[Any]:
    fan_in, fan_out = spec.layer_sizes[l], spec.layer_sizes[l + 1]
    block: list[Any] = [Dense(fan_in, fan_out)]
    norm = spec.norm(l)
    if norm == "batch":
        block.append(BatchNorm1d(fan_out))
    elif norm == "layer":
        block.append(LayerNorm(fan_out))
    block.append(Activation(spec.activations[l]))
    if l < len(spec.dropout) and spec.dropout[l]:
        block.append(Dropout(spec.dropout[l]))
    if l < len(spec.residual) and spec.residual[l]:
        return [Residual(block)]
    return block


@lru_cache(maxsize=256)
def compile_network(spec: NetworkSpec) -> Sequential:
    """The Sequential that computes what ``spec`` does, bit for bit (one per spec: both are
    frozen, so it is built once)."""
    layers = [layer for l in range(spec.n_layers) for layer in _hidden_block(spec, l)]
    return Sequential(layers, spec.loss, spec.reduction, spec.weight_decay)


@lru_cache(maxsize=256)
def compile_block(spec: NetworkSpec, l: int, dense: bool = True) -> Sequential:
    """Layer l of ``spec`` alone, as a Sequential: the nodes ``compile_network(spec)`` has
    for it (``handwritten.network.hidden_block`` folds it).  ``dense=False``: only what
    follows the Dense -- norm, activation, dropout, from z on, without the skip (what
    ``handwritten.network.hidden_block_backward`` folds back)."""
    block = _hidden_block(spec, l)
    if dense:
        return Sequential(block)
    parts = block[0].body if isinstance(block[0], Residual) else block
    return Sequential(parts[1:], in_features=spec.layer_sizes[l + 1])


class Block(NamedTuple):
    """Where one NetworkSpec layer's parts sit among its compiled Sequential's nodes (node
    indices; None where the layer has no such part)."""

    dense: int
    norm: int | None
    activation: int
    dropout: int | None
    residual: int | None

    @property
    def top(self) -> int:
        """The node whose output is the layer's a: the skip, else dropout, else f."""
        for i in (self.residual, self.dropout):
            if i is not None:
                return i
        return self.activation


@lru_cache(maxsize=256)
def blocks_of(seq: Sequential) -> tuple[Block, ...]:
    """The layers of a Sequential compiled from a NetworkSpec (``compile_network``, or
    ``compile_block``'s one), each as a ``Block``: a layer starts at a top-level Dense or
    Residual, and holds the nodes up to the next."""
    roles = {Dense: "dense", BatchNorm1d: "norm", LayerNorm: "norm",
             Activation: "activation", Dropout: "dropout", Residual: "residual"}
    groups: list[dict[str, int | None]] = []
    for i, (path, layer) in enumerate(seq.nodes):
        if "." not in path and isinstance(layer, (Dense, Residual)):
            groups.append({"norm": None, "dropout": None, "residual": None})
        groups[-1][roles[type(layer)]] = i
    return tuple(Block(**g) for g in groups)     # type: ignore[arg-type]


@lru_cache(maxsize=256)
def layer_of_node(spec: NetworkSpec) -> tuple[int, ...]:
    """For every node of ``compile_network(spec)``, the NetworkSpec layer it came from."""
    return tuple(l for l in range(spec.n_layers) for _ in _walk(_hidden_block(spec, l)))


def network_params(spec: NetworkSpec, params: Params) -> Params:
    """NetworkSpec params (W, b, gamma, beta per layer) as the compiled Sequential's: W, b
    on the Dense node, gamma, beta on the norm's, {} elsewhere (the same arrays)."""
    seq = compile_network(spec)
    out: Params = []
    for (_, layer), l in zip(seq.nodes, layer_of_node(spec)):
        keys = layer.param_shapes() if hasattr(layer, "param_shapes") else {}
        out.append({k: params[l][k] for k in keys})
    return out


@lru_cache(maxsize=256)
def network_blocks(spec: NetworkSpec) -> tuple[Block, ...]:
    """``blocks_of(compile_network(spec))``, found once per spec."""
    return blocks_of(compile_network(spec))


def network_grads(spec: NetworkSpec, grads: Params) -> Params:
    """The compiled Sequential's params-shaped list back to NetworkSpec's layout: each
    layer's dict is its Dense node's, then its norm node's (gamma, beta; a batch norm's
    running statistics), in a fresh dict.  Every other node holds {}."""
    return [grads[b.dense] | grads[b.norm] if b.norm is not None else grads[b.dense].copy()
            for b in network_blocks(spec)]


def network_masks(spec: NetworkSpec, masks: Masks | None) -> list[Any] | None:
    """NetworkSpec's per-hidden-layer masks on the compiled Sequential's Dropout nodes."""
    if masks is None:
        return None
    seq = compile_network(spec)
    return [masks[l] if isinstance(layer, Dropout) else None
            for (_, layer), l in zip(seq.nodes, layer_of_node(spec))]


def network_running(spec: NetworkSpec, running: Running | None) -> list[Any] | None:
    """NetworkSpec's per-layer running statistics on the compiled BatchNorm1d nodes."""
    if running is None:
        return None
    seq = compile_network(spec)
    return [running[l] if isinstance(layer, BatchNorm1d) else {}
            for (_, layer), l in zip(seq.nodes, layer_of_node(spec))]
