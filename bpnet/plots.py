"""PNG figures for the command line (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    _pyplot().close(fig)


def fit_regression(x: np.ndarray, y: np.ndarray, predict: Callable[[np.ndarray], np.ndarray],
                   path: Path, title: str, label: str) -> None:
    """The data as a scatter, the network's curve on a fine grid."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    grid = np.linspace(x.min(), x.max(), 400, dtype=x.dtype)[:, None]
    ax.scatter(x[:, 0], y[:, 0], s=12, alpha=0.7, label="data")
    ax.plot(grid[:, 0], predict(grid)[:, 0], "r-", lw=3, label=label)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title, fontsize="medium")
    ax.legend(loc="best")
    _save(fig, path)


def fit_classification(x: np.ndarray, labels: np.ndarray,
                       predict: Callable[[np.ndarray], np.ndarray], path: Path, title: str
                       ) -> None:
    """Decision regions of the network over the plane, the data coloured by class."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 5.0), dpi=100)
    pad = 0.2
    gx, gy = np.meshgrid(np.linspace(x[:, 0].min() - pad, x[:, 0].max() + pad, 250),
                         np.linspace(x[:, 1].min() - pad, x[:, 1].max() + pad, 250))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(x.dtype)
    out = predict(grid)
    region = (out[:, 0] > 0.5).astype(int) if out.shape[1] == 1 else out.argmax(axis=1)
    n_classes = max(int(labels.max()) + 1, 2)
    ax.contourf(gx, gy, region.reshape(gx.shape), levels=np.arange(n_classes + 1) - 0.5,
                cmap="tab10", vmin=0, vmax=9, alpha=0.25)
    for c in range(n_classes):
        sel = labels == c
        ax.scatter(x[sel, 0], x[sel, 1], s=14, color=f"C{c}", edgecolor="k", linewidth=0.3,
                   label=f"class {c}")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(title, fontsize="medium")
    ax.legend(loc="best")
    _save(fig, path)


def fit_images(curve: Sequence[tuple[float, ...]], filters: np.ndarray, labels: np.ndarray,
               predicted: np.ndarray, path: Path, title: str) -> None:
    """An image classifier's run: its learning curves (the mean training loss and the
    held-out accuracy per logged epoch), its first layer's filters (one 2-D kernel per
    output channel, the first input channel's) and the held-out confusion matrix."""
    plt = _pyplot()
    fig, (curves, kernels, confusion) = plt.subplots(1, 3, figsize=(13.5, 4.4), dpi=100)
    epochs = [entry[0] for entry in curve]
    curves.plot(epochs, [entry[1] for entry in curve], "C0.-", label="training loss (mean)")
    curves.set_xlabel("epoch")
    curves.set_ylabel("loss", color="C0")
    curves.set_yscale("log")
    if all(len(entry) > 2 for entry in curve):
        right = curves.twinx()
        right.plot(epochs, [100 * entry[2] for entry in curve], "C1.-",
                   label="held-out accuracy")
        right.set_ylabel("held-out accuracy (%)", color="C1")
    curves.set_title("learning curves", fontsize="medium")
    n = filters.shape[0]
    cols = int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    kh, kw = filters.shape[-2:]
    grid = np.full((rows * (kh + 1) - 1, cols * (kw + 1) - 1), np.nan)
    for k in range(n):
        r, c = divmod(k, cols)
        grid[r * (kh + 1):r * (kh + 1) + kh, c * (kw + 1):c * (kw + 1) + kw] = filters[k, 0]
    limit = float(np.nanmax(np.abs(grid)))
    kernels.imshow(grid, cmap="RdBu_r", vmin=-limit, vmax=limit)
    kernels.set_title(f"first layer's {n} filters ({kh}x{kw})", fontsize="medium")
    kernels.axis("off")
    classes = int(max(labels.max(), predicted.max())) + 1
    counts = np.zeros((classes, classes), dtype=int)
    np.add.at(counts, (labels, predicted), 1)
    confusion.imshow(counts, cmap="Blues")
    for (i, j), value in np.ndenumerate(counts):
        if value:
            confusion.text(j, i, str(value), ha="center", va="center", fontsize=7,
                           color="white" if value > counts.max() / 2 else "black")
    confusion.set_xlabel("predicted")
    confusion.set_ylabel("true")
    confusion.set_xticks(range(classes))
    confusion.set_yticks(range(classes))
    confusion.set_title(f"held-out confusion ({np.mean(labels == predicted):.1%} right)",
                        fontsize="medium")
    fig.suptitle(title, fontsize="small")
    _save(fig, path)


