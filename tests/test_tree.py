"""handwritten.tree: per-leaf work on params-shaped structures, against the loops it replaces."""

from __future__ import annotations

import numpy as np

from handwritten.tree import tree_leaves, tree_map
from tests.helpers import assert_unchanged, snapshot

RNG = np.random.default_rng(0)
PARAMS = [{"W": RNG.normal(size=(3, 4)), "b": RNG.normal(size=4)},
          {},                                                   # a node without params
          {"gamma": RNG.normal(size=4), "beta": RNG.normal(size=4)},
          {"W": RNG.normal(size=(2, 4, 3))}]                   # a kernel without bias


def _like(seed: int, tree: list[dict[str, np.ndarray]], order: tuple[str, ...] = ()
          ) -> list[dict[str, np.ndarray]]:
    """A tree of PARAMS' shapes drawn anew (each layer's keys in ``order`` first)."""
    rng = np.random.default_rng(seed)
    return [{k: rng.normal(size=layer[k].shape)
             for k in sorted(layer, key=lambda k: order.index(k) if k in order else len(order))}
            for layer in tree]


def test_tree_map_is_the_loop_over_layers_and_keys() -> None:
    m, g = _like(1, PARAMS), _like(2, PARAMS, order=("b", "W", "beta", "gamma"))
    before = snapshot(m, g)
    mapped = tree_map(lambda g, m: 0.9 * m + 0.1 * g, g, m)
    loop = [{k: 0.9 * m[l][k] + 0.1 * gk for k, gk in layer.items()}
            for l, layer in enumerate(g)]
    assert [list(layer) for layer in mapped] == [list(layer) for layer in g]   # g's key order
    for ours, theirs in zip(mapped, loop, strict=True):
        for k in theirs:
            assert np.array_equal(ours[k], theirs[k])
    assert_unchanged(before, m, g)


def test_tree_map_takes_any_number_of_trees() -> None:
    a, b, c = _like(3, PARAMS), _like(4, PARAMS), _like(5, PARAMS)
    for trees, f in (((a,), lambda x: -x), ((a, b), lambda x, y: x - y),
                     ((a, b, c), lambda x, y, z: x * y + z)):
        mapped = tree_map(f, *trees)
        for l, layer in enumerate(a):
            assert list(mapped[l]) == list(layer)
            for k in layer:
                assert np.array_equal(mapped[l][k], f(*(t[l][k] for t in trees)))


def test_tree_map_makes_a_fresh_structure() -> None:
    same = tree_map(lambda theta: theta, PARAMS)
    assert same is not PARAMS and all(a is not b for a, b in zip(same, PARAMS, strict=True))
    assert all(same[l][k] is PARAMS[l][k] for l in range(len(PARAMS)) for k in PARAMS[l])


def test_tree_leaves_are_every_array_layer_by_layer_in_key_order() -> None:
    leaves = list(tree_leaves(PARAMS))
    expected = [PARAMS[0]["W"], PARAMS[0]["b"], PARAMS[2]["gamma"], PARAMS[2]["beta"],
                PARAMS[3]["W"]]
    assert len(leaves) == len(expected) and all(a is b for a, b in zip(leaves, expected,
                                                                       strict=True))
