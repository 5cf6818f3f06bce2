"""bpnet's command line: one subcommand per task (``build_parser`` registers them, and the
first line of ``bpnet --help`` names each one it registered).

Exit status: 0 on success; 1 when a check fails or training diverges; 2 for bad input
(unknown option values, an inconsistent architecture, a plot path that cannot be
written, a run too large for memory, a missing optional framework); 130 when
interrupted (Ctrl-C); 141 when the reader of the output goes away (``| head``).
Every error is one line on stderr, never a traceback; with --json it is also a JSON
object on stdout.  Bad input is refused before anything is computed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

import handwritten as hw
from bpnet import check_all, datasets, implementations, plots, preflight, runs
from bpnet.check import FINITE_DIFFERENCES, cross_check
from bpnet.compare import param_divergence
from bpnet.problems import Problem
from bpnet.tolerances import ATOL64_SCALE, FD_RTOL, LANCZOS_RTOL, RTOL64, SPREAD_FACTOR
from handwritten.layers import Activation, BatchNorm1d, Dropout, fold
from handwritten.schedules import SCHEDULE_SETTINGS, WARMUP_START
from handwritten.seed import BLOG_SPEC
from handwritten.spec import FLAGS

BLOG_DEFAULTS = {"layers": BLOG_SPEC.layer_sizes, "activations": BLOG_SPEC.activations,
                 "loss": BLOG_SPEC.loss}
"""check and explain default to the blog's network (seed.BLOG_SPEC); its reduction is
``default_reduction``'s."""
BLOG_WORDS = (f"{','.join(map(str, BLOG_SPEC.layer_sizes))} {','.join(BLOG_SPEC.activations)} "
              f"{BLOG_SPEC.loss}")
REDUCTION_RULE = (f"default: mean, except for a preset's own network, which keeps the "
                  f"preset's: {BLOG_SPEC.reduction} for the blog's {BLOG_WORDS}, whose "
                  f"gradient the blog takes of the summed loss")
"""``default_reduction`` in words: the help of --reduction in every command (check and
explain take the blog's network as their preset)."""


def default_reduction(layers: Sequence[int], activations: Sequence[str], loss: str,
                      preset: hw.NetworkSpec = BLOG_SPEC) -> str:
    """The reduction of a network given without --reduction, in every command: the preset's
    own when the network is the preset's (the same layer sizes, activations and loss),
    "mean" for any other.  fit, compare and hessian take their dataset's preset; check and
    explain, which have no dataset, the blog's network.

    The one preset with "sum" is the blog's (seed.BLOG_SPEC: the blog's backward is the
    gradient of the summed half-MSE, N times the gradient of the mean it prints), and it
    keeps it: ``bpnet fit`` is the blog's program, number for number.  Another network
    trained on "sum" would take steps N = 100 times larger at the blog's lr (0.1): a 1-10-1
    leaky_relu/identity network diverged at step 7 (issue 23).  Under "mean" the gradient
    is the printed loss's own, as for every other preset."""
    own = (tuple(layers), tuple(activations), loss) == (
        preset.layer_sizes, preset.activations, preset.loss)
    return preset.reduction if own else "mean"


def _print_json(data: Any) -> None:
    """Print ``data`` as strict JSON (RFC 8259 has no NaN or Infinity, and many parsers
    refuse them): every non-finite number is the string "NaN", "Infinity" or "-Infinity",
    which Python's float() and JavaScript's Number() read back.  Every --json output goes
    through here."""
    print(json.dumps(_strict(data), allow_nan=False))


