"""Random test problems: the one generator behind the suite, ``bpnet check`` and the benchmark.

An architecture is drawn first (depth, widths, an activation per layer from the
registries, a loss that accepts the output activation, a reduction, weight
decay), then the batch size, then a seed from which a ``numpy.random.Generator``
makes bounded params and data.  The draws go through a ``Chooser``, so the same
code serves Hypothesis (``tests/strategies.py``: draws that shrink to the
smallest network, batch and layer) and a plain seeded Generator (the benchmark's
random architectures, ``random_problems``).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from handwritten import (
    ACTIVATIONS,
    LOSSES,
    REDUCTIONS,
    LRSchedule,
    NetworkSpec,
    OptimizerSpec,
    Params,
)
from handwritten.activations import PARAMETERS
from handwritten.layers import (
    Activation,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    GroupNorm,
    LayerNorm,
    MaxPool2d,
    Residual,
    Sequential,
)
from handwritten.schedules import SCHEDULE_SETTINGS
from handwritten.spec import FLAGS, OPTIMIZER_DEFAULTS
from handwritten.training import draw_masks, has_dropout

T = TypeVar("T")

HIDDEN_ACTIVATIONS = sorted(n for n, a in ACTIVATIONS.items() if not a.output_only)
ALL_ACTIVATIONS = sorted(ACTIVATIONS)
WEIGHT_DECAYS = (0.0, 0.1)
TYPICAL_HYPERPARAMETERS = {"momentum": (1e-3, 0.99), "beta1": (0.0, 0.99),
                           "beta2": (0.9, 0.9999), "alpha": (0.8, 0.999), "eps": (1e-10, 1e-6),
                           "weight_decay": (0.0, 0.5), "dampening": (0.0, 0.9),
                           "lr_decay": (0.0, 0.5), "initial_accumulator_value": (0.0, 0.5)}
"""(low, high) of each hyperparameter as drawn by the suite and ``bpnet check --all``: inside
the valid ranges (handwritten.spec.HYPERPARAMETER_RANGES), where training usually happens."""


class Chooser(Protocol):
    """Where the random choices come from: Hypothesis's draw, or a seeded Generator."""

    def integer(self, low: int, high: int) -> int:
        """An integer in [low, high], both included."""

    def choice(self, options: Sequence[T]) -> T:
        """One of the options."""

    def real(self, low: float, high: float) -> float:
        """A float in [low, high]."""


@dataclass(frozen=True)
class GeneratorChooser:
    """A Chooser drawing from an explicit numpy.random.Generator."""

    rng: np.random.Generator

    def integer(self, low: int, high: int) -> int:
        return int(self.rng.integers(low, high + 1))

    def choice(self, options: Sequence[T]) -> T:
        return options[int(self.rng.integers(len(options)))]

    def real(self, low: float, high: float) -> float:
        return float(self.rng.uniform(low, high))


def losses_for(output_activation: str) -> list[str]:
    """Losses that accept this output activation."""
    return sorted(name for name, loss in LOSSES.items()
                  if loss.output_activations is None
                  or output_activation in loss.output_activations)


PARAMETER_RANGE = (0.05, 3.0)
"""Where a drawn activation parameter (leaky_relu's slope, elu's and celu's alpha) lies
when it is not the default: wide enough to move every derivative away from torch's
defaults, narrow enough that free-running training does not blow up (tests/
test_activations.py checks slopes and alphas up to 10, as numpy-ml draws them)."""


def with_parameter(choose: Chooser, name: str) -> str:
    """A parametrised activation's name at its default, or with a drawn value ("elu:1.7")."""
    if name not in PARAMETERS or not choose.choice((False, True)):
        return name
    return f"{name}:{choose.real(*PARAMETER_RANGE)!r}"


def draw_spec(choose: Chooser, max_depth: int = 4, max_width: int = 16,
              activations: Sequence[str] | None = None,
              exclude_losses: Sequence[str] = ()) -> NetworkSpec:
    """A valid NetworkSpec: depth, widths, activations, loss, reduction, weight decay."""
    depth = choose.integer(1, max_depth)
    sizes = tuple(choose.integer(1, max_width) for _ in range(depth + 1))
    hidden = list(activations or HIDDEN_ACTIVATIONS)
    names = [with_parameter(choose, choose.choice(hidden)) for _ in range(depth - 1)]
    out_choices = [a for a in (activations or ALL_ACTIVATIONS)
                   if not (a == "softmax" and sizes[-1] < 2)]
    names.append(with_parameter(choose, choose.choice(out_choices or ["identity"])))
    loss = choose.choice([n for n in losses_for(names[-1]) if n not in exclude_losses])
    reduction = choose.choice(REDUCTIONS)
    weight_decay = choose.choice(WEIGHT_DECAYS)
    return NetworkSpec(sizes, tuple(names), loss, reduction, weight_decay)


