"""Speed and memory of one training step, handwritten against torch (eager) and JAX (jitted).

    .venv/bin/python bench/bench.py            # the full table (a few minutes)
    .venv/bin/python bench/bench.py --quick    # fewer repeats
    .venv/bin/python bench/bench.py --json     # machine-readable

For each size and dtype, every implementation runs its own ``train`` (full batch,
SGD, a sigmoid MLP with half_mse): forward, loss, backward, update, per step (a run
of 2n steps minus a run of n, so a call's fixed costs are left out).  The
table shows median step times over repeats, the ratios handwritten/torch and
handwritten/jax, the GFLOP/s the step achieves against a measured GEMM peak, and
the share of the handwritten step spent outside its GEMMs (those GEMMs timed alone,
same shapes and dtype).  Then the peak extra memory of a handwritten step at the
large size (tracemalloc), the second-order rows (hvp against loss_and_grads and against
torch.autograd.functional.hvp; per-example gradient norms against one gradient) and the
verification throughput: cross-checks (loss,
grads and full trace in all three implementations, compared) per second over new
random architectures.  Thread counts and BLAS kernels are printed first.

Nothing here is a test: targets are printed beside the figures, not asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import numpy as np
import record  # bench/record.py, beside this script
from progress_lines import progress  # bench/progress_lines.py, beside this script

import handwritten as hw
from bpnet import implementations
from bpnet.allocator import keep_freed_memory
from bpnet.check import cross_check
from bpnet.problems import Problem, random_problems
from handwritten.seed import BLOG_SPEC

SIZES = {
    "blog": (BLOG_SPEC.layer_sizes, 100),
    "medium": ((64, 128, 128, 10), 128),
    "large": ((784, 1024, 1024, 10), 512),
}
# (size, dtype) -> (target of handwritten/torch, description)
TARGETS = {
    ("blog", "float64"): (1 / 3.5, "handwritten >= 3.5x faster than torch"),
    ("blog", "float32"): (1 / 3.5, "handwritten >= 3.5x faster than torch"),
    ("medium", "float64"): (1.0, "no slower than torch"),
    ("large", "float32"): (1.10, "within 1.10x of torch"),
    ("large", "float64"): (1.20, "within 1.20x of torch"),
}
GEMM_SHARE_TARGET = 0.85


def environment(allocator: bool = False) -> dict[str, Any]:
    """Versions, threads and BLAS of the three implementations; ``allocator``: whether
    glibc's trim and mmap thresholds were raised (``bpnet.allocator``)."""
    import threadpoolctl
    import torch

    blas = [{k: info.get(k) for k in ("internal_api", "architecture", "num_threads", "version")}
            for info in threadpoolctl.threadpool_info()]
    import jax

    return {"python": platform.python_version(), "machine": platform.machine(),
            "numpy": np.__version__, "numpy_blas": blas, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "torch_blas": "mkl" if torch.backends.mkl.is_available() else "other",
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "jax": jax.__version__, "jax_devices": [str(d) for d in jax.devices()],
            "allocator": ("glibc, freed memory kept (bpnet.allocator.keep_freed_memory)"
                          if allocator else "the C library's defaults")}


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of fn() over repeats (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_peak(dtype: str, n: int = 2048) -> dict[str, float]:
    """GFLOP/s of one large square matmul, in NumPy and in torch."""
    import torch

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(n, n)).astype(dtype), rng.normal(size=(n, n)).astype(dtype)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    flops = 2 * n**3
    return {"numpy": flops / timed(lambda: a @ b, 5) / 1e9,
            "torch": flops / timed(lambda: ta @ tb, 5) / 1e9}


def gemm_shapes(sizes: tuple[int, ...], batch: int) -> list[tuple[tuple[int, int], tuple[int, int],
                                                               bool, bool]]:
    """(left shape, right shape, transpose left, transpose right) of every GEMM of one step."""
    shapes = []
    for fi, fo in pairwise(sizes):
        shapes.append(((batch, fi), (fi, fo), False, False))          # z = a_prev @ W
    for l, (fi, fo) in enumerate(pairwise(sizes)):
        shapes.append(((batch, fi), (batch, fo), True, False))        # d_W = a_prev.T @ d_z
        if l > 0:
            shapes.append(((batch, fo), (fi, fo), False, True))       # d_a_prev = d_z @ W.T
    return shapes


