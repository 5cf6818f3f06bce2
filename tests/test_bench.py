"""bench/: what the scripts compute and print, without running a benchmark (issue 23)."""

from __future__ import annotations

import importlib.util
import io
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str) -> types.ModuleType:
    """bench/<name>.py as a module; its sibling imports (progress_lines) as a script has
    them, from bench/ on sys.path while it loads.  Whatever it added to sys.modules is taken
    out again: Hypothesis draws constants from the project's modules in sys.modules
    (tests/conftest.py), and a module only this test imports would change the examples of
    every property after it in the same process."""
    before = set(sys.modules)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH))
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module      # as an import does (a dataclass looks it up)
        try:
            spec.loader.exec_module(module)
        finally:
            for added in set(sys.modules) - before:
                del sys.modules[added]
    return module


class _Machine:
    """A simulated clock and trainer: a run of n steps costs FIXED + n * STEP seconds,
    times the load factor of every burst the run starts in."""

    FIXED, STEP = 0.05, 0.001

    def __init__(self, bursts: list[tuple[float, float, float]]) -> None:
        self.now = 0.0
        self.bursts = bursts
        self.calls: list[tuple[float, float]] = []

    def clock(self) -> float:
        return self.now

    def train(self, *args: Any, epochs: int, **kwargs: Any) -> None:
        load = 1.0
        for start, length, factor in self.bursts:
            if start <= self.now < start + length:
                load *= factor
        cost = (self.FIXED + epochs * self.STEP) * load
        self.calls.append((self.now, self.now + cost))
        self.now += cost


_BURSTS = st.lists(st.tuples(st.floats(0, 20), st.floats(0.05, 20), st.floats(1.5, 20)),
                   max_size=3)


def test_a_per_step_time_is_never_negative() -> None:
    """Runs of n and 2n steps under bursts of load: per_step is a positive time or None
    (not measured), and the exact step time where no burst touched a run (timed apart,
    every long run then every short one, a burst over the short ones gave torch -96.48 ms
    per step and hw/torch -1.67, "target met")."""
    bench = _load("bench")

    @given(bursts=_BURSTS)
    @example(bursts=[(1.3, 20.0, 4.0)])          # a burst from the short runs on
    def check(bursts: list[tuple[float, float, float]]) -> None:
        machine = _Machine(bursts)
        trainer = types.SimpleNamespace(train=machine.train)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(bench, "time", types.SimpleNamespace(perf_counter=machine.clock))
            patch.setattr(bench, "hw", types.SimpleNamespace(
                train=machine.train, OptimizerSpec=lambda *args: None))
            patch.setitem(sys.modules, "reference_torch", trainer)
            patch.setitem(sys.modules, "reference_jax", trainer)
            times = bench.per_step(None, None, None, None, steps=100, repeats=7)
        assert set(times) == {"handwritten", "torch", "jax"}
        for name, seconds in times.items():
            assert seconds is None or seconds > 0, (name, seconds)
        untouched = not any(a < start + length and start < b for a, b in machine.calls
                            for start, length, _ in bursts)
        if untouched:
            assert all(s == pytest.approx(machine.STEP, rel=1e-9) for s in times.values())

    check()


def test_a_time_not_measured_prints_as_noisy_and_judges_no_target() -> None:
    bench = _load("bench")
    assert bench.ms_cell(None, 10) == "     noisy" and bench.ms_cell(1.5, 10) == "   1.500ms"
    assert bench.cell(None, 7, 2) == "      -" and bench.ratio(None, 2.0) is None
    assert bench.met(None, 1.0) == "not measured" and bench.met(-1.67, 1 / 3.5) == "met"


def test_a_bench_shows_its_progress_on_stderr_one_flushed_line_per_case() -> None:
    """bench.py, options.py and second_order.py were silent for 3-9 minutes with their
    output going to a file: each case now starts with a line on stderr."""
    progress_lines = _load("progress_lines")
    line = progress_lines.progress_line("bench.py", 3, 15, "step times, large float32", 41.2)
    assert line == "bench.py: [3/15] step times, large float32 (41 s so far)"

    class Stream(io.StringIO):
        flushes = 0

        def flush(self) -> None:
            self.flushes += 1

    ticks = iter([10.0, 10.4, 75.0])
    stream = Stream()
    starting = progress_lines.progress("options.py", 2, stream, clock=lambda: next(ticks))
    starting("adam amsgrad")
    assert stream.getvalue() == "options.py: [1/2] adam amsgrad (0 s so far)\n"
    starting("schedule cosine")
    assert stream.getvalue().splitlines()[1] == "options.py: [2/2] schedule cosine (65 s so far)"
    assert stream.flushes >= 2
    for script in ("bench", "options", "second_order", "blocks"):
        assert "progress(" in (BENCH / f"{script}.py").read_text(), script


MACHINE = {"cpu": "Some CPU", "cores": 2, "memory": "24 GiB", "os": "Linux 6", "python": "3.11",
           "numpy": "2.1", "blas": ["openblas SkylakeX"]}


