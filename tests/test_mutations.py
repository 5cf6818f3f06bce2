"""Proof that the suite can fail: every classic derivation mistake in tests/mutations.py is
caught by the property tests when applied to a copy of handwritten/."""

from __future__ import annotations

import pytest

from tests.mutations import MUTATIONS, run

pytest.importorskip("torch")
pytest.importorskip("jax")


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_mutation_is_caught(mutation) -> None:
    caught, tail, _ = run(mutation)
    assert caught, f"{mutation.name} ({mutation.what}) was not caught:\n{tail}"


def test_there_are_at_least_15_classic_mistakes() -> None:
    assert len(MUTATIONS) >= 15
    assert len({m.name for m in MUTATIONS}) == len(MUTATIONS)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_every_mutation_still_applies(mutation) -> None:
    """A refactor of handwritten/ that moves a mutated line must update tests/mutations.py."""
    from tests.mutations import ROOT

    source = (ROOT / "handwritten" / mutation.file).read_text()
    assert source.count(mutation.old) == 1, f"{mutation.name}: patch no longer applies"