def gemm_time(sizes: tuple[int, ...], batch: int, dtype: str, repeats: int) -> float:
    rng = np.random.default_rng(1)
    ops = []
    for ls, rs, tl, tr in gemm_shapes(sizes, batch):
        left, right = rng.normal(size=ls).astype(dtype), rng.normal(size=rs).astype(dtype)
        ops.append((left.T if tl else left, right.T if tr else right))
    return timed(lambda: [a @ b for a, b in ops], repeats)


def step_flops(sizes: tuple[int, ...], batch: int) -> int:
    total = 0
    for ls, rs, tl, tr in gemm_shapes(sizes, batch):
        m, k = (ls[1], ls[0]) if tl else ls
        n = rs[0] if tr else rs[1]
        total += 2 * m * k * n
    return total


def problem(size: str, dtype: str) -> tuple[hw.NetworkSpec, hw.Params, np.ndarray, np.ndarray]:
    sizes, batch = SIZES[size]
    spec = hw.NetworkSpec(sizes, ("sigmoid",) * (len(sizes) - 1), "half_mse", "mean")
    rng = np.random.default_rng(0)
    params = hw.init_params(spec, rng, "glorot_uniform", dtype)
    x = rng.normal(size=(batch, sizes[0])).astype(dtype)
    y = rng.uniform(size=(batch, sizes[-1])).astype(dtype)
    return spec, params, x, y


def per_step(spec: hw.NetworkSpec, params: hw.Params, x: np.ndarray, y: np.ndarray,
             steps: int, repeats: int) -> dict[str, float | None]:
    """Seconds one more sgd training step costs in each implementation (``extra_time`` of
    runs of n and 2n steps): without the fixed cost of a call (checks, conversions, the
    final diagnosis of the run); None where the noise left no measurement."""
    import reference_jax
    import reference_torch

    opt = hw.OptimizerSpec("sgd", 0.01)
    out = {}
    for name, impl in (("handwritten", hw), ("torch", reference_torch), ("jax", reference_jax)):
        def run(n: int, impl: Any = impl) -> None:
            impl.train(spec, params, x, y, opt, epochs=n)
        out[name] = extra_time(lambda: run(steps), lambda: run(2 * steps), steps, repeats)
    return out


def extra_time(short: Callable[[], Any], long: Callable[[], Any], extra: int, repeats: int
               ) -> float | None:
    """Seconds per unit of the ``extra`` units of work ``long()`` does beyond ``short()``:
    the median, over ``repeats`` pairs of the two run back to back (in alternating order),
    of each pair's difference, divided by ``extra``; None when that median is not positive.

    The two used to be timed apart -- every repeat of the long run, then every repeat of
    the short one -- and a burst of load on a shared machine during the short runs made
    their median the larger: torch's step at the blog's size came out at -96.48 ms, and
    hw/torch -1.67 "target met".  Within a pair, both runs see about the same load, and the
    median over pairs leaves out a pair a burst split.  A difference that is not positive
    is noise larger than the extra work, not a time: it is None, never a negative time."""
    short()                                            # warm-up
    long()
    differences = []
    for i in range(repeats):
        seconds = {}
        for label, fn in (("short", short), ("long", long))[::1 if i % 2 == 0 else -1]:
            start = time.perf_counter()
            fn()
            seconds[label] = time.perf_counter() - start
        differences.append(seconds["long"] - seconds["short"])
    per_unit = statistics.median(differences) / extra
    return per_unit if per_unit > 0 else None


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is not measured."""
    return None if a is None or b is None else a / b


def ms_cell(milliseconds: float | None, width: int) -> str:
    """A time in a table's cell of ``width`` characters; "noisy" when not measured."""
    return (f"{'noisy':>{width}s}" if milliseconds is None
            else f"{milliseconds:{width - 2}.3f}ms")


def cell(value: float | None, width: int, digits: int) -> str:
    """A number in a table's cell of ``width`` characters; "-" when not measured."""
    return f"{'-':>{width}s}" if value is None else f"{value:{width}.{digits}f}"


def met(value: float | None, bound: float) -> str:
    """'met' or 'MISSED' for value <= bound; 'not measured' for a noisy value."""
    return "not measured" if value is None else "met" if value <= bound else "MISSED"


