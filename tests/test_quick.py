"""`make quick` (tests/quick.py): every file of handwritten/ maps to tests that exist."""

from __future__ import annotations

from tests.quick import CHECK_ALL, ROOT, TESTS, select_tests


def test_every_handwritten_file_has_its_tests() -> None:
    for path in sorted((ROOT / "handwritten").glob("*.py")):
        name = f"handwritten/{path.name}"
        assert select_tests([name]), f"{name} has no tests in tests/quick.py's TESTS"


def test_every_mapped_test_module_exists() -> None:
    for modules in TESTS.values():
        for module in modules:
            assert (ROOT / "tests" / f"{module}.py").exists(), module
    assert set(CHECK_ALL) <= set(TESTS)


def test_a_change_selects_its_tests_once_and_a_test_file_itself() -> None:
    chosen = select_tests(["handwritten/activations.py", "handwritten/losses.py",
                        "tests/test_seed.py", "README.md"])
    assert chosen == ["tests/test_activations.py", "tests/test_extremes.py",
                      "tests/test_network.py", "tests/test_second_order.py",
                      "tests/test_losses.py", "tests/test_seed.py"]
    assert select_tests(["reference_jax/bucketed.py"]) == ["tests/test_bucketed.py"]
    assert select_tests(["reference_jax/losses.py"]) == ["tests/test_references.py"]
