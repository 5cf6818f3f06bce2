"""Every registry of handwritten and its counterpart in each reference: before anything
runs, ``registry_gaps`` says in one line which registered name a reference lacks."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from types import ModuleType

from handwritten.checks import no_counterpart

REGISTRIES: Mapping[str, tuple[str, str, str, str]] = {
    # kind: (handwritten's module and registry, a reference's module and registry)
    "activation": ("activations", "ACTIVATIONS", "activations", "ACTIVATIONS"),
    "loss": ("losses", "LOSSES", "losses", "LOSSES"),
    "optimizer": ("optimizers", "OPTIMIZERS", "optimizers", "MAKERS"),
    "schedule": ("schedules", "SCHEDULES", "schedules", "SCHEDULES"),
    "init scheme": ("network", "INIT_SCHEMES", "network", "INITIALIZERS"),
    "layer": ("layers", "LAYERS", "layers", "LAYERS"),
    "norm": ("spec", "NORMS", "blocks", "AXES"),
}
"""Every registry of handwritten and its counterpart in each reference."""


def _registry(implementation: str, kind: str) -> Collection[str]:
    """The names of an implementation's registry of one kind
    (reference_torch.activations.ACTIVATIONS, ...)."""
    import importlib

    ours, our_name, module, name = REGISTRIES[kind]
    if implementation == "handwritten":
        module, name = ours, our_name
    registry = getattr(importlib.import_module(f"{implementation}.{module}"), name)
    return [n for n in registry if n is not None]          # NORMS holds None: no norm


def _where(implementation: str, kind: str) -> str:
    """Where a reference keeps a kind: its file, and the registry when not named alike."""
    _, _, module, name = REGISTRIES[kind]
    registry = f" ({name})" if kind in ("optimizer", "init scheme", "layer") else ""
    return f"{implementation}/{module}.py{registry}"


def registry_gaps(references: Mapping[str, ModuleType],
                  names: Collection[str] | None = None) -> list[str]:
    """One line per name registered in handwritten that a reference lacks (or the reverse);
    only for ``names`` (a spec's activations and loss, say) when given."""
    gaps = []
    for kind in REGISTRIES:
        ours = _registry("handwritten", kind)
        for ref in references:
            theirs = _registry(ref, kind)
            module = _where(ref, kind)
            gaps += [no_counterpart(kind, name, module)
                     for name in ours if name not in theirs and (names is None or name in names)]
            gaps += [f"{kind} {name!r} in {module} is not registered in handwritten"
                     for name in theirs if name not in ours and (names is None or name in names)]
    return gaps
