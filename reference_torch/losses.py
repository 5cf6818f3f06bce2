"""Losses as torch.nn.functional ops, each taking (z, a, y, reduction) like handwritten's.

torch's reduction="mean" averages over every element, which is handwritten's
"mean" for the elementwise losses (batch * n_out) and, for cross_entropy, over
the batch: the same convention.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from handwritten.checks import counterpart

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, str], torch.Tensor]

LOSSES: dict[str, LossFn] = {
    "half_mse": lambda z, a, y, r: F.mse_loss(a, y, reduction=r) / 2,
    "mse": lambda z, a, y, r: F.mse_loss(a, y, reduction=r),
    # torch clamps log() at -100; the outputs the suite draws are far from 0 and 1
    "bce": lambda z, a, y, r: F.binary_cross_entropy(a, y, reduction=r),
    "bce_with_logits": lambda z, a, y, r: F.binary_cross_entropy_with_logits(z, y, reduction=r),
    # integer labels (batch,) or rows of class probabilities (batch, n_out)
    "softmax_cross_entropy": lambda z, a, y, r: F.cross_entropy(z, y, reduction=r),
}


def _bce_written_out(z: torch.Tensor, a: torch.Tensor, y: torch.Tensor, reduction: str
                     ) -> torch.Tensor:
    terms = -(y * torch.log(a) + (1 - y) * torch.log1p(-a))
    return terms.mean() if reduction == "mean" else terms.sum()


SECOND_ORDER_LOSSES: dict[str, LossFn] = {**LOSSES, "bce": _bce_written_out}
"""The losses whose second derivatives reference_torch.derivatives takes.  torch 2.13's
binary_cross_entropy double backward adds 1e-12 to a and to 1 - a in its denominator
((a**2 - 2 a y + y) / ((a + 1e-12)**2 (1 - a + 1e-12)**2)): a relative error of
~2e-12 / min(a, 1 - a), 3e-8 at a = 1e-4 -- so bce is written out in torch ops there
(autograd differentiates the logs exactly).  tests/test_second_order.py pins the formula."""



def loss(name: str, losses: Mapping[str, LossFn] = LOSSES) -> LossFn:
    """The loss of a name from ``losses`` (LOSSES or SECOND_ORDER_LOSSES);
    NotImplementedError for a name handwritten has and this table has not."""
    return counterpart(losses, "loss", name, "reference_torch/losses.py")
