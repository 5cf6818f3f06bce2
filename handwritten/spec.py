"""The shared vocabulary: what a network, its params, a trace, an optimizer and a run are.

Every implementation (``handwritten``, ``reference_torch``, ``reference_jax``)
speaks in these types, NumPy in and out:

- ``NetworkSpec``: layer sizes, one activation per layer, the loss, its reduction
  and an optional L2 weight decay; validated on construction.
- ``Params``: one ``{"W": (fan_in, fan_out), "b": (fan_out,)}`` dict per layer
  (z = a_prev @ W + b); gradients, optimizer buffers and updates have exactly
  this structure.
- ``Trace``: every quantity of one forward and backward pass, built by its one
  constructor ``Trace.from_passes``.
- ``OptimizerSpec``: an optimizer's name, learning rate and hyperparameters
  (their defaults and valid ranges are ``OPTIMIZER_DEFAULTS`` and
  ``HYPERPARAMETER_RANGES``; the update rules are in ``handwritten.optimizers``).
- ``Shuffle``: a batch order drawn one epoch at a time from a seed.
- ``History``: what a training run did (with batch norm's running statistics, ``Running``).

The two field checks the constructors use, ``positive_int`` and ``finite_real``,
are defined here and reused by ``handwritten.checks``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from handwritten.activations import ACTIVATIONS, activation, split_name
from handwritten.losses import LOSSES, REDUCTIONS
from handwritten.schedules import SCHEDULE_SETTINGS, WARMUP_START, learning_rate, learning_rates

Array = NDArray[np.floating[Any]]
Scalar = np.floating[Any]
Params = list[dict[str, Array]]
"""One ``{"W": (fan_in, fan_out), "b": (fan_out,)}`` dict per layer; gradients alike."""
Masks = Sequence[Any]
"""Dropout's keep-masks: one (batch, fan_out) array of 0s and 1s per hidden layer, None
where that layer has no dropout."""
Running = list[dict[str, Array]]
"""Batch norm's running statistics, params-shaped: one dict per layer, ``{"mean": (fan_out,),
"var": (fan_out,)}`` on a layer with batch norm and ``{}`` on every other.  State, not
params: ``train`` carries it (``History.running``), ``predict`` normalizes with it."""
State = dict[str, Any]
"""Optimizer state: ``"t"`` (steps taken) and params-shaped buffers by name."""


# field checks ----------------------------------------------------------------


def positive_int(name: str, value: object) -> int:
    """A positive integer (bools refused), returned as a Python int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def finite_real(name: str, value: object, *, low: float, high: float = np.inf,
                low_open: bool = False, high_open: bool = True, why_inf: str = "",
                why_low: str = "") -> float:
    """A finite real number in an interval, returned as a Python float.  ``why_inf`` and
    ``why_low`` say why +inf, or a value below the interval, is refused (where torch
    takes it), after the message."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    too_low = v <= low if low_open else v < low
    too_high = v >= high if high_open else v > high
    if not np.isfinite(v) or too_low or too_high:
        interval = ("(" if low_open else "[") + f"{low}, {high}" + (")" if high_open else "]")
        why = why_inf if v == np.inf else why_low if too_low else ""
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}"
                         + (f": {why}" if why else ""))
    return v


def _check_name(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a name (str), got {type(value).__name__}: {value!r}")


def _as_tuple(name: str, value: object) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a tuple or list, got {type(value).__name__}")
    return tuple(value)


# the network -----------------------------------------------------------------


NORMS = (None, "batch", "layer")
"""A hidden layer's normalization: none, batch norm or layer norm."""
NORM_EPS = 1e-5
"""eps of both norms, torch.nn.BatchNorm1d's and torch.nn.LayerNorm's default."""
BATCH_NORM_MOMENTUM = 0.1
"""torch.nn.BatchNorm1d's momentum: running = (1 - momentum) running + momentum batch."""


