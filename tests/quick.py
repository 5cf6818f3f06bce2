"""`make quick`: ruff on the changed files, then the tests chosen for the files that changed.

    python -m tests.quick                # changes since the last commit (and new files)
    python -m tests.quick --since main   # changes since a branch or commit
    python -m tests.quick --dry-run      # print what would run
    python -m tests.quick handwritten/blocks.py   # as if that file had changed

The map below is the README's "which tests cover which file".  For a file of
handwritten/ it names the tests that catch a mistake in that file -- its own
framework-free properties and the cross-framework ones that see what they cannot
(``python -m tests.mutations --quick`` runs every curated mistake against its file's
selection: each is caught) -- not whole modules, so that an edit of any one file is
checked in seconds (at most 20 s for any one file of handwritten/, measured on 2 cores:
README, "Changing the derivation").  Quick runs use the ``quick`` Hypothesis profile: 10
examples per property, derandomized (a fixed seed per property, and no replay of an
earlier run's failures from Hypothesis's database: a harmless edit does not turn it red).  ``make
test`` runs everything, at 150 examples.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TESTS: dict[str, list[str]] = {
    "handwritten/activations.py": [
        "test_activations",
        "test_second_order::test_each_activations_second_derivative_matches_double_backward_and_jax",
        "test_second_order::test_second_derivatives_at_the_extremes_are_finite_and_vanish_in_the_tails",
        "test_extremes::test_activation_value_and_derivative_at_the_extremes"],
    "handwritten/losses.py": [
        "test_losses",
        "test_second_order::test_each_losses_second_derivative_matches_double_backward_and_jax",
        "test_extremes::test_loss_value_and_gradient_at_the_extremes"],
    "handwritten/network.py": [
        "test_network", "test_blocks_by_hand", "test_seed",
        "test_cross_framework::test_every_trace_quantity_matches_autograd",
        "test_blocks_training::test_predict_evaluates_batch_norm_with_the_running_statistics"],
    "handwritten/blocks.py": [
        "test_blocks_by_hand",
        "test_blocks::test_running_statistics_follow_torch_batch_norm",
        "test_blocks_training::test_predict_evaluates_batch_norm_with_the_running_statistics",
        "test_blocks_training::test_norms_at_their_edges_match_torch_and_jax"],
    "handwritten/optimizers.py": [
        "test_optimizers",
        "test_cross_framework::test_one_optimizer_step_matches_torch_optim_and_optax"],
    "handwritten/tree.py": ["test_tree", "test_optimizers"],
    "handwritten/schedules.py": [
        "test_schedules::test_every_schedule_matches_torchs_scheduler_step_by_step",
        "test_optimizers::test_a_schedule_sets_each_steps_learning_rate"],
    "handwritten/training.py": [
        "test_training",
        "test_blocks_training::test_running_statistics_are_torch_batch_norm_modules_own",
        "test_blocks_training::test_train_draws_the_masks_it_documents",
        "test_blocks_training::test_training_and_evaluation_inputs_are_refused_by_name"],
    "handwritten/derivatives.py": [
        "test_derivatives",
        "test_second_order::test_hvp_is_symmetric_linear_and_a_derivative_of_the_gradient",
        "test_second_order::test_gnvp_is_hvp_where_the_fit_is_exact",
        "test_second_order::test_gnvp_is_positive_semidefinite"],
    "handwritten/layers/": ["test_layers", "test_layer_references"],
    "handwritten/layers/conv.py": ["test_conv", "test_conv_references"],
    "handwritten/layers/pool.py": ["test_conv", "test_conv_references"],
    "handwritten/layers/norm.py": ["test_conv", "test_conv_references"],
    "handwritten/seed.py": ["test_seed"],
    "handwritten/spec.py": ["test_network", "test_bad_input", "test_training"],
    "handwritten/checks.py": [
        "test_bad_input",
        "test_layers::test_bad_inputs_to_a_sequential_are_refused_by_name_before_anything_runs",
        "test_fuzz::test_every_array_argument_is_taken_or_refused_by_name"],
    "handwritten/__init__.py": ["test_isolation"],
    "reference_torch/": [
        "test_references", "test_no_fallback",
        "test_isolation::test_the_references_import_from_handwritten_only_its_vocabulary"],
    "reference_jax/bucketed.py": ["test_bucketed"],
    "reference_jax/": [
        "test_references", "test_no_fallback",
        "test_isolation::test_the_references_import_from_handwritten_only_its_vocabulary"],
    "bpnet/": ["test_cli", "test_check_all", "test_fuzz",
               "test_isolation::test_bpnet_modules_import_each_other_without_a_cycle"],
    "bench/": ["test_bench"],
    "tests/strategies.py": ["test_cross_framework", "test_layers", "test_layer_references",
                            "test_conv"],
    "tests/mutations.py": ["test_mutations"],
    "tests/quick.py": ["test_quick"],
}
"""A changed file (or any file under a folder) -> its tests: a module ("test_seed") or one
test of a module ("test_blocks::test_running_statistics_follow_torch_batch_norm")."""

WORKERS_ABOVE = 8
"""A selection of more tests than this that needs a framework runs on two pytest-xdist
workers (each pays ~5 s to import torch and JAX; beyond that, halving the tests wins)."""


def changed(since: str) -> list[str]:
    """Changed and new files, relative to the project root."""
    diff = subprocess.run(["git", "diff", "--name-only", since], cwd=ROOT, text=True,
                          capture_output=True, check=True).stdout.split()
    new = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], cwd=ROOT,
                         text=True, capture_output=True, check=True).stdout.split()
    return sorted({*diff, *new})


def node(entry: str) -> str:
    """A map entry as a pytest node id: "test_seed" -> "tests/test_seed.py"."""
    module, _, test = entry.partition("::")
    return f"tests/{module}.py" + (f"::{test}" if test else "")


def select_tests(files: list[str]) -> list[str]:
    """The pytest node ids of the changed files' tests, each once, in the map's order (a
    changed test module runs whole)."""
    chosen: dict[str, None] = {}
    for name in files:
        if name.startswith("tests/test_") and name.endswith(".py"):
            chosen[Path(name).stem] = None
        for prefix, entries in TESTS.items():
            if name == prefix or (prefix.endswith("/") and name.startswith(prefix)):
                chosen |= dict.fromkeys(entries)
                if not prefix.endswith("/"):
                    break
    modules = {e for e in chosen if "::" not in e}
    return [node(e) for e in chosen if e.partition("::")[0] not in modules or "::" not in e]


FRAMEWORK_FREE = frozenset({
    "test_activations", "test_losses", "test_network", "test_blocks_by_hand", "test_seed",
    "test_optimizers", "test_training", "test_bad_input", "test_extremes", "test_isolation",
    "test_quick", "test_docs", "test_layers", "test_conv"})
"""Test modules that import neither torch nor JAX (tests/test_isolation.py's promise for
handwritten; these start in a second)."""


def pytest_command(tests: list[str]) -> list[str]:
    """One pytest run of the selection: -x, the mutation runs left out, two workers when
    the selection is large and needs a framework."""
    frameworks = any(Path(t.split("::")[0]).stem not in FRAMEWORK_FREE for t in tests)
    workers = ["-n", "2"] if frameworks and len(tests) > WORKERS_ABOVE else ["-p", "no:xdist"]
    return [sys.executable, "-m", "pytest", "-q", "-x", "--no-header", *workers, *tests]


def main(argv: list[str]) -> int:
    since = argv[argv.index("--since") + 1] if "--since" in argv else "HEAD"
    given = [a for a in argv if not a.startswith("-") and a != since]
    files = given or [f for f in changed(since) if (ROOT / f).exists()]
    python = [f for f in files if f.endswith(".py")]
    tests = select_tests(files)
    commands = []
    if python:
        commands.append([sys.executable, "-m", "ruff", "check", *python])
    if tests:
        commands.append(pytest_command(tests))
    if not commands:
        print(f"nothing changed since {since}: nothing to run (make test runs everything)")
        return 0
    print(f"changed{'' if given else ' since ' + since}: {', '.join(files)}")
    env = os.environ | {"HYPOTHESIS_PROFILE": os.environ.get("QUICK_PROFILE", "quick")}
    for command in commands:
        print("$ " + shlex.join(["python" if c == sys.executable else c for c in command]),
              flush=True)
        if "--dry-run" in argv:
            continue
        status = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
        if status:
            return status
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