def step_times(size: str, dtype: str, repeats: int) -> dict[str, float | None]:
    spec, params, x, y = problem(size, dtype)
    # enough steps that train()'s fixed costs (the checks, the final diagnosis of the run:
    # about one step) stay a few percent of the measured time
    steps = {"blog": 2000, "medium": 200, "large": 30}[size]
    return per_step(spec, params, x, y, steps, repeats)


def seed_vs_general(repeats: int, epochs: int = 1000) -> dict[str, float]:
    """The blog's program (seed.train) against the general train on BLOG_SPEC, per epoch,
    same data, same initial weights, same lr: what the generality costs at the blog's size.
    The two run in turn, and the ratio is the median of the per-pair ratios, so a burst
    of load on a shared machine slows both sides of a pair alike."""
    from handwritten import seed
    from handwritten.layers import compile_network, network_params

    x, y, *weights = seed.blog_problem(np.random.default_rng(0))
    params = seed.to_params(*weights)
    opt = hw.OptimizerSpec("sgd", 0.1)
    layers, layer_params = compile_network(seed.BLOG_SPEC), network_params(seed.BLOG_SPEC, params)
    runs = {"seed": lambda: seed.train(x, y, *weights, lr=0.1, epoch=epochs, verbose=False),
            "general": lambda: hw.train(seed.BLOG_SPEC, params, x, y, opt, epochs=epochs),
            "sequential": lambda: hw.train(layers, layer_params, x, y, opt, epochs=epochs)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for fn in runs.values():
        fn()                                       # warm-up
    for _ in range(repeats):                       # interleaved: both see the same load
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) / epochs)
    ratio = statistics.median(g / b for g, b in zip(times["general"], times["seed"]))
    layered = statistics.median(g / b for g, b in zip(times["sequential"], times["seed"]))
    return {"seed_ms": statistics.median(times["seed"]) * 1e3,
            "general_ms": statistics.median(times["general"]) * 1e3, "ratio": ratio,
            "sequential_ms": statistics.median(times["sequential"]) * 1e3,
            "sequential_ratio": layered}


HVP_TARGET = 3.0          # hvp / loss_and_grads at medium and large (Pearlmutter's constant)
PER_EXAMPLE_TARGET = 1.5  # per-example gradient norms / one gradient, large, batch 512


def second_order(repeats: int) -> list[dict[str, Any]]:
    """Per size and dtype: handwritten's hvp (R-operator) against its own loss_and_grads and
    against torch.autograd.functional.hvp in eager mode (tensors prepared once, the call
    alone timed); and per-example gradient norms against one gradient."""
    return [_second_order_row(size, dtype, repeats) for size in SIZES
            for dtype in ("float32", "float64")]


def _second_order_row(size: str, dtype: str, repeats: int) -> dict[str, Any]:
    import torch

    from handwritten import derivatives

    spec, params, x, y = problem(size, dtype)
    v = hw.init_params(spec, np.random.default_rng(1), "glorot_uniform", dtype)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    flat = tuple(torch.from_numpy(w) for layer in params for w in layer.values())
    tangent = tuple(torch.from_numpy(w) for layer in v for w in layer.values())

    def torch_loss(*f: torch.Tensor) -> torch.Tensor:
        a = tx
        for i in range(0, len(f), 2):
            a = torch.sigmoid(a @ f[i] + f[i + 1])
        return ((a - ty) ** 2 / 2).mean()        # the bench's half_mse, "mean"

    grad = timed(lambda: hw.loss_and_grads(spec, params, x, y), repeats)
    hvp = timed(lambda: derivatives.hvp(spec, params, x, y, v), repeats)
    torch_hvp = timed(lambda: torch.autograd.functional.hvp(torch_loss, flat, tangent), repeats)
    norms = timed(lambda: derivatives.per_example_grad_norms(spec, params, x, y), repeats)
    return {"size": size, "dtype": dtype, "grad_ms": grad * 1e3, "hvp_ms": hvp * 1e3,
            "torch_hvp_ms": torch_hvp * 1e3, "norms_ms": norms * 1e3, "hvp/grad": hvp / grad,
            "hvp/torch": hvp / torch_hvp, "norms/grad": norms / grad}


BLOCKS_TARGET = 1.10      # the target for a train step


