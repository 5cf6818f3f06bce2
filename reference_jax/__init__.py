"""The same network as ``handwritten``, with every derivative from JAX autograd.

An oracle for the hand-derived code: activations are ``jax.nn`` / ``jax.numpy``,
losses ``optax.losses`` where they match, gradients ``jax.value_and_grad``,
optimizers ``optax``.  Nothing here is derived by hand.

This module is the one place where JAX is configured, before any array exists:
float64 is enabled (JAX's default is float32, which would make every float64
check silently compare float32 numbers), and XLA's CPU fast math is kept off.
"""

import os

_FAST_MATH_OFF = "--xla_cpu_enable_fast_math=false"
if _FAST_MATH_OFF not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FAST_MATH_OFF).strip()

try:
    import jax
    import optax  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "reference_jax needs JAX and optax, which are not installed. Install the extra: "
        "pip install -e '.[jax]'"
    ) from error

jax.config.update("jax_enable_x64", True)

from reference_jax.network import from_jax, loss_and_grads, predict, to_jax, trace  # noqa: E402
from reference_jax.optimizers import step  # noqa: E402
from reference_jax.training import train  # noqa: E402

__all__ = ["from_jax", "loss_and_grads", "predict", "step", "to_jax", "trace", "train"]
