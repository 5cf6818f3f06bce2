"""MkDocs hooks (mkdocs.yml, ``hooks:``): what the site shows that is generated, not typed.

- ``<!-- bpnet: cli-help -->`` in a page becomes the ``--help`` of ``bpnet`` and of every
  subcommand, taken from the parser object ``bpnet.cli.build_parser()`` builds: the reference
  cannot drift from the options.
- ``<!-- bpnet: source PATH -->`` becomes the file PATH (relative to the repository) as a
  code block, e.g. bpnet/tolerances.py with the reason beside each constant.
- ``<!-- bpnet: measured NAME -->`` becomes the tables of ``docs/measured/NAME.json``, a
  record written by ``bench/bench.py --record`` or ``bench/times.py --record`` with its date
  and machine (bench/record.py): no measured number in the docs is typed by hand.
- After the build, MathJax (from the ``django-static-mathjax`` package of the docs extra: a
  plain copy of MathJax 3) is copied into the site, so that neither the build nor a reader
  needs the network.

The markers are HTML comments, so GitHub shows nothing in their place, and the Markdown
sources hold no generated text for the example test to run.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLI_MARKER = "<!-- bpnet: cli-help -->"
SOURCE_MARKER = re.compile(r"<!-- bpnet: source (?P<path>[\w/.]+) -->")
MEASURED_MARKER = re.compile(r"<!-- bpnet: measured (?P<name>[\w-]+) -->")
MEASURED = ROOT / "docs" / "measured"
# the bench script that renders each kind of record
RENDERERS = {"bench": ("bench", "markdown_tables"), "times": ("times", "markdown_table")}
HELP_COLUMNS = "100"
# what of MathJax the site needs: the TeX-to-HTML component, its fonts, and the TeX
# extensions it loads on demand
MATHJAX_PARTS = ("tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions")


def on_config(config: Any) -> Any:
    # the bpnet of this checkout, not whichever one an editable install points at
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return config


def _fenced(text: str, language: str) -> str:
    fence = "````" if "```" in text else "```"
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def cli_help() -> str:
    """The help of ``bpnet`` and of each subcommand, as argparse prints it (100 columns)."""
    from bpnet.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS        # argparse wraps to the terminal's width
    try:
        parser = build_parser()
        parts = ["## `bpnet --help`", _fenced(parser.format_help(), "text")]
        subcommands = next(a for a in parser._actions if a.choices and a.dest == "command")
        for name, sub in subcommands.choices.items():
            parts += [f"## `bpnet {name} --help`", _fenced(sub.format_help(), "text")]
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n\n".join(parts)


def _source(match: re.Match[str]) -> str:
    path = ROOT / match["path"]
    if not path.is_file():
        raise FileNotFoundError(f"{match[0]}: no file {path}")
    language = {".py": "python", ".toml": "toml"}.get(path.suffix, "text")
    return _fenced(path.read_text(), language)


def measured(name: str) -> str:
    """The tables of the record docs/measured/<name>.json, rendered by the bench script that
    wrote it (bench/ on sys.path while it loads, as when run as a script)."""
    path = MEASURED / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"<!-- bpnet: measured {name} -->: no record {path}")
    rec = json.loads(path.read_text())
    module_name, function = RENDERERS[rec["kind"]]
    bench = str(ROOT / "bench")
    sys.path.insert(0, bench)
    try:
        module = importlib.import_module(module_name)
    finally:
        sys.path.remove(bench)
    text: str = getattr(module, function)(rec)
    return text


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_help())
    markdown = MEASURED_MARKER.sub(lambda m: measured(m["name"]), markdown)
    return SOURCE_MARKER.sub(_source, markdown)


def mathjax_dir() -> Path:
    spec = importlib.util.find_spec("mathjax")
    origin = Path(spec.origin).parent if spec and spec.origin else None
    es5 = origin / "static" / "mathjax" / "es5" if origin else None
    if es5 is None or not (es5 / "tex-chtml.js").is_file():
        raise FileNotFoundError("MathJax not found: install the docs extra "
                                "(pip install -e '.[docs]', which has django-static-mathjax)")
    return es5


def on_post_build(config: Any) -> None:
    es5 = mathjax_dir()
    target = Path(config["site_dir"]) / "assets" / "mathjax"
    for part in MATHJAX_PARTS:
        source, dest = es5 / part, target / part
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest, dirs_exist_ok=True)
        else:
            shutil.copy2(source, dest)
