"""Every example in README.md and docs/ runs, so that none can go stale.

The fenced blocks of each Markdown file, by the language their fence names:

- ``python``: every block of a file, in order, in one fresh interpreter (one namespace),
  its working folder a temporary one; a traceback names the block by ``FILE:LINE``;
- ``bash``: each block a bash script (``set -e``) in a temporary folder, the project's
  ``.venv/bin`` first on PATH (``bpnet``, ``python``) and linked there as ``.venv``; a
  ``make`` line is checked with ``make -n`` in the project (the target exists and its
  recipe expands: CI runs the targets themselves, and ``make test`` cannot run inside
  itself);
- ``text``, ``console``, ``toml``, ``yaml``, ``json``, ``ini``: shown, never run (output, files);
- any other language, or none, fails: a block says what it is.

A bash block expected to fail is preceded by the line ``<!-- expect: exit N -->`` and must
exit with N (a python example shows a failure by catching it).  The project's JAX cache
and one BLAS thread are passed on, as to every subprocess of the suite.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUN = {"python", "bash"}
SHOWN = {"text", "console", "toml", "yaml", "json", "ini"}
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>[^`]*)$")
EXPECT = re.compile(r"^\s*<!--\s*expect:\s*exit\s+(?P<code>\d+)\s*-->\s*$")
TIMEOUT = 300     # seconds per block: the slowest example (check --all, cold) takes ~30 s


@dataclass(frozen=True)
class Block:
    """One fenced block of a Markdown file: where it starts, its language, its text."""

    path: Path
    line: int           # 1-based line of the opening fence
    language: str
    text: str
    expect: int = 0     # the exit status it must end with

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, in order (indented fences included)."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        language = (opening["info"].split() or [""])[0].strip("{}.").lower()
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        expect = EXPECT.match(before)
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence[0] * len(fence))
                                      and set(lines[j].strip()) == {fence[0]}):
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        if j == len(lines):
            raise AssertionError(f"{path.relative_to(ROOT)}:{i + 1}: a fence never closed")
        blocks.append(Block(path, i + 1, language, "\n".join(body) + "\n",
                            int(expect["code"]) if expect else 0))
        i = j + 1
    return blocks


def all_blocks() -> list[Block]:
    return [block for path in SOURCES for block in fenced_blocks(path)]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("MPLBACKEND", "Agg")
    return env


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # the README's commands name the project's environment as a newcomer has it, .venv/bin/
    (cwd / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    return subprocess.run(args, cwd=cwd, env=environment(), capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


def verdict(block: Block, done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == block.expect, (
        f"{block.name}: exit {done.returncode}, expected {block.expect}\n"
        f"--- block\n{block.text}--- stdout (end)\n{done.stdout[-3000:]}"
        f"--- stderr (end)\n{done.stderr[-3000:]}")


def as_bash_script(block: Block) -> str:
    """The block as a script: ``make X`` becomes ``make -n -C ROOT X`` (a dry run)."""
    lines = ["set -e"]
    for line in block.text.splitlines():
        stripped = line.lstrip()
        if re.match(r"(\S+=\S+\s+)*make(\s|$)", stripped):
            prefix, _, rest = stripped.partition("make")
            line = f"{prefix}make -n -C {ROOT}{rest}"
        lines.append(line)
    return "\n".join(lines) + "\n"


BLOCKS = all_blocks()
SHELL = [b for b in BLOCKS if b.language == "bash"]
PYTHON_FILES = sorted({b.path for b in BLOCKS if b.language == "python"})


def test_every_block_says_what_it_is() -> None:
    """A fence names a language the suite runs (python, bash) or one it shows (text, ...)."""
    unknown = [f"{b.name} ({b.language or 'no language'})" for b in BLOCKS
               if b.language not in RUN | SHOWN]
    assert not unknown, f"say python, bash or text (output): {unknown}"
    misplaced = [b.name for b in BLOCKS if b.expect and b.language != "bash"]
    assert not misplaced, f"an expected exit status belongs to a bash block: {misplaced}"


def test_the_readme_has_examples_of_both_kinds() -> None:
    """The collector finds them (a parser that found nothing would pass everything)."""
    readme = [b.language for b in BLOCKS if b.path.name == "README.md"]
    assert "python" in readme and "bash" in readme, readme


def test_the_parser_reads_fences_indents_and_expectations(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n\n<!-- expect: exit 1 -->\n```bash\nfalse\n```\n\n- item\n\n"
                    "  ```python\n  x = 1\n  ```\n````text\n```\n````\n")
    blocks = fenced_blocks(page)
    assert [(b.line, b.language, b.text, b.expect) for b in blocks] == [
        (4, "bash", "false\n", 1), (10, "python", "x = 1\n", 0), (13, "text", "```\n", 0)]


@pytest.mark.parametrize("block", SHELL, ids=[b.name for b in SHELL])
def test_shell_example(block: Block, tmp_path: Path) -> None:
    verdict(block, run(["bash", "-c", as_bash_script(block)], tmp_path))


@pytest.mark.parametrize("path", PYTHON_FILES, ids=[str(p.relative_to(ROOT)) for p in PYTHON_FILES])
def test_python_examples(path: Path, tmp_path: Path) -> None:
    """A file's python blocks, in order, in one namespace (each compiled under its own
    FILE:LINE name, so a traceback points at the block)."""
    blocks = [b for b in BLOCKS if b.path == path and b.language == "python"]
    program = "\n".join(
        f"exec(compile({b.text!r}, {b.name!r}, 'exec'), namespace)" for b in blocks)
    script = f"namespace = {{'__name__': '__main__'}}\n{program}\n"
    done = run([sys.executable, "-c", script], tmp_path)
    verdict(Block(path, blocks[0].line, "python", "".join(b.text for b in blocks)), done)