@dataclass(frozen=True, repr=False)
class NetworkSpec:
    """What a network is: sizes, activations, loss.  Validated on construction.

    Parameters
    ----------
    layer_sizes : tuple of int
        ``(n_in, h_1, ..., n_out)``, at least two entries, each >= 1.
    activations : tuple of str
        One name from ``ACTIVATIONS`` per layer (``len(layer_sizes) - 1``);
        hidden and output layers may differ.  softmax only on the output layer.
        leaky_relu, elu and celu take their parameter after a colon: "leaky_relu:0.2"
        (slope), "elu:0.5", "celu:2" (alpha); without one, torch's default.
    loss : str
        A name from ``LOSSES``; it must accept the output activation.
    reduction : {"mean", "sum"}
        How the loss reduces over the batch (see ``handwritten.losses``).
    weight_decay : float
        L2 penalty lambda >= 0: adds lambda/2 * sum ||W||^2 to the loss.
    norms, dropout, residual : tuples, one entry per hidden layer (``len(layer_sizes) - 2``)
        The optional parts of a hidden block, in the order of torchvision.ops.MLP
        (``handwritten.network``): ``z = a_prev @ W + b -> norm -> f -> dropout -> + a_prev``.
        ``norms[i]`` is None, "batch" (torch.nn.BatchNorm1d, training mode) or "layer"
        (torch.nn.LayerNorm), each with affine gamma, beta: that layer's params gain
        "gamma" and "beta".  ``dropout[i]`` is the drop probability p in [0, 1) of inverted
        dropout with keep-masks given as inputs (``masks=``).  ``residual[i]`` adds the
        block's input to its output (only where fan_in == fan_out).  Empty (the default)
        means none anywhere: every spec without them means what it always meant.
    """

    layer_sizes: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str = "half_mse"
    reduction: str = "mean"
    weight_decay: float = 0.0
    norms: tuple[str | None, ...] = ()
    dropout: tuple[float, ...] = ()
    residual: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        sizes = _as_tuple("layer_sizes", self.layer_sizes)
        names = _as_tuple("activations", self.activations)
        if len(sizes) < 2:
            raise ValueError(f"layer_sizes needs at least (n_in, n_out), got {sizes}")
        sizes = tuple(positive_int(f"layer_sizes[{i}]", n) for i, n in enumerate(sizes))
        object.__setattr__(self, "layer_sizes", sizes)
        object.__setattr__(self, "activations", names)
        for i, name in enumerate(names):
            _check_name(f"activations[{i}]", name)
        _check_name("loss", self.loss)
        _check_name("reduction", self.reduction)
        if len(names) != len(sizes) - 1:
            raise ValueError(f"activations needs one name per layer ({len(sizes) - 1} for "
                             f"layer_sizes {sizes}), got {len(names)}: {names}")
        for i, name in enumerate(names):
            if name.partition(":")[0] not in ACTIVATIONS:
                raise ValueError(f"activations[{i}] is unknown: {name!r}; "
                                 f"expected one of {sorted(ACTIVATIONS)}")
            try:
                entry = activation(name)
            except ValueError as error:
                raise ValueError(f"activations[{i}] is not valid: {error}") from None
            if entry.output_only and i != len(names) - 1:
                raise ValueError(f"activations[{i}] is {name!r}, which is allowed only on the "
                                 "output layer")
        if self.loss not in LOSSES:
            raise ValueError(f"loss is unknown: {self.loss!r}; expected one of {sorted(LOSSES)}")
        accepted = LOSSES[self.loss].output_activations
        if accepted is not None and split_name(names[-1])[0] not in accepted:
            raise ValueError(f"loss {self.loss!r} needs the output activation to be one of "
                             f"{sorted(accepted)}, got {names[-1]!r}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        object.__setattr__(self, "weight_decay",
                           finite_real("weight_decay", self.weight_decay, low=0.0))
        self._check_blocks()

    def _check_blocks(self) -> None:
        hidden = len(self.layer_sizes) - 2
        norms = _as_tuple("norms", self.norms) or (None,) * hidden
        dropout = _as_tuple("dropout", self.dropout) or (0.0,) * hidden
        residual = _as_tuple("residual", self.residual) or (False,) * hidden
        for name, values in (("norms", norms), ("dropout", dropout), ("residual", residual)):
            if len(values) != hidden:
                raise ValueError(f"{name} needs one entry per hidden layer ({hidden} for "
                                 f"layer_sizes {self.layer_sizes}), got {len(values)}: {values}")
        for i, norm in enumerate(norms):
            if norm not in NORMS:
                raise ValueError(f"norms[{i}] must be one of {NORMS}, got {norm!r}")
        dropout = tuple(finite_real(f"dropout[{i}]", p, low=0.0, high=1.0)
                        for i, p in enumerate(dropout))
        for i, skip in enumerate(residual):
            if not isinstance(skip, (bool, np.bool_)):
                raise TypeError(f"residual[{i}] must be a bool, got {type(skip).__name__}")
            if skip and self.layer_sizes[i] != self.layer_sizes[i + 1]:
                raise ValueError(f"residual[{i}] needs fan_in == fan_out, got layer_sizes "
                                 f"{self.layer_sizes[i]} -> {self.layer_sizes[i + 1]}")
        object.__setattr__(self, "norms", tuple(norms))
        object.__setattr__(self, "dropout", dropout)
        object.__setattr__(self, "residual", tuple(bool(r) for r in residual))
        blocks = (any(n is not None for n in norms) or any(dropout) or any(residual))
        object.__setattr__(self, "_blocks", blocks)       # read on every forward: kept

    def __repr__(self) -> str:
        """The constructor call, leaving out the hidden-block tuples when they are all off
        (so a plain spec reads as it always did, and ``--replay`` takes it back)."""
        fields = [f"layer_sizes={self.layer_sizes!r}", f"activations={self.activations!r}",
                  f"loss={self.loss!r}", f"reduction={self.reduction!r}",
                  f"weight_decay={self.weight_decay!r}"]
        if self.has_blocks:
            fields += [f"norms={self.norms!r}", f"dropout={self.dropout!r}",
                       f"residual={self.residual!r}"]
        return f"NetworkSpec({', '.join(fields)})"

    @property
    def has_blocks(self) -> bool:
        """True when some hidden layer has a norm, dropout or a residual skip."""
        return bool(self._blocks)    # type: ignore[attr-defined]  # set in __post_init__

    def norm(self, l: int) -> str | None:
        """Layer l's norm (None for the output layer and wherever there is none)."""
        return self.norms[l] if l < len(self.norms) else None

    @property
    def n_layers(self) -> int:
        """Number of weight layers, len(layer_sizes) - 1."""
        return len(self.layer_sizes) - 1

    @property
    def n_in(self) -> int:
        """The input width, layer_sizes[0]."""
        return self.layer_sizes[0]

    @property
    def n_out(self) -> int:
        """The output width, layer_sizes[-1]."""
        return self.layer_sizes[-1]

    @property
    def fused_output(self) -> bool:
        """True when the loss is fused with the output activation: the output layer's
        gradient starts at d_z, and that layer has no d_a."""
        return LOSSES[self.loss].fused_with is not None