def _strict(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays as Python numbers and lists, and every
    non-finite float as its string (``_print_json``)."""
    if isinstance(value, dict):
        return {key: _strict(v) for key, v in value.items()}
    if isinstance(value, np.ndarray):
        return _strict(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, (np.bool_, np.integer)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isnan(number):
            return "NaN"
        if math.isinf(number):
            return "Infinity" if number > 0 else "-Infinity"
        return number
    return value


class UsageError(Exception):
    """Bad input: reported on one line with exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but an error is a UsageError: one line that says what to do."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _names(text: str) -> tuple[str, ...]:
    parts = tuple(part.strip() for part in text.split(","))
    if not all(parts):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated names such as tanh,sigmoid, got {text!r}")
    return parts


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 1,10,1, got {text!r}") from None


def _int_at_least(low: int, words: str) -> Callable[[str], int]:
    """An argparse type: an integer >= low, refused as "expected <words>"."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_seed = _int_at_least(0, "a non-negative integer")


def _number(text: str) -> int | float:
    """An int where the text is one (step counts), else a float."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _settings(text: str) -> dict[str, Any]:
    """KEY=VALUE,... as a dict of numbers; a VALUE a/b/c is a tuple (milestones)."""
    settings: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            numbers = tuple(_number(v) for v in value.split("/"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected KEY=VALUE pairs such as momentum=0.9,dampening=0.1, got {part!r}"
                ) from None
        settings[key.strip()] = numbers if "/" in value else numbers[0]
    return settings


def _schedule(text: str) -> tuple[str, dict[str, Any]]:
    name, _, rest = text.partition(":")
    if name not in SCHEDULE_SETTINGS:
        raise argparse.ArgumentTypeError(
            f"expected a schedule name from {', '.join(sorted(SCHEDULE_SETTINGS))}, got {name!r}")
    settings = _settings(rest)
    if "milestones" in settings and not isinstance(settings["milestones"], tuple):
        settings["milestones"] = (settings["milestones"],)      # one: milestones=50
    return name, settings


def _optimizer_options(args: argparse.Namespace) -> runs.OptimizerOptions:
    """The optimizer options of fit and compare."""
    name, settings = args.schedule or (None, {})
    return runs.OptimizerOptions(
        dict(args.hyper) | {flag: True for flag in FLAGS if getattr(args, flag)}, name,
        settings, args.warmup, args.warmup_start, args.clip_norm, args.clip_value)


def _positive_float(text: str) -> float:
    """A number > 0; inf passes, for the OptimizerSpec or LRSchedule to refuse saying why
    (torch takes an inf lr)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _real(text: str) -> float:
    """Any number: the OptimizerSpec refuses what it must, saying why (torch takes a clip
    threshold of 0 or inf)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _add_network(p: argparse.ArgumentParser, defaults: str = "the dataset's preset") -> None:
    g = p.add_argument_group(f"network (default: {defaults})")
    g.add_argument("--layers", type=_sizes, help="layer sizes, e.g. 1,10,1")
    g.add_argument("--activations", type=_names,
                   help=f"one per layer, comma-separated; from "
                        f"{', '.join(sorted(hw.ACTIVATIONS))}; leaky_relu, elu and celu take "
                        "a parameter: leaky_relu:0.2")
    g.add_argument("--loss", choices=sorted(hw.LOSSES))
    g.add_argument("--reduction", choices=hw.REDUCTIONS,
                   help=f"the loss over samples and outputs: their mean or their sum "
                        f"({REDUCTION_RULE})")
    g.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty (0)")


def _add_training(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (default: the dataset's preset)")
    g.add_argument("--dataset", choices=sorted(datasets.PRESETS), default="blog",
                   help="built-in data and its preset network (blog)")
    g.add_argument("--optimizer", choices=sorted(hw.OPTIMIZERS))
    g.add_argument("--lr", type=_positive_float, help="learning rate")
    g.add_argument("--epochs", type=_positive_int)
    g.add_argument("--batch-size", type=_positive_int, help="default: the full batch")
    g.add_argument("--init", choices=hw.INIT_SCHEMES, help="initialisation scheme")
    g.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    _add_optimizer_options(p)


def _add_optimizer_options(p: argparse.ArgumentParser) -> None:
    o = p.add_argument_group("optimizer options (torch.optim's; default: none of them)")
    o.add_argument("--hyper", type=_settings, metavar="KEY=VALUE,...", default={},
                   help="hyperparameters, e.g. momentum=0.9,dampening=0.1 or "
                        "beta2=0.99,weight_decay=1e-4")
    for flag in sorted(FLAGS):
        o.add_argument(f"--{flag}", action="store_true", help=f"the optimizer's {flag} flag")
    o.add_argument("--schedule", type=_schedule, metavar="NAME[:KEY=VALUE,...]",
                   help=f"learning-rate schedule, one of {', '.join(sorted(SCHEDULE_SETTINGS))}"
                        "; e.g. step:step_size=100,gamma=0.5 or multistep:milestones=50/80 (one "
                        "milestone: milestones=50); "
                        "cosine's t_max and onecycle's total_steps default to the run's steps")
    o.add_argument("--warmup", type=_seed, default=0, metavar="STEPS",
                   help="linear warm-up steps before the schedule (0)")
    o.add_argument("--warmup-start", type=_positive_float, default=WARMUP_START,
                   metavar="FACTOR", help="the warm-up's first factor (torch's 1/3)")
    o.add_argument("--clip-norm", type=_real, help="clip gradients to this global norm")
    o.add_argument("--clip-value", type=_real, help="clip each gradient entry")


def _add_common(p: argparse.ArgumentParser, quiet: str) -> None:
    p.add_argument("--seed", type=_seed, default=0, help="seed of every random draw (0)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON only")
    p.add_argument("--quiet", action="store_true", help=quiet)


def _spec(args: argparse.Namespace, preset: datasets.Preset | None = None) -> hw.NetworkSpec:
    """The network the options describe; what they leave out comes from the preset."""
    base = preset.spec if preset else None
    assert not isinstance(base, hw.Sequential), "a Sequential preset is not an MLP's base"
    layers = args.layers or (base.layer_sizes if base else None)
    activations = args.activations or (base.activations if base else None)
    if layers is None or activations is None:
        raise UsageError("give --layers and --activations (e.g. --layers 1,10,1 "
                         "--activations sigmoid,sigmoid)")
    loss = args.loss or (base.loss if base else "half_mse")
    reduction = args.reduction or (default_reduction(layers, activations, loss, base) if base
                                   else "mean")
    hidden = len(layers) - 2
    blocks = {}
    for name in ("norms", "dropout", "residual"):
        values = getattr(args, name, None)
        if values is not None:          # one value for every hidden layer, or one per layer
            blocks[name] = values * hidden if len(values) == 1 else values
    try:
        return hw.NetworkSpec(layers, activations, loss, reduction, args.weight_decay, **blocks)
    except (TypeError, ValueError) as error:
        raise UsageError(f"inconsistent network: {error}") from None


def _add_sequential(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--network", metavar="'Sequential([...])'",
                        help="a network of layers in any order, as its repr prints it: "
                        "Sequential([Dense(3, 4), LayerNorm(4), Activation('tanh'), "
                        "Dense(4, 1)], loss='mse') (handwritten.layers; docs/layers.md)")


def _norm_names(text: str) -> tuple[str | None, ...]:
    names = _names(text)
    if not set(names) <= {"none", "batch", "layer"}:
        raise argparse.ArgumentTypeError(f"expected none, batch or layer per hidden layer, "
                                         f"got {text!r}")
    return tuple(None if n == "none" else n for n in names)


def _probabilities(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated probabilities such as 0.1,0, got {text!r}") from None


def _bools(text: str) -> tuple[bool, ...]:
    words = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    parts = tuple(part.strip().lower() for part in text.split(","))
    if not all(p in words for p in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated 1/0 (true/false) per hidden "
                                         f"layer, got {text!r}")
    return tuple(words[p] for p in parts)


def _add_blocks(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("hidden blocks (one value for every hidden layer, or one per "
                             "hidden layer)")
    g.add_argument("--norms", type=_norm_names, help="none, batch or layer, e.g. batch,none")
    g.add_argument("--dropout", type=_probabilities, help="drop probability p in [0, 1)")
    g.add_argument("--residual", type=_bools, help="1 for a skip (fan_in == fan_out), else 0")


def _training_network(args: argparse.Namespace) -> hw.NetworkSpec | hw.Sequential:
    """The network to train: --network's Sequential; a preset Sequential (the digits' CNN)
    as it is, but for --weight-decay (an MLP's options refused by name); else the MLP the
    options describe over the preset."""
    preset = datasets.PRESETS[args.dataset]
    if getattr(args, "network", None) is not None:
        return _network(args)
    if isinstance(preset.spec, hw.Sequential):
        given = [f"--{n}" for n in ("layers", "activations", "loss", "reduction", "norms",
                                    "dropout", "residual") if getattr(args, n, None)]
        if given:
            raise UsageError(f"dataset {args.dataset!r} trains a convolutional Sequential "
                             f"({runs.describe(preset.spec)}): {', '.join(given)} describe "
                             "an MLP; give --network 'Sequential([...])' to change it")
        if args.weight_decay:
            return dataclasses.replace(preset.spec, weight_decay=args.weight_decay)
        return preset.spec
    return _spec(args, preset)


def _training_case(args: argparse.Namespace, implementations: int = 1,
                   record_every_step: bool = False) -> runs.TrainingCase:
    spec = _training_network(args)
    try:
        preflight.check_out(args.out)
        return runs.TrainingCase.make(args.dataset, spec, seed=args.seed, dtype=args.dtype,
                                      optimizer=args.optimizer, lr=args.lr, epochs=args.epochs,
                                      batch_size=args.batch_size, init=args.init,
                                      implementations=implementations,
                                      record_every_step=record_every_step,
                                      options=_optimizer_options(args))
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None


def _warn(args: argparse.Namespace, diagnostics: tuple[str, ...]) -> None:
    """One warning line on stderr for a run that did not train."""
    if diagnostics:
        print(f"bpnet {args.command}: warning: training did not train: "
              f"{'; '.join(diagnostics)}", file=sys.stderr)


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="epoch", leave=False, file=sys.stderr)


def _plot_fit(case: runs.TrainingCase, final: hw.Params, final_loss: float, out: Path,
              running: hw.Running | None = None,
              curve: Sequence[tuple[float, ...]] = ()) -> None:
    """The fit in evaluation mode (batch norm with the run's running statistics); params
    without them (an interrupted run with batch norm) are plotted with the dataset's own
    statistics."""
    from bpnet import plots

    title = case.title(f"mean loss {final_loss:.4g}")
    if isinstance(case.spec, hw.Sequential):
        if case.spec.has_batch_norm and not running:
            _, caches = fold.forward(case.spec, final, case.x)
            running = [{"mean": c["mu"], "var": c["var"]} if isinstance(layer, BatchNorm1d)
                       else {} for (_, layer), c in zip(case.spec.nodes, caches)]
    elif "batch" in case.spec.norms and not running:
        _, cache = hw.forward(case.spec, final, case.x)
        running = [{"mean": c["mu"], "var": c["var"]} if "mu" in c and n == "batch" else {}
                   for c, n in zip(cache, (*case.spec.norms, None))]
    predict = lambda g: hw.predict(case.spec, final, g, running)  # noqa: E731
    if case.preset.kind == "images":
        assert isinstance(case.spec, hw.Sequential) and case.y_test is not None
        first = next(i for i, (_, layer) in enumerate(case.spec.nodes) if "W" in final[i])
        plots.fit_images(curve, final[first]["W"], case.y_test, case.predictions(final, running),
                         out, title)
    elif case.preset.kind == "regression":
        assert isinstance(case.spec, hw.NetworkSpec)
        plots.fit_regression(case.x, case.y, predict, out, title,
                             f"network {case.spec.layer_sizes}")
    else:
        labels = case.y[:, 0].astype(int) if case.y.ndim == 2 else case.y
        plots.fit_classification(case.x, labels, predict, out, title)


def cmd_fit(args: argparse.Namespace) -> int:
    case = _training_case(args)
    verbose = not (args.quiet or args.json)
    bar = _progress(case.epochs, verbose and sys.stderr.isatty() and case.epochs >= 200)
    write = print if bar is None else bar.write
    latest = {"params": case.params}

    def on_epoch(epoch: int, params: hw.Params) -> None:
        latest["params"] = params
        if bar is not None:
            bar.update(1)

    defaults = hw.OptimizerSpec(case.optimizer.name, case.optimizer.lr)
    if verbose and case.optimizer != defaults:          # say what the options came to
        write(f"optimizer: {case.optimizer!r}")
    def log_line(epoch: float, loss: float, accuracy: float | None = None) -> None:
        held_out = "" if accuracy is None else f", held-out accuracy: {accuracy:.2%}"
        write(f"epoch: {int(epoch)}, loss: {loss}{held_out}")

    try:
        history, log = runs.fit(case, on_log=log_line if verbose else None, on_epoch=on_epoch)
    except KeyboardInterrupt:
        _plot_fit(case, latest["params"], case.mean_loss(latest["params"]), args.out)
        raise KeyboardInterrupt(
            f"interrupted; the plot of the params so far is in {args.out}") from None
    finally:
        if bar is not None:
            bar.close()
    final_loss = case.mean_loss(history.final_params, history.running)
    accuracy = (None if case.x_test is None
                else case.accuracy(history.final_params, history.running))
    curve = [*log, (case.epochs, final_loss, *(() if accuracy is None else (accuracy,)))]
    _plot_fit(case, history.final_params, final_loss, args.out, history.running, curve)
    _warn(args, history.diagnostics)
    if args.json:
        spec = (repr(case.spec) if isinstance(case.spec, hw.Sequential)
                else dataclasses.asdict(case.spec))
        _print_json({"spec": spec, "held_out_accuracy": accuracy, "optimizer": {
            "name": case.optimizer.name, "lr": case.optimizer.lr,
            "hyperparams": dict(case.optimizer.hyperparams), "repr": repr(case.optimizer)},
            "epochs": case.epochs,
            "log": log, "final_loss": final_loss, "plot": str(args.out),
            "warnings": list(history.diagnostics)})
    else:
        print(f"final loss (mean over samples and outputs): {final_loss:.6g}")
        if accuracy is not None:
            assert case.y_test is not None
            print(f"held-out accuracy: {accuracy:.2%} ({len(case.y_test)} samples never "
                  "trained on)")
        print(f"plot saved to {args.out}")
    return 0


def cmd_hessian(args: argparse.Namespace) -> int:
    from bpnet import hessian

    case = _training_case(args)
    spec = case.spec
    if isinstance(spec, hw.Sequential):
        dropout = [f"{path} {layer!r}" for path, layer in spec.nodes
                   if isinstance(layer, Dropout) and layer.p]
        if dropout:
            raise UsageError(f"bpnet hessian takes no dropout ({', '.join(dropout)}): the "
                             "objective of a run with dropout is random, a new mask every "
                             "step; give the network without it")
        # the exact spectrum is jax.hessian of reference_jax's loss: every name the network
        # uses (its layer kinds, activations, loss) needs its counterpart there, and there only
        _refuse_gaps(spec, references={"reference_jax": _load("reference_jax")})
    n_params = sum(w.size for layer in case.params for w in layer.values())
    if not 1 <= args.top < n_params:
        raise UsageError(f"--top must be between 1 and the number of params - 1 "
                         f"({n_params - 1}), got {args.top}")
    every = args.every or max(1, case.epochs // 20)
    rng = np.random.default_rng(args.seed)
    x = case.x.astype(np.float64)
    y = case.y if case.y.dtype.kind in "iu" else case.y.astype(np.float64)   # labels stay
    spectrum = hessian.Spectrum()
    verbose = not (args.quiet or args.json)

    def at(epoch: int, params: hw.Params) -> None:
        if not all(np.isfinite(w).all() for layer in params for w in layer.values()):
            return          # diverged: train says so, naming the step, when it checks
        if epoch % every == 0 or epoch == case.epochs:
            p64: hw.Params = [{k: np.array(w, dtype=np.float64) for k, w in layer.items()}
                   for layer in params]
            hessian.checkpoint(spectrum, spec, p64, x, y, epoch, case.mean_loss(params),
                               args.top, rng)
            if verbose:
                exact = (f"  exact {spectrum.exact[-1][0]:.6g}" if spectrum.exact else "")
                print(f"epoch {epoch}: loss {spectrum.losses[-1]:.6g}, top eigenvalues "
                      f"{', '.join(f'{v:.6g}' for v in spectrum.lanczos[-1])}{exact}")

    at(0, case.params)
    history, _ = runs.fit(case, on_epoch=at)
    difference = spectrum.largest_difference()
    plots.hessian_spectrum(spectrum.epochs, spectrum.losses, spectrum.lanczos, spectrum.exact,
                           args.out, case.title("the Hessian over training"))
    _warn(args, history.diagnostics)        # a run that did not train says so, as fit's does
    if args.json:
        _print_json({"epochs": spectrum.epochs, "losses": spectrum.losses,
                     "lanczos": spectrum.lanczos, "exact": spectrum.exact,
                     "largest_relative_difference": difference,
                     "agrees": spectrum.agrees, "plot": str(args.out),
                     "warnings": list(history.diagnostics)})
    else:
        if spectrum.exact:
            print(f"Lanczos (eigsh on the hand-derived hvp) vs jax.hessian's eigenvalues: "
                  f"largest difference {difference:.2g} of the largest |eigenvalue| "
                  f"(allowed {LANCZOS_RTOL:g}): {'ok' if spectrum.agrees else 'DISAGREE'}")
        else:
            print(hessian.no_exact(spec, case.params, len(x)))
        print(f"plot saved to {args.out}")
    return 0 if spectrum.agrees else 1


def _check_case(args: argparse.Namespace) -> Problem[Any]:
    """The case of check and explain --values: the suite's own generator (bpnet.problems,
    non-zero biases), or the suite's failure line given to --replay; refused (exit 2)
    before anything is drawn when it would not fit in memory."""
    replay = getattr(args, "replay", None)
    spec: hw.NetworkSpec | hw.Sequential
    try:
        if replay is not None:
            problem = check_all.parse_problem(replay, fits=_check_fits)
            spec, batch = problem.spec, problem.batch
        elif getattr(args, "network", None) is not None:
            spec, batch = _network(args), args.batch
            _check_fits(spec, batch)
        else:
            spec, batch = _spec(args), args.batch
            if args.labels and hw.LOSSES[spec.loss].targets != "class":
                raise UsageError(f"--labels needs a loss with class targets "
                                 f"(softmax_cross_entropy); {spec.loss} takes "
                                 f"{hw.LOSSES[spec.loss].targets} targets")
            _check_fits(spec, batch)
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None
    batch_norm = spec.has_batch_norm if isinstance(spec, hw.Sequential) else "batch" in spec.norms
    if batch == 1 and batch_norm:
        raise UsageError("a batch of 1 under batch norm (norms has 'batch'): batch norm in "
                         "training mode needs at least 2 samples (its batch variance is 0; "
                         "torch refuses it too); give a batch of 2 or more")
    if replay is not None:
        return problem.astype("float64")
    return Problem(spec, batch, args.seed, labels=args.labels)


def _network(args: argparse.Namespace) -> hw.Sequential:
    """--network's Sequential; a UsageError when --layers or a block option is given too."""
    given = [f"--{n}" for n in ("layers", "activations", "loss", "reduction", "norms",
                                "dropout", "residual") if getattr(args, n, None)]
    if getattr(args, "weight_decay", 0.0):
        given.append("--weight-decay")
    if given:
        raise UsageError(f"--network describes the whole network: give it without "
                         f"{', '.join(given)}")
    try:
        return check_all.parse_network(args.network)
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None


def _check_fits(spec: hw.NetworkSpec | hw.Sequential, batch: int) -> None:
    """ValueError when check (or explain --values) on a batch through ``spec`` would not
    fit in memory."""
    through = spec.layer_sizes if isinstance(spec, hw.NetworkSpec) else f"{spec.n_in} inputs"
    preflight.check_fits(preflight.check_bytes(spec, batch),
                         f"a batch of {batch} through {through}")


def _references() -> dict[str, Any]:
    return {name: _load(name) for name in implementations.NAMES[1:]}


def _refuse_gaps(spec: hw.NetworkSpec | hw.Sequential | None = None,
                 optimizer: hw.OptimizerSpec | None = None, init: str = "",
                 references: Mapping[str, Any] | None = None) -> None:
    """Exit 2 with one line when a name the run uses (its activations, loss, norms or layer
    kinds, optimizer, schedule and init scheme; or any registered, without a spec) has no
    counterpart in a reference (``references``: every one, unless the run needs fewer)."""
    names: set[str] | None = None
    if isinstance(spec, hw.Sequential):
        names = {*(layer.name.partition(":")[0] for _, layer in spec.nodes
                   if isinstance(layer, Activation)), spec.loss,
                 *(type(layer).__name__ for _, layer in spec.nodes)}
    elif spec is not None:
        names = {*(a.partition(":")[0] for a in spec.activations), spec.loss,
                 *(n for n in spec.norms if n is not None)}
    if names is not None:
        if optimizer is not None:
            names |= {optimizer.name, *([optimizer.schedule.name] if optimizer.schedule else [])}
        if init:
            names.add(init)
    gaps = check_all.registry_gaps(_references() if references is None else references, names)
    if gaps:
        raise UsageError(gaps[0] + (f" (and {len(gaps) - 1} more)" if len(gaps) > 1 else ""))


def _load(name: str) -> Any:
    try:
        return implementations.load(name)
    except implementations.MissingFramework as error:
        raise UsageError(str(error)) from None


def cmd_check(args: argparse.Namespace) -> int:
    if args.only and not args.all:
        raise UsageError("--only selects entries of --all: give --all too")
    if args.lr and not args.optimizer:
        raise UsageError("--lr is the learning rate of --optimizer: give --optimizer too")
    given = ([f"--{k}" for k in ("hyper", "schedule", *sorted(FLAGS)) if getattr(args, k)]
             + [f"--{k.replace('_', '-')}" for k in ("clip_norm", "clip_value")
                if getattr(args, k) is not None]            # 0 too: refused with a reason
             + (["--warmup"] if args.warmup else []))
    if given and not args.optimizer:
        raise UsageError(f"{' '.join(given)} set options of --optimizer: give --optimizer too")
    if args.all:
        if args.optimizer or args.replay is not None:
            raise UsageError("--all checks every optimizer on cases of its own: it takes no "
                             "--optimizer or --replay")
        return cmd_check_all(args)
    if args.optimizer:                  # refused before anything is computed
        try:
            opt = _optimizer_options(args).spec(args.optimizer, args.lr or 0.05,
                                                check_all.RANDOM_STEPS + check_all.OPTIMIZER_STEPS)
        except (TypeError, ValueError) as error:
            raise UsageError(str(error)) from None
    p = _check_case(args)
    sequential = isinstance(p.spec, hw.Sequential)
    _refuse_gaps(None if sequential else p.spec, opt if args.optimizer else None)
    impls = {"handwritten": hw, **_references()}
    # every spec through the one check; as bpnet check has always shown them: finite
    # differences for a plain MLP, loss_and_grads' rows for a Sequential
    plain = not sequential and not p.spec.has_blocks
    reports = [cross_check(p.spec, p.params, p.x, p.y, impls, masks=p.masks,
                           finite_differences=plain, grads=sequential)]
    if args.optimizer:
        reports.append(check_all.optimizer_report(opt, p.spec, p.params, hw.loss_and_grads(
            p.spec, p.params, p.x, p.y, p.masks)[1], impls, np.random.default_rng(p.seed)))
    failed = next((r for r in reports if not r.ok), None)
    if args.json:
        _print_json(reports[0].to_json() | {
            "seed": p.seed, "dtype": "float64", "case": repr(p),
            "optimizer": reports[1].to_json() if len(reports) > 1 else None,
            "diagnosis": failed.diagnosis() if failed else []})
    elif args.quiet:
        print((failed or reports[0]).verdict())
    else:
        fd_atol = [c.atol for (_, column), c in reports[0].cells.items()
                   if column == FINITE_DIFFERENCES]
        print(f"bpnet check: {p.spec}, batch {p.batch}, seed {p.seed}, float64")
        print(f"tolerance vs autograd: rtol {RTOL64:g} + {ATOL64_SCALE:g} * max|ref|; " + (
            f"vs finite differences: rtol {FD_RTOL:g} + {max(fd_atol):.2g}" if fd_atol else
            f"a block's quantity also within {SPREAD_FACTOR:g}x the references' own difference"))
        for report in reports:
            print(report.table())
        if args.optimizer:
            steps = check_all.RANDOM_STEPS + check_all.OPTIMIZER_STEPS
            for name, reason in check_all.unsupported_by(opt, steps, impls).items():
                print(f"not {name}: {reason} (checked against torch alone)")
        print((failed or reports[0]).message(repr(p)))
    return 0 if failed is None else 1


def cmd_check_all(args: argparse.Namespace) -> int:
    _refuse_gaps()
    impls = {"handwritten": hw, **_references()}
    verbose = not (args.quiet or args.json)
    if verbose:
        print(f"bpnet check --all: every registered entry, handwritten against "
              f"{', '.join(list(impls)[1:])} (float64), and at the extremes against a "
              "float80 oracle (float32 and float64)")
        print(f"{'group':13s} {'entry':44s} {'max rel err per reference':>30s}"
              f" {'time':>6s}  verdict")

    shares: list[bool] = []

    def show(entry: check_all.Entry) -> None:
        if verbose:
            report = entry.report
            columns = (list(impls)[1:] if set(report.columns) & set(impls)
                       else list(report.columns))
            texts = [report.worst_text(n) for n in columns]
            shares.append(any("tol" in t for t in texts))
            worst = " / ".join(texts)
            print(f"{entry.group:13s} {entry.name[:44]:44s} {worst:>30s} "
                  f"{entry.seconds:5.1f}s  {'ok' if entry.ok else 'FAIL'}", flush=True)

    entries = check_all.check_all(impls, on_entry=show, only=args.only)
    if not entries:
        raise UsageError(f"--only {args.only!r} matches no entry of --all")
    failed = [e for e in entries if not e.ok]
    total = sum(e.seconds for e in entries)
    if args.json:
        _print_json({"ok": not failed, "seconds": total, "entries": [
            {"group": e.group, "name": e.name, "case": e.case, "ok": e.ok, "seconds": e.seconds,
             "verdict": e.report.verdict(), "diagnosis": e.report.diagnosis()}
            for e in entries]})
        return 1 if failed else 0
    if any(shares):
        print("(N% of tol: where a reference entry is 0 or within the absolute floor, a "
              "relative error means nothing;\n the largest error as a share of what the "
              "tolerance allows is shown instead)")
    if not failed:
        print(f"ok: {len(entries)} cases, every quantity agrees ({total:.1f} s)")
        return 0
    first = failed[0]
    print(f"\n{len(failed)} of {len(entries)} cases FAIL ({total:.1f} s); the first: "
          f"{first.group} {first.name}")
    if not args.quiet and not first.case.startswith("Problem("):
        print(f"  case: {first.case}")
    print(first.report.message(first.case))
    return 1


def cmd_compare(args: argparse.Namespace) -> int:
    case = _training_case(args, implementations=len(implementations.NAMES),
                          record_every_step=True)
    _refuse_gaps(case.spec, case.optimizer, case.init)
    result = runs.compare(case, _load)
    from bpnet import plots

    steps = len(result.histories["handwritten"].losses)
    curves = {n: case.mean_loss_curve(h) for n, h in result.histories.items()}
    plots.compare(curves, {n.replace("reference_", ""): d for n, d in result.divergence.items()},
                  args.out, case.title(f"{steps} steps in each implementation"))
    _warn(args, result.diagnostics)
    final = {n: float(curve[-1]) for n, curve in curves.items()}    # the plotted curves' ends
    ours = result.histories["handwritten"]
    running = {n: param_divergence(ours.running, h.running) for n, h in result.histories.items()
               if n != "handwritten" and runs.has_batch_norm(case.spec)}
    outside = result.outside()
    if args.json:
        _print_json({
            "final_loss": final, "final_loss_is": "mean over samples and outputs, as fit",
            "max_divergence": {n: float(d.max()) for n, d in result.divergence.items()},
            "running_statistics_divergence": running,
            "within_envelope": None if result.allowed is None else not outside,
            "not_judged": result.not_judged or None,
            "outside_envelope": outside, "steps": steps, "plot": str(args.out),
            "skipped": result.skipped,
            "warnings": list(result.diagnostics)})
        return 1 if outside else 0
    if not args.quiet:
        for name, reason in result.skipped.items():
            print(f"{name:16s} not run: {reason} (checked against torch alone)")
        for name, loss in final.items():
            print(f"{name:16s} final loss (mean over samples and outputs, as fit) {loss:.17g}")
        for name, d in result.divergence.items():
            print(f"largest parameter divergence, handwritten vs {name}: {d.max():.3g} "
                  f"(relative to max |theta|, over {len(d) - 1} steps)")
        for name, d_run in running.items():
            print(f"batch norm's running statistics at the end, handwritten vs {name}: "
                  f"{d_run:.3g} (normwise)")
        if result.allowed is None:
            print(result.not_judged)
        elif not outside:
            print(f"within the suite's envelope at every step (at the end: "
                  f"{result.allowed[-1]:.3g})")
    for line in outside:
        print(f"FAIL: {line}")
    print(f"plot saved to {args.out}")
    return 1 if outside else 0


def cmd_explain(args: argparse.Namespace) -> int:
    from bpnet import explain

    batch = "N" if args.values is None else str(args.values)
    if args.network is not None:
        if args.derivatives or args.values is not None:
            raise UsageError("--values and --derivatives do not take --network yet: the "
                             "equations print without them")
        network = _network(args)
        lines = explain.layers_derivation(network, batch)
        if args.json:
            _print_json({"derivation": lines})
        else:
            print("\n".join(lines))
        return 0
    spec = _spec(args)
    if spec.has_blocks and (args.derivatives or args.values is not None):
        raise UsageError("--values and --derivatives do not take hidden blocks yet (--norms, "
                         "--dropout, --residual): the equations print without them")
    lines = explain.derivation(spec, batch)
    if args.derivatives:
        lines += ["", *explain.beyond_the_gradient(spec, batch)]
    result: dict[str, Any] = {"derivation": lines}
    if args.values is not None:
        args.batch, args.labels = args.values, hw.LOSSES[args.loss].targets == "class"
        p = _check_case(args)               # checked to fit in memory first
        name = next((n for n in implementations.NAMES[1:] if n in implementations.available()),
                    None)
        if name is not None:
            _refuse_gaps(p.spec)
        result |= explain.values(p.spec, p.params, p.x, p.y,
                                 (name, implementations.load(name)) if name else None)
    if args.json:
        _print_json(result)
        return 0
    print("\n".join(lines))
    if args.values is not None and not args.quiet:
        _print_values(result, args)
    return 0


def _print_values(result: dict[str, Any], args: argparse.Namespace) -> None:
    """Inputs, then every quantity in derivation order with its equation and its error
    against autograd, then two entries worked by hand."""
    name = result["autograd"]
    np.set_printoptions(precision=6, suppress=False, linewidth=100)
    short = name.replace("reference_", "") if name else ""
    print(f"\nvalues for batch {args.values}, seed {args.seed}: handwritten"
          + (f"; err = largest relative error against {short} autograd" if name else ""))
    print("\ninputs and params")
    for key, value in result["inputs"].items():
        label = f"  {key:4s} "
        print(label + np.array2string(np.array(value), prefix=label))
    for entry in result["values"]:
        err = f"   err {entry['max_rel_error']:.1e}" if name else ""
        print(f"\n{entry['quantity']}:  {entry['equation']}{err}")
        label = "  "
        print(label + np.array2string(np.array(entry["handwritten"]), prefix=label))
    print("\nby hand, from the numbers above")
    for line in result["by_hand"]:
        print("  " + line)


def build_parser() -> Parser:
    parser = Parser(prog="bpnet", formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    fit = sub.add_parser("fit", help="train on a built-in dataset and plot the fit (the blog demo)",
                         description="Train with handwritten; print 'epoch: i, loss: L' every 10 "
                         "epochs as the blog does (L is always the mean loss over samples and "
                         "outputs, whatever reduction the gradient uses), save a PNG.")
    _add_network(fit)
    _add_blocks(fit)
    _add_sequential(fit)
    _add_training(fit)
    _add_common(fit, "no loss log, no progress bar")
    fit.add_argument("--out", type=Path, default=Path("out/fit.png"),
                     help="the plot, any format matplotlib writes (out/fit.png)")
    fit.set_defaults(run=cmd_fit)

    check = sub.add_parser("check", help="one case through every implementation, a table of "
                           "errors per quantity", description="Run one case through handwritten, "
                           "reference_torch, reference_jax and finite differences (float64) and "
                           "compare every trace quantity against the suite's tolerance policy. "
                           "Exit status 1 names the first failing quantity in derivation order, "
                           "its equation and function, and the shape of the error. --all checks "
                           "everything registered.")
    _add_network(check, BLOG_WORDS)
    _add_blocks(check)
    check.add_argument("--batch", type=_positive_int, default=8, help="batch size (8)")
    check.add_argument("--labels", action="store_true",
                       help="integer class labels instead of one-hot rows (softmax CE)")
    check.add_argument("--optimizer", choices=sorted(hw.OPTIMIZERS),
                       help="also check this optimizer: 3 steps from a random state, every "
                       "buffer (m, v, ...), update and param")
    check.add_argument("--lr", type=_positive_float, help="the optimizer's learning rate (0.05)")
    _add_optimizer_options(check)
    check.add_argument("--replay", metavar="'Problem(...)'",
                       help="the case of a failing suite property: its printed Problem(...) line")
    _add_sequential(check)
    check.add_argument("--all", action="store_true",
                       help="every registered activation, loss, reduction, optimizer and "
                       "option, schedule, init scheme, the extremes, forward mode, second "
                       "order, hidden blocks, layers, convolution and the blog's seed.py, in "
                       "one table (under 30 s; the first run compiles JAX's programs, later "
                       "ones reuse them)")
    check.add_argument("--only", metavar="TEXT",
                       help="with --all: only one group (activation, loss, weight, network, "
                       "extremes, optimizer, clipping, schedule, derivatives, second, blocks, "
                       "layers, conv, init, blog) or one entry (tanh, adam, ...)")
    _add_common(check, "print only the verdict line")
    check.set_defaults(run=cmd_check, layers=None)

    compare = sub.add_parser("compare", help="train in all three implementations, plot the "
                             "loss curves and parameter divergence",
                             description="Train from the same initial params and batch order in "
                             "handwritten, reference_torch and reference_jax; print final losses "
                             "and the largest parameter divergence; save a PNG. Exit status 1 "
                             "when the params leave the suite's envelope (float64).")
    _add_network(compare)
    _add_blocks(compare)
    _add_sequential(compare)
    _add_training(compare)
    _add_common(compare, "print only where the plot is")
    compare.add_argument("--out", type=Path, default=Path("out/compare.png"),
                         help="the plot, any format matplotlib writes (out/compare.png)")
    compare.set_defaults(run=cmd_compare)

    hessian = sub.add_parser("hessian", help="the Hessian's top eigenvalues over training "
                             "(Lanczos on the hand-derived hvp) against jax.hessian",
                             description="Train as fit does (an MLP, or a Sequential: "
                             "--network or the digits' CNN); at checkpoints, the top eigenvalues "
                             "of the training objective's Hessian by scipy's eigsh (Lanczos) on "
                             "handwritten.derivatives.hvp, and every eigenvalue of jax.hessian's "
                             "full Hessian (networks up to 2000 params whose jax.hessian fits "
                             "in memory). Save a PNG of the top eigenvalue next to the loss "
                             "and of the final spectrum. Exit status 1 when the two disagree.")
    _add_network(hessian)
    _add_sequential(hessian)
    _add_training(hessian)
    hessian.add_argument("--top", type=_positive_int, default=3,
                         help="how many of the largest eigenvalues Lanczos finds (3)")
    hessian.add_argument("--every", type=_positive_int,
                         help="epochs between checkpoints (default: 20 checkpoints in the run)")
    _add_common(hessian, "print only the verdict and where the plot is")
    hessian.add_argument("--out", type=Path, default=Path("out/hessian.png"),
                         help="the plot, any format matplotlib writes (out/hessian.png)")
    hessian.set_defaults(run=cmd_hessian)

    explain = sub.add_parser("explain", help="the derivation for one architecture, with shapes",
                             description="Print the forward and backward equations with this "
                             "architecture's shapes; with --values B, the numbers of one example "
                             "of batch B next to autograd's.")
    _add_network(explain, BLOG_WORDS)
    _add_blocks(explain)
    explain.add_argument("--values", type=_positive_int, metavar="BATCH",
                         help="also print every quantity of one example of this batch size")
    explain.add_argument("--derivatives", action="store_true",
                         help="also forward mode, second order (R-operator, Gauss-Newton) and "
                         "per-example gradients, with shapes (handwritten/derivatives.py)")
    _add_sequential(explain)
    _add_common(explain, "the equations only, without --values' numbers")
    explain.set_defaults(run=cmd_explain)
    # the first line names every command registered above, so none is left out of it
    exit_status = (__doc__ or "").partition("\n\n")[2]
    parser.description = (f"bpnet: {', '.join(sub.choices)}.  Run ``bpnet COMMAND --help`` "
                          f"for each.\n\n{exit_status}")
    return parser





@contextmanager
def numpy_reports(reports: Counter[str]) -> Iterator[Counter[str]]:
    """Inside: NumPy's RuntimeWarnings counted in ``reports``, never printed.

    A run that diverges overflows on its way to the non-finite loss its one-line diagnosis
    names, and NumPy would print each overflow, division by zero and invalid value (0/0,
    inf - inf) as a warning with a line of source code.  Here a floating-point error goes to
    ``reports`` by its kind ("overflow", np.errstate's "call"; underflow, to 0 or a
    subnormal, stays ignored as NumPy's default), and so does any RuntimeWarning issued by
    ``warnings.warn`` (SciPy's, NumPy's "Mean of empty slice"), by its message; other
    warnings are shown as before.  ``said`` puts the counts into the command's one line.
    Every command runs inside (``main``); the np.errstate of handwritten's own functions,
    which ignore what their derivation expects (exp's overflow in a saturated tail),
    still rules inside them."""

    def floating_point(kind: str, flag: int) -> None:
        reports[kind] += 1

    with warnings.catch_warnings(), np.errstate(divide="call", over="call", invalid="call",
                                                call=floating_point):
        show = warnings.showwarning

        def record(message: Warning | str, category: type[Warning], *args: Any,
                   **kwargs: Any) -> None:
            if issubclass(category, RuntimeWarning):
                reports[str(message)] += 1
            else:
                show(message, category, *args, **kwargs)

        warnings.simplefilter("always", RuntimeWarning)   # each one counted, never an error
        warnings.showwarning = record
        yield reports


def said(reports: Counter[str]) -> str:
    """What NumPy reported during a command, in words for its one line: "NumPy reported
    overflow (4 times) and invalid value"."""
    kinds = [f"{kind} ({n} times)" if n > 1 else kind for kind, n in reports.items()]
    return "NumPy reported " + (", ".join(kinds[:-1]) + " and " if len(kinds) > 1 else "") + \
        kinds[-1]


def _network_defaults(args: argparse.Namespace) -> None:
    """What check and explain leave out comes from the blog's network; the reduction from
    ``default_reduction``, as in fit."""
    if getattr(args, "network", None) is not None:   # --network says it all (_network)
        return
    for key, value in BLOG_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.reduction is None:
        args.reduction = default_reduction(args.layers, args.activations, args.loss)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):       # an ASCII terminal gets '?', not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    implementations.pin_xla_numerics()
    command = next((a for a in argv if not a.startswith("-")), "")
    reports: Counter[str] = Counter()
    try:
        with numpy_reports(reports):
            args = build_parser().parse_args(argv)
            command = args.command
            if command == "check":         # one new program per case: compiling is the cost
                implementations.compile_quickly()
            implementations.persistent_jax_cache(implementations.default_jax_cache())
            if command in ("check", "explain"):
                _network_defaults(args)
            status = int(args.run(args))
        if reports:
            print(f"bpnet {command}: warning: {said(reports)}: a number left the float range "
                  f"or had no value (0/0, inf - inf), and what is printed may carry an inf or "
                  f"a NaN", file=sys.stderr)
        return status
    except UsageError as error:
        return _fail(command, str(error), 2, "--json" in argv, prefix="error: ")
    except FloatingPointError as error:
        return _fail(command, str(error) + (f" ({said(reports)} on the way)" if reports
                                            else ""), 1, "--json" in argv)
    except OverflowError as error:
        # Python's float arithmetic raises where NumPy gives inf: torch's MultiStepLR
        # computes gamma ** (times a milestone is repeated) in Python floats
        return _fail(command, f"a number left the float range ({error}): the run diverged "
                     "before it could be compared", 1, "--json" in argv)
    except KeyboardInterrupt as error:
        return _fail(command, str(error) or "interrupted", 130, "--json" in argv)
    except BrokenPipeError:
        # the reader went away (bpnet fit | head -1): stop quietly, and let nothing more
        # be written to the closed pipe when Python flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _fail(command: str, message: str, status: int, as_json: bool, prefix: str = "") -> int:
    """One line on stderr (and a JSON object on stdout with --json); the exit status."""
    print(f"bpnet{' ' + command if command else ''}: {prefix}{message}", file=sys.stderr)
    if as_json:
        _print_json({"error": message, "exit_status": status})
    return status


if __name__ == "__main__":
    raise SystemExit(main())
