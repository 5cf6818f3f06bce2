"""`make determinism`: do two runs of the suite check the same examples?

Loaded into a pytest run as a plugin (``-p tests.determinism``, with ``DETERMINISM_OUT``
naming a folder), it records every Hypothesis test case each test ran, in order, through
Hypothesis's own observability callbacks: nothing wraps the test function (a wrapper would
change the function Hypothesis derives a derandomized seed from).  Each pytest process
writes one JSON file: per test node, a digest of its test cases, their number and the first
three.  Then

    python -m tests.determinism OUT_A OUT_B

compares two runs' folders -- say ``-n 1`` and ``-n 2`` -- and exits 1 naming every test
whose examples differ, or that ran in only one of them.

Run it with ``HYPOTHESIS_EXPERIMENTAL_OBSERVABILITY_NOCOVER=1``: without it Hypothesis
collects line coverage for every test case (sys.settrace before Python 3.12), which is slow.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

OUT_VARIABLE = "DETERMINISM_OUT"

_RECORD: dict[str, list[Any]] = {}


def _node() -> str:
    # pytest sets "tests/x.py::test_y[param] (call)" while a test runs
    return os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]


def _seen(observation: Any, *_: Any) -> None:
    if getattr(observation, "type", None) != "test_case":
        return
    digest, count, first = _RECORD.setdefault(_node(), [hashlib.sha256(), 0, []])
    text = f"{observation.status} {observation.representation}"
    digest.update(text.encode())
    _RECORD[_node()][1] = count + 1
    if len(first) < 3:
        first.append(text[:300])


def pytest_configure(config: Any) -> None:
    if OUT_VARIABLE not in os.environ:
        raise SystemExit(f"tests.determinism: set {OUT_VARIABLE} to the folder to write to")
    from hypothesis.internal.observability import add_observability_callback

    add_observability_callback(_seen, all_threads=True)


def pytest_sessionfinish(session: Any) -> None:
    out = Path(os.environ[OUT_VARIABLE])
    out.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    record = {node: [digest.hexdigest(), count, first]
              for node, (digest, count, first) in _RECORD.items()}
    (out / f"{worker}.json").write_text(json.dumps(record, indent=1, sort_keys=True))


def load(folder: Path) -> dict[str, list[Any]]:
    """One run's record: every worker's file merged (a test runs on one worker only)."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(folder.glob("*.json")):
        merged.update(json.loads(path.read_text()))
    return merged


def compare(a: dict[str, list[Any]], b: dict[str, list[Any]]) -> list[str]:
    """What differs between two runs' records, a line each (empty: the same examples)."""
    lines = []
    for node in sorted(a.keys() | b.keys()):
        if node not in a or node not in b:
            lines.append(f"{node}: ran in only one of the two runs")
        elif a[node][:2] != b[node][:2]:
            lines.append(f"{node}: {a[node][1]} vs {b[node][1]} test cases, digests differ;"
                         f" first: {a[node][2][:1]} vs {b[node][2][:1]}")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.determinism OUT_A OUT_B", file=sys.stderr)
        return 2
    a, b = (load(Path(p)) for p in argv)
    if not a or not b:
        print(f"no record in {argv[0] if not a else argv[1]}", file=sys.stderr)
        return 2
    differ = compare(a, b)
    cases = sum(count for _, count, _ in a.values())
    for line in differ:
        print(line)
    print(f"{len(a)} and {len(b)} Hypothesis tests, {cases} test cases in the first run: "
          + ("the same examples, in the same order, in both runs" if not differ
             else f"{len(differ)} differ"))
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