# the trace -------------------------------------------------------------------

FORWARD_QUANTITIES = ("z", "mu", "var", "x_hat", "n", "h", "a", "out")
BACKWARD_QUANTITIES = ("d_out", "d_a", "d_h", "d_n", "d_x_hat", "d_z", "d_W", "d_b", "d_gamma",
                       "d_beta")
"""Every quantity a layer's trace may hold, in the order the passes form them; a plain
dense layer has z, a and d_a, d_z, d_W, d_b, a hidden block the others where it has the
part that forms them (a norm: mu, var, x_hat, n, d_n, d_x_hat, d_gamma, d_beta; dropout or
a residual skip: h, the activation's output, and d_h).  A Sequential's Dropout and Residual
nodes name their output ``out`` (and its gradient ``d_out``)."""


class Trace(NamedTuple):
    """Every quantity of one forward and backward pass.

    ``layers[l]`` maps "z", "a", "d_a", "d_z", "d_W", "d_b" to layer l's arrays
    (the output layer of a fused loss has no "d_a").  Build one with
    ``Trace.from_passes``, the constructor every implementation uses.
    """

    loss: Scalar
    layers: list[dict[str, Array]]

    @classmethod
    def from_passes(cls, spec: NetworkSpec, loss: Any, *, z: Sequence[Any], a: Sequence[Any],
                    d_a: Sequence[Any], d_z: Sequence[Any], d_W: Sequence[Any],
                    d_b: Sequence[Any], blocks: Sequence[Mapping[str, Any]] | None = None
                    ) -> Trace:
        """A trace from per-layer sequences of every quantity (anything ``np.asarray`` takes).

        ``d_a`` of the output layer is dropped when the spec's loss is fused
        (its gradient starts at d_z), whatever the caller passes there.  ``blocks``: per
        layer, the quantities of its hidden block's optional parts (mu, var, x_hat, n, h,
        d_h, d_n, d_x_hat, d_gamma, d_beta where the block has them).
        """
        quantities = {"z": z, "a": a, "d_a": d_a, "d_z": d_z, "d_W": d_W, "d_b": d_b}
        layers = []
        for l in range(spec.n_layers):
            layer = {name: np.asarray(values[l]) for name, values in quantities.items()
                     if not (name == "d_a" and spec.fused_output and l == spec.n_layers - 1)}
            if blocks is not None:
                layer |= {name: np.asarray(value) for name, value in blocks[l].items()}
            layers.append(layer)
        scalar: Scalar = np.asarray(loss)[()]  # type: ignore[assignment]  # a 0-d index
        return cls(scalar, layers)

    @classmethod
    def from_layers(cls, loss: Any, layers: Sequence[Mapping[str, Any]]) -> Trace:
        """A Sequential's trace: one mapping of quantities per node (``Sequential.paths``
        order), each value anything ``np.asarray`` takes."""
        scalar: Scalar = np.asarray(loss)[()]  # type: ignore[assignment]  # a 0-d index
        return cls(scalar, [{k: np.asarray(v) for k, v in node.items()} for node in layers])


