"""Replaying the suite's failure line (``--replay``) and reading ``--network``: a
``Problem(...)`` or ``Sequential(...)`` built from literal arguments, nothing evaluated."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from typing import Any

import handwritten as hw
from bpnet.problems import Problem
from handwritten.layers import Sequential
from handwritten.spec import NetworkSpec

_CALLABLES = {"Problem": Problem, "NetworkSpec": NetworkSpec, "OptimizerSpec": hw.OptimizerSpec,
              "LRSchedule": hw.LRSchedule, "Sequential": Sequential, **hw.LAYERS}


REPLAY_LINE = "'Problem(NetworkSpec(...), batch=..., seed=...)'"


def _build(node: ast.AST, fits: Callable[[NetworkSpec, int], None] | None) -> Any:
    """A Problem(...), NetworkSpec(...), Sequential(...) (with its layers) or OptimizerSpec
    call with literal arguments, built; nothing else is evaluated (a ValueError says so)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id in _CALLABLES:
        args = [_build(a, fits) for a in node.args]
        kwargs = {k.arg: _build(k.value, fits) for k in node.keywords if k.arg is not None}
        if node.func.id == "Problem" and fits is not None:
            _check_size(args, kwargs, fits)
        return _CALLABLES[node.func.id](*args, **kwargs)
    if isinstance(node, (ast.List, ast.Tuple)):   # a Sequential's layers, a Residual's
        items = [_build(item, fits) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"--replay accepts only Problem(...), NetworkSpec(...), "
                         f"Sequential(...) with its layers, and literal values; found "
                         f"{ast.unparse(node)!r}") from None


def _parse(text: str, option: str, line: str) -> ast.expr:
    if not text.strip():
        raise ValueError(f"{option} is empty; give {line}")
    try:
        return ast.parse(text.strip(), mode="eval").body
    except SyntaxError as error:
        raise ValueError(f"{option} expects {line}; it does not parse: {error.msg}") from None
    except (RecursionError, MemoryError):       # "-" * 3000 + "1" and the like
        raise ValueError(f"{option} nests too deeply to parse; give {line}") from None


def parse_problem(text: str, fits: Callable[[NetworkSpec, int], None] | None = None
                  ) -> Problem[Any]:
    """The ``Problem(...)`` line a failing property prints, back as the Problem.

    Only the calls Problem, NetworkSpec, Sequential (and its layers) and OptimizerSpec with
    literal arguments are accepted (nothing is evaluated); anything else is a ValueError
    that says so.  ``fits(spec, batch)`` runs before a Problem draws its arrays: it raises
    ValueError for a case too large for memory.
    """
    tree = _parse(text, "--replay", f"the suite's line {REPLAY_LINE}")
    try:
        problem = _build(tree, fits)
    except (RecursionError, MemoryError):
        raise ValueError(f"--replay nests too deeply to read; give the suite's line "
                         f"{REPLAY_LINE}") from None
    if not isinstance(problem, Problem):
        raise ValueError(f"--replay expects a Problem(...) line, got {type(problem).__name__}")
    return problem


def parse_network(text: str) -> Sequential:
    """``--network``: a ``Sequential([...], loss=..., ...)`` as its repr prints it, built
    from literal arguments only (as ``--replay``)."""
    line = "a Sequential([...]) as its repr prints it"
    try:
        network = _build(_parse(text, "--network", line), None)
    except (RecursionError, MemoryError):
        raise ValueError(f"--network nests too deeply to read; give {line}") from None
    except ValueError as error:
        raise ValueError(str(error).replace("--replay", "--network")) from None
    if not isinstance(network, Sequential):
        raise ValueError(f"--network expects {line}, got {type(network).__name__}")
    return network


def _check_size(args: list[Any], kwargs: dict[str, Any],
                fits: Callable[[NetworkSpec, int], None]) -> None:
    """``fits(spec, batch)`` for the arguments of a Problem(...) call, where they are a
    NetworkSpec and a valid batch (else Problem itself refuses them)."""
    try:
        given = inspect.signature(Problem).bind(*args, **kwargs).arguments
    except TypeError:
        return
    spec, batch = given.get("spec"), given.get("batch")
    if isinstance(spec, NetworkSpec) and type(batch) is int and batch >= 1:
        fits(spec, batch)