def test_a_times_record_renders_with_its_provenance_and_budget() -> None:
    times = _load("times")
    rec = {"kind": "times", "date": "2026-12-03", "machine": MACHINE, "rows": [
        {"command": "make test", "condition": "cold", "seconds": 321.4, "exit": 0,
         "summary": "848 passed, 1 skipped", "budget": 600},
        {"command": "make quick", "condition": "handwritten/seed.py changed", "seconds": 24.0,
         "exit": 0, "summary": "5 passed", "budget": 20},
        {"command": "make docs", "condition": "warm", "seconds": 4.9, "exit": 2,
         "summary": "", "budget": None}]}
    table = times.markdown_table(rec).splitlines()
    assert table[0].startswith("Measured on 2026-12-03: Some CPU (2 cores, 24 GiB)")
    assert table[4] == ("| `make test` | cold | 5 min 21 s | 10 min 00 s: met | "
                        "848 passed, 1 skipped |")
    assert "20.0 s: MISSED" in table[5]                      # over its budget, said
    assert "| `handwritten/seed.py` changed |" in table[5]    # a path, not Markdown
    assert table[6].endswith("| 4.9 s |  | exit 2  |")       # a failed command, said


def test_every_command_times_measures_is_one_a_user_runs() -> None:
    """times.py runs make targets that exist and a quick run per file of handwritten/."""
    import subprocess

    times = _load("times")
    commands = times.commands(long=True)
    quick = {c.condition for c in commands if c.label == "make quick"}
    assert quick == {f"handwritten/{p.name} changed"
                     for p in (BENCH.parent / "handwritten").glob("*.py")}
    for c in commands:
        if c.args[0] == "make":
            done = subprocess.run(["make", "-n", *c.args[1:]], cwd=BENCH.parent,
                                  capture_output=True, text=True, check=False)
            assert done.returncode == 0, (c, done.stderr)


def test_a_bench_record_renders_noisy_cells_and_its_targets() -> None:
    bench = _load("bench")
    step = {"size": "large", "dtype": "float32", "ms": {"handwritten": None, "torch": 30.8,
                                                        "jax": 29.6},
            "hw/torch": None, "hw/jax": None, "gflops": None, "gemm_share": None,
            "target": [1.10, "within 1.10x of torch"]}
    second = {"size": "large", "dtype": "float64", "grad_ms": 62.0, "hvp_ms": 128.0,
              "torch_hvp_ms": 284.0, "hvp/grad": 2.06, "hvp/torch": 0.45, "norms_ms": 64.0,
              "norms/grad": 1.04}
    rec = {"kind": "bench", "date": "2026-12-03", "machine": MACHINE,
           "gemm_peak_gflops": {"float32": {"numpy": 194.0, "torch": 190.0}},
           "steps": [step], "second_order": [second],
           "blocks": {"ms": {"handwritten": 40.0, "torch": 42.0, "jax": None}, "hw/torch": 0.95},
           "seed_vs_general": {"seed_ms": 0.01, "general_ms": 0.011, "ratio": 1.1},
           "memory": {"peak_MiB": 10.0, "cache_MiB": 6.0, "grads_MiB": 5.0, "budget_MiB": 11.0},
           "cross_checks": {"per_second": 25.0, "architectures": 60, "failures": 0,
                            "plain_per_second": 3.0}}
    text = bench.markdown_tables(rec)
    assert text.startswith("Measured on 2026-12-03: Some CPU")
    row = next(line for line in text.splitlines() if line.startswith("| (784"))
    assert "| noisy | 30.8 ms | 29.6 ms | — | — | — |" in row
    assert "within 1.10x of torch: not measured; GEMM share >= 85%: not measured" in row
    assert "hvp <= 3x gradient: met; norms <= 1.5x gradient: met" in text
    assert "JAX noisy; hw/torch 0.95" in text
    assert "LeNet" not in text                  # a record from before the conv rows
    conv = {"network": "LeNet-5", "batch": 128, "ms": {"handwritten": 12.0, "torch": 6.0,
                                                       "jax": None},
            "hw/torch": 2.0, "hw/jax": None, "gemm_share": 0.4, "columns_MiB": 12.3,
            "inputs_MiB": 0.9, "target": 1.5}
    line = next(line for line in bench.markdown_tables({**rec, "conv": [conv]}).splitlines()
                if "LeNet" in line)
    assert "hw/torch 2.00 (target ≤ 1.50: MISSED); the convolutions' GEMMs 40% of the " \
           "step; im2col columns 12.3 MiB for inputs of 0.9 MiB" in line
    assert "JAX noisy" in line
    assert "page faults" not in line            # a conv record from before they were measured
    faults = {"faults": {"per_step": 1960.4, "sys_ms": 7.113},
              "torch_faults": {"per_step": 161.0, "sys_ms": 1.06}}
    line = next(line for line in bench.markdown_tables(
        {**rec, "conv": [conv | faults]}).splitlines() if "LeNet" in line)
    assert line.endswith("page faults per step 1960 (kernel time 7.11 ms), torch's 161 "
                         "(1.06 ms).")


def test_a_commands_summary_is_its_own_line() -> None:
    times = _load("times")
    mutations = "adam_x   test_y  6.3 s\n103 of 103 caught\n==== 103 passed in 649.2s ====\n"
    assert times.summary(mutations) == "103 of 103 caught"
    assert times.summary("== 869 passed, 1 skipped in 167.1s ==") == "869 passed, 1 skipped"
    assert times.summary("nothing to say") == ""
