"""How long the project's own commands take here: the suite, the mutation runs, `make quick`
for an edit of each file of handwritten/, `bpnet check --all`, the docs.

    .venv/bin/python bench/times.py                                   # everything, ~25 min
    .venv/bin/python bench/times.py --only quick                      # the commands matching
    .venv/bin/python bench/times.py --long      # and quick-proof, thorough, determinism (+45 min)
    .venv/bin/python bench/times.py --record docs/measured/times.json # what the docs show

Each command runs in this checkout as a user runs it, one after the other (run it on a quiet
machine: the figures are wall times).  "cold" means an empty JAX compilation cache (a fresh
clone's first run); "warm" the project's own cache as the previous runs left it.  Each row
keeps the command's own summary line (tests passed, mutations caught).  Nothing is asserted:
the budget (docs/tests.md) is printed beside the figures.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import record
from progress_lines import progress  # bench/progress_lines.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
HANDWRITTEN = sorted(p.name for p in (ROOT / "handwritten").glob("*.py"))
# the budget every chapter keeps (docs/tests.md), seconds
BUDGET = {"make test": 600, "make mutations": 900, "make quick": 20, "check --all": 30}
# a command's own summary line, the first kind found in this order (make mutations prints its
# "N of M caught" before pytest's "N passed")
SUMMARIES = [re.compile(p) for p in (r"\d+ of \d+ caught", r"\d+ passed.*?(?= in \d)",
                                     r"\d+ cases?\b.*", r"Documentation built.*")]


@dataclass(frozen=True)
class Command:
    label: str            # what the table shows
    args: tuple[str, ...]
    condition: str        # "cold", "warm", "handwritten/x.py changed", ...
    cold: bool = False    # run with an empty JAX cache

    @property
    def budget(self) -> float | None:
        return next((s for k, s in BUDGET.items() if k in self.label), None)


def commands(long: bool = False) -> list[Command]:
    """What is timed, in order; ``long`` adds the runs of many minutes (quick-proof, the
    thorough profile, determinism)."""
    make = ("make",)
    bpnet = (str(Path(sys.executable).parent / "bpnet"),)
    out: list[Command] = [
        Command("make test", (*make, "test"), "cold", cold=True),
        Command("make test", (*make, "test"), "warm"),
        Command("make mutations", (*make, "mutations"), "warm"),
        Command("bpnet check --all", (*bpnet, "check", "--all", "--quiet"), "cold", cold=True),
        Command("bpnet check --all", (*bpnet, "check", "--all", "--quiet"), "warm"),
        Command("make docs", (*make, "docs"), "warm"),
    ]
    out += [Command("make quick", (*make, "quick", f"QUICK_ARGS=handwritten/{name}"),
                    f"handwritten/{name} changed") for name in HANDWRITTEN]
    if long:
        out += [Command("make quick-proof", (*make, "quick-proof"), "warm"),
                Command("HYPOTHESIS_PROFILE=thorough make pytest",
                        (*make, "pytest", "HYPOTHESIS_PROFILE=thorough"), "warm"),
                Command("make determinism", (*make, "determinism"), "warm")]
    return out


def run(command: Command) -> dict[str, Any]:
    """Run one command; its wall time, exit status and summary line."""
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="bpnet-jax-") as empty:
        if command.cold:
            env["BPNET_JAX_CACHE"] = empty
        start = time.perf_counter()
        done = subprocess.run(command.args, cwd=ROOT, env=env, capture_output=True, text=True,
                              check=False)
        seconds = time.perf_counter() - start
    return {"command": command.label, "condition": command.condition,
            "seconds": round(seconds, 1), "exit": done.returncode,
            "summary": summary(done.stdout + done.stderr), "budget": command.budget}


def summary(output: str) -> str:
    """The command's own summary line (the last of the first kind in SUMMARIES found)."""
    for pattern in SUMMARIES:
        found = pattern.findall(output)
        if found:
            return str(found[-1]).strip()
    return ""


def duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"


def markdown_table(rec: dict[str, Any]) -> str:
    """The record as the docs show it: its provenance, then a row per command."""
    lines = [record.provenance(rec), "",
             "| command | condition | time | budget | result |", "| --- | --- | --- | --- | --- |"]
    for r in rec["rows"]:
        budget = "" if r["budget"] is None else (
            f"{duration(r['budget'])}: {'met' if r['seconds'] <= r['budget'] else 'MISSED'}")
        result = r["summary"] if r["exit"] == 0 else f"exit {r['exit']} {r['summary']}"
        condition = re.sub(r"^(\S+\.py) changed$", r"`\1` changed", r["condition"])
        lines.append(f"| `{r['command']}` | {condition} | {duration(r['seconds'])} | "
                     f"{budget} | {result} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="run the commands whose label or condition has this")
    parser.add_argument("--record", metavar="FILE", help="write the JSON record there")
    parser.add_argument("--long", action="store_true",
                        help="also make quick-proof, the thorough profile and determinism")
    args = parser.parse_args(argv)
    chosen = [c for c in commands(args.long)
              if args.only is None or args.only in f"{c.label} {c.condition} {c.args}"]
    if not chosen:
        parser.error(f"--only {args.only!r} matches no command")
    show = progress("times.py", len(chosen))
    rows: list[dict[str, Any]] = []
    if args.record and not Path(args.record).exists():
        record.write(args.record, "times", rows=rows)     # for make docs, if it runs first
    for command in chosen:
        show(f"{command.label} ({command.condition})")
        rows.append(run(command))
        if args.record:      # after each command: the rows so far (make docs reads them)
            record.write(args.record, "times", rows=rows)
    print(markdown_table(record.make("times", rows=rows)))
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
