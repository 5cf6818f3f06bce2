"""handwritten/ imports nothing but NumPy and the standard library."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path

import handwritten

PACKAGE = Path(handwritten.__file__).parent

BLOCKER = """
import sys
from collections.abc import Collection
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "jax", "jaxlib", "optax", "matplotlib", "scipy"}:
            raise ImportError(f"blocked in this test: {name}")
        return None
sys.meta_path.insert(0, Block())
import pkgutil, importlib
import numpy as np
import handwritten
for m in pkgutil.iter_modules(handwritten.__path__):
    importlib.import_module("handwritten." + m.name)
from handwritten import NetworkSpec, init_params, loss_and_grads
spec = NetworkSpec((2, 3, 1), ("tanh", "sigmoid"), "bce_with_logits")
params = init_params(spec, np.random.default_rng(0))
loss, grads = loss_and_grads(spec, params, np.ones((4, 2)), np.zeros((4, 1)))
assert np.isfinite(loss)
print("ok")
"""


def test_handwritten_runs_where_torch_and_jax_cannot_be_imported() -> None:
    result = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_handwritten_sources_import_only_numpy_stdlib_and_itself() -> None:
    allowed = {"numpy", "handwritten"} | set(sys.stdlib_module_names)
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_no_module_outside_handwritten_imports_a_private_name_of_it() -> None:
    """The shared contract is public: references, bpnet, bench and tests use public names."""
    root = PACKAGE.parent
    for folder in ("reference_torch", "reference_jax", "bpnet", "bench", "tests"):
        for path in sorted((root / folder).rglob("*.py")):      # packages too: check_all/
            private = [n for n in _imports(path) if n.startswith("handwritten")
                       and any(part.startswith("_") for part in n.split("."))]
            assert not private, f"{path.relative_to(root)} imports {private}"


def test_handwritten_modules_import_each_other_one_way() -> None:
    """No import cycle inside handwritten: each module builds only on the ones before it."""
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    deps = {m: {n.split(".")[1] for n in _imports(PACKAGE / f"{m}.py")
                if n.startswith("handwritten.") and n.split(".")[1] in modules} - {m}
            for m in modules}
    done: list[str] = []
    while len(done) < len(modules):
        ready = sorted(m for m in modules if m not in done and deps[m] <= set(done))
        assert ready, f"import cycle among {sorted(set(modules) - set(done))}: {deps}"
        done += ready


# what the references take from handwritten ------------------------------------------------

REFERENCE_IMPORTS = {
    # the spec types and the constants their names mean
    "handwritten.spec.NetworkSpec", "handwritten.spec.OptimizerSpec",
    "handwritten.spec.LRSchedule", "handwritten.spec.Params", "handwritten.spec.State",
    "handwritten.spec.Masks", "handwritten.spec.Running", "handwritten.spec.Trace",
    "handwritten.spec.History", "handwritten.spec.FLAGS",
    "handwritten.spec.BATCH_NORM_MOMENTUM", "handwritten.spec.NORM_EPS",
    # an activation name's default parameter, and selu's constants: what the name means
    "handwritten.activations.LEAKY_RELU_SLOPE", "handwritten.activations.ELU_ALPHA",
    "handwritten.activations.CELU_ALPHA", "handwritten.activations.SELU_ALPHA",
    "handwritten.activations.SELU_SCALE",
    # the input checks, and the refusal of a name without a counterpart
    "handwritten.checks.check_problem", "handwritten.checks.check_x",
    "handwritten.checks.check_params", "handwritten.checks.check_running",
    "handwritten.checks.check_optimizer", "handwritten.checks.check_step",
    "handwritten.checks.check_schedule_room", "handwritten.checks.counterpart",
    # the batch schedule that hands every implementation the same batches
    "handwritten.training.Schedule",
    # the layer contract's spec types, as registry keys and fields (no method of a layer,
    # and nothing of handwritten.layers.fold, is called by a reference), and its masks check
    "handwritten.layers.Sequential", "handwritten.layers.Activation",
    "handwritten.layers.BatchNorm1d", "handwritten.checks.check_masks",
}
"""Every name reference_torch and reference_jax import from handwritten: its vocabulary,
nothing they are meant to judge (no derivation, no registry of rules, no initialisation)."""


def _from_handwritten(path: Path) -> set[str]:
    """The handwritten names a module uses: ``from handwritten.m import n`` as "handwritten.m.n",
    and a module imported whole (``from handwritten import checks``) by the attributes used."""
    tree = ast.parse(path.read_text())
    names, modules = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.split(".")[0] == "handwritten"}
        elif isinstance(node, ast.ImportFrom) and node.module and \
                node.module.split(".")[0] == "handwritten":
            for a in node.names:
                if node.module == "handwritten" and (PACKAGE / f"{a.name}.py").exists():
                    modules[a.asname or a.name] = f"handwritten.{a.name}"
                else:
                    names.add(f"{node.module}.{a.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in modules:
            names.add(f"{modules[node.value.id]}.{node.attr}")
    return names


def test_the_references_import_from_handwritten_only_its_vocabulary() -> None:
    """reference_torch and reference_jax compute independently what they judge: a name of
    handwritten beyond REFERENCE_IMPORTS (the code under test) fails here, by module."""
    root = PACKAGE.parent
    used: set[str] = set()
    for folder in ("reference_torch", "reference_jax"):
        for path in sorted((root / folder).glob("*.py")):
            names = _from_handwritten(path)
            extra = sorted(names - REFERENCE_IMPORTS)
            assert not extra, (f"{folder}/{path.name} imports {extra} from handwritten, which "
                               "is code the references judge: compute it in the reference, or "
                               "move it to the vocabulary (handwritten/spec.py, checks.py) and "
                               "add it to REFERENCE_IMPORTS")
            used |= names
    assert used == REFERENCE_IMPORTS, f"no longer imported: {sorted(REFERENCE_IMPORTS - used)}"


def _bpnet_modules(folder: Path) -> dict[str, Path]:
    """Every module of bpnet by its name after "bpnet." -- a package's own modules too
    ("check_all.report"), and a package by its __init__ ("check_all")."""
    modules = {}
    for path in folder.rglob("*.py"):
        parts = path.relative_to(folder).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if parts:
            modules[".".join(parts)] = path
    return modules


def _bpnet_imports(name: str, path: Path, modules: Collection[str]) -> set[str]:
    """The bpnet modules one module of bpnet imports, at its top or inside a function:
    ``from bpnet import check_all`` and ``import bpnet.check_all`` are "check_all",
    ``from bpnet.check_all.report import Case`` is "check_all.report"."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.removeprefix("bpnet.") for a in node.names
                      if a.name.startswith("bpnet.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "bpnet" or node.module.startswith("bpnet."):
                base = node.module.removeprefix("bpnet").removeprefix(".")
                for a in node.names:
                    whole = f"{base}.{a.name}".removeprefix(".")
                    names.add(whole if whole in modules else base)
    return (names & set(modules)) - {name}


def test_bpnet_modules_import_each_other_without_a_cycle() -> None:
    """No import circle inside bpnet (check -> diagnose -> explain -> check was one), not
    even through an import deferred into a function: a cycle is named with its modules."""
    modules = _bpnet_modules(PACKAGE.parent / "bpnet")
    deps = {name: _bpnet_imports(name, path, modules) for name, path in modules.items()}
    assert deps["cli"] >= {"check", "check_all"} and deps["check_all.run"] >= {
        "check_all.report", "check_all.blocks"}, "the imports are no longer read"

    done: set[str] = set()
    while len(done) < len(deps):
        ready = {m for m in deps if m not in done and deps[m] <= done}
        if not ready:                    # every module left is on a cycle or behind one
            path = [min(set(deps) - done)]
            while path.count(path[-1]) < 2:
                path.append(min(deps[path[-1]] - done))
            cycle = path[path.index(path[-1]):]
            raise AssertionError(f"import cycle in bpnet: {' -> '.join(cycle)}")
        done |= ready
