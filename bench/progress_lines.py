"""Progress of a bench script, on stderr: one line per case as it starts, flushed.

A bench runs for minutes and prints its table at the end; with its output going to a file
(``bench/bench.py > out/bench.txt``), stdout is block-buffered and the run was silent for
3-9 minutes.  The progress lines go to stderr, one per case, with the time so far, so a
terminal shows a run is alive and how far it is while stdout holds the table alone
(``--json`` output stays one JSON document).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def progress_line(script: str, done: int, total: int, case: str, seconds: float) -> str:
    """"bench.py: [3/15] large float32 (41 s so far)": the case that starts now, the
    ``done`` cases before it counted from 1, of ``total``."""
    return f"{script}: [{done}/{total}] {case} ({seconds:.0f} s so far)"


def progress(script: str, total: int, stream: TextIO | None = None,
             clock: Callable[[], float] = time.perf_counter) -> Callable[[str], None]:
    """A function to call as each case starts, with the case's name: it writes its
    ``progress_line`` to ``stream`` (stderr) and flushes it."""
    start = clock()
    count = 0

    def show(case: str) -> None:
        nonlocal count
        count += 1
        out = sys.stderr if stream is None else stream
        print(progress_line(script, count, total, case, clock() - start), file=out, flush=True)

    return show
