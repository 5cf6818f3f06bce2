"""Proof that the suite can fail: every classic derivation mistake in tests/mutations.py is
caught by the property tests when applied to a copy of handwritten/."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.mutations import MUTATIONS, ROOT, Mutation, caught_by, quick_command, run

pytest.importorskip("torch")
pytest.importorskip("jax")


def _skip_unless_it_applies(mutation: Mutation) -> None:
    """An edit of handwritten/ that removed the targeted line is not this test's failure."""
    reason = mutation.applies((ROOT / "handwritten" / mutation.file).read_text())
    if reason:
        pytest.skip(reason)


@pytest.mark.mutation
@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_mutation_is_caught(mutation: Mutation,
                            record_property: Callable[[str, object], None]) -> None:
    """The suite run against a copy with the mistake (its file's tests first) fails; the
    test that failed and the seconds go into `make mutations`' table (tests/conftest.py)."""
    _skip_unless_it_applies(mutation)
    caught, tail, seconds = run(mutation)
    record_property("mutation", (mutation.name, caught_by(tail) if caught else "MISSED",
                                 seconds))
    assert caught, f"{mutation.name} ({mutation.what}) was not caught:\n{tail}"


@pytest.mark.quickproof
@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_make_quick_catches_the_mutation(mutation: Mutation,
                                         record_property: Callable[[str, object], None]) -> None:
    """What `make quick` runs for an edit of the mutation's file (tests/quick.py's map, the
    quick profile) fails on the copy with the mistake: the quick map is chosen so that a
    mistake in a file is caught by the file's own selection (`make quick-proof`)."""
    _skip_unless_it_applies(mutation)
    caught, output, seconds = run(mutation, command=quick_command(mutation), profile="quick")
    record_property("mutation", (f"{mutation.name} (make quick)",
                                 caught_by(output) or ("?" if caught else "MISSED"), seconds))
    tail = "\n".join(output.splitlines()[-5:])
    assert caught, f"make quick misses {mutation.name} ({mutation.what}):\n{tail}"


def test_there_are_at_least_15_classic_mistakes() -> None:
    assert len(MUTATIONS) >= 15
    assert len({m.name for m in MUTATIONS}) == len(MUTATIONS)


def test_every_mistake_still_applies() -> None:
    """Every curated mistake still patches its function: an edit of handwritten/ that moves
    or rewrites a mutated line re-anchors its mutation in tests/mutations.py.  `make
    mutations` skips one that no longer applies (an "s" in its run, and the run passes), so
    a skip would drop a mistake without a word: make test says it first.  (It allowed a
    fifth of them to be skipped, until a moved penalty line dropped
    weight_decay_loss_missing_half from a run that passed.)"""
    reasons = [r for m in MUTATIONS
               if (r := m.applies((ROOT / "handwritten" / m.file).read_text()))]
    assert not reasons, "\n".join(reasons)


def test_a_mutation_is_anchored_to_its_function() -> None:
    """The same text elsewhere in the file does not move the patch; a function without the
    text, or no such function, is reported in one line."""
    m = Mutation("demo", "demo", "x.py:target", "x + 1", "x - 1")
    source = "def other(x):\n    return x + 1\n\n\ndef target(x):\n    return x + 1\n"
    assert m.apply(source) == ("def other(x):\n    return x + 1\n\n\n"
                               "def target(x):\n    return x - 1\n")
    gone = "def target(x):\n    return x * 2\n"
    assert m.applies(gone) == ("mutation demo no longer applies: target in handwritten/x.py "
                               "contains 'x + 1' 0 times, not once")
    assert "has no function target" in m.applies("def other(x):\n    return x + 1\n")
    assert "\n" not in m.applies(gone)
