"""``bpnet check --all``: everything registered in handwritten, through every implementation.

One command that a student runs after editing handwritten/: every activation (in
ordinary and saturated units), every loss under every reduction, weight decay, every
activation and loss at the extremes (kinks, saturation, huge logits, exact 0/1, float32
and float64) against the float80 oracle of ``bpnet.oracle``,
hand-picked and randomly drawn networks (the suite's own generator, non-zero
biases), every optimizer (one step from a random state, then a few steps of its
own, every state buffer and update compared), every initialisation scheme (against
torch.nn.init and jax.nn.initializers, statistically), and the blog's seed.py
functions.  Each entry is a ``CheckReport``; the first failing entry names the
quantity, its equation and the function of handwritten that computes it.

Before anything runs, every registered name must have a counterpart in each
reference: ``registry_gaps`` says in one line which does not.

One module per group, in the order ``run.cases`` runs them: ``networks`` (activation, loss,
weight decay, network), ``extremes``, ``optimizers`` (optimizer, clipping), ``schedules``,
``derivatives``, ``second_order``, ``blocks``, ``layers``, ``conv``, ``init_schemes``,
``blog`` (and the blocks' training run last); beside them ``report`` (what every group
shares), ``registries`` (the registry-gap message), ``run`` (the whole run) and ``parse``
(``--replay`` and ``--network``).  Every name is importable from ``bpnet.check_all``.
"""

from bpnet.check_all.blocks import (
    BLOCK_CASES,
    BLOCK_TRAINING_BATCH,
    BLOCK_TRAINING_EPOCHS,
    block_cases,
    block_training_report,
    blocks_report,
    evaluation_report,
    running_statistics_report,
    training_cases,
)
from bpnet.check_all.blog import blog_cases
from bpnet.check_all.conv import CONV_CASES, conv_cases
from bpnet.check_all.derivatives import DERIVATIVE_CASES, derivative_cases, derivatives_report
from bpnet.check_all.extremes import ORACLE_COLUMN, extreme_cases
from bpnet.check_all.init_schemes import INIT_SE, INIT_SHAPE, init_cases
from bpnet.check_all.layers import (
    LAYER_CASES,
    layer_cases,
    layers_derivatives_report,
    layers_evaluation_report,
    layers_report,
    layers_state_report,
)
from bpnet.check_all.networks import PARAMETRISED, SATURATED_SCALE, problem_cases
from bpnet.check_all.optimizers import (
    OPTIMIZER_STEPS,
    RANDOM_STEPS,
    SQUARES,
    not_supported,
    optimizer_cases,
    optimizer_constants,
    optimizer_report,
    random_state,
    supporting,
    unsupported_by,
)
from bpnet.check_all.parse import REPLAY_LINE, parse_network, parse_problem
from bpnet.check_all.registries import REGISTRIES, _registry, _where, registry_gaps
from bpnet.check_all.report import BATCH, Case, Entry, RaisedInCase, raised_report
from bpnet.check_all.run import cases, check_all
from bpnet.check_all.schedules import (
    SCHEDULE_CASES,
    SCHEDULE_STEPS,
    schedule_cases,
    schedule_report,
)
from bpnet.check_all.second_order import (
    R_EQUATIONS,
    SECOND_ORDER_CASES,
    second_order_cases,
    second_order_report,
)
from bpnet.equations import BLOCK_EQUATIONS

__all__ = [
    "BATCH",
    "BLOCK_CASES",
    "BLOCK_EQUATIONS",
    "BLOCK_TRAINING_BATCH",
    "BLOCK_TRAINING_EPOCHS",
    "CONV_CASES",
    "DERIVATIVE_CASES",
    "INIT_SE",
    "INIT_SHAPE",
    "LAYER_CASES",
    "OPTIMIZER_STEPS",
    "ORACLE_COLUMN",
    "PARAMETRISED",
    "RANDOM_STEPS",
    "REGISTRIES",
    "REPLAY_LINE",
    "R_EQUATIONS",
    "SATURATED_SCALE",
    "SCHEDULE_CASES",
    "SCHEDULE_STEPS",
    "SECOND_ORDER_CASES",
    "SQUARES",
    "Case",
    "Entry",
    "RaisedInCase",
    "_registry",
    "_where",
    "block_cases",
    "block_training_report",
    "blocks_report",
    "blog_cases",
    "cases",
    "check_all",
    "conv_cases",
    "derivative_cases",
    "derivatives_report",
    "evaluation_report",
    "extreme_cases",
    "init_cases",
    "layer_cases",
    "layers_derivatives_report",
    "layers_evaluation_report",
    "layers_report",
    "layers_state_report",
    "not_supported",
    "optimizer_cases",
    "optimizer_constants",
    "optimizer_report",
    "parse_network",
    "parse_problem",
    "problem_cases",
    "raised_report",
    "random_state",
    "registry_gaps",
    "running_statistics_report",
    "schedule_cases",
    "schedule_report",
    "second_order_cases",
    "second_order_report",
    "supporting",
    "training_cases",
    "unsupported_by",
]
