"""The same network as ``handwritten``, with every derivative from JAX autograd.

An oracle for the hand-derived code: activations are ``jax.nn`` / ``jax.numpy``,
losses ``optax.losses`` where they match, gradients ``jax.value_and_grad``,
optimizers ``optax``.  Nothing here is derived by hand.

Importing it changes no global state: float64 is switched on only inside its
own functions (``reference_jax.precision``), so a float64 problem is computed
in float64 while the user's own JAX code keeps JAX's float32 default.
"""

try:
    import jax  # noqa: F401
    import optax  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "reference_jax needs JAX and optax, which are not installed. Install the extra: "
        "pip install -e '.[jax]'"
    ) from error

from reference_jax.network import from_jax, loss_and_grads, predict, to_jax, trace
from reference_jax.optimizers import step, unsupported
from reference_jax.training import train

__all__ = ["from_jax", "loss_and_grads", "predict", "step", "to_jax", "trace", "train",
           "unsupported"]
