"""Central finite differences: a framework-free oracle for any scalar function of params.

A coordinate whose +-h perturbation moves a pre-activation of a kinked activation
(relu, leaky_relu, elu) across 0 is skipped: there the function is not smooth
and a finite difference means nothing.  The caller is told how many were skipped.
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