def compare(losses: Mapping[str, np.ndarray], divergence: Mapping[str, np.ndarray],
            path: Path, title: str) -> None:
    """Left: the loss curves of every implementation overlaid, ``losses[name][k]`` the loss
    after step k (0: the initial params) -- the mean over samples and outputs on all the
    data that compare prints (``TrainingCase.mean_loss_curve``).  Right: the largest
    parameter difference from handwritten after every step, relative to the parameters'
    scale, on a log scale (exact agreement is drawn at the floor, 1e-18)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    styles = ["-", "--", ":"]
    for (name, curve), style in zip(losses.items(), styles):
        left.plot(np.arange(len(curve)), curve, style, lw=2, label=name)
    left.set_xlabel("step")
    left.set_ylabel("mean loss on all the data, as printed")
    left.set_yscale("log")
    left.set_title("training loss")
    left.legend(loc="best")
    for (name, curve), color in zip(divergence.items(), ["C1", "C2"]):
        right.plot(np.arange(len(curve)), np.maximum(curve, 1e-18), lw=1.5, color=color,
                   label=f"handwritten vs {name}")
    right.axhline(np.finfo(np.float64).eps, color="gray", lw=1, ls=":",
                  label="float64 eps")
    right.set_yscale("log")
    right.set_xlabel("step")
    right.set_ylabel("max |Δθ| / max |θ|")
    right.set_title("parameter divergence")
    right.legend(loc="best")
    fig.suptitle(title, fontsize="medium")
    _save(fig, path)


def hessian_spectrum(epochs: list[int], losses: list[float], lanczos: list[np.ndarray],
                     exact: list[np.ndarray], path: Path, title: str) -> None:
    """Left: the loss and the top Hessian eigenvalue against epoch (Lanczos as markers, the
    exact value as a line).  Right: the final spectrum, every exact eigenvalue with the
    Lanczos ones marked."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.2), dpi=100)
    left.plot(epochs, losses, "C0-", lw=2, label="loss")
    left.set_xlabel("epoch")
    left.set_ylabel("loss", color="C0")
    left.set_yscale("log")
    top = left.twinx()
    if exact:
        top.plot(epochs, [e[0] for e in exact], "C3-", lw=2, label="top eigenvalue (jax.hessian)")
    top.plot(epochs, [v[0] for v in lanczos], "kx", ms=5, label="top eigenvalue (Lanczos on hvp)")
    top.set_ylabel("top Hessian eigenvalue", color="C3")
    lines = left.get_legend_handles_labels()[0] + top.get_legend_handles_labels()[0]
    labels = left.get_legend_handles_labels()[1] + top.get_legend_handles_labels()[1]
    left.legend(lines, labels, loc="center right", fontsize=8)
    left.set_title("loss and top eigenvalue over training")
    if exact:
        values = exact[-1]
        right.stem(np.arange(1, len(values) + 1), values, basefmt="k-",
                   label="every eigenvalue (jax.hessian)")
    right.plot(np.arange(1, len(lanczos[-1]) + 1), lanczos[-1], "rx", ms=9, mew=2,
               label="Lanczos on the hand-derived hvp")
    right.set_yscale("symlog", linthresh=1e-3)
    right.set_xlabel("eigenvalue index, largest first")
    right.set_ylabel("eigenvalue (symlog)")
    right.set_title(f"Hessian spectrum at epoch {epochs[-1]}")
    right.legend(loc="best", fontsize=8)
    fig.suptitle(title, fontsize="medium")
    _save(fig, path)


def with_and_without(x: np.ndarray, labels: np.ndarray, curves: Mapping[str, np.ndarray],
                     regions: Mapping[str, Callable[[np.ndarray], np.ndarray]], path: Path,
                     title: str, early: int) -> None:
    """Two runs side by side: their loss per epoch, and each one's decision regions after
    ``early`` epochs (bpnet.figures)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 1 + len(regions), figsize=(5.0 * (1 + len(regions)), 4.6),
                             dpi=100)
    for label, loss in curves.items():
        axes[0].semilogy(np.arange(1, len(loss) + 1), loss, label=label)
    axes[0].axvline(early, color="0.6", linestyle=":", linewidth=1)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("mean training loss of the epoch's batches")
    axes[0].legend(loc="best")
    pad = 0.2
    gx, gy = np.meshgrid(np.linspace(x[:, 0].min() - pad, x[:, 0].max() + pad, 200),
                         np.linspace(x[:, 1].min() - pad, x[:, 1].max() + pad, 200))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(x.dtype)
    n_classes = int(labels.max()) + 1
    for ax, (label, predict) in zip(axes[1:], regions.items()):
        region = predict(grid).argmax(axis=1)
        ax.contourf(gx, gy, region.reshape(gx.shape), levels=np.arange(n_classes + 1) - 0.5,
                    cmap="tab10", vmin=0, vmax=9, alpha=0.25)
        for c in range(n_classes):
            sel = labels == c
            ax.scatter(x[sel, 0], x[sel, 1], s=10, color=f"C{c}", edgecolor="k", linewidth=0.3)
        ax.set_title(f"{label}: after {early} epochs")
    fig.suptitle(title)
    _save(fig, path)