def make_targets(spec: NetworkSpec | Sequential, rng: np.random.Generator, batch: int,
                 dtype: Any, labels: bool = False) -> np.ndarray:
    """Targets the spec's loss accepts: reals, probabilities, or classes (labels, one-hot
    rows, or soft rows of class probabilities)."""
    n_out = spec.n_out
    kind = LOSSES[spec.loss].targets
    if kind == "class":
        idx = rng.integers(0, n_out, size=batch)
        if labels:
            return idx
        # one-hot rows, or soft rows of class probabilities: both are valid targets, and
        # only soft rows tell a - y from a + y away from the true class
        if rng.random() < 0.5:
            return np.eye(n_out, dtype=dtype)[idx]
        return rng.dirichlet(np.ones(n_out), size=batch).astype(dtype)
    if kind == "probability":
        return rng.uniform(0, 1, size=(batch, n_out)).astype(dtype)
    return rng.uniform(-1, 1, size=(batch, n_out)).astype(dtype)


def make_params(spec: NetworkSpec | Sequential, rng: np.random.Generator, dtype: Any,
                scale: float = 1.0) -> Params:
    """Bounded params: W ~ U(-s, s) sqrt(3 / fan_in) (unit-variance layers), b ~ U(-s, s) / 2;
    a norm's gamma ~ 1 + U(-s, s) / 2, beta ~ U(-s, s) / 2 (a Sequential: node by node,
    each named and shaped by its own layer, ``_node_params``)."""
    if isinstance(spec, Sequential):
        return [_node_params(layer, shape, rng, dtype, scale)
                for (_, layer), shape in zip(spec.nodes, spec.in_shapes)]
    params = []
    for fan_in, fan_out in zip(spec.layer_sizes[:-1], spec.layer_sizes[1:]):
        w = rng.uniform(-scale, scale, (fan_in, fan_out)) * np.sqrt(3.0 / fan_in)
        b = rng.uniform(-scale, scale, fan_out) / 2
        params.append({"W": w.astype(dtype), "b": b.astype(dtype)})
    for l, norm in enumerate(spec.norms):       # drawn after every W, b: plain specs unchanged
        if norm is not None:
            fan_out = spec.layer_sizes[l + 1]
            params[l]["gamma"] = (1 + rng.uniform(-scale, scale, fan_out) / 2).astype(dtype)
            params[l]["beta"] = (rng.uniform(-scale, scale, fan_out) / 2).astype(dtype)
    return params


def _node_params(layer: Any, in_shape: tuple[int, ...], rng: np.random.Generator, dtype: Any,
                 scale: float) -> dict[str, np.ndarray]:
    """One node's params, as its layer's own ``init`` names, shapes and orders them (that
    start made from a Generator of its own: the problem's draws never depend on it), moved
    to bounded draws in the order of its keys:

        a weight (2 or more axes)   U(-s, s) sqrt(3 / fan_in), fan_in the product of every
                                    axis but the first (torch's (out, in, *kernel) layout;
                                    Dense's (fan_in, fan_out): the first)
        any other param             its start + U(-s, s) / 2 (b, beta from 0, gamma from 1)

    So a new layer's params are drawn with no line here, and Dense's, a convolution's and
    a norm's are the draws they always were, bit for bit."""
    if not getattr(layer, "param_shapes", dict)():
        return {}
    start = layer.init(in_shape, np.random.default_rng(0), "blog", np.dtype(np.float64))
    params = {}
    for key, begin in start.items():
        if begin.ndim >= 2:
            fan_in = begin.shape[0] if isinstance(layer, Dense) else math.prod(begin.shape[1:])
            value = rng.uniform(-scale, scale, begin.shape) * np.sqrt(3.0 / fan_in)
        else:
            value = begin + rng.uniform(-scale, scale, begin.shape) / 2
        params[key] = np.asarray(value).astype(dtype)
    return params


def make_masks(spec: NetworkSpec | Sequential, rng: np.random.Generator, batch: int, dtype: Any
               ) -> list[np.ndarray | None] | None:
    """Dropout's keep-masks (1 with probability 1 - p), one per hidden layer, None where
    p = 0; None for a spec without dropout (a Sequential: one entry per node)."""
    if not has_dropout(spec):
        return None
    return draw_masks(spec, batch, rng, np.dtype(dtype))     # as train draws a step's


