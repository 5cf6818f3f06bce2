"""The blog's demo: fit y = x**2 + noise with the (1, 10, 1) sigmoid network.

    python -m bpnet.demo --out out/blog_fit.png

Prints ``epoch: i, loss: L`` every 10 epochs exactly as the blog does (L is the
*mean* half squared error, while the update follows the gradient of the *sum*:
see handwritten/seed.py), then saves the data and the fitted curve to a PNG.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from handwritten import seed


def plot_fit(x: np.ndarray, y: np.ndarray, y_pred: np.ndarray, path: Path, title: str) -> None:
    """Scatter the data, draw the fitted curve, save a PNG (Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.scatter(x[:, 0], y[:, 0], s=12, alpha=0.7, label="data: y = x² + N(0, 0.1²)")
    ax.plot(x[:, 0], y_pred[:, 0], "r-", lw=3, label="network (1, 10, 1), sigmoid")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    ax.legend(loc="upper center")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bpnet.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and init (0)")
    parser.add_argument("--epochs", type=int, default=1000, help="training epochs (1000)")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate (0.1)")
    parser.add_argument("--out", type=Path, default=Path("out/blog_fit.png"),
                        help="where to save the plot (out/blog_fit.png)")
    parser.add_argument("--quiet", action="store_true", help="do not print the loss log")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be a positive integer, got {args.epochs}")
    if not args.lr > 0:
        parser.error(f"--lr must be positive, got {args.lr}")

    x, y, w1, b1, w2, b2 = seed.blog_problem(np.random.default_rng(args.seed))
    w1, b1, w2, b2, _ = seed.train(x, y, w1, b1, w2, b2, lr=args.lr, epoch=args.epochs,
                                     verbose=not args.quiet)
    y_pred = seed.predict(x, w1, b1, w2, b2)
    final = float(seed.loss(y, y_pred))
    plot_fit(x, y, y_pred, args.out,
             f"blog network after {args.epochs} epochs, lr {args.lr}: loss {final:.5f}")
    print(f"final loss (mean of (y - a)^2 / 2): {final:.6f}")
    print(f"plot saved to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
