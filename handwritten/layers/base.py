"""The layer contract: what every layer of a ``Sequential`` provides, in one place.

A layer is a frozen dataclass named and parametrised as torch.nn names it (``Dense``
keeps the blog's (fan_in, fan_out) weight).  Its fields are the spec; its methods are its
derivation, the one place it is written down:

    out_shape(in_shape)            the shape of one sample out, from one sample in; a
                                   ValueError naming the layer and the expected shape
    init(in_shape, rng, scheme, dtype) -> p
                                   params as a dict (empty for a layer without any),
                                   every draw from the caller's Generator
    forward(p, h, ctx) -> (out, cache)
                                   ``h`` is the layer's input (batch, *in_shape); the cache
                                   holds what the backward reads and the trace reports
    backward(p, cache, d_out, ctx, need_d_in) -> (d_in, grads, quantities)
                                   the hand derivation: d_in = dL/dh (None when the layer is
                                   first and nothing needs it), grads = dL/dp (p's keys and
                                   shapes), quantities = the backward's inner d_<name>
    tangent(p, cache, h_dot, p_dot, ctx) -> out_dot
                                   forward mode: the directional derivative of the output
                                   along (h_dot, p_dot)
    tangents(p, cache, h_dot, p_dot, ctx) -> {name: name_dot}
                                   (a layer with inner forward quantities: the norms) the
                                   tangent of each of FORWARD, the output's among them;
                                   its ``tangent`` is the output's entry
    r_backward(p, cache, h_dot, p_dot, d_out, r_d_out, ctx, need_d_in)
            -> (r_d_in, r_grads, r_quantities)
                                   the R-operator's piece (hvp, gnvp): ``backward``
                                   differentiated along the direction, the same three
                                   parts -- R{d_in}, R{grads}, R{the inner d_<name>};
                                   d_out is the first-order gradient (None: Gauss-Newton,
                                   which drops every term that carries it)
    per_example(p, cache, d_out, ctx) -> grads with a leading batch axis
                                   sample i's own gradient of its term of the loss, or
                                   NotImplementedError naming why (batch norm in training
                                   mode: a sample's output depends on the whole batch)
    param_shapes() -> {key: shape}  (a layer with params) the names and shapes ``init``
                                   returns: the params the checks hold its node to
    init_state(in_shape, dtype) / update_state(state, cache)
                                   state carried across training steps (batch norm's
                                   running statistics); {} for a layer without
    check_state(state, name)       (optional) a ValueError naming ``name[key]`` for a state
                                   its update could never make (a running variance < 0)
    OUT, FORWARD, BACKWARD, EQUATIONS, D_IN
                                   the output's name (z, a, n, out), the trace quantities in
                                   pass order, each one's equation, and the equation of the
                                   gradient it hands down (``bpnet explain`` prints them)
    DECAYED                        the params the spec's weight decay lambda penalises:
                                   the loss adds lambda / 2 ||p||^2 for each, the layer's
                                   backward lambda p to its d_p, and its r_backward
                                   lambda p_dot to R{d_p} (("W",) on a Dense or a
                                   convolution; () on a norm and on a layer without
                                   params: a layer with params declares it itself)

Names come from the layer, nowhere else: a node's params are exactly ``param_shapes()``
(none without it), and its state exactly what ``init_state`` returns for its input shape
-- the keys, shapes and dtype ``History.running`` and ``predict``'s ``running`` are held
to.  That dict is also the declaration that the layer carries state: a layer is stateful
when ``init_state`` returns a non-empty dict (``Sequential.has_state``), and ``train``
then calls every node's ``update_state`` after each training-mode forward.  The penalty
of ``Sequential.weight_decay`` covers exactly the params each layer names in ``DECAYED``
(an Embedding's ``weight`` as a Dense's ``W``).  The checks (``handwritten.checks``) keep
no table of key sets or state names of their own: a new layer's params and state are
held to what it declares.

``ctx`` (``Context``) is what a pass hands every layer beyond params and input: training
or evaluation mode, this layer's dropout mask, its state (running statistics), and the
loss's weight decay.  A container layer (``Residual``) has ``body``, a tuple of layers;
the fold (``handwritten.layers.fold``) runs the body and then the container's own
``join`` / ``join_backward``: the only code that reads a network's structure.

Designed for the chapters after the MLP: ``in_shape`` is any per-sample shape, so a
convolution takes (channels, height, width) and a recurrent layer (time, features); a
layer whose input is integers (an embedding's indices) returns ``d_in`` None; state that
a layer carries across time steps is inside its own forward (a loop over T with a cache
per step), and state across training steps is ``init_state`` / ``update_state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.floating[Any]]
Shape = tuple[int, ...]
Cache = dict[str, Any]


@dataclass(frozen=True)
class Context:
    """What one pass hands one layer besides its params and input."""

    training: bool = True
    """Training mode (batch norm normalizes with the batch's statistics) or evaluation."""
    mask: Any = None
    """This layer's dropout keep-mask (batch, *shape) of 0s and 1s; None: no dropout."""
    state: dict[str, Array] | None = None
    """This layer's state (batch norm's running statistics), read in evaluation mode."""
    weight_decay: float = 0.0
    """The loss's L2 penalty lambda: a layer adds lambda * p to d_p for each p it names in
    ``DECAYED``."""


class Layer(Protocol):
    """The contract (module docstring); every layer kind implements it."""

    OUT: ClassVar[str]
    FORWARD: ClassVar[tuple[str, ...]]
    BACKWARD: ClassVar[tuple[str, ...]]
    EQUATIONS: ClassVar[dict[str, str]]
    D_IN: str
    DECAYED: ClassVar[tuple[str, ...]]

    def out_shape(self, in_shape: Shape) -> Shape: ...
    def init(self, in_shape: Shape, rng: np.random.Generator, scheme: str,
             dtype: np.dtype[Any]) -> dict[str, Array]: ...
    def forward(self, p: dict[str, Array], h: Array, ctx: Context) -> tuple[Array, Cache]: ...
    def backward(self, p: dict[str, Array], cache: Cache, d_out: Array, ctx: Context,
                 need_d_in: bool = True
                 ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]: ...
    def tangent(self, p: dict[str, Array], cache: Cache, h_dot: Array,
                p_dot: dict[str, Array], ctx: Context) -> Array: ...
    def r_backward(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                   p_dot: dict[str, Array], d_out: Array | None, r_d_out: Array,
                   ctx: Context, need_d_in: bool = True
                   ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]: ...
    def per_example(self, p: dict[str, Array], cache: Cache, d_out: Array, ctx: Context
                    ) -> dict[str, Array]: ...
    def init_state(self, in_shape: Shape, dtype: np.dtype[Any]) -> dict[str, Array]: ...
    def update_state(self, state: dict[str, Array], cache: Cache) -> dict[str, Array]: ...


class Stateless:
    """Defaults for a layer without params or state (mixed into the layer classes): no
    ``param_shapes``, nothing decayed, and ``init_state`` {} -- which is what makes it
    stateless."""

    DECAYED: ClassVar[tuple[str, ...]] = ()

    def init(self, in_shape: Shape, rng: np.random.Generator, scheme: str,
             dtype: np.dtype[Any]) -> dict[str, Array]:
        return {}

    def init_state(self, in_shape: Shape, dtype: np.dtype[Any]) -> dict[str, Array]:
        return {}

    def update_state(self, state: dict[str, Array], cache: Cache) -> dict[str, Array]:
        return state

    def per_example(self, p: dict[str, Array], cache: Cache, d_out: Array, ctx: Context
                    ) -> dict[str, Array]:
        return {}


class LinearInInput(Stateless):
    """A layer without params whose output is linear in its input once the pass fixes
    what it reads (dropout's mask, max pooling's winners): nothing in it moves along a
    direction v, so its R-operator is its own backward applied to R{d_out}."""

    def backward(self, p: dict[str, Array], cache: Cache, d_out: Array, ctx: Context,
                 need_d_in: bool = True
                 ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        raise NotImplementedError

    def r_backward(self, p: dict[str, Array], cache: Cache, h_dot: Array | None,
                   p_dot: dict[str, Array], d_out: Array | None, r_d_out: Array,
                   ctx: Context, need_d_in: bool = True
                   ) -> tuple[Array | None, dict[str, Array], dict[str, Array]]:
        """R{d_h} = backward(R{d_out}): the first-order d_out plays no part."""
        return self.backward(p, cache, r_d_out, ctx, need_d_in)[0], {}, {}


def features(layer: object, in_shape: Shape) -> int:
    """The one feature axis of a layer that takes (batch, features): ValueError naming the
    layer when its input has another shape (an image into a Dense without a Flatten)."""
    if len(in_shape) != 1:
        raise ValueError(f"{layer!r} takes inputs of shape (batch, features), got a sample "
                         f"shape {in_shape}")
    return in_shape[0]
