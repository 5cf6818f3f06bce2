"""The Hessian spectrum over training (``bpnet hessian``): Lanczos on the hand-derived hvp.

At checkpoints of a run, the top eigenvalues of the Hessian of the training objective (the
spec's loss over the whole data set, with its reduction -- the blog's sum -- and weight
decay) come from scipy.sparse.linalg.eigsh (ARPACK's implicitly restarted Lanczos) over a
LinearOperator whose matvec is ``handwritten.derivatives.hvp``: the Hessian is never
formed.  For a network small enough (the blog's has 31 params) the full Hessian from
jax.hessian gives every exact eigenvalue to check them against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

import handwritten as hw
from bpnet.tolerances import LANCZOS_RTOL
from handwritten import derivatives

EXACT_LIMIT = 2000
"""Networks with at most this many params also get jax.hessian's full spectrum (a
2000 x 2000 float64 Hessian is 32 MB)."""


def flatten(params: hw.Params) -> np.ndarray:
    """Every W then b of every layer, input layer first, as one vector."""
    return np.concatenate([w.ravel() for layer in params for w in (layer["W"], layer["b"])])


def unflatten(spec: hw.NetworkSpec, flat: Any) -> list[dict[str, Any]]:
    """``flatten``'s inverse (NumPy or JAX arrays): views, no copies."""
    out, i = [], 0
    for fan_in, fan_out in zip(spec.layer_sizes[:-1], spec.layer_sizes[1:]):
        W = flat[i:i + fan_in * fan_out].reshape(fan_in, fan_out)
        i += fan_in * fan_out
        out.append({"W": W, "b": flat[i:i + fan_out]})
        i += fan_out
    return out


def top_eigenvalues(spec: hw.NetworkSpec, params: hw.Params, x: np.ndarray, y: np.ndarray,
                    k: int, rng: np.random.Generator) -> np.ndarray:
    """The k largest (algebraic) Hessian eigenvalues, largest first, by eigsh over hvp."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    n = sum(w.size for layer in params for w in layer.values())
    if not 1 <= k < n:
        raise ValueError(f"k must be between 1 and the number of params - 1 ({n - 1}), got {k}")

    def matvec(v: np.ndarray) -> np.ndarray:
        tangent = unflatten(spec, np.ascontiguousarray(v, dtype=np.float64).ravel())
        product = flatten(derivatives.hvp(spec, params, x, y, tangent))
        if not np.isfinite(product).all():
            raise FloatingPointError("the Hessian-vector product is not finite (the "
                                     "objective overflows at these params)")
        return product

    # v0 from the caller's generator (ARPACK's own start is random and not seeded by
    # anything of ours)
    v0 = rng.standard_normal(n)
    if not matvec(v0).any():
        # H v0 = 0 for a random v0: H is 0 (every unit saturated, say), and ARPACK refuses
        # the zero operator ("Starting vector is zero")
        return np.zeros(k)
    operator = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    # tol=0: to machine precision
    values = eigsh(operator, k=k, which="LA", tol=0, v0=v0, return_eigenvectors=False)
    return np.sort(values)[::-1]


def exact_spectrum(spec: hw.NetworkSpec, params: hw.Params, x: np.ndarray, y: np.ndarray
                   ) -> np.ndarray:
    """Every eigenvalue of the full Hessian from jax.hessian (reference_jax's loss), largest
    first."""
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        hessian = np.array(_jax_hessian(spec)(jnp.asarray(flatten(params)), jnp.asarray(x),
                                              jnp.asarray(y)))
    if not np.isfinite(hessian).all():
        raise FloatingPointError("jax.hessian's Hessian is not finite (the objective "
                                 "overflows at these params)")
    return np.linalg.eigvalsh(hessian / 2 + hessian.T / 2)[::-1]


@lru_cache(maxsize=8)
def _jax_hessian(spec: hw.NetworkSpec) -> Any:
    """jax.hessian of reference_jax's loss in the flat params, jitted once per spec (every
    checkpoint of a run reuses it; op by op, each operation would compile on its own)."""
    import jax

    from reference_jax.network import _loss

    return jax.jit(jax.hessian(lambda f, x, y: _loss(unflatten(spec, f), x, y, spec)))


@dataclass
class Spectrum:
    """Checkpoints of one run: epoch, loss, the top eigenvalues by Lanczos, the exact ones."""

    epochs: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    lanczos: list[np.ndarray] = field(default_factory=list)
    exact: list[np.ndarray] = field(default_factory=list)

    def largest_difference(self) -> float:
        """max |Lanczos - exact| over every checkpoint and eigenvalue, relative to that
        checkpoint's largest |eigenvalue| (nan without exact spectra)."""
        if not self.exact:
            return float("nan")
        return max(float(np.max(np.abs(top - full[:len(top)])) / max(np.abs(full).max(), 1e-300))
                   for top, full in zip(self.lanczos, self.exact))

    @property
    def agrees(self) -> bool:
        difference = self.largest_difference()
        return bool(np.isnan(difference) or difference <= LANCZOS_RTOL)


def checkpoint(spectrum: Spectrum, spec: hw.NetworkSpec, params: hw.Params, x: np.ndarray,
               y: np.ndarray, epoch: int, loss: float, k: int, rng: np.random.Generator
               ) -> None:
    """Append one checkpoint (the exact spectrum only for a network of <= EXACT_LIMIT params).

    Raises FloatingPointError, naming the epoch, where the Hessian is not finite (a run that
    diverges: the command line reports it as training's divergence, exit status 1)."""
    try:
        top = top_eigenvalues(spec, params, x, y, k, rng)
        small = sum(w.size for layer in params for w in layer.values()) <= EXACT_LIMIT
        exact = exact_spectrum(spec, params, x, y) if small else None
    except FloatingPointError as error:
        raise FloatingPointError(f"no spectrum at epoch {epoch}: {error}") from None
    spectrum.epochs.append(epoch)
    spectrum.losses.append(loss)
    spectrum.lanczos.append(top)
    if exact is not None:
        spectrum.exact.append(exact)