# the optimizer ---------------------------------------------------------------

OPTIMIZER_DEFAULTS: Mapping[str, Mapping[str, float]] = MappingProxyType({
    "sgd": {"weight_decay": 0.0, "maximize": False},
    "momentum": {"momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0, "maximize": False},
    "nesterov": {"momentum": 0.9, "weight_decay": 0.0, "maximize": False},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
             "amsgrad": False, "maximize": False},
    "adamw": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2,
              "amsgrad": False, "maximize": False},
    "rmsprop": {"alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0,
                "centered": False, "maximize": False},
    "adagrad": {"lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.0,
                "eps": 1e-10, "maximize": False},
})
"""Every optimizer's hyperparameters and their defaults: torch.optim's, except momentum 0.9
for "momentum" and "nesterov" (torch's SGD default 0 is plain "sgd").  torch's SGD is split
into three names; nesterov takes no dampening (torch refuses nesterov with dampening), and
sgd none (without momentum torch ignores it)."""

FLAGS = frozenset({"maximize", "amsgrad", "centered"})
"""The hyperparameters that are switches (bool), not numbers."""

HYPERPARAMETER_RANGES: Mapping[str, tuple[float, float, bool]] = MappingProxyType({
    # (low, high, low_open); high is always open.  Each is torch.optim's own check:
    # what torch accepts is accepted (momentum 1.5 or alpha 2 diverge, as in torch).
    "momentum": (0.0, np.inf, True),  # 0 is plain sgd (and torch refuses nesterov at 0)
    "dampening": (-np.inf, np.inf, False),     # torch checks nothing
    "beta1": (0.0, 1.0, False),
    "beta2": (0.0, 1.0, False),
    "alpha": (0.0, np.inf, False),
    "eps": (0.0, np.inf, False),
    "weight_decay": (0.0, np.inf, False),
    "lr_decay": (0.0, np.inf, False),
    "initial_accumulator_value": (0.0, np.inf, False),
})
"""The valid interval of every numeric hyperparameter (rmsprop's momentum also takes 0,
which means none, as in torch)."""

WHY_NOT_INF: Mapping[str, str] = MappingProxyType({
    "lr": "torch takes inf, but then the first step makes the params inf or NaN",
    "momentum": "torch takes inf, but then the params are inf or NaN within two steps",
    "eps": "torch takes inf, but then every update is 0: nothing trains",
    "initial_accumulator_value": "torch takes inf, but then every update is 0: nothing trains",
    "clip": "torch takes inf, which clips nothing: leave clipping off instead",
    "": "torch takes inf, but then the params are inf or NaN after a step",
})
"""Why an infinite lr, hyperparameter ("": any other) or clipping threshold is refused,
although torch.optim takes it."""

RANGE_OVERRIDES: Mapping[tuple[str, str], tuple[float, float, bool]] = MappingProxyType({
    ("rmsprop", "momentum"): (0.0, np.inf, False),
})


