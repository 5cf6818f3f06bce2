"""`make quick` (tests/quick.py): every file of handwritten/ maps to tests that exist."""

from __future__ import annotations

import ast

from tests.quick import ROOT, TESTS, pytest_command, select_tests


def test_every_handwritten_file_has_its_tests() -> None:
    for path in sorted((ROOT / "handwritten").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        assert select_tests([name]), f"{name} has no tests in tests/quick.py's TESTS"


def test_every_mapped_test_exists() -> None:
    """A module, or a test function defined in it (a renamed test is a failure here, not
    a selection that silently runs nothing)."""
    for entries in TESTS.values():
        for entry in entries:
            module, _, test = entry.partition("::")
            path = ROOT / "tests" / f"{module}.py"
            assert path.exists(), entry
            if test:
                defined = {node.name for node in ast.parse(path.read_text()).body
                           if isinstance(node, ast.FunctionDef)}
                assert test in defined, entry


def test_a_change_selects_its_tests_once_and_a_test_file_itself() -> None:
    chosen = select_tests(["handwritten/seed.py", "handwritten/spec.py", "tests/test_seed.py",
                           "README.md"])
    assert chosen == ["tests/test_seed.py", "tests/test_network.py", "tests/test_bad_input.py",
                      "tests/test_training.py"]
    assert select_tests(["reference_jax/bucketed.py"]) == ["tests/test_bucketed.py"]
    assert select_tests(["reference_jax/losses.py"]) == [
        "tests/test_references.py", "tests/test_no_fallback.py",
        "tests/test_isolation.py::test_the_references_import_from_handwritten_only_its_vocabulary"]


def test_a_whole_module_replaces_its_single_tests() -> None:
    chosen = select_tests(["handwritten/activations.py", "tests/test_extremes.py"])
    assert "tests/test_extremes.py" in chosen
    assert not any(c.startswith("tests/test_extremes.py::") for c in chosen)
    assert ("tests/test_second_order.py::test_each_activations_second_derivative_matches_"
            "double_backward_and_jax") in chosen


def test_the_optimizer_file_runs_the_cross_framework_step() -> None:
    """The issue-21 amsgrad mistake passed the framework-free tests: optimizers.py's
    selection runs the one-step property against torch.optim and optax."""
    assert ("tests/test_cross_framework.py::test_one_optimizer_step_matches_torch_optim_and_"
            "optax") in select_tests(["handwritten/optimizers.py"])


def test_a_framework_free_selection_runs_in_one_process() -> None:
    assert "no:xdist" in pytest_command(select_tests(["handwritten/spec.py"]))
