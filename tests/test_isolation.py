"""handwritten/ imports nothing but NumPy and the standard library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import handwritten

PACKAGE = Path(handwritten.__file__).parent

BLOCKER = """
import sys
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
        for path in sorted((root / folder).glob("*.py")):
            private = [n for n in _imports(path) if n.startswith("handwritten")
                       and any(part.startswith("_") for part in n.split("."))]
            assert not private, f"{folder}/{path.name} imports {private}"


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
