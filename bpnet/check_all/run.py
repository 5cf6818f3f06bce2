"""The whole run: every group's cases in the order they run, and ``check_all``, which runs
them (a case that raises is a failing entry, and the run goes on)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import ModuleType

from bpnet.check_all.blocks import block_cases, training_cases
from bpnet.check_all.blog import blog_cases
from bpnet.check_all.conv import conv_cases
from bpnet.check_all.derivatives import derivative_cases
from bpnet.check_all.extremes import extreme_cases
from bpnet.check_all.init_schemes import init_cases
from bpnet.check_all.layers import layer_cases
from bpnet.check_all.networks import problem_cases
from bpnet.check_all.optimizers import optimizer_cases
from bpnet.check_all.report import Case, Entry, RaisedInCase, raised_report
from bpnet.check_all.schedules import schedule_cases
from bpnet.check_all.second_order import second_order_cases


def cases(impls: Mapping[str, ModuleType], n_random: int = 12) -> list[Case]:
    """Every case of --all, in the order they run: the derivation's building blocks first,
    whole networks after them, training runs last -- so the first failure printed is the
    most local one."""
    return [*problem_cases(impls, n_random), *extreme_cases(impls), *optimizer_cases(impls),
            *schedule_cases(impls), *derivative_cases(impls), *second_order_cases(impls),
            *block_cases(impls), *layer_cases(impls), *conv_cases(impls), *init_cases(impls),
            *blog_cases(impls),
            *training_cases(impls)]


def check_all(impls: Mapping[str, ModuleType], *, n_random: int = 12,
              on_entry: Callable[[Entry], None] | None = None,
              only: str | None = None) -> list[Entry]:
    """Run every case (or those of the group, or the entry, named ``only``); a case that
    raises is a failing entry (``raised_report``), and the run goes on."""
    entries = []
    for group, name, case, run in cases(impls, n_random):
        if only and only not in (group, group.split(" ")[0], name, name.split(" ")[0]):
            continue
        start = time.perf_counter()
        try:
            report = run()
        except RaisedInCase as raised:
            report = raised_report(raised.error, impls, raised.report)
        except Exception as error:              # a mistake that breaks a shape, say
            report = raised_report(error, impls)
        entry = Entry(group, name, case, report, time.perf_counter() - start)
        entries.append(entry)
        if on_entry is not None:
            on_entry(entry)
    return entries