def hyperparameter_range(optimizer: str, key: str) -> tuple[float, float, bool]:
    """(low, high, low_open) of one numeric hyperparameter of one optimizer."""
    return RANGE_OVERRIDES.get((optimizer, key), HYPERPARAMETER_RANGES[key])


# learning-rate schedules and clipping ----------------------------------------


@dataclass(frozen=True)
class LRSchedule:
    """A learning-rate schedule: its name, its settings, and an optional linear warm-up.

    The formulas are in ``handwritten.schedules``; the settings and their defaults are
    ``SCHEDULE_SETTINGS`` there (torch.optim.lr_scheduler's).  The learning rate of
    step t = 1, 2, ... is ``schedule.learning_rate(lr, t - 1)``: one scheduler step per
    optimizer step.

    Examples
    --------
    >>> LRSchedule("step", {"step_size": 10, "gamma": 0.5}).learning_rate(0.1, 25)
    0.025
    >>> LRSchedule("cosine", {"t_max": 100}, warmup=10).learning_rate(0.1, 0)
    0.03333333333333333
    """

    name: str = "constant"
    settings: Mapping[str, Any] = field(default_factory=dict)
    warmup: int = 0
    warmup_start: float = WARMUP_START

    def __post_init__(self) -> None:
        _check_name("schedule name", self.name)
        if self.name not in SCHEDULE_SETTINGS:
            raise ValueError(f"schedule name is unknown: {self.name!r}; "
                             f"expected one of {sorted(SCHEDULE_SETTINGS)}")
        if not isinstance(self.settings, Mapping):
            raise TypeError(f"schedule settings must be a mapping, got "
                            f"{type(self.settings).__name__}")
        defaults = SCHEDULE_SETTINGS[self.name]
        unknown = set(self.settings) - set(defaults)
        if unknown:
            raise ValueError(f"schedule settings {sorted(unknown)} are unknown for "
                             f"{self.name!r}; it takes {sorted(defaults) or 'none'}")
        settings = {**defaults, **self.settings}
        missing = sorted(k for k, v in settings.items() if v is None)
        if missing:
            raise ValueError(f"schedule {self.name!r} needs {missing} (no default)")
        for key, value in settings.items():
            settings[key] = _schedule_setting(key, value)
        if self.name == "onecycle" and not (1 < settings["pct_start"] * settings["total_steps"]
                                            < settings["total_steps"]):
            raise ValueError(
                "schedule 'onecycle' needs 1 < pct_start * total_steps < total_steps (each "
                f"phase at least a step), got pct_start {settings['pct_start']} and "
                f"total_steps {settings['total_steps']}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, numbers.Integral) \
                or self.warmup < 0:
            raise ValueError(f"warmup must be a number of steps >= 0, got {self.warmup!r}")
        if self.warmup and self.name == "onecycle":
            raise ValueError("warmup does not combine with 'onecycle', whose first phase "
                             "is its warm-up")
        object.__setattr__(self, "warmup", int(self.warmup))
        object.__setattr__(self, "warmup_start", finite_real(
            "warmup_start", self.warmup_start, low=0.0, high=1.0, low_open=True,
            high_open=False))
        object.__setattr__(self, "settings", MappingProxyType(settings))

    @property
    def max_steps(self) -> int | None:
        """The most steps a run may take under this schedule (onecycle: total_steps, as
        torch refuses more), or None."""
        return self.settings["total_steps"] if self.name == "onecycle" else None

    def learning_rate(self, lr: float, k: int) -> float:
        """The learning rate of the step taken after k steps, for base learning rate lr."""
        return learning_rate(lr, k, self.name, self.settings, self.warmup, self.warmup_start)

    def learning_rates(self, lr: float, steps: int) -> list[float]:
        """The learning rates of steps 1 to ``steps``, for base learning rate lr."""
        return learning_rates(lr, steps, self.name, self.settings, self.warmup,
                              self.warmup_start)

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.settings.items())), self.warmup,
                     self.warmup_start))

    def __reduce__(self) -> tuple[Any, ...]:
        return (LRSchedule, (self.name, dict(self.settings), self.warmup, self.warmup_start))

    def __repr__(self) -> str:
        warm = (f", warmup={self.warmup!r}, warmup_start={self.warmup_start!r}"
                if self.warmup else "")
        return f"LRSchedule({self.name!r}, {dict(self.settings)!r}{warm})"


