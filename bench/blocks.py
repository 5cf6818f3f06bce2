"""The largest float64 difference per hidden-block trace quantity, handwritten against torch
and JAX.

    .venv/bin/python bench/blocks.py                  # ~2 minutes (JAX compiles per shape)
    .venv/bin/python bench/blocks.py --n 200 --json

Over block networks drawn by the suite's generator (bpnet.problems.draw_block_spec: batch
norm, layer norm, dropout with drawn masks, residual skips; batches as
tests/strategies.block_problems draws them), every quantity of handwritten.trace (z, mu, var,
x_hat, n, h, a, d_a, d_h, d_n, d_x_hat, d_z, d_W, d_b, d_gamma, d_beta) against
reference_torch's and reference_jax's, as a normwise difference: max |ours - theirs| over
the array, relative to max |theirs| over every layer's array of that quantity (d_b of a
batch-norm layer is 0 up to rounding: on its own scale it has no relative difference).
Nothing here is a test: the suite asserts these within its tolerances (bpnet.tolerances);
this prints how far inside they are.
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections import defaultdict
from collections.abc import Callable

import numpy as np
from progress_lines import progress  # bench/progress_lines.py, beside this script

from bpnet.problems import MIN_NORM_COUNT, GeneratorChooser, Problem, draw_block_spec
from handwritten import trace
from handwritten.spec import BACKWARD_QUANTITIES, FORWARD_QUANTITIES

REFERENCES = ("reference_torch", "reference_jax")


def measure(n: int, seed: int, starting: Callable[[str], None] = lambda case: None
            ) -> dict[str, dict[str, float]]:
    """The worst difference per quantity and reference over ``n`` drawn block networks;
    ``starting(case)`` is called as each network's turn comes (progress)."""
    refs = {name: importlib.import_module(name) for name in REFERENCES}
    choose = GeneratorChooser(np.random.default_rng(seed))
    worst: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(REFERENCES, 0.0))
    for _ in range(n):
        spec = draw_block_spec(choose)
        batch = choose.integer(MIN_NORM_COUNT if "batch" in spec.norms else 2, 12)
        p = Problem(spec, batch, choose.integer(0, 2**32 - 1))
        starting(f"{spec.layer_sizes} norms {spec.norms}, batch {batch}")
        ours = trace(p.spec, p.params, p.x, p.y, p.masks)
        for name, ref in refs.items():
            theirs = ref.trace(p.spec, p.params, p.x, p.y, p.masks)
            case_diff: dict[str, float] = defaultdict(float)
            case_scale: dict[str, float] = defaultdict(float)
            for mine, other in zip(ours.layers, theirs.layers):
                for key in (*FORWARD_QUANTITIES, *BACKWARD_QUANTITIES):
                    if key in mine and key in other:
                        a = np.asarray(mine[key], np.float64)
                        b = np.asarray(other[key], np.float64)
                        case_diff[key] = max(case_diff[key], float(np.abs(a - b).max()))
                        case_scale[key] = max(case_scale[key], float(np.abs(b).max()))
            for key, d in case_diff.items():
                rel = d / max(case_scale[key], np.finfo(np.float64).tiny)
                worst[key][name] = max(worst[key][name], rel)
    return {key: worst[key] for key in (*FORWARD_QUANTITIES, *BACKWARD_QUANTITIES)
            if key in worst}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="networks drawn (100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    worst = measure(args.n, args.seed, progress("blocks.py", args.n))
    if args.json:
        print(json.dumps(worst))
        return 0
    print(f"largest normwise float64 difference over {args.n} drawn block networks "
          f"(seed {args.seed})")
    print(f"{'quantity':12s} {'vs torch':>10s} {'vs jax':>10s}")
    for key, row in worst.items():
        print(f"{key:12s} {row['reference_torch']:10.2e} {row['reference_jax']:10.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
