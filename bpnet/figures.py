"""The README's figure of batch norm at work: a deep sigmoid network on the spirals, trained
with and without batch norm on every hidden layer, from the same seed (same data, same
initial W and b, same batches).

    python -m bpnet.figures              # writes out/spirals_batch_norm.png
    python -m bpnet.figures PATH.png     # writes PATH.png (the README's copy:
                                         # docs/img/spirals_batch_norm.png)

Four sigmoid layers of 32 squash the signal: without batch norm the loss sits on a plateau
for well over a hundred epochs before it finds the arms; with it, each layer's input is centred
and scaled again and the loss falls from the first epochs (and stays noisier: each
batch's own statistics are part of what the network sees).  The regions are predicted in
evaluation mode (``hw.predict`` with the run's ``History.running``).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

import handwritten as hw
from bpnet import datasets, plots

HIDDEN = (32, 32, 32, 32)
OPTIMIZER = hw.OptimizerSpec("momentum", 0.1, {"momentum": 0.9})
BATCH_SIZE = 30
EPOCHS = 300
EARLY = 60
"""The epoch whose decision regions the figure shows: where the two runs differ most."""
OUT = Path("out") / "spirals_batch_norm.png"
"""Where the figure goes unless a path is given: under out/, as every plot of the command
line, never over the tracked copy in docs/img/ unless that path is given by name."""


def spec(norm: str | None) -> hw.NetworkSpec:
    """2 -> 32 x 4 sigmoid -> 3 softmax, with ``norm`` on every hidden layer (or none)."""
    return hw.NetworkSpec((2, *HIDDEN, 3), ("sigmoid",) * len(HIDDEN) + ("softmax",),
                          "softmax_cross_entropy", "mean", norms=(norm,) * len(HIDDEN))


def spirals_batch_norm(out: Path, seed: int = 0, epochs: int = EPOCHS, early: int = EARLY
                       ) -> dict[str, np.ndarray]:
    """Train both networks for ``epochs`` (and for ``early``, for the regions), plot, and
    return each run's mean loss per epoch (keys "without" and "with batch norm")."""
    rng = np.random.default_rng(seed)
    x, y = datasets.make("spirals", rng)
    init_seed, order_seed = (int(s) for s in rng.integers(2**63, size=2))
    curves, regions = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hw.TrainingWarning)
        for label, norm in (("without", None), ("with batch norm", "batch")):
            s = spec(norm)
            params = hw.init_params(s, np.random.default_rng(init_seed), "glorot_uniform")
            runs = {n: hw.train(s, params, x, y, OPTIMIZER, epochs=n, batch_size=BATCH_SIZE,
                                batch_order=hw.Shuffle(order_seed)) for n in (epochs, early)}
            curves[label] = runs[epochs].losses.reshape(epochs, -1).mean(axis=1)
            h = runs[early]
            regions[label] = (lambda g, s=s, h=h: hw.predict(s, h.final_params, g, h.running))
    plots.with_and_without(x, y, curves, regions, out,
                           f"spirals, 2-{'-'.join(map(str, HIDDEN))}-3 sigmoid, "
                           f"{OPTIMIZER.name} lr {OPTIMIZER.lr}, batch {BATCH_SIZE}, seed {seed}",
                           early)
    return curves


def output_path(args: list[str]) -> Path:
    """The figure's path: the one given, else ``OUT`` (relative to the current directory).
    A ValueError for more than one."""
    if len(args) > 1:
        raise ValueError(f"expected at most one output path, got {len(args)}: {args}")
    return Path(args[0]) if args else OUT


def main(argv: list[str] | None = None) -> int:
    try:
        out = output_path(sys.argv[1:] if argv is None else argv)
    except ValueError as error:
        print(f"usage: python -m bpnet.figures [OUT.png] (default {OUT}): {error}",
              file=sys.stderr)
        return 2
    curves = spirals_batch_norm(out)
    for label, loss in curves.items():
        print(f"{label:16s} mean loss per epoch: epoch 1 {loss[0]:.3g}, {EARLY} "
              f"{loss[EARLY - 1]:.3g}, {len(loss)} {loss[-1]:.3g}")
    print(f"plot saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