def _schedule_setting(key: str, value: object) -> Any:
    """One schedule setting, checked: step counts are ints, factors finite reals."""
    if key in ("step_size", "t_max", "total_steps"):
        return positive_int(key, value)
    if key == "milestones":
        steps = _as_tuple(key, value)
        for i, m in enumerate(steps):
            if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 0:
                why = (": torch takes a negative milestone, but no step ever reaches it"
                       if isinstance(m, numbers.Integral) and m < 0 else "")
                raise ValueError(f"milestones[{i}] must be a step count >= 0, got {m!r}{why}")
        return tuple(sorted(int(m) for m in steps))
    if key == "pct_start":
        return finite_real(key, value, low=0.0, high=1.0, low_open=True)
    if key in ("div_factor", "final_div_factor"):
        return finite_real(key, value, low=0.0, low_open=True)
    if key == "gamma":       # 0 would zero the learning rate (and optax ignores a 0 decay rate)
        return finite_real(key, value, low=0.0, low_open=True, why_low=(
            "torch takes gamma <= 0, but 0 makes the learning rate 0 (nothing trains after the "
            "first decay) and a negative gamma makes it negative (the loss is ascended)"))
    return finite_real(key, value, low=0.0)      # eta_min


# the optimizer ---------------------------------------------------------------


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer: its name, learning rate and hyperparameters, an optional learning-rate
    schedule and optional gradient clipping, validated.

    Missing hyperparameters take torch.optim's defaults (``OPTIMIZER_DEFAULTS``);
    unknown names and out-of-range values are a ``ValueError``, as where torch.optim
    refuses them.  The update rules themselves are in ``handwritten.optimizers``.

    Parameters
    ----------
    name : str
        A name from ``OPTIMIZER_DEFAULTS``.
    lr : float >= 0
        The learning rate (the base of ``schedule``, when there is one).
    hyperparams : mapping
        Numbers in ``HYPERPARAMETER_RANGES``; ``FLAGS`` (maximize, amsgrad, centered) bools.
    schedule : LRSchedule, optional
        The learning rate of each step (default: lr at every step).
    clip_norm, clip_value : float > 0, optional
        Clip the gradients before the rule, as ``torch.nn.utils.clip_grad_norm_`` (all
        gradients scaled together to global norm at most clip_norm) or
        ``clip_grad_value_`` (each entry into [-clip_value, clip_value]); one of the two.

    Examples
    --------
    >>> OptimizerSpec("adam", lr=1e-3, hyperparams={"beta2": 0.99}).hyperparams["beta1"]
    0.9
    """

    name: str
    lr: float
    hyperparams: Mapping[str, float] = field(default_factory=dict)
    schedule: LRSchedule | None = None
    clip_norm: float | None = None
    clip_value: float | None = None

    def __post_init__(self) -> None:
        _check_name("name", self.name)
        if self.name not in OPTIMIZER_DEFAULTS:
            raise ValueError(f"optimizer name is unknown: {self.name!r}; "
                             f"expected one of {sorted(OPTIMIZER_DEFAULTS)}")
        lr = finite_real("lr", self.lr, low=0.0, why_inf=WHY_NOT_INF["lr"])
        defaults = OPTIMIZER_DEFAULTS[self.name]
        if not isinstance(self.hyperparams, Mapping):
            raise TypeError(f"hyperparams must be a mapping, got {type(self.hyperparams).__name__}")
        unknown = set(self.hyperparams) - set(defaults)
        if unknown:
            why = {("nesterov", "dampening"): " (torch refuses nesterov with dampening)",
                   ("sgd", "dampening"): " (dampening acts on momentum: use 'momentum')",
                   ("sgd", "momentum"): " (use the optimizer 'momentum' or 'nesterov')"}
            extra = "".join(why.get((self.name, k), "") for k in sorted(unknown))
            raise ValueError(f"hyperparams {sorted(unknown)} are unknown for {self.name!r}; "
                             f"it takes {sorted(defaults)}{extra}")
        hyper = {**defaults, **self.hyperparams}
        for key, value in hyper.items():
            if key in FLAGS:
                if not isinstance(value, (bool, np.bool_)):
                    raise TypeError(f"{key} must be a bool, got {type(value).__name__}: "
                                    f"{value!r}")
                hyper[key] = bool(value)
            else:
                low, high, low_open = hyperparameter_range(self.name, key)
                why_inf = WHY_NOT_INF.get(key, WHY_NOT_INF[""]) if high == np.inf else ""
                hyper[key] = finite_real(key, value, low=low, high=high, low_open=low_open,
                                         why_inf=why_inf)
        if self.schedule is not None and not isinstance(self.schedule, LRSchedule):
            raise TypeError(f"schedule must be an LRSchedule or None, got "
                            f"{type(self.schedule).__name__}: {self.schedule!r}")
        for key in ("clip_norm", "clip_value"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, finite_real(
                    key, value, low=0.0, low_open=True, why_inf=WHY_NOT_INF["clip"],
                    why_low="torch takes 0 (and less), but then every gradient is clipped to 0 "
                            "(or flipped): nothing trains"))
        if self.clip_norm is not None and self.clip_value is not None:
            raise ValueError("give clip_norm or clip_value, not both (their order would matter)")
        object.__setattr__(self, "lr", lr)
        # read-only once validated: a changed beta1 would bypass the range checks
        object.__setattr__(self, "hyperparams", MappingProxyType(hyper))

    def learning_rate(self, k: int) -> float:
        """The learning rate of the step taken after k steps (lr without a schedule)."""
        return self.lr if self.schedule is None else self.schedule.learning_rate(self.lr, k)

    def _fields(self) -> tuple[Any, ...]:
        return (self.name, self.lr, dict(self.hyperparams), self.schedule, self.clip_norm,
                self.clip_value)

    def __hash__(self) -> int:
        return hash((self.name, self.lr, tuple(sorted(self.hyperparams.items())),
                     self.schedule, self.clip_norm, self.clip_value))

    def __reduce__(self) -> tuple[Any, ...]:
        # copy and pickle rebuild the spec (the read-only mapping itself cannot be pickled)
        return (OptimizerSpec, self._fields())

    def __repr__(self) -> str:
        """The name, lr, the hyperparameters that differ from the defaults, and whatever
        else is set: a constructor call that rebuilds the spec."""
        defaults = OPTIMIZER_DEFAULTS[self.name]
        hyper = {k: v for k, v in self.hyperparams.items() if v != defaults[k]}
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in ("schedule", "clip_norm",
                                                                 "clip_value")
                        if getattr(self, k) is not None)
        return f"OptimizerSpec({self.name!r}, lr={self.lr!r}, hyperparams={hyper!r}{extra})"


# a training run --------------------------------------------------------------


@dataclass(frozen=True)
class Shuffle:
    """A batch order drawn one epoch at a time: epoch e visits the permutation that the
    e-th ``rng.permutation(n)`` of ``np.random.default_rng(seed)`` gives -- the rows of
    ``make_batch_order(n, epochs, np.random.default_rng(seed))``, without holding all
    epochs' orders in memory at once.  Every implementation handed the same Shuffle sees
    the same batches."""

    seed: int

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or self.seed < 0:
            raise ValueError(f"Shuffle seed must be a non-negative int, got {self.seed!r}")



@dataclass(frozen=True)
class History:
    """What a training run did.

    Attributes
    ----------
    losses : (n_steps,)
        The loss of each step's batch, evaluated before that step's update
        (as the blog prints it), in the params' dtype.
    recorded_steps : tuple of int
        The steps after which params were recorded: 0 (the initial params),
        every ``record_every``-th step (if given), and the last step.
    params : list of Params
        ``params[i]`` holds the params after step ``recorded_steps[i]``.
    state : dict
        The optimizer state after the last step.
    diagnostics : tuple of str
        What the run tells about itself when it did not train (the loss rose, every
        gradient is zero, a hidden layer is saturated); empty when nothing is amiss.
        ``train`` warns with these (``handwritten.training.TrainingWarning``).
    running : Running
        Batch norm's running statistics after the last step (``{}`` on every layer without
        batch norm; all ``{}`` for a spec without it): what ``predict`` needs to evaluate.
    """

    losses: Array
    recorded_steps: tuple[int, ...]
    params: list[Params]
    state: State
    diagnostics: tuple[str, ...] = ()
    running: Running = field(default_factory=list)

    @property
    def final_params(self) -> Params:
        """The params after the last step."""
        return self.params[-1]
