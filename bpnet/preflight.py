"""Checks the command line makes before it computes anything: where the plot goes, and
whether the run fits in memory.  Each raises ValueError with a message for the user.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from handwritten import NetworkSpec, Sequential

PYTHON_FLOAT_BYTES = 48
"""A loss recorded per step: a NumPy scalar (32 bytes) and its list slot (8), rounded up."""


def plot_formats() -> dict[str, str]:
    """The file endings matplotlib can write here, with their descriptions."""
    from matplotlib.figure import Figure

    formats: dict[str, str] = Figure().canvas.get_supported_filetypes()
    return formats


def check_out(path: Path) -> Path:
    """A plot path that will be written exactly as given: an ending matplotlib writes, not
    a directory, under a directory (existing or creatable) that can be written to."""
    if path.is_dir():
        raise ValueError(f"--out {str(path)!r} is a directory; give a file name such as "
                         f"{path / 'fit.png'}")
    formats = plot_formats()
    ending = path.suffix.lower().lstrip(".")
    if ending not in formats:
        raise ValueError(f"--out {str(path)!r} must end in a plot format matplotlib writes "
                         f"({', '.join('.' + f for f in sorted(formats))}), e.g. out/fit.png")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {str(path)!r} lies under {str(parent)!r}, which is a file, "
                         "not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {str(path)!r}: no permission to write in {str(parent)!r}")
    return path


def n_params(spec: NetworkSpec) -> int:
    return sum((fan_in + 1) * fan_out
               for fan_in, fan_out in zip(spec.layer_sizes[:-1], spec.layer_sizes[1:]))


def training_bytes(spec: NetworkSpec | Sequential, n_samples: int, batch: int, itemsize: int,
                   steps: int, implementations: int = 1, record_every_step: bool = False
                   ) -> int:
    """About what one training run holds at its peak, in bytes: the data, one step's
    activations and their gradients (z, a, d_a, d_z and two temporaries per layer; a
    Sequential: per node's input, a convolution's padded copy among the temporaries), the
    params with their gradients, updates, optimizer buffers and copies (about 8 sets), the
    recorded params (2 sets, or one per step) and one recorded loss per step; for
    ``implementations`` trainers run one after the other (each keeps its History)."""
    if isinstance(spec, Sequential):
        params = int(sum(math.prod(shape) for _, layer in spec.nodes
                         for shape in getattr(layer, "param_shapes", dict)().values()))
        data = n_samples * (math.prod(spec.in_shapes[0]) + spec.n_out)
        step = 6 * batch * (sum(math.prod(shape) for shape in spec.in_shapes) + spec.n_out)
    else:
        params = n_params(spec)
        data = n_samples * (spec.layer_sizes[0] + spec.layer_sizes[-1])
        step = 6 * batch * sum(spec.layer_sizes)
    recorded = (steps + 1 if record_every_step else 2) * params
    arrays = data + step + 8 * params + implementations * recorded
    return arrays * itemsize + implementations * steps * PYTHON_FLOAT_BYTES


def check_bytes(spec: NetworkSpec | Sequential, batch: int) -> int:
    """About what ``bpnet check`` (or ``explain --values``) holds, in bytes (float64): three
    implementations' traces and gradients, and the finite differences' copy of the params
    (a Sequential: every node's input width, its params' sizes)."""
    if isinstance(spec, Sequential):
        widths = sum(math.prod(shape) for shape in spec.in_shapes) + spec.n_out
        sizes = sum(math.prod(shape) for _, layer in spec.nodes
                    for shape in getattr(layer, "param_shapes", dict)().values())
        return int(8 * (3 * 6 * batch * widths + 12 * sizes))
    return 8 * (3 * 6 * batch * sum(spec.layer_sizes) + 12 * n_params(spec))


def memory_bytes() -> int:
    """This machine's physical memory."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(needed: int, what: str) -> None:
    """Refuse, before allocating anything, a run that cannot fit in memory."""
    available = memory_bytes()
    if needed > available:
        raise ValueError(f"{what} needs about {_size(needed)} of memory, more than this "
                         f"machine's {_size(available)}: use smaller sizes")


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
