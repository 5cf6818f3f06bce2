"""`make quick`: ruff on the changed files, then the tests of the files that changed.

    python -m tests.quick                # changes since the last commit (and new files)
    python -m tests.quick --since main   # changes since a branch or commit
    python -m tests.quick --dry-run      # print what would run

The map below is the README's "which tests cover which file".  Quick runs use the
``dev`` Hypothesis profile (20 examples per property) and leave out the subprocess
mutation runs; ``make test`` runs everything.  A change to handwritten/ also runs
the part of ``bpnet check --all`` that covers it.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TESTS: dict[str, list[str]] = {
    "handwritten/activations.py": ["test_activations", "test_extremes", "test_network",
                                   "test_second_order"],
    "handwritten/losses.py": ["test_losses", "test_extremes", "test_network",
                              "test_second_order"],
    "handwritten/network.py": ["test_network", "test_bad_input", "test_seed",
                               "test_blocks_by_hand", "test_blocks", "test_blocks_training"],
    "handwritten/blocks.py": ["test_blocks_by_hand", "test_blocks", "test_blocks_training"],
    "handwritten/optimizers.py": ["test_optimizers"],
    "handwritten/schedules.py": ["test_schedules", "test_optimizers"],
    "handwritten/training.py": ["test_training", "test_blocks_training"],
    "handwritten/derivatives.py": ["test_derivatives", "test_second_order"],
    "handwritten/seed.py": ["test_seed"],
    "handwritten/spec.py": ["test_network", "test_bad_input", "test_training"],
    "handwritten/checks.py": ["test_bad_input"],
    "handwritten/__init__.py": ["test_isolation"],
    "reference_torch/": ["test_references"],
    "reference_jax/bucketed.py": ["test_bucketed"],
    "reference_jax/": ["test_references"],
    "bpnet/": ["test_cli", "test_check_all"],
    "tests/strategies.py": ["test_cross_framework"],
    "tests/mutations.py": ["test_mutations"],
}
"""A changed file (or any file under a folder) -> the test modules that cover it."""

CHECK_ALL: dict[str, tuple[str, ...]] = {
    "handwritten/activations.py": ("activation",), "handwritten/losses.py": ("loss",),
    "handwritten/network.py": ("network",), "handwritten/optimizers.py": ("optimizer",),
    "handwritten/schedules.py": ("schedule",),
    "handwritten/derivatives.py": ("derivatives", "second"), "handwritten/seed.py": ("blog",),
    "handwritten/blocks.py": ("blocks",), "handwritten/training.py": ("blocks",),
}
"""A changed file of handwritten -> the groups of ``bpnet check --all`` that cover it."""

SLOW = "not test_mutation_is_caught and not planted"
"""The subprocess runs over mutated copies: minutes, and about the suite, not the change."""


def changed(since: str) -> list[str]:
    """Changed and new files, relative to the project root."""
    diff = subprocess.run(["git", "diff", "--name-only", since], cwd=ROOT, text=True,
                          capture_output=True, check=True).stdout.split()
    new = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], cwd=ROOT,
                         text=True, capture_output=True, check=True).stdout.split()
    return sorted({*diff, *new})


def select_tests(files: list[str]) -> list[str]:
    """The test modules of the changed files, each once, in the map's order."""
    chosen: dict[str, None] = {}
    for name in files:
        if name.startswith("tests/test_") and name.endswith(".py"):
            chosen[Path(name).stem] = None
        for prefix, modules in TESTS.items():
            if name == prefix or (prefix.endswith("/") and name.startswith(prefix)):
                chosen |= dict.fromkeys(modules)
                if not prefix.endswith("/"):
                    break
    return [f"tests/{m}.py" for m in chosen]


def main(argv: list[str]) -> int:
    since = argv[argv.index("--since") + 1] if "--since" in argv else "HEAD"
    files = [f for f in changed(since) if (ROOT / f).exists()]
    python = [f for f in files if f.endswith(".py")]
    tests = select_tests(files)
    groups = list(dict.fromkeys(g for f in files if f in CHECK_ALL for g in CHECK_ALL[f]))
    commands = []
    if python:
        commands.append([sys.executable, "-m", "ruff", "check", *python])
    if tests:
        commands.append([sys.executable, "-m", "pytest", "-q", "-x", "-k", SLOW, *tests])
    commands += [[sys.executable, "-m", "bpnet.cli", "check", "--all", "--quiet", "--only", g]
                 for g in groups]
    if not commands:
        print(f"nothing changed since {since}: nothing to run (make test runs everything)")
        return 0
    print(f"changed since {since}: {', '.join(files)}")
    for command in commands:
        print("$ " + shlex.join(["python" if c == sys.executable else c for c in command]),
              flush=True)
        if "--dry-run" in argv:
            continue
        status = subprocess.run(command, cwd=ROOT, check=False).returncode
        if status:
            return status
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
