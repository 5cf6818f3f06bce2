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
- ``History``: what a training run did.

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

from handwritten.activations import ACTIVATIONS
from handwritten.losses import LOSSES, REDUCTIONS

Array = NDArray[np.floating[Any]]
Scalar = np.floating[Any]
Params = list[dict[str, Array]]
"""One ``{"W": (fan_in, fan_out), "b": (fan_out,)}`` dict per layer; gradients alike."""
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
                low_open: bool = False, high_open: bool = True) -> float:
    """A finite real number in an interval, returned as a Python float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    too_low = v <= low if low_open else v < low
    too_high = v >= high if high_open else v > high
    if not np.isfinite(v) or too_low or too_high:
        interval = ("(" if low_open else "[") + f"{low}, {high}" + (")" if high_open else "]")
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return v


def _check_name(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a name (str), got {type(value).__name__}: {value!r}")


def _as_tuple(name: str, value: object) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a tuple or list, got {type(value).__name__}")
    return tuple(value)


# the network -----------------------------------------------------------------


@dataclass(frozen=True)
class NetworkSpec:
    """What a network is: sizes, activations, loss.  Validated on construction.

    Parameters
    ----------
    layer_sizes : tuple of int
        ``(n_in, h_1, ..., n_out)``, at least two entries, each >= 1.
    activations : tuple of str
        One name from ``ACTIVATIONS`` per layer (``len(layer_sizes) - 1``);
        hidden and output layers may differ.  softmax only on the output layer.
    loss : str
        A name from ``LOSSES``; it must accept the output activation.
    reduction : {"mean", "sum"}
        How the loss reduces over the batch (see ``handwritten.losses``).
    weight_decay : float
        L2 penalty lambda >= 0: adds lambda/2 * sum ||W||^2 to the loss.
    """

    layer_sizes: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str = "half_mse"
    reduction: str = "mean"
    weight_decay: float = 0.0

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
            if name not in ACTIVATIONS:
                raise ValueError(f"activations[{i}] is unknown: {name!r}; "
                                 f"expected one of {sorted(ACTIVATIONS)}")
            if ACTIVATIONS[name].output_only and i != len(names) - 1:
                raise ValueError(f"activations[{i}] is {name!r}, which is allowed only on the "
                                 "output layer")
        if self.loss not in LOSSES:
            raise ValueError(f"loss is unknown: {self.loss!r}; expected one of {sorted(LOSSES)}")
        accepted = LOSSES[self.loss].output_activations
        if accepted is not None and names[-1] not in accepted:
            raise ValueError(f"loss {self.loss!r} needs the output activation to be one of "
                             f"{sorted(accepted)}, got {names[-1]!r}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        object.__setattr__(self, "weight_decay",
                           finite_real("weight_decay", self.weight_decay, low=0.0))

    @property
    def n_layers(self) -> int:
        """Number of weight layers, len(layer_sizes) - 1."""
        return len(self.layer_sizes) - 1

    @property
    def fused_output(self) -> bool:
        """True when the loss is fused with the output activation: the output layer's
        gradient starts at d_z, and that layer has no d_a."""
        return LOSSES[self.loss].fused_with is not None


# the trace -------------------------------------------------------------------

FORWARD_QUANTITIES = ("z", "a")
BACKWARD_QUANTITIES = ("d_a", "d_z", "d_W", "d_b")


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
                    d_b: Sequence[Any]) -> Trace:
        """A trace from per-layer sequences of every quantity (anything ``np.asarray`` takes).

        ``d_a`` of the output layer is dropped when the spec's loss is fused
        (its gradient starts at d_z), whatever the caller passes there.
        """
        quantities = {"z": z, "a": a, "d_a": d_a, "d_z": d_z, "d_W": d_W, "d_b": d_b}
        layers = []
        for l in range(spec.n_layers):
            layer = {name: np.asarray(values[l]) for name, values in quantities.items()
                     if not (name == "d_a" and spec.fused_output and l == spec.n_layers - 1)}
            layers.append(layer)
        scalar: Scalar = np.asarray(loss)[()]  # type: ignore[assignment]  # a 0-d index
        return cls(scalar, layers)


# the optimizer ---------------------------------------------------------------

OPTIMIZER_DEFAULTS: Mapping[str, Mapping[str, float]] = MappingProxyType({
    "sgd": {},
    "momentum": {"momentum": 0.9},
    "nesterov": {"momentum": 0.9},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
    "adamw": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2},
    "rmsprop": {"alpha": 0.99, "eps": 1e-8},
})
"""Every optimizer's hyperparameters and their defaults (torch.optim's)."""

HYPERPARAMETER_RANGES: Mapping[str, tuple[float, float, bool]] = MappingProxyType({
    # (low, high, low_open); high is always open
    "momentum": (0.0, 1.0, True),      # 0 would be plain sgd (and torch refuses nesterov at 0)
    "beta1": (0.0, 1.0, False),
    "beta2": (0.0, 1.0, False),
    "alpha": (0.0, 1.0, False),
    "eps": (0.0, np.inf, True),
    "weight_decay": (0.0, np.inf, False),
})
"""The valid interval of every hyperparameter."""


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer: its name, learning rate and hyperparameters, validated.

    Missing hyperparameters take torch.optim's defaults (``OPTIMIZER_DEFAULTS``);
    unknown names and out-of-range values are a ``ValueError``.  The update
    rules themselves are in ``handwritten.optimizers``.

    Examples
    --------
    >>> OptimizerSpec("adam", lr=1e-3, hyperparams={"beta2": 0.99}).hyperparams["beta1"]
    0.9
    """

    name: str
    lr: float
    hyperparams: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_name("name", self.name)
        if self.name not in OPTIMIZER_DEFAULTS:
            raise ValueError(f"optimizer name is unknown: {self.name!r}; "
                             f"expected one of {sorted(OPTIMIZER_DEFAULTS)}")
        lr = finite_real("lr", self.lr, low=0.0, low_open=True)
        defaults = OPTIMIZER_DEFAULTS[self.name]
        if not isinstance(self.hyperparams, Mapping):
            raise TypeError(f"hyperparams must be a mapping, got {type(self.hyperparams).__name__}")
        unknown = set(self.hyperparams) - set(defaults)
        if unknown:
            raise ValueError(f"hyperparams {sorted(unknown)} are unknown for {self.name!r}; "
                             f"it takes {sorted(defaults) or 'none'}")
        hyper = {**defaults, **self.hyperparams}
        for key, value in hyper.items():
            low, high, low_open = HYPERPARAMETER_RANGES[key]
            hyper[key] = finite_real(key, value, low=low, high=high, low_open=low_open)
        object.__setattr__(self, "lr", lr)
        # read-only once validated: a changed beta1 would bypass the range checks
        object.__setattr__(self, "hyperparams", MappingProxyType(hyper))

    def __hash__(self) -> int:
        return hash((self.name, self.lr, tuple(sorted(self.hyperparams.items()))))

    def __reduce__(self) -> tuple[Any, ...]:
        # copy and pickle rebuild the spec (the read-only mapping itself cannot be pickled)
        return (OptimizerSpec, (self.name, self.lr, dict(self.hyperparams)))

    def __repr__(self) -> str:
        hyper = dict(self.hyperparams)
        return f"OptimizerSpec({self.name!r}, lr={self.lr!r}, hyperparams={hyper!r})"


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
    """

    losses: Array
    recorded_steps: tuple[int, ...]
    params: list[Params]
    state: State
    diagnostics: tuple[str, ...] = ()

    @property
    def final_params(self) -> Params:
        """The params after the last step."""
        return self.params[-1]