def blocks_row(repeats: int, steps: int = 30) -> dict[str, Any]:
    """The large network with batch norm on every hidden layer: what one more training step
    costs (training mode: batch statistics, the running statistics' update, sgd) in
    handwritten against torch eager (F.batch_norm through autograd, torch.optim) and JAX
    (jitted step, optax), float32 (``per_step``, as step_times)."""
    sizes, batch = SIZES["large"]
    spec = hw.NetworkSpec(sizes, ("sigmoid",) * (len(sizes) - 1), "half_mse", "mean",
                          norms=("batch",) * (len(sizes) - 2))
    rng = np.random.default_rng(0)
    params = hw.init_params(spec, rng, "glorot_uniform", "float32")
    x = rng.normal(size=(batch, sizes[0])).astype("float32")
    y = rng.uniform(size=(batch, sizes[-1])).astype("float32")
    out = per_step(spec, params, x, y, steps, repeats)
    return {"ms": {k: None if v is None else v * 1e3 for k, v in out.items()},
            "hw/torch": ratio(out["handwritten"], out["torch"]),
            "hw/jax": ratio(out["handwritten"], out["jax"])}


CONV_TARGETS = {"digits CNN": 1.0, "LeNet-5": 1.5}
"""The issue's targets for a convolutional train step, handwritten/torch."""


def conv_networks() -> dict[str, tuple[hw.Sequential, int]]:
    """The digits CNN (bpnet.datasets.DIGITS_CNN) and a LeNet-5-sized network on 28 x 28
    inputs, each with its batch (128)."""
    from bpnet.datasets import DIGITS_CNN
    from handwritten.layers import Activation, Conv2d, Dense, Flatten, MaxPool2d, Sequential

    lenet = Sequential([Conv2d(1, 6, 5, padding=2), Activation("relu"), MaxPool2d(2),
                        Conv2d(6, 16, 5), Activation("relu"), MaxPool2d(2), Flatten(),
                        Dense(400, 120), Activation("relu"), Dense(120, 84),
                        Activation("relu"), Dense(84, 10), Activation("softmax")],
                       "softmax_cross_entropy", in_shape=(1, 28, 28))
    return {"digits CNN": (DIGITS_CNN, 128), "LeNet-5": (lenet, 128)}


def conv_rows(repeats: int) -> list[dict[str, Any]]:
    """One sgd train step of each convolutional network (float32, ``per_step``) in the three
    implementations; the share of handwritten's step in its convolutions' GEMMs (the
    columns' products forward and backward, timed alone at the step's shapes), and the
    memory of the im2col columns (their bytes, against the input's)."""
    import reference_torch
    from handwritten.layers import Conv1d, Conv2d, fold

    rows = []
    for name, (seq, batch) in conv_networks().items():
        rng = np.random.default_rng(0)
        params = hw.init_params(seq, rng, "he_normal", "float32")
        x = rng.normal(size=(batch, *seq.in_shapes[0])).astype("float32")
        y = rng.integers(0, seq.n_out, batch)
        steps = {"digits CNN": 100, "LeNet-5": 20}[name]
        out = per_step(seq, params, x, y, steps, repeats)
        _, caches = fold.forward(seq, params, x)
        gemms, columns, inputs = [], 0, 0
        for i, (_, layer) in enumerate(seq.nodes):
            if not isinstance(layer, (Conv1d, Conv2d)):
                continue
            cols, w, z = caches[i]["cols"], params[i]["W"], caches[i]["z"]
            matrix, d = layer._matrix(w), layer._outputs(z)
            columns += cols.nbytes
            inputs += caches[i]["h"].nbytes
            gemms += [lambda m=matrix, c=cols: m @ c,                       # forward
                      lambda d=d, c=cols: c @ d.transpose(0, 2, 1),         # d_W^T
                      lambda m=matrix, d=d: m.transpose(0, 2, 1) @ d]       # d_cols
        gemm = timed(lambda gemms=gemms: [g() for g in gemms], 5 * repeats)
        opt = hw.OptimizerSpec("sgd", 0.01)
        faults = {}
        for impl in (hw, reference_torch):
            def run(impl: Any = impl, seq: hw.Sequential = seq, params: hw.Params = params,
                    x: np.ndarray = x, y: np.ndarray = y, steps: int = steps,
                    opt: hw.OptimizerSpec = opt) -> None:
                impl.train(seq, params, x, y, opt, epochs=steps)
            faults[impl.__name__] = page_faults(run, steps)
        hw_step = out["handwritten"]
        rows.append({"network": name, "batch": batch,
                     "ms": {k: None if v is None else v * 1e3 for k, v in out.items()},
                     "hw/torch": ratio(hw_step, out["torch"]),
                     "hw/jax": ratio(hw_step, out["jax"]),
                     "gemm_share": None if hw_step is None else min(1.0, gemm / hw_step),
                     "columns_MiB": columns / 2**20, "inputs_MiB": inputs / 2**20,
                     "faults": faults["handwritten"], "torch_faults": faults["reference_torch"],
                     "target": CONV_TARGETS[name]})
    return rows


