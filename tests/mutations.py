"""Classic derivation mistakes, each applied to a copy of handwritten/: the suite must catch all.

    python -m tests.mutations            # every mutation, a table of caught / missed
    python -m tests.mutations adam_no_bias_correction

Each mutation is a textual patch of one line of handwritten/.  The runner copies
the project into a temporary directory, applies the patch there (the working tree
is never touched), and runs the property tests against the copy with the
derandomized ``ci`` profile, stopping at the first failure.  A mutation is caught
when that run fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The property tests, fast ones first (pytest stops at the first failure).
PROPERTY_TESTS = [
    "tests/test_activations.py", "tests/test_losses.py", "tests/test_optimizers.py",
    "tests/test_network.py", "tests/test_training.py", "tests/test_seed.py",
    "tests/test_cross_framework.py", "tests/test_references.py",
]


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    file: str
    old: str
    new: str


MUTATIONS = [
    Mutation("dW_missing_transpose", "d_W = d_z.T @ a_prev: the transpose on the wrong factor",
             "network.py", "d_W = a_prev.T @ d_z  ", "d_W = d_z.T @ a_prev  "),
    Mutation("sigmoid_grad_of_a", "sigmoid derivative evaluated at a instead of z",
             "activations.py", "    d_z *= a\n    d_z *= d_a\n    return d_z",
             "    d_z = sigmoid(a) * (1 - sigmoid(a))\n    d_z *= d_a\n    return d_z"),
    Mutation("db_mean_not_sum", "bias gradient averaged, not summed, over the batch",
             "network.py", '"b": d_z.sum(axis=0)', '"b": d_z.mean(axis=0)'),
    Mutation("half_mse_mean_over_batch_only", "mean reduction divides by batch, not batch*n_out",
             "losses.py", "return (a - y) / _count(a.size, reduction)",
             "return (a - y) / _count(a.shape[0], reduction)"),
    Mutation("mse_missing_factor_2", "d(a - y)**2 = (a - y), missing the 2",
             "losses.py", "return 2 * (a - y) / _count(a.size, reduction)",
             "return (a - y) / _count(a.size, reduction)"),
    Mutation("softmax_ce_sign", "softmax cross-entropy gradient y - a",
             "losses.py", "    return d_z / _count(z.shape[0], reduction)",
             "    return -d_z / _count(z.shape[0], reduction)"),
    Mutation("softmax_ce_plus_y", "softmax cross-entropy gradient a + y: one-hot targets hide "
             "it (the true class is computed apart), soft targets do not",
             "losses.py", "    d_z = a - y_dist\n", "    d_z = a + y_dist\n"),
    Mutation("bce_logits_wrong_count", "bce_with_logits mean divides by batch only",
             "losses.py", "return d_z / _count(z.size, reduction)",
             "return d_z / _count(z.shape[0], reduction)"),
    Mutation("bce_grad_sign", "bce gradient (y - a) / (a (1 - a))",
             "losses.py", "d_a = (a - y) / (a * (1 - a)) / n\n",
             "d_a = (y - a) / (a * (1 - a)) / n\n"),
    Mutation("tanh_grad_1_minus_a", "tanh' = 1 - a instead of 1 - a**2",
             "activations.py", "d_z = a * a\n", "d_z = a.copy()\n"),
    Mutation("softmax_backward_elementwise", "softmax backward as if elementwise, a (1 - a)",
             "activations.py",
             "return a * (d_a - np.sum(d_a * a, axis=1, keepdims=True))",
             "return d_a * a * (1 - a)"),
    Mutation("leaky_relu_grad_no_slope", "leaky_relu backward drops the negative slope",
             "activations.py", "return np.where(z > 0, d_a, LEAKY_RELU_SLOPE * d_a)",
             "return np.where(z > 0, d_a, 0 * d_a)"),
    Mutation("elu_grad_a", "elu' = a instead of a + alpha for z <= 0",
             "activations.py", "d_z = np.where(z > 0, 1, a + ELU_ALPHA)",
             "d_z = np.where(z > 0, 1, a)"),
    Mutation("gelu_grad_missing_product_term", "gelu' without the z 2 s (1 - s) du/dz term",
             "activations.py", "return d_a * (s + second)", "return d_a * s"),
    Mutation("silu_grad_sigmoid_only", "silu' = sigmoid(z), forgetting the product rule",
             "activations.py", "return d_a * (s + a * one_minus_s)", "return d_a * s"),
    Mutation("softplus_grad_exp", "softplus' = exp(-a) instead of 1 - exp(-a)",
             "activations.py", "return d_a * -np.expm1(-a)", "return d_a * np.exp(-a)"),
    Mutation("backward_layer_off_by_one", "backward uses the layer's own activation as a_prev",
             "network.py", 'a_prev = x if l == 0 else cache[l - 1]["a"]',
             'a_prev = x if l == 0 else cache[l]["a"][:, :W.shape[0]]'),
    Mutation("weight_decay_missing_from_grad", "L2 penalty in the loss but not in d_W",
             "network.py", "d_W += spec.weight_decay * W", "d_W += 0 * W"),
    Mutation("weight_decay_loss_missing_half", "penalty lambda ||W||^2 with gradient lambda W",
             "network.py", "loss = loss + spec.weight_decay / 2 * sum(",
             "loss = loss + spec.weight_decay * sum("),
    Mutation("adam_no_bias_correction", "Adam without bias correction of m",
             "optimizers.py", "step_size = lr / (1 - beta1**t)", "step_size = lr"),
    Mutation("adam_eps_inside_sqrt", "Adam with eps inside the square root",
             "optimizers.py", "(np.sqrt(v[l][k]) / bias_correction2_sqrt + eps)",
             "(np.sqrt(v[l][k] + eps) / bias_correction2_sqrt)"),
    Mutation("momentum_old_buffer", "momentum steps with the buffer before it is updated",
             "optimizers.py", "updates = [{k: -lr * v for k, v in layer.items()} for layer in b]",
             'updates = [{k: -lr * v for k, v in layer.items()} for layer in state["b"]]'),
    Mutation("nesterov_old_buffer", "nesterov look-ahead with the old buffer",
             "optimizers.py", "-lr * (g + mu * b[l][k])", '-lr * (g + mu * state["b"][l][k])'),
    Mutation("rmsprop_missing_one_minus_alpha", "rmsprop adds g**2 without (1 - alpha)",
             "optimizers.py", 'alpha * state["v"][l][k] + (1 - alpha) * g * g',
             'alpha * state["v"][l][k] + g * g'),
    Mutation("adamw_decay_without_lr", "adamw decays by (1 - weight_decay), forgetting lr",
             "optimizers.py", 'decay = lr * hyper["weight_decay"]',
             'decay = hyper["weight_decay"]'),
]


def run(mutation: Mutation, timeout: float = 1200.0) -> tuple[bool, str, float]:
    """Apply one mutation to a copy of the project and run the property tests against it.

    Returns (caught, the last lines of the test output, seconds).
    """
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bpnet-mutant-") as tmp:
        work = Path(tmp)
        for part in ("handwritten", "bpnet", "reference_torch", "reference_jax", "tests"):
            shutil.copytree(ROOT / part, work / part,
                            ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
        target = work / "handwritten" / mutation.file
        source = target.read_text()
        if source.count(mutation.old) != 1:
            raise ValueError(f"mutation {mutation.name}: {mutation.old!r} must occur exactly "
                             f"once in handwritten/{mutation.file}")
        target.write_text(source.replace(mutation.old, mutation.new))
        env = os.environ | {"HYPOTHESIS_PROFILE": "ci", "OMP_NUM_THREADS": "1",
                            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        # `python -m pytest` puts the copy first on sys.path: its handwritten is imported.
        copy = str(work / "handwritten")
        check = ("import handwritten, pathlib, sys; sys.exit(pathlib.Path(handwritten.__file__)"
                 f".parent != pathlib.Path({copy!r}))")
        subprocess.run([sys.executable, "-c", check], cwd=work, env=env, check=True)
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
             "--no-header", "-o", "addopts=", *PROPERTY_TESTS],
            cwd=work, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-3:])
    return result.returncode == 1, tail, time.perf_counter() - start


def main(names: list[str]) -> int:
    chosen = [m for m in MUTATIONS if not names or m.name in names]
    caught = 0
    for m in chosen:
        ok, tail, seconds = run(m)
        caught += ok
        print(f"{'caught' if ok else 'MISSED'}  {m.name:34s} {seconds:6.1f}s  {m.what}")
        if not ok:
            print("    " + tail.replace("\n", "\n    "))
    print(f"{caught} of {len(chosen)} mutations caught")
    return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
