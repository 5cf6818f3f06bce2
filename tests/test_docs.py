"""The derivation's chapters (docs/derivation/) and the docs against the code: the tables name
exactly what is registered, with the registries' constants, and the test map of docs/tests.md
is tests/quick.py's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import handwritten as hw
from handwritten import activations
from tests.quick import TESTS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# the derivation's chapters, one page each, titled "# N. <section> ..."
CHAPTERS = [p.read_text() for p in sorted((DOCS / "derivation").glob("*.md"))]
TESTS_PAGE = (DOCS / "tests.md").read_text()
OPTIMIZERS_PAGE = (DOCS / "optimizers.md").read_text()


def _table(section: str) -> dict[str, str]:
    """The rows of the first table of the chapter titled '# N. <section>', before its first
    '## ' subsection: first-column names (every backticked name in it) -> the whole row."""
    chapter = next(c for c in CHAPTERS if c.split("\n", 1)[0].split(". ", 1)[-1]
                   .startswith(section))
    body = chapter.split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in body.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            for name in re.findall(r"`([a-z_0-9]+)`", first):
                rows[name] = line
    return rows


def test_the_activation_table_is_the_registry() -> None:
    rows = _table("Activations")
    assert set(rows) == set(hw.ACTIVATIONS)
    assert f"s = {activations.LEAKY_RELU_SLOPE:g}" in rows["leaky_relu"]
    assert f"\\alpha = {activations.ELU_ALPHA:g}" in rows["elu"]
    assert f"\\alpha = {activations.CELU_ALPHA:g}" in rows["celu"]
    assert f"{activations.SELU_SCALE:.4f}" in rows["selu"]
    assert f"{activations.SELU_ALPHA:.4f}" in rows["selu"]
    assert f"{activations.GELU_K:g}" in rows["gelu"]
    assert f"z > {2 * activations.TAIL:g}" in rows["sigmoid"]
    assert f"z\\rvert > {activations.TAIL:g}" in rows["tanh"]
    assert f"z < -{activations.TAIL:g}" in rows["elu"]


def test_the_loss_table_is_the_registry() -> None:
    rows = _table("Losses")
    assert set(rows) == set(hw.LOSSES)
    for name, loss in hw.LOSSES.items():
        if loss.fused_with:
            assert f"fused with {loss.fused_with}" in rows[name], name


def test_the_optimizer_table_is_the_registry_and_names_each_rule() -> None:
    rows = _table("Optimizers")
    assert set(rows) == set(hw.OPTIMIZERS)
    for name, rule in hw.OPTIMIZERS.items():
        assert f"`{rule.update.__name__}`" in rows[name], name


def test_the_layer_trace_table_is_the_registry() -> None:
    """docs/layers.md's table of the trace's quantities names every kind of ``LAYERS`` once,
    each with its ``FORWARD`` and ``BACKWARD`` names in pass order (a new layer's row, or a
    renamed quantity, cannot be forgotten there)."""
    page = (DOCS / "layers.md").read_text()
    table = page.split("### The trace's quantities, per layer kind", 1)[1].split("\n\n")[2]
    rows: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    for line in table.splitlines()[2:]:
        kinds, forward, backward = (cell.split("(", 1)[0] for cell in line.split("|")[1:4])
        names = [tuple(re.findall(r"`([a-z_A-Z]+)`", cell)) for cell in (forward, backward)]
        for kind in re.findall(r"`(\w+)`", kinds):
            assert kind not in rows, f"{kind} has two rows"
            rows[kind] = (names[0], names[1])
    assert set(rows) == set(hw.LAYERS)
    for kind, layer in hw.LAYERS.items():
        assert rows[kind] == (layer.FORWARD, layer.BACKWARD), kind


def test_every_handwritten_module_has_its_api_page_in_the_nav() -> None:
    """A new file of the textbook (a layer family's handwritten/layers/<file>.py) gets its
    API page, docs/api/handwritten/<module>.md rendering the module, and the page its
    entry in mkdocs.yml's nav: mkdocs builds without either, silently."""
    nav = (ROOT / "mkdocs.yml").read_text()
    for path in sorted((ROOT / "handwritten").rglob("*.py")):
        parts = path.relative_to(ROOT / "handwritten").with_suffix("").parts
        if parts[-1] == "__init__":
            continue
        module = ".".join(parts)
        page = DOCS / "api" / "handwritten" / f"{module}.md"
        assert page.exists(), f"handwritten/{'/'.join(parts)}.py has no API page {page.name}"
        assert f"::: handwritten.{module}" in page.read_text(), page.name
        assert f"api/handwritten/{module}.md" in nav, f"{page.name} is not in mkdocs.yml's nav"


def test_the_docs_map_every_handwritten_file_to_the_tests_quick_runs() -> None:
    start = TESTS_PAGE.index("| file | its tests")
    table = TESTS_PAGE[start:TESTS_PAGE.index("\n\n", start)]
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        file = cells[0].strip("`")
        listed = re.findall(r"`(test_[a-z_0-9]+(?:::test_[a-z_0-9]+)?)`", cells[1])
        assert listed == TESTS[file], f"docs/tests.md's tests of {file}: {listed} != {TESTS[file]}"
    documented = set(re.findall(r"\| `(handwritten/[a-z_]+\.py)`", table))
    assert documented == {f"handwritten/{p.name}" for p in (ROOT / "handwritten").glob("*.py")}


def test_the_optimizer_pages_example_runs_and_trains() -> None:
    """docs/optimizers.md's OptimizerSpec example, executed as written: the loss falls."""
    start = OPTIMIZERS_PAGE.index("# Optimizers, schedules and clipping")
    block = OPTIMIZERS_PAGE[OPTIMIZERS_PAGE.index("```python\n", start) + 10:OPTIMIZERS_PAGE.index(
        "```", OPTIMIZERS_PAGE.index("```python\n", start) + 10)]
    namespace: dict[str, object] = {}
    exec(compile(block, "docs/optimizers.md", "exec"), namespace)
    losses = namespace["history"].losses  # type: ignore[attr-defined]
    assert losses[-1] < losses[0] / 10


README = (ROOT / "README.md").read_text()
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
         "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13}


def _counted(noun: str) -> int:
    """The number the README spells before ``noun`` ("twelve activations" -> 12)."""
    found = re.findall(rf"\b({'|'.join(WORDS)})\s+{noun}\b", README.replace("\n", " "))
    assert found, f"the README no longer counts its {noun}: update this test with it"
    return WORDS[found[0]]


def test_the_readmes_counts_are_the_registries() -> None:
    """Every count the front door states comes from the code: distinct activations (swish
    is silu's other name), losses, optimizers, and the command line's commands -- each of
    them a row of its command table."""
    from bpnet.cli import build_parser
    from bpnet.datasets import PRESETS

    distinct = {id(a) for a in hw.ACTIVATIONS.values()}
    assert _counted("activations") == len(distinct)
    assert _counted("losses") == len(hw.LOSSES)
    assert _counted("optimizers") == len(hw.OPTIMIZERS)
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert _counted("commands") == len(commands)
    for name in commands:
        assert f"| `bpnet {name}` |" in README, f"bpnet {name} missing from the command table"
    for name in PRESETS:
        assert f"`{name}`" in README, f"dataset {name} missing from the README"


def test_the_readmes_other_numbers_are_the_projects() -> None:
    """The blog network's sizes, the Python it needs, how often the demo prints: each number
    of the front door's prose read from where the project defines it."""
    from handwritten.seed import BLOG_SPEC

    assert f"a {BLOG_SPEC.layer_sizes} sigmoid network" in README.replace("\n", " ")
    requires = re.search(r'requires-python = ">=([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    assert requires and f"Python ≥ {requires[1]}" in README
    every = re.search(r"every (\d+) epochs", README)
    assert every, "the README no longer says how often the demo prints"
    seed_source = (ROOT / "handwritten" / "seed.py").read_text()
    assert f"i % {every[1]} == 0" in seed_source      # the blog's own print interval


def test_every_measured_table_has_its_record_with_date_and_machine() -> None:
    """A ``<!-- bpnet: measured NAME -->`` marker is rendered from docs/measured/NAME.json
    (docs/hooks.py): the record exists, says what wrote it, when and on what machine."""
    names = {name for page in DOCS.rglob("*.md")
             for name in re.findall(r"<!-- bpnet: measured ([\w-]+) -->", page.read_text())}
    assert names >= {"bench", "times"}, names
    for name in names:
        path = DOCS / "measured" / f"{name}.json"
        assert path.is_file(), f"{path} missing: bench/{name}.py --record {path}"
        rec = json.loads(path.read_text())
        assert rec["kind"] == name
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", rec["date"]), rec["date"]
        assert rec["machine"]["cpu"] and rec["machine"]["cores"] >= 1
