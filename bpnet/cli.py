"""bpnet: fit, check, compare, explain.  Run ``bpnet COMMAND --help`` for each.

Exit status: 0 on success, 1 when a check fails, 2 for bad input (unknown option
values, an inconsistent architecture, a missing optional framework), with a
one-line error and no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

import handwritten as hw
from bpnet import datasets, implementations
from bpnet.compare import LeafReport, compare_leaf, compare_trace
from bpnet.tolerances import ATOL64_SCALE, FD_ATOL_SCALE, FD_RTOL, RTOL64
from handwritten.network import loss_value


class UsageError(Exception):
    """Bad input: reported on one line with exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but errors are one line that says what to do (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 1,10,1, got {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _add_network(p: argparse.ArgumentParser, defaults: str = "the dataset's preset") -> None:
    g = p.add_argument_group(f"network (default: {defaults})")
    g.add_argument("--layers", type=_sizes, help="layer sizes, e.g. 1,10,1")
    g.add_argument("--activations", type=_names,
                   help=f"one per layer, comma-separated; from {', '.join(sorted(hw.ACTIVATIONS))}")
    g.add_argument("--loss", choices=sorted(hw.LOSSES))
    g.add_argument("--reduction", choices=hw.REDUCTIONS)
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


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (0)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON only")


def _spec(args: argparse.Namespace, preset: datasets.Preset | None = None) -> hw.NetworkSpec:
    layers = args.layers or (preset.layers if preset else None)
    activations = args.activations or (preset.activations if preset else None)
    if layers is None or activations is None:
        raise UsageError("give --layers and --activations (e.g. --layers 1,10,1 "
                         "--activations sigmoid,sigmoid)")
    loss = args.loss or (preset.loss if preset else "half_mse")
    reduction = args.reduction or (preset.reduction if preset else "mean")
    try:
        return hw.NetworkSpec(layers, activations, loss, reduction, args.weight_decay)
    except (TypeError, ValueError) as error:
        raise UsageError(f"inconsistent network: {error}") from None


def _training_setup(args: argparse.Namespace) -> dict[str, Any]:
    """Spec, optimizer, data, params and batch order, all drawn from one seeded Generator."""
    preset = datasets.PRESETS[args.dataset]
    spec = _spec(args, preset)
    rng = np.random.default_rng(args.seed)
    x, y = datasets.make(args.dataset, rng, dtype=args.dtype)
    if spec.layer_sizes[0] != x.shape[1]:
        raise UsageError(f"dataset {args.dataset!r} has {x.shape[1]} input(s), but --layers "
                         f"starts with {spec.layer_sizes[0]}")
    if y.ndim == 1 and hw.LOSSES[spec.loss].targets != "class":
        raise UsageError(f"dataset {args.dataset!r} has integer class labels: use --loss "
                         "softmax_cross_entropy with a softmax output")
    if y.ndim == 2 and y.shape[1] != spec.layer_sizes[-1]:
        raise UsageError(f"dataset {args.dataset!r} has {y.shape[1]} output(s), but --layers "
                         f"ends with {spec.layer_sizes[-1]}")
    try:
        hw.loss_and_grads(spec, hw.init_params(spec, np.random.default_rng(0), dtype=args.dtype),
                          x, y)
    except (TypeError, ValueError) as error:
        raise UsageError(f"dataset {args.dataset!r} does not fit this network: {error}") from None
    params = hw.init_params(spec, rng, args.init or preset.init, dtype=args.dtype)
    epochs = args.epochs or preset.epochs
    batch_size = args.batch_size
    if batch_size is not None and batch_size > x.shape[0]:
        raise UsageError(f"--batch-size must be at most {x.shape[0]}, the dataset's size")
    order = (hw.make_batch_order(x.shape[0], epochs, rng)
             if batch_size is not None and batch_size < x.shape[0] else None)
    optimizer = hw.OptimizerSpec(args.optimizer or preset.optimizer, args.lr or preset.lr)
    return {"preset": preset, "spec": spec, "x": x, "y": y, "params": params, "epochs": epochs,
            "batch_size": batch_size, "order": order, "optimizer": optimizer}


def _mean_loss(spec: hw.NetworkSpec, params: hw.Params, x: np.ndarray, y: np.ndarray) -> float:
    """The loss with reduction "mean" on the whole dataset: what the blog prints."""
    mean_spec = dataclasses.replace(spec, reduction="mean")
    _, cache = hw.forward(mean_spec, params, x)
    return float(loss_value(mean_spec, params, cache, y))


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="epoch", leave=False, file=sys.stderr)


def cmd_fit(args: argparse.Namespace) -> int:
    s = _training_setup(args)
    spec, x, y = s["spec"], s["x"], s["y"]
    verbose = not (args.quiet or args.json)
    bar = _progress(s["epochs"], verbose and sys.stderr.isatty() and s["epochs"] >= 200)
    log: list[tuple[int, float]] = []

    def report(epoch: int, params: hw.Params) -> None:
        if epoch % 10 == 0 and epoch < s["epochs"]:
            log.append((epoch, _mean_loss(spec, params, x, y)))
            if verbose:
                line = f"epoch: {epoch}, loss: {log[-1][1]}"
                if bar is not None:
                    bar.write(line)
                else:
                    print(line)
        if bar is not None and epoch:
            bar.update(1)

    report(0, s["params"])
    history = hw.train(spec, s["params"], x, y, s["optimizer"], epochs=s["epochs"],
                       batch_size=s["batch_size"], batch_order=s["order"], callback=report)
    if bar is not None:
        bar.close()
    final = history.final_params
    final_loss = _mean_loss(spec, final, x, y)
    from bpnet import plots

    title = (f"{args.dataset}: network {spec.layer_sizes}, {'/'.join(spec.activations)}\n"
             f"{s['optimizer'].name} lr {s['optimizer'].lr}, {s['epochs']} epochs: "
             f"mean loss {final_loss:.4g}")
    if s["preset"].kind == "regression":
        plots.fit_regression(x, y, lambda g: hw.predict(spec, final, g), args.out, title,
                             f"network {spec.layer_sizes}")
    else:
        labels = y[:, 0].astype(int) if y.ndim == 2 else y
        plots.fit_classification(x, labels, lambda g: hw.predict(spec, final, g), args.out, title)
    if args.json:
        print(json.dumps({"spec": dataclasses.asdict(spec), "optimizer": {
            "name": s["optimizer"].name, "lr": s["optimizer"].lr,
            "hyperparams": dict(s["optimizer"].hyperparams)}, "epochs": s["epochs"],
            "log": log, "final_loss": final_loss, "plot": str(args.out)}))
    else:
        print(f"final loss (mean over samples and outputs): {final_loss:.6g}")
        print(f"plot saved to {args.out}")
    return 0


def _check_case(args: argparse.Namespace) -> tuple[hw.NetworkSpec, hw.Params, np.ndarray,
                                                   np.ndarray]:
    spec = _spec(args)
    rng = np.random.default_rng(args.seed)
    params = hw.init_params(spec, rng, "glorot_uniform")
    x = rng.uniform(-1.5, 1.5, (args.batch, spec.layer_sizes[0]))
    y = datasets.make_targets(spec, rng, args.batch, np.float64, labels=args.labels)
    return spec, params, x, y


def _load(name: str) -> Any:
    try:
        return implementations.load(name)
    except implementations.MissingFramework as error:
        raise UsageError(str(error)) from None


def cmd_check(args: argparse.Namespace) -> int:
    from bpnet.finite_diff import network_grads

    spec, params, x, y = _check_case(args)
    ours = hw.trace(spec, params, x, y)
    columns: dict[str, list[LeafReport]] = {}
    for name in implementations.NAMES[1:]:
        ref = _load(name)
        columns[name] = compare_trace(ours, ref.trace(spec, params, x, y), rtol=RTOL64,
                                      atol_scale=ATOL64_SCALE)
    fd, masks = network_grads(spec, params, x, y)
    atol = FD_ATOL_SCALE * max(1.0, abs(float(ours.loss)))
    fd_reports: dict[tuple[int | None, str], LeafReport] = {}
    for l, layer in enumerate(ours.layers):
        for key in ("W", "b"):
            fd_reports[(l, f"d_{key}")] = compare_leaf(layer[f"d_{key}"], fd[l][key], f"d_{key}",
                                                       l, rtol=FD_RTOL, atol=atol,
                                                       mask=masks[l][key])
    rows = [(r.layer, r.quantity) for r in next(iter(columns.values()))]
    failures = [(pair, r) for pair, reports in columns.items() for r in reports if not r.ok]
    failures += [("finite differences", r) for r in fd_reports.values() if not r.ok]
    order = {row: i for i, row in enumerate(rows)}
    failures.sort(key=lambda item: order[(item[1].layer, item[1].quantity)])

    if args.json:
        out = {"spec": dataclasses.asdict(spec), "batch": args.batch, "seed": args.seed,
               "dtype": "float64", "ok": not failures,
               "first_failure": (None if not failures else
                                 {"pair": f"handwritten vs {failures[0][0]}",
                                  "quantity": failures[0][1].label}),
               "rows": [{"quantity": r.label, "layer": r.layer, "name": r.quantity,
                         **{f"vs {pair}": {"max_abs": columns[pair][i].max_abs,
                                           "max_rel": columns[pair][i].max_rel,
                                           "ok": columns[pair][i].ok} for pair in columns},
                         **({"vs finite differences": {
                             "max_abs": fd_reports[(r.layer, r.quantity)].max_abs,
                             "max_rel": fd_reports[(r.layer, r.quantity)].max_rel,
                             "ok": fd_reports[(r.layer, r.quantity)].ok}}
                            if (r.layer, r.quantity) in fd_reports else {})}
                        for i, r in enumerate(next(iter(columns.values())))]}
        print(json.dumps(out, default=float))
    else:
        print(f"bpnet check: {spec}, batch {args.batch}, seed {args.seed}, float64")
        print(f"tolerance vs autograd: rtol {RTOL64:g} + {ATOL64_SCALE:g} * max|ref|; "
              f"vs finite differences: rtol {FD_RTOL:g} + {atol:.2g}")
        header = f"{'quantity':14s}" + "".join(f"{'vs ' + p.replace('reference_', ''):>22s}"
                                                for p in columns) + f"{'vs finite diff':>22s}"
        print(header)
        print("-" * len(header))
        for i, row in enumerate(rows):
            first = columns[next(iter(columns))][i]
            cells = [columns[p][i] for p in columns]
            fd_cell = fd_reports.get(row)
            text = f"{first.label:14s}" + "".join(f"{_cell(c):>22s}" for c in cells)
            print(text + (f"{_cell(fd_cell):>22s}" if fd_cell else f"{'':>22s}"))
        if failures:
            pair, report = failures[0]
            print(f"FAIL: first disagreement in derivation order: {report.label} "
                  f"(handwritten vs {pair}): {report}")
        else:
            print("ok: every quantity agrees within the tolerance policy")
    return 1 if failures else 0


def _cell(report: LeafReport) -> str:
    if report.problem:
        return "FAIL " + report.problem[:14]
    return f"{report.max_rel:9.2e} {'ok' if report.ok else 'FAIL'}"


def cmd_compare(args: argparse.Namespace) -> int:
    s = _training_setup(args)
    spec, x, y = s["spec"], s["x"], s["y"]
    kwargs = {"epochs": s["epochs"], "batch_size": s["batch_size"], "batch_order": s["order"],
              "record_every": 1}
    histories = {name: _load(name).train(spec, s["params"], x, y, s["optimizer"], **kwargs)
                 for name in implementations.NAMES}
    ours = histories["handwritten"]

    def divergence(other: hw.History) -> np.ndarray:
        out = []
        for mine, theirs in zip(ours.params, other.params):
            scale = max(float(np.abs(v).max()) for p in mine for v in p.values())
            out.append(max(float(np.abs(p[k] - q[k]).max()) for p, q in zip(mine, theirs)
                           for k in p) / scale)
        return np.array(out)

    div = {name: divergence(h) for name, h in histories.items() if name != "handwritten"}
    from bpnet import plots

    plots.compare({n: h.losses for n, h in histories.items()},
                  {n.replace("reference_", ""): d for n, d in div.items()}, args.out,
                  f"{args.dataset}: {spec.layer_sizes}, {s['optimizer'].name}, "
                  f"{len(ours.losses)} steps, {args.dtype}")
    result = {"final_loss": {n: float(h.losses[-1]) for n, h in histories.items()},
              "max_divergence": {n: float(d.max()) for n, d in div.items()},
              "steps": len(ours.losses), "plot": str(args.out)}
    if args.json:
        print(json.dumps(result))
    else:
        for name, h in histories.items():
            print(f"{name:16s} final loss {float(h.losses[-1]):.17g}")
        for name, d in div.items():
            print(f"largest parameter divergence, handwritten vs {name}: {d.max():.3g} "
                  f"(relative to max |θ|, over {len(d) - 1} steps)")
        print(f"plot saved to {args.out}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from bpnet.explain import derivation

    spec = _spec(args)
    lines = derivation(spec, "N" if args.values is None else str(args.values))
    result: dict[str, Any] = {"derivation": lines}
    if args.values is not None:
        args.batch, args.labels = args.values, True
        spec, params, x, y = _check_case(args)
        ours = hw.trace(spec, params, x, y)
        name = next((n for n in implementations.NAMES[1:]
                     if n in implementations.available()), None)
        theirs = implementations.load(name).trace(spec, params, x, y) if name else None
        values = []
        for l, layer in enumerate(ours.layers):
            for key, value in layer.items():
                entry = {"quantity": f"layer {l} {key}", "handwritten": value.tolist()}
                if theirs is not None and name is not None:
                    entry[name] = theirs.layers[l][key].tolist()
                values.append(entry)
        result |= {"values": values, "autograd": name}
    if args.json:
        print(json.dumps(result))
        return 0
    print("\n".join(lines))
    if args.values is not None:
        np.set_printoptions(precision=6, suppress=False, linewidth=100)
        print(f"\nvalues for batch {args.values}, seed {args.seed}"
              + (f" (handwritten, then {name} autograd)" if name else " (handwritten)"))
        for entry in result["values"]:
            print(f"\n{entry['quantity']}:")
            for who in ("handwritten", name or ""):
                if who:
                    label = f"  {who.replace('reference_', ''):12s}"
                    print(label + np.array2string(np.array(entry[who]), prefix=label))
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="bpnet", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    fit = sub.add_parser("fit", help="train on a built-in dataset and plot the fit (the blog demo)",
                         description="Train with handwritten; print 'epoch: i, loss: L' every 10 "
                         "epochs as the blog does (L is always the mean loss over samples and "
                         "outputs, whatever reduction the gradient uses), save a PNG.")
    _add_network(fit)
    _add_training(fit)
    _add_common(fit)
    fit.add_argument("--out", type=Path, default=Path("out/fit.png"), help="PNG (out/fit.png)")
    fit.add_argument("--quiet", action="store_true", help="no loss log, no progress bar")
    fit.set_defaults(run=cmd_fit)

    check = sub.add_parser("check", help="one case through every implementation, a table of "
                           "errors per quantity", description="Run one case through handwritten, "
                           "reference_torch, reference_jax and finite differences (float64) and "
                           "compare every trace quantity against the suite's tolerance policy. "
                           "Exit status 1 names the first failing quantity in derivation order.")
    _add_network(check, "1,10,1 sigmoid,sigmoid half_mse sum")
    check.add_argument("--batch", type=_positive_int, default=8, help="batch size (8)")
    check.add_argument("--labels", action="store_true",
                       help="integer class labels instead of one-hot rows (softmax CE)")
    _add_common(check)
    check.set_defaults(run=cmd_check, layers=None)

    compare = sub.add_parser("compare", help="train in all three implementations, plot the "
                             "loss curves and parameter divergence",
                             description="Train from the same initial params and batch order in "
                             "handwritten, reference_torch and reference_jax; print final losses "
                             "and the largest parameter divergence; save a PNG.")
    _add_network(compare)
    _add_training(compare)
    _add_common(compare)
    compare.add_argument("--out", type=Path, default=Path("out/compare.png"),
                         help="PNG (out/compare.png)")
    compare.set_defaults(run=cmd_compare)

    explain = sub.add_parser("explain", help="the derivation for one architecture, with shapes",
                             description="Print the forward and backward equations with this "
                             "architecture's shapes; with --values B, the numbers of one example "
                             "of batch B next to autograd's.")
    _add_network(explain, "1,10,1 sigmoid,sigmoid half_mse sum")
    explain.add_argument("--values", type=_positive_int, metavar="BATCH",
                         help="also print every quantity of one example of this batch size")
    _add_common(explain)
    explain.set_defaults(run=cmd_explain)
    return parser


BLOG_DEFAULTS = {"layers": (1, 10, 1), "activations": ("sigmoid", "sigmoid"),
                 "loss": "half_mse", "reduction": "sum"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("check", "explain"):
        for key, value in BLOG_DEFAULTS.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    try:
        return int(args.run(args))
    except UsageError as error:
        print(f"bpnet {args.command}: error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:
        print(f"bpnet {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