NORM_CHOICES = (None, "batch", "layer")
MIN_NORM_COUNT = 4
"""The fewest entries a drawn norm averages over (see draw_block_spec)."""


def draw_block_spec(choose: Chooser, max_depth: int = 4, max_width: int = 8,
                    exclude_losses: Sequence[str] = (),
                    activations: Sequence[str] | None = None) -> NetworkSpec:
    """A spec with at least one hidden layer, each hidden layer a block with a drawn norm,
    dropout (half the time, p in (0.05, 0.7)) and, where the widths allow it, a residual
    skip (a hidden width repeats its input's half the time, so that skips are drawn)."""
    depth = choose.integer(2, max_depth)
    sizes = [choose.integer(1, max_width)]
    for _ in range(depth):
        sizes.append(sizes[-1] if choose.choice((False, True)) else
                     choose.integer(1, max_width))
    hidden = [with_parameter(choose, choose.choice([a for a in activations or HIDDEN_ACTIVATIONS
                                                    if a != "softmax"]))
              for _ in range(depth - 1)]
    out_choices = [a for a in activations or ALL_ACTIVATIONS
                   if not (a == "softmax" and sizes[-1] < 2)]
    out = with_parameter(choose, choose.choice(out_choices))
    loss = choose.choice([n for n in losses_for(out) if n not in exclude_losses])
    # layer norm only where it averages over at least MIN_NORM_COUNT features (batch norm
    # over at least as many samples: block_problems draws such batches) -- below that the
    # norm's backward is the residue of a cancellation (for 2 entries x_hat is +-1 up to eps)
    norms = tuple(choose.choice(NORM_CHOICES if sizes[l + 1] >= MIN_NORM_COUNT
                                else (None, "batch")) for l in range(depth - 1))
    dropout = tuple(choose.real(0.05, 0.7) if choose.choice((False, True)) else 0.0
                    for _ in range(depth - 1))
    residual = tuple(sizes[l] == sizes[l + 1] and choose.choice((False, True))
                     for l in range(depth - 1))
    return NetworkSpec(tuple(sizes), (*hidden, out), loss, choose.choice(REDUCTIONS),
                       choose.choice(WEIGHT_DECAYS), norms=norms, dropout=dropout,
                       residual=residual)


def _draw_node(choose: Chooser, width: int, max_width: int, nested: bool,
               activations: Sequence[str]) -> tuple[Any, int]:
    """One layer taking ``width`` features, and the width it gives: a Dense, an activation,
    a norm (over at least MIN_NORM_COUNT entries, as draw_block_spec), dropout, or (not
    inside another) a Residual around one to three layers that keep the width."""
    kinds = ["dense", "activation", "norm", "dropout"] + ([] if nested else ["residual"])
    kind = choose.choice(kinds)
    if kind == "dense":
        out = width if nested else choose.integer(1, max_width)
        return Dense(width, out), out
    if kind == "activation":
        return Activation(with_parameter(choose, choose.choice(list(activations)))), width
    if kind == "norm":
        layer = LayerNorm(width) if width >= MIN_NORM_COUNT and choose.choice((False, True)) \
            else BatchNorm1d(width)
        return layer, width
    if kind == "dropout":
        return Dropout(choose.real(0.05, 0.7)), width
    body = [_draw_node(choose, width, max_width, True, activations)[0]
            for _ in range(choose.integer(1, 3))]
    return Residual(body), width


def draw_sequential(choose: Chooser, max_layers: int = 5, max_width: int = 6,
                    activations: Sequence[str] | None = None,
                    exclude_losses: Sequence[str] = ()) -> Sequential:
    """A valid Sequential with its layers in a random order: the input width, then up to
    ``max_layers`` layers of any kind (a norm first, two activations in a row, dropout
    anywhere, a Residual around several layers), then a Dense to the output width and,
    most of the time, an output activation with a loss that accepts it."""
    hidden = [a for a in activations or HIDDEN_ACTIVATIONS if a != "softmax"]
    width = choose.integer(1, max_width)
    first = width
    layers = []
    for _ in range(choose.integer(0, max_layers)):
        layer, width = _draw_node(choose, width, max_width, False, hidden)
        layers.append(layer)
    layers, loss, reduction, weight_decay = _head(choose, layers, width, max_width,
                                                  activations, exclude_losses)
    return Sequential(tuple(layers), loss, reduction, weight_decay, in_features=first)


