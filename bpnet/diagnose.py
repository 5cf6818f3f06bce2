"""What a failing quantity is, who computes it, and what shape its error has.

A check that only says "layer 1 d_z disagrees" leaves the reader to find the line.
``implementing`` (in ``bpnet.equations``, importable here too) names the equation of a
trace quantity and the function of handwritten that evaluates it (from the registries,
so a new activation or loss is named without an edit here); ``error_shape`` looks at
the two arrays and says how they differ: a constant ratio (and what it equals: 1/batch,
-1, 2, ...), a transposed match, an error confined to one sample, one unit, one sign of
z, or the saturated entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bpnet.equations import implementing as implementing
from bpnet.equations import qualname as qualname
from handwritten import NetworkSpec, Sequential


def _ratios(spec: NetworkSpec | Sequential | None, batch: int | None) -> dict[str, float]:
    """Constants a wrong derivation multiplies by, by name."""
    named = {"-1": -1.0, "2": 2.0, "1/2": 0.5, "-2": -2.0, "-1/2": -0.5, "0": 0.0}
    if batch and batch > 1:
        named |= {"1/batch": 1.0 / batch, "batch": float(batch)}
    if spec is not None:
        n_out = spec.n_out
        if n_out > 1:
            named |= {"1/n_outputs": 1.0 / n_out, "n_outputs": float(n_out)}
        if batch and batch > 1 and n_out > 1:
            named |= {"1/(batch*n_outputs)": 1.0 / (batch * n_out),
                      "batch*n_outputs": float(batch * n_out)}
        if spec.weight_decay:
            named |= {"weight_decay": spec.weight_decay, "1 - weight_decay": 1 - spec.weight_decay}
    return named


def _constant(values: np.ndarray) -> float | None:
    """The value of an array whose entries are all (nearly) equal, else None."""
    r = float(np.median(values))
    return r if np.allclose(values, r, rtol=1e-6, atol=1e-12) else None


def _named(value: float, spec: NetworkSpec | Sequential | None, batch: int | None,
           constants: Mapping[str, float] | None = None) -> str:
    candidates = _ratios(spec, batch) | dict(constants or {})
    # as close as _constant asks the ratio to be constant: eps and rounding move it by less
    names = [n for n, v in candidates.items() if np.isclose(value, v, rtol=1e-6)]
    return "".join(f" = {n}" for n in names)


def error_shape(ours: Any, theirs: Any, *, rtol: float, atol: float,
                spec: NetworkSpec | Sequential | None = None, batch: int | None = None,
                z: Any = None, saturation: float | None = None,
                related: dict[str, Any] | None = None,
                constants: Mapping[str, float] | None = None) -> str:
    """How ``ours`` differs from ``theirs`` (the reference), in one phrase.

    ``rtol``/``atol`` decide which entries are wrong, as the check does; ``z`` (the
    layer's pre-activation, same shape) lets the error be placed on one side of a kink
    or in the saturated entries, |z| > ``saturation``; ``related`` arrays (the layer's
    W or b, say) are tried as the shape of the difference: ours - theirs = c * W;
    ``constants`` name further values a ratio may equal ("1/sqrt(1 - beta2**t)": 11.2).
    """
    a, e = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if a.shape != e.shape:
        if a.T.shape == e.shape and np.allclose(a.T, e, rtol=rtol, atol=atol):
            return "a transposed match: handwritten's array is the reference's transposed"
        return f"shape {a.shape}, expected {e.shape}"
    if a.ndim == 0:
        a, e = a.reshape(1), e.reshape(1)
    finite = np.isfinite(a)
    if not finite.all():
        return f"{int((~finite).sum())} non-finite entries (NaN or inf) in handwritten's array"
    bad = ~(np.abs(a - e) <= atol + rtol * np.abs(e))
    if not bad.any():
        return "no entry outside the tolerance"
    phrases = []
    scale = max(float(np.abs(e).max()), float(np.finfo(np.float64).tiny))
    big = np.abs(e) > 1e-6 * scale
    if big.any():
        r = _constant(a[big] / e[big])
        if r is not None and not np.isclose(r, 1.0, rtol=1e-6):   # 1: small absolute errors
            phrases.append(f"a constant ratio: handwritten = {r:.6g}"
                           f"{_named(r, spec, batch, constants)} x reference")
    for name, array in (related or {}).items():
        x = np.asarray(array, dtype=np.float64)
        nonzero = np.abs(x) > 1e-6 * max(float(np.abs(x).max()), 1e-300)
        if phrases or x.shape != a.shape or not nonzero.any():
            continue
        c = _constant((a - e)[nonzero] / x[nonzero])
        if c is not None and c != 0 and np.allclose((a - e)[~nonzero], 0, atol=atol):
            phrases.append(f"handwritten - reference = {c:.6g}"
                           f"{_named(c, spec, batch, constants)} x {name}")
    if not phrases and not np.any(a[bad]) and np.any(e[bad]):
        phrases.append("handwritten is 0 where the reference is not")
    if not phrases and a.ndim == 2 and a.shape[0] == a.shape[1] > 1 and np.allclose(
            a.T, e, rtol=rtol, atol=atol):
        phrases.append("a transposed match: handwritten's array is the reference's transposed")
    if a.ndim == 2 and bad.sum() > 1:
        rows, cols = np.unique(np.nonzero(bad)[0]), np.unique(np.nonzero(bad)[1])
        if len(rows) == 1 and a.shape[0] > 1:
            phrases.append(f"confined to one row (sample {int(rows[0])})")
        elif len(cols) == 1 and a.shape[1] > 1:
            phrases.append(f"confined to one column (unit {int(cols[0])})")
    if z is not None and np.shape(z) == a.shape and not bad.all():
        zz = np.asarray(z, dtype=np.float64)
        if saturation is not None and np.all(np.abs(zz[bad]) > saturation):
            phrases.append(f"confined to the saturated entries (|z| > {saturation:g})")
        elif np.all(zz[bad] <= 0) and np.any(zz > 0):
            phrases.append("confined to the entries where z <= 0")
        elif np.all(zz[bad] > 0) and np.any(zz <= 0):
            phrases.append("confined to the entries where z > 0")
    if not phrases:
        phrases.append(f"no simple pattern ({int(bad.sum())} of {bad.size} entries wrong)")
        if big.any():
            ratio = a[big] / e[big]
            phrases.append(f"handwritten / reference from {ratio.min():.4g} to "
                           f"{ratio.max():.4g}")
    return "; ".join(phrases)
