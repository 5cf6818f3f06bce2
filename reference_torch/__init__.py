"""The same network as ``handwritten``, with every derivative from PyTorch's autograd.

An oracle for the hand-derived code: activations and losses are torch's own ops,
gradients come from ``loss.backward()``, optimizers are ``torch.optim``.  Nothing
here is derived by hand.  Inputs and outputs are NumPy, in the structures of
``handwritten``; float32 and float64 are kept end to end.
"""

try:
    import torch  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "reference_torch needs PyTorch, which is not installed. Install the extra: "
        "pip install -e '.[torch]' (it pins torch==2.13.0, the CPU build)"
    ) from error

from reference_torch.network import from_torch, loss_and_grads, predict, to_torch, trace
from reference_torch.optimizers import step, unsupported
from reference_torch.training import train

__all__ = ["from_torch", "loss_and_grads", "predict", "step", "to_torch", "trace", "train",
           "unsupported"]
