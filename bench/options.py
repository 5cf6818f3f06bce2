"""The largest float64 difference per optimizer option, handwritten against torch and optax.

    .venv/bin/python bench/options.py            # ~1-2 minutes
    .venv/bin/python bench/options.py --json

For every optimizer option (and every schedule and clipping mode), a set of optimizer
specs that use it -- every other option drawn as the suite draws them -- each run two
ways on random networks of the suite's generator:

- one step from a random state (the one-step property): the largest relative
  difference of the new params and of every buffer, over the whole array's scale;
- a free-running float64 trajectory (20 epochs of mini-batches): the largest
  normwise param divergence over the run, and the envelope the suite allows there.

optax is left out, with the reason, where reference_jax.unsupported names one.
Nothing here is a test: the suite asserts these within its tolerances; this prints them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from progress_lines import progress  # bench/progress_lines.py, beside this script

import handwritten as hw
from bpnet.check_all import random_state
from bpnet.compare import envelope, param_divergence, twin_run
from bpnet.problems import GeneratorChooser, draw_optimizer, random_problems
from handwritten.spec import FLAGS, OPTIMIZER_DEFAULTS

CASES_PER_OPTION = 12


def _with(option: str, rng: np.random.Generator) -> Iterator[hw.OptimizerSpec]:
    """CASES_PER_OPTION drawn specs that all use ``option`` ("adam amsgrad", "schedule
    cosine", "clip_norm", ...)."""
    name, _, key = option.partition(" ")
    for _ in range(CASES_PER_OPTION):
        if name in ("schedule", "clipping"):
            opt = draw_optimizer(GeneratorChooser(rng))
            while (name == "schedule" and (opt.schedule is None or opt.schedule.name != key)) \
                    or (name == "clipping" and getattr(opt, key) is None):
                opt = draw_optimizer(GeneratorChooser(rng))
            yield opt
            continue
        opt = draw_optimizer(GeneratorChooser(rng), name)
        value: Any = True if key in FLAGS else (
            0.0 if (name, key) == ("adagrad", "eps")      # where optax's adagrad is torch's
            else float(rng.uniform(0.05, 0.9)) if key else None)
        if key:
            opt = dataclasses.replace(opt, hyperparams={**opt.hyperparams, key: value})
        yield opt


def options() -> list[str]:
    """Every optimizer with every option it has, then every schedule and clipping mode."""
    names = []
    for name, defaults in sorted(OPTIMIZER_DEFAULTS.items()):
        names.append(name)
        names += [f"{name} {key}" for key in defaults
                  if key not in ("beta1", "beta2", "eps", "alpha") or name == "adagrad"]
    names += [f"schedule {s}" for s in ("constant", "step", "multistep", "exponential",
                                        "cosine", "onecycle")]
    return [*names, "clipping clip_norm", "clipping clip_value"]


def measure(option: str, references: dict[str, Any], seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    problems = random_problems(CASES_PER_OPTION, seed=seed, max_depth=3, max_width=8,
                               max_batch=12, exclude_losses=("bce",))
    worst: dict[str, dict[str, float]] = {name: {"step": 0.0, "trajectory": 0.0,
                                                 "allowed": 0.0, "cases": 0}
                                          for name in references}
    skipped: dict[str, str] = {}
    for opt, p in zip(_with(option, rng), problems):
        _, grads = hw.loss_and_grads(p.spec, p.params, p.x, p.y)
        state = random_state(opt, p.params, int(rng.integers(0, 6)), rng)
        ours, our_state = hw.step(opt, p.params, grads, state)
        epochs, size = 20, max(1, p.batch // 2)
        run_opt = opt                       # as the trajectory property: ascent, small steps
        if opt.hyperparams["maximize"]:
            run_opt = dataclasses.replace(opt, lr=opt.lr / 100)
        schedule = hw.Schedule(p.batch, epochs, size, None, 5)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", hw.TrainingWarning)
                warnings.simplefilter("error", RuntimeWarning)    # an overflow: ran away
                run = hw.train(p.spec, p.params, p.x, p.y, run_opt, epochs=epochs,
                               batch_size=size, record_every=5)
                _, twin = twin_run(p.spec, p.params, p.x, p.y, run_opt, schedule, p.seed)
        except (FloatingPointError, RuntimeWarning):
            run = None        # maximize ran away (as the property, not compared): one step only
        allowed = None if run is None else envelope(run.recorded_steps, run.params, twin)
        for name, ref in references.items():
            reason = ref.unsupported(opt, max(state["t"] + 1, schedule.n_steps))
            if reason is not None:
                skipped[name] = reason
                continue
            theirs, their_state = ref.step(opt, p.params, grads, state)
            worst[name]["cases"] += 1
            for mine, other in [(ours, theirs)] + [(our_state[k], their_state[k])
                                                   for k in our_state if k != "t"]:
                worst[name]["step"] = max(worst[name]["step"], param_divergence(mine, other))
            if run is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", hw.TrainingWarning)
                    other_run = ref.train(p.spec, p.params, p.x, p.y, run_opt, epochs=epochs,
                                          batch_size=size, record_every=5)
                d = [param_divergence(a, b) for a, b in zip(run.params, other_run.params)]
                k = int(np.argmax(d))
                if d[k] >= worst[name]["trajectory"]:
                    worst[name]["trajectory"], worst[name]["allowed"] = d[k], float(allowed[k])
    return {"worst": worst, "skipped": skipped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", help="options whose name contains this text")
    args = parser.parse_args()
    from bpnet import implementations

    references = {name: implementations.load(name) for name in implementations.NAMES[1:]}
    results = {}
    show: Callable[[str], None] = (
        (lambda line: None) if args.json else lambda line: print(line, flush=True))
    show(f"{'option':36s} {'one step: torch':>16s} {'optax':>9s}   "
         f"{'trajectory: torch':>18s} {'optax':>9s}  (normwise; envelope)  optax cases")
    chosen = [(seed, option) for seed, option in enumerate(options())
              if not args.only or args.only in option]
    starting = progress("options.py", len(chosen))
    for seed, option in chosen:
        starting(option)
        result = measure(option, references, seed)
        results[option] = result
        w = result["worst"]

        def cell(name: str, key: str, result: dict[str, Any] = result) -> str:
            if not result["worst"][name]["cases"]:
                return "-"
            return f"{result['worst'][name][key]:.1e}"
        traj = "  ".join(f"{cell(n, 'trajectory'):>9s} ({w[n]['allowed']:.0e})"
                         for n in references)
        show(f"{option:36s} {cell('reference_torch', 'step'):>16s} "
             f"{cell('reference_jax', 'step'):>9s}   {traj}  "
             f"{w['reference_jax']['cases']}/{CASES_PER_OPTION}")
    if args.json:
        print(json.dumps(results))
    else:
        reasons = {r for res in results.values() for r in res["skipped"].values()}
        print("\n'-': optax not run, because " + "; or ".join(sorted(
            {r.split(':')[0] if 'cosine' in r else r for r in reasons})))


if __name__ == "__main__":
    main()