def page_faults(run: Callable[[], Any], steps: int) -> dict[str, float]:
    """Minor page faults per step of ``run()`` (``steps`` steps, after one warm-up run),
    and the kernel's CPU time per step in ms: memory the C library gave back to the
    system between steps and touches again (resource.getrusage, Linux and macOS)."""
    import resource

    run()
    before = resource.getrusage(resource.RUSAGE_SELF)
    run()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"per_step": (after.ru_minflt - before.ru_minflt) / steps,
            "sys_ms": (after.ru_stime - before.ru_stime) / steps * 1e3}


def memory_peak() -> dict[str, float]:
    """Peak extra memory NumPy allocates in one handwritten training step at the large size
    (float32): the very calls train() makes per step -- forward, loss, backward without
    kept deltas, the sgd step written into the (private) params -- measured by tracemalloc
    from a state where only the params exist."""
    from handwritten.network import backward, forward, loss_value

    spec, params, x, y = problem("large", "float32")
    opt = hw.OptimizerSpec("sgd", 0.01)
    state = hw.init_state(opt, params)

    def one_step() -> None:
        _, cache = forward(spec, params, x)
        loss_value(spec, params, cache, y)
        grads, _ = backward(spec, params, x, y, cache, keep_deltas=False)
        del cache
        updates, _ = hw.update(opt, grads, state, params)
        hw.apply_updates(params, updates, in_place=True)

    one_step()
    tracemalloc.start()
    one_step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    batch = x.shape[0]
    cache = sum(2 * batch * n for n in spec.layer_sizes[1:]) * x.itemsize       # every z and a
    grads = sum(p["W"].nbytes + p["b"].nbytes for p in params)
    return {"peak_MiB": peak / 2**20, "cache_MiB": cache / 2**20, "grads_MiB": grads / 2**20,
            "budget_MiB": (cache + grads) / 2**20}


