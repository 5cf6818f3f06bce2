"""What the command line runs, as functions: a training case, a fit, a three-way comparison.

Each command of ``bpnet.cli`` parses its options into a ``TrainingCase`` (or a
check case), calls one function here or in ``bpnet.check``, and formats the result.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import handwritten as hw
from bpnet import datasets, implementations, preflight
from bpnet.compare import envelope, param_divergence, twin_run
from handwritten import checks
from handwritten.layers import BatchNorm1d, Sequential, fold
from handwritten.network import loss_value
from handwritten.schedules import WARMUP_START


@dataclass(frozen=True)
class TrainingCase:
    """A dataset, the network and optimizer that train on it, and every random draw made."""

    dataset: str
    preset: datasets.Preset
    spec: hw.NetworkSpec | Sequential
    optimizer: hw.OptimizerSpec
    x: np.ndarray
    y: np.ndarray
    params: hw.Params
    epochs: int
    batch_size: int | None
    batch_order: hw.Shuffle | None
    seed: int = 0
    dropout_seed: int | None = None
    """Seeds the Generator each implementation draws dropout's masks from (None: no dropout)."""
    init: str = ""
    """The initialisation scheme the params were drawn with."""
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    """The held-out data (the preset's ``holdout``), never trained on: accuracy is
    reported on it."""

    @classmethod
    def make(cls, dataset: str, spec: hw.NetworkSpec | Sequential, *, seed: int, dtype: str,
             optimizer: str | None = None, lr: float | None = None, epochs: int | None = None,
             batch_size: int | None = None, init: str | None = None, implementations: int = 1,
             record_every_step: bool = False, options: OptimizerOptions | None = None
             ) -> TrainingCase:
        """Data, params and batch order, all drawn from one Generator seeded with ``seed``;
        what is not given comes from the dataset's preset.  Raises ValueError/TypeError
        when the dataset does not fit the network, or the run (``implementations`` trainers,
        recording params at every step or not) cannot fit in memory -- before allocating."""
        preset = datasets.PRESETS[dataset]
        epochs = epochs or preset.epochs
        n_train = preset.n - round(preset.holdout * preset.n)
        if batch_size is not None and batch_size > n_train:
            raise ValueError(f"--batch-size must be at most {n_train}, the dataset's size"
                             + (" less the held-out part" if preset.holdout else ""))
        batch_size = batch_size or preset.batch_size
        batch = batch_size or n_train
        steps = epochs * -(-n_train // batch)
        preflight.check_fits(preflight.training_bytes(
            spec, preset.n, batch, np.dtype(dtype).itemsize, steps, implementations,
            record_every_step), f"training {describe(spec)} for {steps} steps")
        opt = (options or OptimizerOptions()).spec(optimizer or preset.optimizer,
                                                   lr or preset.lr, steps)
        checks.check_schedule_room(opt, 0, steps)          # before any data is drawn
        rng = np.random.default_rng(seed)
        x, y = datasets.make(dataset, rng, dtype=dtype)
        x_test = y_test = None
        if n_train < len(x):                        # the dataset's shuffle is already drawn
            x, x_test, y, y_test = x[:n_train], x[n_train:], y[:n_train], y[n_train:]
        if isinstance(spec, Sequential):
            if x.shape[1:] != spec.in_shapes[0]:
                raise ValueError(f"dataset {dataset!r} has inputs of shape {x.shape[1:]}, but "
                                 f"the network takes {spec.in_shapes[0]}")
        elif x.ndim > 2:
            raise ValueError(f"dataset {dataset!r} has images of shape {x.shape[1:]}: an MLP "
                             "takes rows of features (give --network with a Flatten first)")
        elif spec.layer_sizes[0] != x.shape[1]:
            raise ValueError(f"dataset {dataset!r} has {x.shape[1]} input(s), but --layers "
                             f"starts with {spec.layer_sizes[0]}")
        if y.ndim == 1 and hw.LOSSES[spec.loss].targets != "class":
            raise ValueError(f"dataset {dataset!r} has integer class labels: use --loss "
                             "softmax_cross_entropy with a softmax output")
        if y.ndim == 2 and y.shape[1] != spec.n_out:
            raise ValueError(f"dataset {dataset!r} has {y.shape[1]} output(s), but --layers "
                             f"ends with {spec.n_out}")
        try:
            checks.check_y(spec, y, x.shape[0], x.dtype)
        except (TypeError, ValueError) as error:
            raise ValueError(f"dataset {dataset!r} does not fit this network: {error}") from None
        params = hw.init_params(spec, rng, init or preset.init, dtype=np.dtype(dtype))
        # the batch order, drawn one epoch at a time from its own seed (all epochs at once
        # would be epochs * n integers)
        order = (hw.Shuffle(int(rng.integers(2**63)))
                 if batch_size is not None and batch_size < x.shape[0] else None)
        drop = int(rng.integers(2**63)) if has_dropout(spec) else None
        if has_batch_norm(spec):                   # before any step: a batch of one is refused
            checks.check_trainable(spec, x.shape[0], batch, None if drop is None
                                   else np.random.default_rng(drop))
        return cls(dataset, preset, spec, opt, x, y, params, epochs, batch_size, order, seed,
                   drop, init or preset.init, x_test, y_test)

    def train(self, implementation: Any = hw, **kwargs: Any) -> hw.History:
        """This case trained by one implementation (handwritten by default); dropout's masks
        from a Generator seeded with ``dropout_seed``, fresh for each call, so every
        implementation draws the same."""
        if self.dropout_seed is not None:
            kwargs["rng"] = np.random.default_rng(self.dropout_seed)
        history: hw.History = implementation.train(
            self.spec, self.params, self.x, self.y, self.optimizer, epochs=self.epochs,
            batch_size=self.batch_size, batch_order=self.batch_order, **kwargs)
        return history

    def mean_loss(self, params: hw.Params, running: hw.Running | None = None) -> float:
        """The loss with reduction "mean" on the whole dataset: what the blog prints.  With
        hidden blocks: no dropout, and batch norm with ``running`` (evaluation mode) when
        given, else with the whole dataset's statistics (what the log shows during a run,
        whose running statistics only ``History.running`` holds)."""
        mean_spec = dataclasses.replace(self.spec, reduction="mean")
        if isinstance(mean_spec, Sequential):     # no dropout; batch norm as above
            run = fold.Pass(training=not running, state=running or None)
            _, caches = fold.forward(mean_spec, params, self.x, run)
            return float(fold.loss_value(mean_spec, params, caches, self.y))
        _, cache = hw.forward(mean_spec, params, self.x, running=running or None)
        return float(loss_value(mean_spec, params, cache, self.y))

    def predictions(self, params: hw.Params, running: hw.Running | None = None
                    ) -> np.ndarray:
        """The predicted class of every held-out sample (evaluation mode)."""
        assert self.x_test is not None, "the dataset has no held-out part"
        out = np.asarray(hw.predict(self.spec, params, self.x_test, running or None))
        return np.asarray(out.argmax(axis=1))

    def accuracy(self, params: hw.Params, running: hw.Running | None = None) -> float:
        """The share of held-out samples classified right (None-free: only with held-out
        data, ``x_test``)."""
        return float(np.mean(self.predictions(params, running) == self.y_test))

    def dataset_statistics(self, params: hw.Params) -> hw.Running:
        """Batch norm's statistics over the whole training set, as running statistics:
        what the log's loss normalizes with (``mean_loss`` without ``running``), so the
        log's held-out accuracy is measured under the same batch norm (a run's own
        running statistics exist only in its History)."""
        assert isinstance(self.spec, Sequential), "an MLP spec has no held-out data"
        _, caches = fold.forward(self.spec, params, self.x, fold.Pass(training=True))
        return [{"mean": cache["mu"], "var": cache["var"]}
                if isinstance(layer, BatchNorm1d) else {}         # BatchNorm2d is one too
                for (_, layer), cache in zip(self.spec.nodes, caches)]

    def mean_loss_curve(self, history: hw.History) -> np.ndarray:
        """``mean_loss`` of the params recorded in ``history``, in order (the initial params
        first); the last with the run's running statistics, as fit and compare print the
        final loss, the others as fit's log (batch norm with the whole dataset's own
        statistics).  A run's loss per step in ``History.losses`` is its batch's, under the
        spec's reduction: the blog's sum is 100 times the mean it prints."""
        last = len(history.params) - 1
        return np.array([self.mean_loss(params, history.running if k == last else None)
                         for k, params in enumerate(history.params)])

    def settings(self) -> list[list[str]]:
        """Everything that changes the run, in words: the network with its hidden blocks, the
        optimizer with its options (the hyperparameters that differ from torch's defaults,
        the flags, schedule, warm-up, clipping), and the training (epochs, batch, init,
        dtype, seed).  Three groups of phrases, a plot's title begins a line with each."""
        spec, opt = self.spec, self.optimizer
        network = [f"{self.dataset}: network {describe(spec)}", f"{spec.loss} ({spec.reduction})"]
        if spec.weight_decay:
            network.append(f"weight decay {spec.weight_decay:g}")
        if not isinstance(spec, Sequential):           # a Sequential's describe has them
            if any(spec.norms):
                network.append(f"norms {'/'.join(n or 'none' for n in spec.norms)}")
            if any(spec.dropout):
                network.append(f"dropout {'/'.join(f'{p:g}' for p in spec.dropout)}")
            if any(spec.residual):
                network.append(f"residual {'/'.join(str(int(r)) for r in spec.residual)}")
        defaults = hw.OPTIMIZER_DEFAULTS[opt.name]
        optimizer = [f"{opt.name} lr {opt.lr:g}"] + [
            key if value is True else f"{key} {value:g}"
            for key, value in opt.hyperparams.items() if value != defaults[key]]
        if opt.schedule is not None:
            schedule = opt.schedule
            if schedule.name != "constant" or not schedule.warmup:
                optimizer.append(f"schedule {schedule.name} (" + ", ".join(
                    f"{key} {'/'.join(f'{v:g}' for v in np.atleast_1d(value))}"
                    for key, value in schedule.settings.items()) + ")")
            if schedule.warmup:
                optimizer.append(f"warm-up {schedule.warmup} steps from "
                                 f"{schedule.warmup_start:.3g}")
        for key in ("clip_norm", "clip_value"):
            if getattr(opt, key) is not None:
                optimizer.append(f"{key.replace('_', ' ')} {getattr(opt, key):g}")
        training = [f"{self.epochs} epochs",
                    f"batch {self.batch_size}" if self.batch_size else "full batch",
                    f"init {self.init}", str(self.x.dtype), f"seed {self.seed}"]
        return [network, optimizer, training]

    def title(self, detail: str, width: int = 58) -> str:
        """A plot's title: ``settings``, each group on lines of at most ``width`` characters
        (a phrase is never split), ``detail`` (what the plot shows) ending the last."""
        *groups, last = self.settings()
        lines: list[str] = []
        for group in [*groups, [*last, detail]]:
            line = ""
            for phrase in group:
                if line and len(line) + 2 + len(phrase) > width:
                    lines.append(line + ",")
                    line = phrase
                else:
                    line = f"{line}, {phrase}" if line else phrase
            lines.append(line)
        return "\n".join(lines)


def describe(spec: hw.NetworkSpec | Sequential) -> str:
    """A network in a few words: an MLP's layer sizes; a Sequential's layers, shortly."""
    if not isinstance(spec, Sequential):
        return f"{spec.layer_sizes} {'/'.join(spec.activations)}"
    return " ".join(_word(layer) for layer in spec.layers)


def _word(layer: Any) -> str:
    """A layer in a word or two: relu, dense 10, conv 8@3x3, maxpool 2, ..."""
    kind = type(layer).__name__
    if kind == "Activation":
        return str(layer.name)
    if kind == "Dense":
        return f"dense {layer.out_features}"
    if kind in ("Conv1d", "Conv2d"):
        return f"conv {layer.out_channels}@{'x'.join(map(str, layer.kernel_size))}"
    if kind in ("MaxPool2d", "AvgPool2d"):
        return f"{kind[:3].lower()}pool {layer.kernel_size[0]}"
    return kind.lower()


def has_dropout(spec: hw.NetworkSpec | Sequential) -> bool:
    return spec.has_dropout if isinstance(spec, Sequential) else any(spec.dropout)


def has_batch_norm(spec: hw.NetworkSpec | Sequential) -> bool:
    return spec.has_batch_norm if isinstance(spec, Sequential) else "batch" in spec.norms


def fit(case: TrainingCase, on_log: Callable[..., None] | None = None,
        on_epoch: Callable[[int, hw.Params], None] | None = None
        ) -> tuple[hw.History, list[tuple[float, ...]]]:
    """Train with handwritten; log the mean loss every ``preset.log_every`` epochs (10), as
    the blog prints it, and with held-out data its accuracy: (epoch, loss[, accuracy]).
    ``on_epoch(epoch, params)`` follows the run (a caller keeps the latest params, say, to
    plot them if the run is interrupted).  A TrainingWarning is not raised here: the
    History's diagnostics carry it."""
    log: list[tuple[float, ...]] = []

    def report(epoch: int, params: hw.Params) -> None:
        if epoch % case.preset.log_every == 0 and epoch < case.epochs:
            entry: tuple[float, ...] = (epoch, case.mean_loss(params))
            if case.x_test is not None:
                entry += (case.accuracy(params, case.dataset_statistics(params)
                                        if has_batch_norm(case.spec) else None),)
            log.append(entry)
            if on_log is not None:
                on_log(*log[-1])
        if on_epoch is not None and epoch:
            on_epoch(epoch, params)

    report(0, case.params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hw.TrainingWarning)
        return case.train(callback=report), log


@dataclass(frozen=True)
class OptimizerOptions:
    """What the command line says of the optimizer beyond its name and lr."""

    hyperparams: dict[str, Any] = field(default_factory=dict)
    schedule: str | None = None
    """A schedule's name; its settings are ``settings``."""
    settings: dict[str, Any] = field(default_factory=dict)
    warmup: int = 0
    warmup_start: float = WARMUP_START
    clip_norm: float | None = None
    clip_value: float | None = None

    def spec(self, name: str, lr: float, steps: int) -> hw.OptimizerSpec:
        """The OptimizerSpec of a run of ``steps`` steps: a cosine schedule's t_max and a
        onecycle's total_steps default to the run's steps after the warm-up."""
        schedule = None
        if self.schedule is not None:
            fill = {"cosine": "t_max", "onecycle": "total_steps"}.get(self.schedule)
            settings = dict(self.settings)
            if fill and fill not in settings:
                settings[fill] = max(1, steps - self.warmup)
            schedule = hw.LRSchedule(self.schedule, settings, self.warmup, self.warmup_start)
        elif self.warmup:
            schedule = hw.LRSchedule("constant", {}, self.warmup, self.warmup_start)
        return hw.OptimizerSpec(name, lr, self.hyperparams, schedule, self.clip_norm,
                                self.clip_value)


NOISE_DRIVEN = frozenset({"adam", "adamw", "rmsprop", "adagrad"})
"""Optimizers whose step divides by the gradient's own scale: a gradient that is rounding
noise (a batch-norm layer's bias) becomes a step of up to lr, different in each
implementation (README, "Hidden blocks"); ``compare`` does not judge their trajectories
with batch norm."""

@dataclass(frozen=True)
class Comparison:
    """The same case trained by every implementation."""

    histories: dict[str, hw.History]
    divergence: dict[str, np.ndarray]       # per reference: param_divergence at every step
    allowed: np.ndarray | None              # the suite's envelope at every step (float64)
    skipped: dict[str, str] = field(default_factory=dict)
    """reference -> why it did not run (an option its framework has otherwise than torch)."""
    not_judged: str = ""
    """Why there is no envelope (``allowed`` is None): the case cannot be judged by one."""

    def outside(self) -> list[str]:
        """One line per reference whose params left the envelope: the first such step."""
        lines: list[str] = []
        if self.allowed is None:
            return lines
        for name, d in self.divergence.items():
            over = np.flatnonzero(~(d <= self.allowed))
            if over.size:
                k = int(over[0])
                lines.append(f"handwritten vs {name}: the params after step {k} differ by "
                             f"{d[k]:.3g} (normwise), outside the suite's envelope "
                             f"{self.allowed[k]:.3g}")
        return lines

    @property
    def diagnostics(self) -> tuple[str, ...]:
        """Every implementation's diagnostics, each once."""
        return tuple(dict.fromkeys(d for h in self.histories.values() for d in h.diagnostics))


def compare(case: TrainingCase, load: Callable[[str], Any] = implementations.load
            ) -> Comparison:
    """Train the case in every implementation from the same params and batch order, and
    (float64) the envelope the suite allows their params to drift apart within: a twin run
    of handwritten with rounding-sized gradient noise (bpnet.compare.twin_run)."""
    steps = case.epochs * -(-case.x.shape[0] // (case.batch_size or case.x.shape[0]))
    histories, skipped = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hw.TrainingWarning)
        for name in implementations.NAMES:
            impl = load(name)
            reason = getattr(impl, "unsupported", lambda *_: None)(case.optimizer, steps)
            if reason is not None:
                skipped[name] = reason
                continue
            histories[name] = case.train(impl, record_every=1)
    ours = histories[implementations.NAMES[0]]
    divergence = {name: np.array([param_divergence(a, b) for a, b in zip(ours.params, h.params)])
                  for name, h in histories.items() if name != implementations.NAMES[0]}
    if case.x.dtype != np.float64:          # the envelope is the float64 policy
        return Comparison(histories, divergence, None, skipped,
                          "the suite's trajectory envelope is a float64 policy: not judged "
                          "in float32")
    if has_batch_norm(case.spec) and case.optimizer.name in NOISE_DRIVEN:
        return Comparison(histories, divergence, None, skipped, (
            f"not judged: the bias before a batch norm has gradient 0 in exact arithmetic, "
            f"so its computed gradient is rounding noise, different in each implementation, "
            f"and {case.optimizer.name} divides by the gradient's own scale -- that bias moves "
            f"with the noise (and with it the running mean, so evaluation-mode outputs "
            f"too), and no envelope separates that from a wrong derivative; compare with "
            f"sgd, momentum or nesterov, or without batch norm"))
    schedule = hw.Schedule(case.x.shape[0], case.epochs, case.batch_size or case.x.shape[0],
                           case.batch_order, record_every=1,
                           problem=(case.spec, case.x, case.y),
                           rng=None if case.dropout_seed is None
                           else np.random.default_rng(case.dropout_seed))
    _, twin = twin_run(case.spec, case.params, case.x, case.y, case.optimizer, schedule,
                       case.seed)
    return Comparison(histories, divergence, envelope(ours.recorded_steps, ours.params, twin),
                      skipped)