def _head(choose: Chooser, layers: list[Any], width: int, max_width: int,
          activations: Sequence[str] | None, exclude_losses: Sequence[str]
          ) -> tuple[list[Any], str, str, float]:
    """A Dense to a drawn output width, most of the time an output activation, and a loss
    that accepts it, its reduction and weight decay."""
    n_out = choose.integer(1, max_width)
    layers.append(Dense(width, n_out))
    out_choices = [a for a in activations or ALL_ACTIVATIONS if not (a == "softmax" and n_out < 2)]
    out = with_parameter(choose, choose.choice(out_choices)) if choose.choice((False, True, True)) \
        else None
    if out is not None:
        layers.append(Activation(out))
    loss = choose.choice([n for n in losses_for(out or "identity") if n not in exclude_losses])
    return layers, loss, choose.choice(REDUCTIONS), choose.choice(WEIGHT_DECAYS)


def _draw_conv(choose: Chooser, shape: tuple[int, ...], max_channels: int,
               same: bool = False) -> Any:
    """A Conv1d or Conv2d taking ``shape`` (C, *spatial) with every argument drawn: kernel
    1-3, stride 1-2, dilation 1-2, padding an int, a tuple, 'same' or 'valid', groups a
    divisor of C, bias or not.  ``same``: one that keeps the shape (a Residual's body)."""
    dims, channels = len(shape) - 1, shape[0]
    cls = Conv2d if dims == 2 else Conv1d
    groups = choose.choice([g for g in range(1, channels + 1) if channels % g == 0])
    out = channels if same else groups * choose.integer(1, max(1, max_channels // groups))
    kernel = tuple(choose.integer(1, 3) for _ in range(dims))
    dilation = tuple(choose.integer(1, 2) for _ in range(dims))
    padding: Any = "same" if same else choose.choice(("same", "valid", "int", "tuple"))
    stride = (1,) * dims if padding == "same" else tuple(choose.integer(1, 2) for _ in range(dims))
    if padding == "int":
        padding = choose.integer(0, 2)
    elif padding == "tuple":
        padding = tuple(choose.integer(0, 2) for _ in range(dims))
    bias = choose.choice((True, False))
    return cls(channels, out, kernel, stride, padding, dilation, groups, bias)


def _draw_image_node(choose: Chooser, shape: tuple[int, ...], max_channels: int,
                     nested: bool, activations: Sequence[str]) -> Any:
    """One layer taking ``shape`` (C, *spatial): a convolution, an activation, dropout, a
    GroupNorm (over at least MIN_NORM_COUNT entries) and, for images, a pool (max or
    average, ties and borders included), a BatchNorm2d or (not inside another) a Residual
    around shape-keeping layers; an activation where a drawn window does not fit."""
    image = len(shape) == 3
    kinds = ["conv", "conv", "activation", "dropout", "group"] + (
        ["max", "avg", "norm"] + ([] if nested else ["residual"]) if image else [])
    kind = choose.choice(kinds)
    layer: Any
    if kind == "conv":
        layer = _draw_conv(choose, shape, max_channels, same=nested)
    elif kind in ("max", "avg"):                 # per axis: non-square windows too
        kernel = (choose.integer(1, 3), choose.integer(1, 3))
        stride = (choose.integer(1, 3), choose.integer(1, 3))
        padding = (choose.integer(0, kernel[0] // 2), choose.integer(0, kernel[1] // 2))
        layer = MaxPool2d(kernel, stride, padding) if kind == "max" else \
            AvgPool2d(kernel, stride, padding, count_include_pad=choose.choice((True, False)))
    elif kind == "norm":
        layer = BatchNorm2d(shape[0])
    elif kind == "group":                        # over at least MIN_NORM_COUNT entries
        groups = choose.choice([g for g in range(1, shape[0] + 1) if shape[0] % g == 0
                                and int(np.prod(shape)) // g >= MIN_NORM_COUNT] or [0])
        layer = GroupNorm(groups, shape[0]) if groups else None
    elif kind == "dropout":
        layer = Dropout(choose.real(0.05, 0.7))
    elif kind == "residual":
        layer = Residual([_draw_image_node(choose, shape, max_channels, True, activations)
                          for _ in range(choose.integer(1, 2))])
    else:
        layer = None
    if layer is not None:
        try:
            if layer.out_shape(shape) == shape or not nested:
                return layer
        except ValueError:                       # a window larger than the padded input
            pass
    return Activation(with_parameter(choose, choose.choice(list(activations))))


def draw_conv_sequential(choose: Chooser, max_layers: int = 3, max_channels: int = 4,
                         max_size: int = 7, max_width: int = 4,
                         activations: Sequence[str] | None = None,
                         exclude_losses: Sequence[str] = ()) -> Sequential:
    """A valid convolutional Sequential: images (C, H, W) a quarter of the time sequences
    (C, L) for Conv1d; up to ``max_layers`` layers drawn by ``_draw_image_node`` in any
    order; for images, global average pooling half the time; then Flatten and the head
    of ``draw_sequential`` (a Dense, an output activation, a loss)."""
    hidden = [a for a in activations or HIDDEN_ACTIVATIONS if a != "softmax"]
    dims = 1 if choose.choice((False, False, False, True)) else 2
    shape: tuple[int, ...] = (choose.integer(1, max_channels),
                              *(choose.integer(2, max_size) for _ in range(dims)))
    first = shape
    layers: list[Any] = []
    for _ in range(choose.integer(1, max_layers)):
        layer = _draw_image_node(choose, shape, max_channels, False, hidden)
        shape = layer.out_shape(shape)
        layers.append(layer)
    if dims == 2 and choose.choice((False, True)):
        layers.append(AdaptiveAvgPool2d((1, 1)))
        shape = (shape[0], 1, 1)
    layers.append(Flatten())
    width = int(np.prod(shape))
    layers, loss, reduction, weight_decay = _head(choose, layers, width, max_width,
                                                  activations, exclude_losses)
    return Sequential(tuple(layers), loss, reduction, weight_decay, in_shape=first)


SpecT = TypeVar("SpecT", bound=NetworkSpec | Sequential)


@dataclass
class Problem(Generic[SpecT]):
    """One case: spec, params, x and y, all made from ``seed``.

    Its repr is a line a user can paste to rebuild it exactly.
    """

    spec: SpecT
    batch: int
    seed: int
    dtype: str = "float64"
    labels: bool = False
    scale: float = 1.0
    """of the params (``make_params``): 6 saturates sigmoid and tanh units."""
    params: Params = field(init=False, repr=False)
    x: np.ndarray = field(init=False, repr=False)
    y: np.ndarray = field(init=False, repr=False)
    masks: list[np.ndarray | None] | None = field(init=False, repr=False)
    """Dropout's keep-masks, drawn after y (None without dropout)."""

    def __post_init__(self) -> None:
        if not isinstance(self.spec, (NetworkSpec, Sequential)):
            raise TypeError(f"spec must be a NetworkSpec or a Sequential, got "
                            f"{type(self.spec).__name__}")
        for name, low in (("batch", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not (isinstance(self.scale, (int, float)) and 0 < self.scale < np.inf):
            raise ValueError(f"scale must be a positive number, got {self.scale!r}")
        if self.labels and LOSSES[self.spec.loss].targets != "class":
            raise ValueError(f"labels needs a loss with class targets, not {self.spec.loss}")
        rng = np.random.default_rng(self.seed)
        self.params = make_params(self.spec, rng, self.dtype, self.scale)
        sample = self.spec.in_shapes[0] if isinstance(self.spec, Sequential) else \
            (self.spec.n_in,)
        self.x = rng.uniform(-1.5, 1.5, (self.batch, *sample)).astype(self.dtype)
        self.y = make_targets(self.spec, rng, self.batch, self.dtype, self.labels)
        self.masks = make_masks(self.spec, rng, self.batch, self.dtype)

    def __repr__(self) -> str:
        scale = f", scale={self.scale!r}" if self.scale != 1.0 else ""
        return (f"Problem({self.spec!r}, batch={self.batch}, seed={self.seed}, "
                f"dtype={self.dtype!r}, labels={self.labels}{scale})  "
                "# from bpnet.problems import Problem; from handwritten import NetworkSpec"
                + ("; from handwritten.layers import *" if isinstance(self.spec, Sequential)
                   else ""))

    def astype(self, dtype: str) -> Problem[SpecT]:
        """The same draw in another dtype (float32 values are the float64 ones rounded)."""
        return Problem(self.spec, self.batch, self.seed, dtype, self.labels, self.scale)


def replay_command(case: str) -> str:
    """The command line that re-runs a ``Problem(...)`` line: bpnet check --replay "..."."""
    line = case.split("  #")[0]
    quoted = f'"{line}"' if not set(line) & set('"$`\\!') else shlex.quote(line)
    return f"bpnet check --replay {quoted}"


def draw_problem(choose: Chooser, max_depth: int = 4, max_width: int = 16, max_batch: int = 32,
                 dtype: str = "float64", exclude_losses: Sequence[str] = ()
                 ) -> Problem[NetworkSpec]:
    """spec, then batch size, then a seed for params, x and y."""
    spec = draw_spec(choose, max_depth, max_width, exclude_losses=exclude_losses)
    batch = choose.integer(1, max_batch)
    labels = LOSSES[spec.loss].targets == "class" and choose.choice((False, True))
    seed = choose.integer(0, 2**32 - 1)
    return Problem(spec, batch, seed, dtype, labels)


def random_problems(n: int, seed: int, **limits: Any) -> list[Problem[NetworkSpec]]:
    """n problems drawn as the suite draws them, from one seeded Generator."""
    choose = GeneratorChooser(np.random.default_rng(seed))
    return [draw_problem(choose, **limits) for _ in range(n)]


# optimizers ------------------------------------------------------------------

SCHEDULE_NAMES = ("none", *sorted(SCHEDULE_SETTINGS))
CLIPPING = ("none", "norm", "value")
LONGEST_RUN = 400
"""Steps a drawn onecycle schedule leaves room for (the suite's longest trajectory: 30
epochs of 12 batches; torch refuses to step a OneCycleLR beyond total_steps)."""


def draw_schedule(choose: Chooser) -> LRSchedule | None:
    """No schedule, or any schedule with settings where training usually happens, with or
    without a linear warm-up."""
    name = choose.choice(SCHEDULE_NAMES)
    if name == "none":
        return None
    settings: dict[str, Any] = {}
    if name == "step":
        settings = {"step_size": choose.integer(1, 20), "gamma": choose.real(0.1, 0.99)}
    elif name == "multistep":
        milestones = [choose.integer(0, 60) for _ in range(choose.integer(1, 3))]
        settings = {"milestones": tuple(milestones), "gamma": choose.real(0.1, 0.99)}
    elif name == "exponential":
        settings = {"gamma": choose.real(0.9, 0.999)}
    elif name == "cosine":
        settings = {"t_max": choose.integer(1, LONGEST_RUN), "eta_min": choose.real(0.0, 1e-3)}
    elif name == "onecycle":
        settings = {"total_steps": choose.integer(LONGEST_RUN, LONGEST_RUN + 200),
                    "pct_start": choose.real(0.05, 0.95)}
        return LRSchedule(name, settings)
    warmup = choose.choice((0, choose.integer(1, 10)))
    return LRSchedule(name, settings, warmup, choose.real(0.01, 1.0))


def draw_optimizer(choose: Chooser, name: str | None = None) -> OptimizerSpec:
    """Any registered optimizer (or ``name``) with every hyperparameter drawn: numbers in
    TYPICAL_HYPERPARAMETERS, each flag on or off, dampening and rmsprop's momentum 0 (none,
    and what optax has) or not, a
    schedule or none, clipping by norm, by value or none.

    adagrad's eps is 0 half of the time (the one value where optax's adagrad, eps inside
    the square root, is torch's); its accumulator then starts above 0, since a gradient
    entry that is exactly 0 at the first step would otherwise give 0 / 0.
    """
    name = name or choose.choice(sorted(OPTIMIZER_DEFAULTS))
    hyper: dict[str, float] = {}
    for key in OPTIMIZER_DEFAULTS[name]:
        if key in FLAGS:
            hyper[key] = choose.choice((False, True))
        elif key == "dampening" or (key == "momentum" and name == "rmsprop"):
            hyper[key] = choose.choice((0.0, choose.real(*TYPICAL_HYPERPARAMETERS[key])))
        elif key == "eps" and name == "adagrad":
            hyper[key] = choose.choice((0.0, choose.real(*TYPICAL_HYPERPARAMETERS[key])))
        else:
            hyper[key] = choose.real(*TYPICAL_HYPERPARAMETERS[key])
    if name == "adagrad" and hyper["eps"] == 0.0:
        hyper["initial_accumulator_value"] += 0.01
    lr = choose.real(1e-4, 0.1)
    schedule = draw_schedule(choose)
    clipping = choose.choice(CLIPPING)
    clip_norm = choose.real(0.1, 2.0) if clipping == "norm" else None
    clip_value = choose.real(0.01, 1.0) if clipping == "value" else None
    return OptimizerSpec(name, lr, hyper, schedule, clip_norm, clip_value)