def cross_check_rate(n: int) -> dict[str, Any]:
    """Cross-checks per second over new random architectures: loss, grads and the full trace
    of handwritten against reference_torch and JAX, compared with the suite's tolerances.

    JAX runs through reference_jax.bucketed (one compiled program per shape bucket); its
    compilation is paid once, on warm-up architectures, and reported separately.  The plain
    reference_jax, which compiles per architecture, is measured too for comparison."""
    import reference_jax
    import reference_torch
    from reference_jax import bucketed

    def check(p: Problem, jax_impl: Any) -> bool:
        implementations = {"handwritten": hw, "reference_torch": reference_torch,
                           "reference_jax": jax_impl}
        return cross_check(p.spec, p.params, p.x, p.y, implementations).ok

    start = time.perf_counter()
    for p in random_problems(12, seed=1):           # warm-up: compiles every bucket
        check(p, bucketed)
    warmup = time.perf_counter() - start
    problems = random_problems(n, seed=2)
    start = time.perf_counter()
    failures = sum(not check(p, bucketed) for p in problems)
    seconds = time.perf_counter() - start
    plain = random_problems(max(4, n // 10), seed=3)
    start = time.perf_counter()
    plain_failures = sum(not check(p, reference_jax) for p in plain)
    plain_seconds = time.perf_counter() - start
    return {"architectures": n, "seconds": seconds, "per_second": n / seconds,
            "failures": failures + plain_failures, "warmup_seconds": warmup,
            "plain_per_second": len(plain) / plain_seconds}


def step_target(r: dict[str, Any]) -> str:
    """A step row's targets and whether they were met."""
    target = ""
    if r["target"]:
        bound, words = r["target"]
        target = f"{words}: {met(r['hw/torch'], bound)}"
    if r["size"] == "large":
        share = r["gemm_share"]
        share_ok = ("not measured" if share is None
                    else "met" if share >= GEMM_SHARE_TARGET else "MISSED")
        target += f"; GEMM share >= 85%: {share_ok}"
    return target


def second_order_targets(r: dict[str, Any]) -> list[str]:
    """A second-order row's targets and whether they were met."""
    targets = [f"hvp faster than torch: {'met' if r['hvp/torch'] < 1 else 'MISSED'}"]
    if r["size"] != "blog":
        targets.append(f"hvp <= {HVP_TARGET:g}x gradient: "
                       f"{'met' if r['hvp/grad'] <= HVP_TARGET else 'MISSED'}")
    if r["size"] == "large":
        targets.append(f"norms <= {PER_EXAMPLE_TARGET:g}x gradient: "
                       f"{'met' if r['norms/grad'] <= PER_EXAMPLE_TARGET else 'MISSED'}")
    return targets


def conv_line(r: dict[str, Any]) -> str:
    """One convolutional network's row, as the text and the docs print it."""
    share = "-" if r["gemm_share"] is None else f"{100 * r['gemm_share']:.0f}%"
    return (f"{r['network']}, batch {r['batch']}, float32, one train step (sgd): handwritten "
            f"{_ms(r['ms']['handwritten'])}, torch {_ms(r['ms']['torch'])}, JAX "
            f"{_ms(r['ms']['jax'])}; hw/torch {_x(r['hw/torch'])} (target ≤ "
            f"{r['target']:.2f}: {met(r['hw/torch'], r['target'])}); the convolutions' GEMMs "
            f"{share} of the step; im2col columns {r['columns_MiB']:.1f} MiB for inputs of "
            f"{r['inputs_MiB']:.1f} MiB{_faults(r)}")


def _faults(r: dict[str, Any]) -> str:
    """The page faults of a conv row (records from before they were measured: none)."""
    if "faults" not in r:
        return ""
    hw_f, torch_f = r["faults"], r["torch_faults"]
    return (f"; page faults per step {hw_f['per_step']:.0f} (kernel time "
            f"{hw_f['sys_ms']:.2f} ms), torch's {torch_f['per_step']:.0f} "
            f"({torch_f['sys_ms']:.2f} ms)")


def _ms(value: float | None) -> str:
    return "noisy" if value is None else f"{value:.3g} ms"


def _x(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown_tables(rec: dict[str, Any]) -> str:
    """A record of ``--record`` as the docs show it (docs/hooks.py): its provenance, the
    step table, the second-order table, then the batch-norm step, the blog program against
    the general train, the memory and the verification throughput."""
    sizes = {name: f"{sizes}, batch {batch}" for name, (sizes, batch) in SIZES.items()}
    peaks = rec["gemm_peak_gflops"]
    lines = [record.provenance(rec),
             "GEMM peak (2048² matmul): " + ", ".join(
                 f"{d} NumPy {p['numpy']:.0f} / torch {p['torch']:.0f} GFLOP/s"
                 for d, p in peaks.items()) + ".", "",
             "| size | dtype | handwritten | torch (eager) | JAX (jit) | hw/torch | hw/jax | "
             "GEMM share | target |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rec["steps"]:
        share = None if r["gemm_share"] is None else 100 * r["gemm_share"]
        lines.append(f"| {sizes[r['size']]} | {r['dtype']} | {_ms(r['ms']['handwritten'])} | "
                     f"{_ms(r['ms']['torch'])} | {_ms(r['ms']['jax'])} | {_x(r['hw/torch'])} | "
                     f"{_x(r['hw/jax'])} | {_x(share, 0)}{'' if share is None else '%'} | "
                     f"{step_target(r) or '—'} |")
    lines += ["", "Second order: the hvp by the R-operator against one gradient and against "
              "torch.autograd.functional.hvp; per-example gradient norms against one gradient.",
              "", "| size | dtype | gradient | hvp | torch hvp | hvp/gradient | hvp/torch | "
              "norms/gradient | targets |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rec["second_order"]:
        lines.append(f"| {sizes[r['size']]} | {r['dtype']} | {_ms(r['grad_ms'])} | "
                     f"{_ms(r['hvp_ms'])} | {_ms(r['torch_hvp_ms'])} | {_x(r['hvp/grad'])} | "
                     f"{_x(r['hvp/torch'])} | {_x(r['norms/grad'])} | "
                     f"{'; '.join(second_order_targets(r))} |")
    blocks, blog, memory, rate = rec["blocks"], rec["seed_vs_general"], rec["memory"], \
        rec["cross_checks"]
    lines += ["", f"- Large network, batch norm on every hidden layer, float32, one train step "
              f"(sgd): handwritten {_ms(blocks['ms']['handwritten'])}, torch "
              f"{_ms(blocks['ms']['torch'])}, JAX {_ms(blocks['ms']['jax'])}; hw/torch "
              f"{_x(blocks['hw/torch'])} (target ≤ {BLOCKS_TARGET:.2f}: "
              f"{met(blocks['hw/torch'], BLOCKS_TARGET)}).",
              f"- The blog network, per epoch: `seed.train` {blog['seed_ms']:.4f} ms, the general "
              f"`train` on BLOG_SPEC {blog['general_ms']:.4f} ms = {blog['ratio']:.2f}x "
              f"(target ≤ 1.25x: {'met' if blog['ratio'] <= 1.25 else 'MISSED'})"
              + (f"; through its compiled Sequential (the layers' fold) "
                 f"{blog['sequential_ms']:.4f} ms = {blog['sequential_ratio']:.2f}x"
                 if "sequential_ms" in blog else "") + ".",
              f"- Memory of a large float32 step: peak {memory['peak_MiB']:.1f} MiB allocated by "
              f"NumPy; budget (activation cache {memory['cache_MiB']:.1f} + gradients "
              f"{memory['grads_MiB']:.1f}) {memory['budget_MiB']:.1f} MiB: "
              f"{'met' if memory['peak_MiB'] <= memory['budget_MiB'] else 'MISSED'}.",
              f"- Verification: {rate['per_second']:.1f} cross-checks/s over "
              f"{rate['architectures']} new random architectures ({rate['failures']} failures; "
              f"target ≥ 20/s: {'met' if rate['per_second'] >= 20 else 'MISSED'}); the plain "
              f"per-architecture reference_jax manages {rate['plain_per_second']:.1f}/s."]
    lines += [f"- {conv_line(r)}." for r in rec.get("conv", [])]   # records before issue 25
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--record", metavar="FILE",
                        help="also write the JSON record with its date and machine there "
                             "(docs/measured/bench.json is the one the docs show)")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    # every row in the same allocator state, whatever ran before it: without this, the
    # conv rows' page faults depended on whether the large networks had run first
    kept = keep_freed_memory()
    implementations.pin_xla_numerics()
    show = progress("bench.py", 2 + 2 * len(SIZES) + 6)     # one line as each case starts

    show("environment")
    env = environment(kept)
    show("GEMM peak")
    peaks = {dtype: gemm_peak(dtype) for dtype in ("float32", "float64")}
    rows = []
    for size in SIZES:
        for dtype in ("float32", "float64"):
            show(f"step times, {size} {dtype}")
            sizes, batch = SIZES[size]
            t = step_times(size, dtype, repeats)
            gemm = gemm_time(sizes, batch, dtype, repeats)
            flops = step_flops(sizes, batch)
            hw_step = t["handwritten"]
            rows.append({"size": size, "dtype": dtype,
                         "ms": {k: None if v is None else v * 1e3 for k, v in t.items()},
                         "hw/torch": ratio(hw_step, t["torch"]),
                         "hw/jax": ratio(hw_step, t["jax"]),
                         "gflops": None if hw_step is None else flops / hw_step / 1e9,
                         "gemm_share": None if hw_step is None else min(1.0, gemm / hw_step),
                         "target": TARGETS.get((size, dtype))})
    show("second order")
    second = second_order(repeats)
    show("batch norm step")
    blocks = blocks_row(repeats)
    show("convolutional networks")
    convs = conv_rows(repeats)
    show("seed.train against the general train")
    # a pair of runs takes ~0.1 s: three times the other rows' rounds, for a steadier median
    # (over 7 pairs the ratio of two identical trainings still spread by +-0.03)
    blog = seed_vs_general(3 * repeats)
    show("memory")
    memory = memory_peak()
    show("cross-checks per second")
    rate = cross_check_rate(24 if args.quick else 60)
    results = {"environment": env, "gemm_peak_gflops": peaks, "steps": rows,
               "seed_vs_general": blog, "memory": memory, "second_order": second,
               "blocks": blocks, "cross_checks": rate, "conv": convs}
    if args.record:
        record.write(args.record, "bench", **results)
    if args.json:
        print(json.dumps(results, default=str))
        return 0
    print("environment:")
    for key, value in env.items():
        print(f"  {key}: {value}")
    print("GEMM peak (2048^2 matmul), GFLOP/s: " + ", ".join(
        f"{d} numpy {p['numpy']:.0f} / torch {p['torch']:.0f}" for d, p in peaks.items()))
    print()
    header = (f"{'size':7s} {'dtype':8s} {'handwritten':>12s} {'torch':>10s} {'jax':>10s} "
              f"{'hw/torch':>9s} {'hw/jax':>7s} {'GFLOP/s':>8s} {'% peak':>7s} "
              f"{'GEMM share':>10s}  target")
    print(header)
    print("-" * len(header))
    for r in rows:
        times = r["ms"]
        peak = peaks[r["dtype"]]["numpy"]
        target = step_target(r)
        print(f"{r['size']:7s} {r['dtype']:8s} {ms_cell(times['handwritten'], 12)} "
              f"{ms_cell(times['torch'], 10)} {ms_cell(times['jax'], 10)} "
              f"{cell(r['hw/torch'], 9, 2)} {cell(r['hw/jax'], 7, 2)} {cell(r['gflops'], 8, 1)} "
              f"{cell(None if r['gflops'] is None else 100 * r['gflops'] / peak, 6, 0)}% "
              f"{cell(None if r['gemm_share'] is None else 100 * r['gemm_share'], 9, 0)}%"
              f"  {target}")
    print()
    header = (f"{'size':7s} {'dtype':8s} {'gradient':>10s} {'hvp':>10s} {'torch hvp':>10s} "
              f"{'hvp/grad':>9s} {'hvp/torch':>9s} {'norms':>10s} {'norms/grad':>10s}  target")
    print("second order (hvp by the R-operator; per-example gradient norms)")
    print(header)
    print("-" * len(header))
    for r in second:
        targets = second_order_targets(r)
        print(f"{r['size']:7s} {r['dtype']:8s} {r['grad_ms']:8.3f}ms {r['hvp_ms']:8.3f}ms "
              f"{r['torch_hvp_ms']:8.3f}ms {r['hvp/grad']:9.2f} {r['hvp/torch']:9.2f} "
              f"{r['norms_ms']:8.3f}ms {r['norms/grad']:10.2f}  {'; '.join(targets)}")
    print()
    block_ms = {k: "noisy" if v is None else f"{v:.2f} ms" for k, v in blocks["ms"].items()}
    block_ratio = blocks["hw/torch"]
    print(f"large network, batch norm on every hidden layer, float32, one train step (sgd): "
          f"handwritten {block_ms['handwritten']}, torch {block_ms['torch']}, "
          f"jax {block_ms['jax']}; hw/torch "
          f"{'-' if block_ratio is None else f'{block_ratio:.2f}'} (target <= "
          f"{BLOCKS_TARGET:.2f}: {met(block_ratio, BLOCKS_TARGET)})")
    print()
    for r in convs:
        print(conv_line(r))
    print()
    print(f"blog network, per epoch: seed.train {blog['seed_ms']:.4f} ms, general train on "
          f"BLOG_SPEC {blog['general_ms']:.4f} ms = {blog['ratio']:.2f}x; target <= 1.25x: "
          f"{'met' if blog['ratio'] <= 1.25 else 'MISSED'}; through its compiled Sequential "
          f"{blog['sequential_ms']:.4f} ms = {blog['sequential_ratio']:.2f}x")
    print(f"memory, large float32 step: peak {memory['peak_MiB']:.1f} MiB allocated by NumPy; "
          f"budget (activation cache {memory['cache_MiB']:.1f} + gradients "
          f"{memory['grads_MiB']:.1f}) {memory['budget_MiB']:.1f} MiB: "
          f"{'met' if memory['peak_MiB'] <= memory['budget_MiB'] else 'MISSED'}")
    print(f"verification: {rate['per_second']:.1f} cross-checks/s over {rate['architectures']} new "
          f"random architectures ({rate['failures']} failures); target >= 20/s: "
          f"{'met' if rate['per_second'] >= 20 else 'MISSED'}")
    print(f"  (JAX through reference_jax.bucketed, compiled once in {rate['warmup_seconds']:.1f} s "
          f"of warm-up; the plain per-architecture reference_jax manages "
          f"{rate['plain_per_second']:.1f}/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
