"""Central finite differences: a framework-free oracle (used by the tests and `bpnet check`).

A coordinate whose +-h perturbation moves a pre-activation of a kinked activation
(``activation(name).kinked``: relu, leaky_relu, elu, celu, selu) across 0, or changes the
winner of a max pooling window, is skipped: there the function is not smooth and a finite
difference means nothing.  The caller gets
a mask of the coordinates that were kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bpnet.tolerances import fd_step


def central_diff_leaf(f: Callable[[], tuple[float, Any]], leaf: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """d f / d leaf by central differences, perturbing ``leaf`` in place and restoring it.

    ``f()`` returns (value, kink_signature); coordinates whose signature changes
    between theta - h, theta and theta + h are marked invalid.

    Returns
    -------
    grad : leaf-shaped finite-difference estimate
    valid : leaf-shaped bool mask of coordinates whose estimate is meaningful
    """
    grad = np.zeros_like(leaf)
    valid = np.ones(leaf.shape, dtype=bool)
    _, base_sig = f()
    for i in np.ndindex(leaf.shape):
        theta = leaf[i]
        h = fd_step(float(theta))
        leaf[i] = theta + h
        up = leaf[i]                      # the step actually taken, after rounding
        f_plus, sig_plus = f()
        leaf[i] = theta - h
        down = leaf[i]
        f_minus, sig_minus = f()
        leaf[i] = theta
        grad[i] = (f_plus - f_minus) / (up - down)
        valid[i] = sig_plus == base_sig and sig_minus == base_sig
    return grad, valid


def network_grads(spec: Any, params: list[dict[str, np.ndarray]], x: np.ndarray, y: np.ndarray,
                  masks: Any = None
                  ) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """Central differences of the full loss (handwritten's forward) for every parameter.

    Returns grads-shaped finite-difference estimates and boolean masks of the
    coordinates that are meaningful (no kink crossed).  ``params`` is not modified.
    Dropout uses the given ``masks`` (one per hidden layer of a ``NetworkSpec``, one entry
    per node of a ``Sequential``); a norm's gamma and beta are estimated too.
    """
    from handwritten.activations import activation
    from handwritten.layers import Activation, MaxPool2d, Sequential, fold
    from handwritten.network import forward, loss_value

    work = [{k: v.copy() for k, v in layer.items()} for layer in params]
    if isinstance(spec, Sequential):
        run = fold.Pass(masks=masks, weight_decay=spec.weight_decay)
        kinks = [i for i, (_, layer) in enumerate(spec.nodes)
                 if isinstance(layer, Activation) and activation(layer.name).kinked]
        pools = [i for i, (_, layer) in enumerate(spec.nodes) if isinstance(layer, MaxPool2d)]

        def f() -> tuple[float, tuple[bytes, ...]]:
            _, caches = fold.forward(spec, work, x, run)
            value = float(fold.loss_value(spec, work, caches, y))
            return value, (*((caches[i]["z"] > 0).tobytes() for i in kinks),
                           *(caches[i]["arg"].tobytes() for i in pools))
    else:
        kinked = [l for l, name in enumerate(spec.activations) if activation(name).kinked]

        def f() -> tuple[float, tuple[bytes, ...]]:
            _, cache = forward(spec, work, x, masks)
            value = float(loss_value(spec, work, cache, y))
            # the activation's input: n after a norm, else z
            return value, tuple((cache[l].get("n", cache[l]["z"]) > 0).tobytes()
                                for l in kinked)

    # every leaf of every layer (node), in its own key order: W, b (gamma, beta)
    found = [{k: central_diff_leaf(f, leaf) for k, leaf in layer.items()} for layer in work]
    return ([{k: g for k, (g, _) in layer.items()} for layer in found],
            [{k: m for k, (_, m) in layer.items()} for layer in found])
