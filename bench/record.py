"""A measurement as the docs show it: a JSON record with its date and machine.

``bench.py --record FILE`` and ``times.py --record FILE`` write one (``docs/measured/``
holds the ones the documentation shows); ``docs/hooks.py`` turns each into its tables when
the site is built, so that no measured number in the docs is typed by hand.  A record::

    {"kind": "bench" | "times", "date": "2026-12-03", "machine": {...}, ...the rows}
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), or what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Where a measurement was taken: CPU, cores, memory, OS, Python, NumPy and its BLAS."""
    import numpy as np
    import threadpoolctl

    blas = sorted({f"{i.get('internal_api')} {i.get('architecture') or ''}".strip()
                   for i in threadpoolctl.threadpool_info()})
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        memory = "unknown"
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory": memory,
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "numpy": np.__version__, "blas": blas}


def make(kind: str, **fields: Any) -> dict[str, Any]:
    """The record of a measurement: its kind, today's date, this machine, its fields."""
    return {"kind": kind, "date": datetime.date.today().isoformat(), "machine": machine(),
            **fields}


def write(path: str | Path, kind: str, **fields: Any) -> dict[str, Any]:
    """Write the record of a measurement (``make``) to ``path``; the record."""
    record = make(kind, **fields)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return record


def provenance(record: dict[str, Any]) -> str:
    """One line saying when and where: 'Measured on 2026-12-03: Intel ... (2 cores, 24 GiB),
    Linux ..., Python 3.11.7, NumPy 2.1.3 (openblas SkylakeX).'"""
    m = record["machine"]
    return (f"Measured on {record['date']}: {m['cpu']} ({m['cores']} cores, {m['memory']}), "
            f"{m['os']}, Python {m['python']}, NumPy {m['numpy']} ({', '.join(m['blas'])}).")
