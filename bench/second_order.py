"""The largest float64 difference per R-operator quantity, handwritten against torch and JAX.

    .venv/bin/python bench/second_order.py            # ~4 minutes (JAX compiles per shape)
    .venv/bin/python bench/second_order.py --n 200 --json

Over networks drawn by the suite's generator (every activation and loss, depth 1-3), each
with a random direction v: every quantity of handwritten.derivatives.r_trace (R{z}, R{a},
R{d_a}, R{d_z}, R{d_W}, R{d_b}), of gnvp, and of jvp and the per-example gradients, against
reference_torch's and reference_jax's, as a normwise difference: max |ours - theirs| over the
array, relative to max |theirs|.  Nothing here is a test: the suite asserts these within its
tolerances (1e-10 relative, bpnet.tolerances); this prints how far inside they are.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Callable

import numpy as np
from progress_lines import progress  # bench/progress_lines.py, beside this script

from bpnet.problems import make_params, random_problems
from handwritten import derivatives

REFERENCES = ("reference_torch", "reference_jax")


def _normwise(ours: np.ndarray, theirs: np.ndarray) -> float:
    scale = max(float(np.abs(theirs).max()), np.finfo(np.float64).tiny)
    return float(np.abs(ours - theirs).max()) / scale


def measure(n: int, seed: int, starting: Callable[[str], None] = lambda case: None
            ) -> dict[str, dict[str, float]]:
    """The worst difference per quantity and reference over ``n`` drawn networks;
    ``starting(case)`` is called as each network's turn comes (progress)."""
    import importlib

    refs = {name: importlib.import_module(f"{name}.derivatives") for name in REFERENCES}
    worst: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(REFERENCES, 0.0))
    for i, p in enumerate(random_problems(n, seed, max_depth=3, max_width=8, max_batch=8)):
        starting(f"{p.spec.layer_sizes} {'/'.join(p.spec.activations)} {p.spec.loss}")
        v = make_params(p.spec, np.random.default_rng(seed + i), np.float64)
        ours = derivatives.r_trace(p.spec, p.params, p.x, p.y, v)
        ours_gn = derivatives.gnvp(p.spec, p.params, p.x, p.y, v)
        ours_jvp = derivatives.jvp(p.spec, p.params, p.x, v)[1]
        ours_per = derivatives.per_example_grads(p.spec, p.params, p.x, p.y)
        for name, ref in refs.items():
            theirs = ref.r_trace(p.spec, p.params, p.x, p.y, v)
            for l, layer in enumerate(ours):
                for key, value in layer.items():
                    worst[key][name] = max(worst[key][name], _normwise(value, theirs[l][key]))
            for label, mine, other in (
                    ("gnvp", ours_gn, ref.gnvp(p.spec, p.params, p.x, p.y, v)),
                    ("per-example grads", ours_per,
                     ref.per_example_grads(p.spec, p.params, p.x, p.y))):
                for l in range(len(mine)):
                    for k in ("W", "b"):
                        worst[label][name] = max(worst[label][name],
                                                 _normwise(mine[l][k], other[l][k]))
            worst["jvp"][name] = max(worst["jvp"][name], _normwise(
                ours_jvp, ref.jvp(p.spec, p.params, p.x, v)[1]))
    return dict(worst)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="networks drawn (100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    worst = measure(args.n, args.seed, progress("second_order.py", args.n))
    if args.json:
        print(json.dumps(worst))
        return 0
    print(f"largest normwise float64 difference over {args.n} drawn networks (seed {args.seed})")
    print(f"{'quantity':20s} {'vs torch':>10s} {'vs jax':>10s}")
    for key, row in worst.items():
        print(f"{key:20s} {row['reference_torch']:10.2e} {row['reference_jax']:10.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
