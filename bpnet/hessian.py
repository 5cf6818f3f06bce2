"""The Hessian spectrum over training (``bpnet hessian``): Lanczos on the hand-derived hvp.

At checkpoints of a run, the top eigenvalues of the Hessian of the training objective (the
spec's loss over the whole data set, with its reduction -- the blog's sum -- and weight
decay) come from scipy.sparse.linalg.eigsh (ARPACK's implicitly restarted Lanczos) over a
LinearOperator whose matvec is ``handwritten.derivatives.hvp``: the Hessian is never
formed.  For a network small enough (the blog's has 31 params) the full Hessian from
jax.hessian gives every exact eigenvalue to check them against.

An MLP (``NetworkSpec``) or a ``Sequential`` of layers alike: the params are flattened
by their own structure (``layout``: one dict per node, empty for a layer without params,
a convolution's 4-D kernel as it is), the hvp is handwritten's for either, and the exact
Hessian is jax.hessian of reference_jax's loss for either (a Sequential's in training
mode; dropout, whose objective is random, is refused by the command line).
"""

from __future__ import annotations

import math
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
EXACT_BYTES = 2 * 2**30
"""A Sequential also gets it only when jax.hessian's pass holds at most about this much.
jax.hessian pushes one tangent per param through the whole data set at once: n_params x
batch x every node's input, three times over (measured: 8 GB of a 2.9 GB estimate for the
digits' CNN on 100 images), which for images is far more than the Hessian itself (the
digits' CNN on its 1,437 training images: about 120 GB)."""


Layout = tuple[tuple[tuple[str, tuple[int, ...]], ...], ...]
"""Every node's params by name and shape, in flattening order: hashable, so one jitted
jax.hessian serves every checkpoint of a run."""


def layout(params: hw.Params) -> Layout:
    """The params' own structure: one entry per layer (an MLP's) or node (a Sequential's,
    an empty one for a layer without params), each its (name, shape) pairs in name order --
    an MLP layer's W then b, a conv kernel's 4-D shape as it is."""
    return tuple(tuple((name, tuple(layer[name].shape)) for name in sorted(layer))
                 for layer in params)


def flatten(params: hw.Params) -> np.ndarray:
    """Every param of every layer (node), input first, names in ``layout``'s order (an MLP
    layer's W then b), as one vector."""
    return np.concatenate([layer[name].ravel() for layer in params for name in sorted(layer)])


def unflatten(shapes: Layout, flat: Any) -> list[dict[str, Any]]:
    """``flatten``'s inverse for params of this ``layout`` (NumPy or JAX arrays): views, no
    copies."""
    out, i = [], 0
    for node in shapes:
        entry = {}
        for name, shape in node:
            size = math.prod(shape)
            entry[name] = flat[i:i + size].reshape(shape)
            i += size
        out.append(entry)
    return out


def top_eigenvalues(spec: hw.NetworkSpec | hw.Sequential, params: hw.Params, x: np.ndarray,
                    y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The k largest (algebraic) Hessian eigenvalues, largest first, by eigsh over hvp."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    n = sum(w.size for layer in params for w in layer.values())
    if not 1 <= k < n:
        raise ValueError(f"k must be between 1 and the number of params - 1 ({n - 1}), got {k}")

    shapes = layout(params)

    def matvec(v: np.ndarray) -> np.ndarray:
        tangent = unflatten(shapes, np.ascontiguousarray(v, dtype=np.float64).ravel())
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


def exact_spectrum(spec: hw.NetworkSpec | hw.Sequential, params: hw.Params, x: np.ndarray,
                   y: np.ndarray) -> np.ndarray:
    """Every eigenvalue of the full Hessian from jax.hessian (reference_jax's loss), largest
    first."""
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        hessian = np.array(_jax_hessian(spec, layout(params))(
            jnp.asarray(flatten(params)), jnp.asarray(x), jnp.asarray(y)))
    if not np.isfinite(hessian).all():
        raise FloatingPointError("jax.hessian's Hessian is not finite (the objective "
                                 "overflows at these params)")
    return np.linalg.eigvalsh(hessian / 2 + hessian.T / 2)[::-1]


@lru_cache(maxsize=8)
def _jax_hessian(spec: hw.NetworkSpec | hw.Sequential, shapes: Layout) -> Any:
    """jax.hessian of reference_jax's loss in the flat params, jitted once per spec (every
    checkpoint of a run reuses it; op by op, each operation would compile on its own).  A
    Sequential's loss is reference_jax.layers' (training mode, no dropout masks)."""
    import jax

    if isinstance(spec, hw.Sequential):
        from reference_jax.layers import _loss as layers_loss

        return jax.jit(jax.hessian(
            lambda f, x, y: layers_loss(unflatten(shapes, f), x, y, None, spec)))
    from reference_jax.network import _loss

    return jax.jit(jax.hessian(lambda f, x, y: _loss(unflatten(shapes, f), x, y, spec)))


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


def no_exact(spec: hw.NetworkSpec | hw.Sequential, params: hw.Params, batch: int) -> str:
    """Why this run gets no exact spectrum, in a line ("" when it gets one): more than
    EXACT_LIMIT params; a Sequential whose jax.hessian would hold more than EXACT_BYTES."""
    n_params = sum(w.size for layer in params for w in layer.values())
    if n_params > EXACT_LIMIT:
        return f"{n_params} params: more than {EXACT_LIMIT}, no exact spectrum"
    if isinstance(spec, hw.Sequential):
        widths = sum(math.prod(shape) for shape in spec.in_shapes) + spec.n_out
        needed = 3 * 8 * n_params * batch * widths
        if needed > EXACT_BYTES:
            return (f"{n_params} params through {widths} values a sample over {batch} "
                    f"samples: jax.hessian would hold about {needed / 2**30:.3g} GiB, more "
                    f"than {EXACT_BYTES / 2**30:g} GiB, no exact spectrum")
    return ""


def checkpoint(spectrum: Spectrum, spec: hw.NetworkSpec | hw.Sequential, params: hw.Params,
               x: np.ndarray, y: np.ndarray, epoch: int, loss: float, k: int,
               rng: np.random.Generator) -> None:
    """Append one checkpoint (the exact spectrum only where ``no_exact`` has no reason).

    Raises FloatingPointError, naming the epoch, where the Hessian is not finite (a run that
    diverges: the command line reports it as training's divergence, exit status 1)."""
    try:
        top = top_eigenvalues(spec, params, x, y, k, rng)
        small = not no_exact(spec, params, len(x))
        exact = exact_spectrum(spec, params, x, y) if small else None
    except FloatingPointError as error:
        raise FloatingPointError(f"no spectrum at epoch {epoch}: {error}") from None
    spectrum.epochs.append(epoch)
    spectrum.losses.append(loss)
    spectrum.lanczos.append(top)
    if exact is not None:
        spectrum.exact.append(exact)
