"""Per-leaf work on params-shaped structures, written once.

Params, their gradients, every optimizer buffer and every update share one structure: a
list with one dict per layer, of arrays keyed by name (``W``, ``b``, ``gamma``, ...).  JAX
calls such a nested structure a tree and its arrays leaves; optax writes each rule with
``jax.tree.map`` instead of a loop over layers and keys.  These two helpers do the same
for bpnet, so that a rule reads as its equation, one leaf at a time:

    tree_map(f, t, u, ...)   [{k: f(t[l][k], u[l][k], ...) for k in t[l]} for each layer l]
    tree_leaves(t)           every array of t, layer by layer, in each layer's key order

so adam's first moment ``m <- beta1 * m + (1 - beta1) * g`` is

    m = tree_map(lambda g, m: beta1 * m + (1 - beta1) * g, g, state["m"])

Both only read their trees (``f`` makes each new leaf); a loop that writes into arrays in
place (``apply_updates(..., in_place=True)``) stays a loop.  The references do not import
these: they take from handwritten only its vocabulary (tests/test_isolation.py), so that a
leaf paired with the wrong one here could not be paired so on both sides of a comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.floating[Any]]
Tree = Sequence[Mapping[str, Array]]
"""A params-shaped structure: one mapping of name -> array per layer."""


def tree_map(f: Callable[..., Array], tree: Tree, *rest: Tree) -> list[dict[str, Array]]:
    """``f`` applied leaf by leaf: a new list of dicts whose leaf (l, k) is
    ``f(tree[l][k], rest[0][l][k], ...)``.

    Parameters
    ----------
    f : callable
        Takes one leaf of each tree (arrays of one shape) and returns the new leaf.
    tree : list of dict
        Gives the structure: its layers, and in each its keys, in its order.
    *rest : list of dict
        Trees of the same structure (more keys in a layer are not read), taken layer by
        layer beside ``tree``.

    Returns
    -------
    list of dict
        Fresh: neither the list nor its dicts are any tree's (the leaves are what ``f``
        returns).
    """
    # one tree and two, every rule's cases, written out: on a small network a step is
    # mostly this loop's own overhead, which the general form's unpacking would double;
    # a layer without params (an activation's node) gets its {} without a comprehension
    if not rest:
        return [{k: f(leaf) for k, leaf in layer.items()} if layer else {} for layer in tree]
    if len(rest) == 1:
        return [{k: f(leaf, other[k]) for k, leaf in layer.items()} if layer else {}
                for layer, other in zip(tree, rest[0])]
    return [{k: f(leaf, *[other[k] for other in others]) for k, leaf in layer.items()}
            for layer, *others in zip(tree, *rest)]


def tree_leaves(tree: Tree) -> Iterator[Array]:
    """Every array of ``tree``, layer by layer, in each layer's key order (for a sum over
    all parameters, as the global norm of clip_norm)."""
    for layer in tree:
        yield from layer.values()
