"""Classic derivation mistakes, each applied to a copy of handwritten/: the suite must catch all.

    python -m tests.mutations                  # every mutation: caught / missed by the suite
    python -m tests.mutations adam_no_bias_correction
    python -m tests.mutations --check-all      # the same, caught by `bpnet check --all`?
    python -m tests.mutations --check-all --planted
    python -m tests.mutations --generic 24 [--check-all]   # operator swaps, drawn (seeded)
    python -m tests.mutations --quick          # caught by what `make quick` runs for the file?

Each mutation is a textual patch of one line of handwritten/, anchored to the
function it targets ("optimizers.py:adam_update"): the patch must occur exactly once
in that function's source, wherever the function sits in the file, so edits
elsewhere leave it alone; when the function or the line is gone, the mutation says
so in one line (``applies``): the run skips it, and make test fails on it
(tests/test_mutations.py), so that a moved line is re-anchored here, never dropped.
The runner copies the project into a temporary directory, applies the patch there (the
working tree is never touched), and runs the property tests against the copy with the
derandomized ``ci`` profile, stopping at the first failure -- or, with --check-all,
``bpnet check --all``.  A mutation is caught when that run fails.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The property tests, fast ones first (pytest stops at the first failure).
PROPERTY_TESTS = [
    "tests/test_activations.py", "tests/test_losses.py", "tests/test_optimizers.py",
    "tests/test_schedules.py", "tests/test_derivatives.py", "tests/test_second_order.py",
    "tests/test_blocks_by_hand.py", "tests/test_blocks.py", "tests/test_blocks_training.py",
    "tests/test_layers.py", "tests/test_layer_references.py", "tests/test_layer_second_order.py",
    "tests/test_layer_training.py", "tests/test_conv.py", "tests/test_conv_references.py",
    "tests/test_network.py", "tests/test_training.py", "tests/test_seed.py",
    "tests/test_cross_framework.py", "tests/test_references.py",
    # last: ~30 s under the ci profile, and needed only by a mistake the others miss (one
    # that shows only at a kink, an overflow or an exact 0/1 probability)
    "tests/test_extremes.py",
]


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    where: str              # "file.py:function": the patch applies inside that function only
    old: str
    new: str
    planted: bool = False   # one of the student's mistakes of issue 14 (README, check --all)
    shown: tuple[str, ...] = ()   # what `bpnet check --all`'s first failure must print: the
                                  # quantity, the function (set for every planted one)

    @property
    def file(self) -> str:
        return self.where.split(":")[0]

    @property
    def function(self) -> str:
        return self.where.split(":")[1]

    def applies(self, source: str) -> str:
        """"" when the patch applies to this source of the file, else one line saying why not."""
        span = _function_span(source, self.function)
        if span is None:
            return (f"mutation {self.name} no longer applies: handwritten/{self.file} has no "
                    f"function {self.function}")
        count = source[span[0]:span[1]].count(self.old)
        if count != 1:
            return (f"mutation {self.name} no longer applies: {self.function} in "
                    f"handwritten/{self.file} contains {self.old.strip()!r} {count} times, "
                    "not once")
        return ""

    def apply(self, source: str) -> str:
        """The source with the patch applied inside the function (see ``applies``)."""
        reason = self.applies(source)
        if reason:
            raise ValueError(reason)
        start, end = _function_span(source, self.function)  # type: ignore[misc]
        return source[:start] + source[start:end].replace(self.old, self.new) + source[end:]


def _function_span(source: str, name: str) -> tuple[int, int] | None:
    """Character offsets of a top-level function's source, or of a method's ("Dense.backward":
    a layer's derivation), or None when it is not defined."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    lines = source.splitlines(keepends=True)
    body: list[ast.stmt] = tree.body
    owner, _, name = name.rpartition(".")
    if owner:
        classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == owner]
        if not classes:
            return None
        body = classes[0].body
    for node in body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            start = sum(len(line) for line in lines[:node.lineno - 1])
            end = sum(len(line) for line in lines[:node.end_lineno])
            return start, end
    return None


def r_shown(row: str, function: str, *more: str) -> tuple[str, ...]:
    """What check --all names first for a mistake in a layer's tangent or R-operator piece
    that no NetworkSpec group sees: the first wrong R-quantity of its layers or conv group's
    R-trace, by node path and case ("layer 1 R{x_hat}, layers case 1"), and the layer's
    method that forms it."""
    return (f"{row} (handwritten vs", function, *more)


# A NetworkSpec runs on the layers too, and check --all's NetworkSpec groups come first: a
# mistake in a layer the MLP uses (Dense, Activation, Residual) is named there first, by the
# NetworkSpec quantity it makes wrong.
TANGENT_SHOWN = ("output_dot (handwritten vs", "handwritten.derivatives.tangent_forward")
SKIP_SHOWN = ("layer 0 d_a (handwritten vs", "d_a0 = d_z1 @ W1.T + d_a1",
              "handwritten.network.backward")
R_BACKWARD = "handwritten.derivatives.r_backward"

MUTATIONS = [
    Mutation("dW_missing_transpose", "d_W = d_z.T @ a_prev: the transpose on the wrong factor",
             "layers/dense.py:Dense.backward", 'd_W = np.dot(cache["h"].T, d_z)',
             'd_W = np.dot(d_z.T, cache["h"])'),
    Mutation("sigmoid_grad_of_a", "sigmoid derivative evaluated at a instead of z",
             "activations.py:sigmoid_backward", "    d_z *= a\n    d_z *= d_a\n    return d_z",
             "    d_z = sigmoid(a) * (1 - sigmoid(a))\n    d_z *= d_a\n    return d_z"),
    Mutation("db_mean_not_sum", "bias gradient averaged, not summed, over the batch",
             "layers/dense.py:Dense.backward", '"b": d_z.sum(axis=0)', '"b": d_z.mean(axis=0)',
             planted=True,
             shown=('d_b', 'handwritten.network.backward', '= 1/batch x reference')),
    Mutation("half_mse_mean_over_batch_only", "mean reduction divides by batch, not batch*n_out",
             "losses.py:half_mse_grad", "d_a /= _count(a.size, reduction)",
             "d_a /= _count(a.shape[0], reduction)"),
    Mutation("half_mse_step_loss_unhalved", "a training step's loss (History.losses) "
             "without its 1/2", "losses.py:half_mse_value_and_grad", "half_square *= 0.5",
             "half_square *= 1.0"),
    Mutation("half_mse_step_grad_mean_over_batch_only", "a training step's mean gradient "
             "divided by batch, not batch*n_out", "losses.py:half_mse_value_and_grad",
             'r if reduction == "sum" else r / n)', 'r if reduction == "sum" else r / len(r))'),
    Mutation("mse_missing_factor_2", "d(a - y)**2 = (a - y), missing the 2",
             "losses.py:mse_grad", "return 2 * (a - y) / _count(a.size, reduction)",
             "return (a - y) / _count(a.size, reduction)"),
    Mutation("softmax_ce_sign", "softmax cross-entropy gradient y - a",
             "losses.py:softmax_cross_entropy_grad",
             "    return d_z / _count(z.shape[0], reduction)",
             "    return -d_z / _count(z.shape[0], reduction)"),
    Mutation("softmax_ce_plus_y", "softmax cross-entropy gradient a + y: one-hot targets hide "
             "it (the true class is computed apart), soft targets do not",
             "losses.py:softmax_cross_entropy_grad",
             "    d_z = a - y_dist\n", "    d_z = a + y_dist\n"),
    Mutation("bce_logits_wrong_count", "bce_with_logits mean divides by batch only",
             "losses.py:bce_with_logits_grad", "return d_z / _count(z.size, reduction)",
             "return d_z / _count(z.shape[0], reduction)"),
    Mutation("bce_grad_sign", "bce gradient (y - a) / (a (1 - a))",
             "losses.py:bce_grad", "d_a = (a - y) / (a * (1 - a)) / n\n",
             "d_a = (y - a) / (a * (1 - a)) / n\n"),
    Mutation("tanh_grad_1_minus_a", "tanh' = 1 - a instead of 1 - a**2",
             "activations.py:tanh_backward", "d_z = a * a\n", "d_z = a.copy()\n", planted=True,
             shown=('d_z', 'handwritten.activations.tanh_backward')),
    Mutation("softmax_backward_elementwise", "softmax backward as if elementwise, a (1 - a)",
             "activations.py:softmax_backward",
             "return a * (d_a - np.sum(d_a * a, axis=1, keepdims=True))",
             "return d_a * a * (1 - a)"),
    Mutation("leaky_relu_grad_no_slope", "leaky_relu backward drops the negative slope",
             "activations.py:leaky_relu_backward",
             "return np.where(z > 0, d_a, slope * d_a)",
             "return np.where(z > 0, d_a, 0 * d_a)"),
    Mutation("elu_grad_a", "elu' = a instead of a + alpha for z <= 0",
             "activations.py:elu_backward", "d_z = np.where(z > 0, 1, a + alpha)",
             "d_z = np.where(z > 0, 1, a)"),
    Mutation("gelu_grad_missing_product_term", "gelu' without the z 2 s (1 - s) du/dz term",
             "activations.py:gelu_backward", "return d_a * (s + second)", "return d_a * s"),
    Mutation("silu_grad_sigmoid_only", "silu' = sigmoid(z), forgetting the product rule",
             "activations.py:silu_backward",
             "return d_a * (s + a * one_minus_s)", "return d_a * s"),
    Mutation("softplus_grad_exp", "softplus' = exp(-a) instead of 1 - exp(-a)",
             "activations.py:softplus_backward",
             "return d_a * -np.expm1(-a)", "return d_a * np.exp(-a)"),
    Mutation("backward_layer_off_by_one", "backward uses the layer's own output as a_prev",
             "layers/dense.py:Dense.backward", 'd_W = np.dot(cache["h"].T, d_z)',
             'd_W = np.dot(cache["z"][:, :p["W"].shape[0]].T, d_z)'),
    Mutation("weight_decay_missing_from_grad", "L2 penalty in the loss but not in d_W",
             "layers/dense.py:Dense.backward", 'd_W += ctx.weight_decay * p["W"]',
             'd_W += 0 * p["W"]'),
    Mutation("weight_decay_loss_missing_half", "penalty lambda ||W||^2 with gradient lambda W",
             "layers/fold.py:_penalised", "loss = loss + seq.weight_decay / 2 * sum(",
             "loss = loss + seq.weight_decay * sum("),
    Mutation("adam_no_bias_correction", "Adam without bias correction of m",
             "optimizers.py:_adam", "step_size = lr / (1 - beta1**t)", "step_size = lr"),
    Mutation("adam_eps_inside_sqrt", "Adam with eps inside the square root",
             "optimizers.py:_adam", "(np.sqrt(v) / bias_correction2_sqrt + eps)",
             "(np.sqrt(v + eps) / bias_correction2_sqrt)"),
    Mutation("momentum_old_buffer", "momentum steps with the buffer before it is updated",
             "optimizers.py:momentum_update",
             "updates = tree_map(lambda b: -lr * b, b)",
             'updates = tree_map(lambda b: -lr * b, state["b"])'),
    Mutation("nesterov_old_buffer", "nesterov look-ahead with the old buffer",
             "optimizers.py:nesterov_update",
             "-lr * (g + mu * b), g, b)", '-lr * (g + mu * b), g, state["b"])'),
    Mutation("rmsprop_missing_one_minus_alpha", "rmsprop adds g**2 without (1 - alpha)",
             "optimizers.py:rmsprop_update", "alpha * v + (1 - alpha) * g * g",
             "alpha * v + g * g"),
    Mutation("adam_no_second_bias_correction", "Adam without the bias correction of v",
             "optimizers.py:_adam", "bias_correction2_sqrt = (1 - beta2**t) ** 0.5",
             "bias_correction2_sqrt = 1.0", planted=True,
             shown=('handwritten.optimizers.adam_update', '= 1/sqrt(1 - beta2**t) x reference')),
    Mutation("softmax_ce_divided_by_batch_twice", "softmax-CE gradient divided by the batch "
             "twice", "losses.py:softmax_cross_entropy_grad",
             "    return d_z / _count(z.shape[0], reduction)",
             "    return d_z / _count(z.shape[0], reduction) / _count(z.shape[0], reduction)",
             planted=True,
             shown=('handwritten.losses.softmax_cross_entropy_grad', '= 1/batch x reference')),
    Mutation("weight_decay_on_biases", "the L2 penalty's gradient added to the biases too",
             "layers/dense.py:Dense.backward", '"b": d_z.sum(axis=0)}',
             '"b": d_z.sum(axis=0) + ctx.weight_decay * p["b"]}', planted=True,
             shown=('d_b', 'handwritten.network.backward', '= weight_decay x b')),
    Mutation("adamw_decay_without_lr", "adamw decays by (1 - weight_decay), forgetting lr",
             "optimizers.py:adamw_update", 'decay = lr * hyper["weight_decay"]',
             'decay = hyper["weight_decay"]'),
    # issue 12 (in part): forward mode and per-example gradients
    Mutation("jvp_without_the_weight_tangent", "forward mode drops the params' tangent "
             "(W_dot, b_dot): the fold hands each layer a zero direction",
             "layers/fold.py:_tangent", "layer.tangent(params[i], caches[i], h_dot, v[i], "
             "ctxs[i])", "layer.tangent(params[i], caches[i], h_dot, {k: 0 * t for k, t in "
             "v[i].items()}, ctxs[i])"),
    Mutation("jvp_tangent_through_the_output", "forward mode pushes z_dot through f'(a), not "
             "f'(z)", "layers/activation.py:Activation.tangent",
             'activation(self.name).backward(cache["z"], cache["a"], z_dot)',
             'activation(self.name).backward(cache["a"], cache["a"], z_dot)'),
    Mutation("per_example_norm_without_the_bias", "per-example norms forget the bias gradient",
             "derivatives.py:per_example_grad_norms", "[a2 * dz2, dz2]",
             "[a2 * dz2, 0 * dz2]"),
    Mutation("per_example_divided_by_batch_again", "per-example gradients divided by the batch "
             "once more (the reduction's 1/batch twice)", "layers/fold.py:per_example_grads",
             'd[f"d_{layer.OUT}"], run.at(i))', 'd[f"d_{layer.OUT}"] / x.shape[0], run.at(i))'),
    # issue 12: second order by the R-operator, Gauss-Newton
    Mutation("hvp_without_the_second_derivative", "R{d_z} forgets d_a * f''(z) * R{z} (the "
             "Gauss-Newton part only)", "layers/activation.py:Activation.r_backward",
             "if d_a is not None and z_dot is not None:",
             "if d_a is not None and z_dot is None:"),
    Mutation("hvp_without_the_weight_tangent_in_r_d_a", "R{d_a_prev} forgets d_z @ W_dot.T "
             "(R{W} dropped from the backward's product rule)", "layers/dense.py:Dense.r_backward",
             'r_d_h += d_z @ p_dot["W"].T', 'r_d_h += d_z @ (0 * p_dot["W"]).T'),
    Mutation("hvp_without_the_input_tangent_in_r_d_W", "R{d_W} forgets R{a_prev}.T @ d_z",
             "layers/dense.py:Dense.r_backward", "r_d_W += h_dot.T @ d_z",
             "r_d_W += (0 * h_dot).T @ d_z"),
    Mutation("hvp_without_the_weight_decay", "the penalty's Hessian lambda W_dot left out",
             "layers/dense.py:Dense.r_backward", 'r_d_W += ctx.weight_decay * p_dot["W"]',
             'r_d_W += 0 * p_dot["W"]'),
    Mutation("sigmoid_second_sign", "sigmoid'' = a (1 - a) tanh(z / 2): the sign of 1 - 2a lost",
             "activations.py:sigmoid_second", "return np.negative(r, out=r)", "return r"),
    Mutation("tanh_second_without_the_2", "tanh'' = -a (1 - a**2), missing the 2",
             "activations.py:tanh_second", "r *= -2 * a", "r *= -a"),
    Mutation("softmax_second_one_product_rule_term", "softmax's R-op forgets "
             "-a * <d_a, a_dot> (a moves in two places)", "activations.py:softmax_second",
             "- a * np.sum(d_a * a_dot, axis=1, keepdims=True))",
             "- 0 * a)"),
    Mutation("mse_second_wrong_reduction", "mse's second derivative divided by batch, not "
             "batch * n_out", "losses.py:mse_second",
             "return 2 * a_dot / _count(a.size, reduction)",
             "return 2 * a_dot / _count(a.shape[0], reduction)"),
    Mutation("bce_second_one_sided", "bce's curvature keeps only y / a**2",
             "losses.py:bce_second", "+ np.divide(1 - y, np.square(1 - a)",
             "+ 0 * np.divide(1 - y, np.square(1 - a)"),
    Mutation("gnvp_keeps_the_loss_gradient_terms", "Gauss-Newton computed with the loss's "
             "gradient (the full Hessian, not J^T H J)", "layers/fold.py:r_backward",
             "d = None if gauss_newton else loss.grad(",
             "d = None if False else loss.grad("),
    # issue 11 (in part): hidden blocks -- batch norm, layer norm, dropout, residual
    Mutation("norm_backward_without_the_mean_path", "batch/layer norm's backward forgets "
             "-sum(d_x_hat) (the path through mu)", "blocks.py:normalize_backward",
             "d_z -= d_x_hat.sum(axis=axis, keepdims=True)",
             "d_z -= 0 * d_x_hat.sum(axis=axis, keepdims=True)",
             shown=('d_z (handwritten vs', 'handwritten.blocks.normalize_backward')),
    Mutation("norm_backward_without_the_variance_path", "the norm's backward forgets "
             "-x_hat sum(d_x_hat x_hat) (the path through var)", "blocks.py:normalize_backward",
             "d_z -= x_hat * np.sum(d_x_hat * x_hat, axis=axis, keepdims=True)",
             "d_z -= 0 * x_hat * np.sum(d_x_hat * x_hat, axis=axis, keepdims=True)",
             shown=('d_z (handwritten vs', 'handwritten.blocks.normalize_backward')),
    Mutation("norm_with_the_unbiased_variance", "batch norm normalizes with the unbiased "
             "variance (torch uses the biased one)", "blocks.py:normalize",
             "var = np.mean(centred * centred, axis=axis, keepdims=True)",
             "var = np.sum(centred * centred, axis=axis, keepdims=True) / "
             "max(z.shape[axis] - 1, 1)",
             shown=('var (handwritten vs', 'handwritten.blocks.normalize\n')),
    Mutation("running_var_biased", "the running variance takes the biased batch variance",
             "blocks.py:running_update", "m * var * (batch / (batch - 1))", "m * var",
             shown=('running_var', 'handwritten.blocks.running_update')),
    Mutation("running_momentum_reversed", "running = momentum running + (1 - momentum) batch",
             "blocks.py:running_update", "((1 - m) * running_mean + m * mu,",
             "(m * running_mean + (1 - m) * mu,",
             shown=('running_mean', 'handwritten.blocks.running_update')),
    Mutation("layer_norm_over_the_batch", "layer norm averages over the batch axis",
             "blocks.py:normalize", "axis = AXES[norm]", "axis = 0",
             shown=('mu (handwritten vs', 'handwritten.blocks.normalize\n')),
    Mutation("dropout_mask_missing_from_backward", "dropout's backward rescales but forgets "
             "the mask", "blocks.py:dropout_backward", "return d_a * mask * (1 / (1 - p))",
             "return d_a * (1 / (1 - p))",
             shown=('d_h (handwritten vs', 'handwritten.blocks.dropout_backward')),
    Mutation("dropout_backward_without_the_rescale", "dropout's backward forgets 1/(1 - p)",
             "blocks.py:dropout_backward", "return d_a * mask * (1 / (1 - p))",
             "return d_a * mask",
             shown=('d_h (handwritten vs', 'handwritten.blocks.dropout_backward')),
    Mutation("dropout_rescaled_twice", "inverted dropout divides by (1 - p) twice",
             "blocks.py:dropout", "return h * mask * (1 / (1 - p))",
             "return h * mask * (1 / (1 - p)) ** 2",
             shown=(' a (handwritten vs', 'handwritten.blocks.dropout\n')),
    Mutation("skip_path_missing_from_d_a_prev", "a residual block's backward forgets the "
             "skip path's d_a: the fold leaves out the container's join",
             "layers/fold.py:_backward",
             "d_in = layer.join_backward(d_out, d_body_in) if need else None",
             "d_in = d_body_in if need else None",
             shown=('d_a (handwritten vs', 'handwritten.network.backward')),
    Mutation("gamma_gradient_without_x_hat", "d_gamma = sum(d_n), forgetting the normalized z",
             "blocks.py:normalize_backward", '"d_gamma": np.sum(d_n * x_hat, axis=0)',
             '"d_gamma": np.sum(d_n, axis=0)',
             shown=('d_gamma (handwritten vs', 'handwritten.blocks.normalize_backward')),
    Mutation("d_x_hat_without_gamma", "d_x_hat = d_n, forgetting the affine scale",
             "blocks.py:normalize_backward", "d_x_hat = d_n * gamma", "d_x_hat = d_n",
             shown=('d_x_hat (handwritten vs', 'handwritten.blocks.normalize_backward')),
    # issue 11: training and evaluation with hidden blocks
    Mutation("running_statistics_never_updated", "train never moves batch norm's running "
             "statistics (they stay at 0 and 1)", "training.py:train",
             "        if has_state:", "        if has_state and False:",
             shown=('training and evaluation', 'running',
                    'handwritten.layers.norm.BatchNorm1d.update_state')),
    Mutation("evaluation_with_the_batch_statistics", "predict normalizes batch norm with the "
             "batch's own statistics, ignoring the running ones", "network.py:_run",
             "training=running is None", "training=True",
             shown=('evaluation mode', 'handwritten.layers.norm.BatchNorm1d.forward')),
    Mutation("evaluation_without_eps", "evaluation mode divides by sqrt(running_var), "
             "forgetting eps", "blocks.py:normalize_running",
             "x_hat = (z - mean) / np.sqrt(var + NORM_EPS)", "x_hat = (z - mean) / np.sqrt(var)",
             shown=('evaluation mode', 'handwritten.blocks.normalize_running')),
    Mutation("train_backward_without_the_masks", "train forgets the step's dropout masks "
             "(its fold runs without them)", "training.py:train",
             "run = fold.Pass(masks=masks, weight_decay=seq.weight_decay)",
             "run = fold.Pass(weight_decay=seq.weight_decay)",
             shown=('handwritten.training.train',)),
    # the options of issue 13: parametrised activations, selu and celu
    Mutation("leaky_relu_default_slope_in_backward", "leaky_relu's backward uses the default "
             "slope, not the given one", "activations.py:leaky_relu_backward",
             "np.where(z > 0, d_a, slope * d_a)", "np.where(z > 0, d_a, LEAKY_RELU_SLOPE * d_a)"),
    Mutation("elu_tail_without_alpha", "elu's tail derivative exp(z), forgetting alpha",
             "activations.py:elu_backward", "alpha * np.exp(z.take(tail))",
             "np.exp(z.take(tail))"),
    Mutation("celu_derivative_without_one_over_alpha", "celu' = a + 1 (elu's, with alpha 1)",
             "activations.py:celu_backward", "np.minimum(a, 0) / alpha + 1",
             "np.minimum(a, 0) + 1"),
    Mutation("selu_derivative_unscaled_for_positive_z", "selu' = 1 for z > 0, forgetting scale",
             "activations.py:selu_backward", "np.where(z > 0, SELU_SCALE,", "np.where(z > 0, 1,"),
    # the options of issue 13: torch.optim's every option, schedules, clipping
    Mutation("maximize_negates_the_decay_too", "maximize negates g after the weight decay "
             "is added (torch negates g first)", "optimizers.py:gradient",
             "sign * g + decay * theta", "sign * (g + decay * theta)"),
    Mutation("weight_decay_subtracted", "coupled weight decay with the wrong sign",
             "optimizers.py:gradient", "sign * g + decay * theta", "sign * g - decay * theta"),
    Mutation("dampening_on_the_first_buffer", "momentum's first buffer damped (torch's is "
             "clone(g))", "optimizers.py:_velocity", 'if state["t"] == 0:', 'if state["t"] < 0:'),
    Mutation("dampening_not_one_minus", "dampening d multiplies g instead of 1 - d",
             "optimizers.py:_velocity", "(1 - dampening) * g, g", "dampening * g, g"),
    Mutation("amsgrad_without_the_maximum", "amsgrad divides by the current v, not the largest",
             "optimizers.py:_adam", "np.maximum(v_max, v), v", "v, v",
             shown=('v_max', 'handwritten.optimizers.adam_update')),
    Mutation("amsgrad_max_with_the_previous_v", "amsgrad's maximum taken with the previous v, "
             "not with v_max (issue 21: a student's, that check --all and make quick missed)",
             "optimizers.py:_adam", 'np.maximum(v_max, v), v, state["v_max"])',
             'np.maximum(v_max, v), v, state["v"])',
             shown=("v_max", "handwritten.optimizers.adam_update")),
    Mutation("centered_rmsprop_without_the_mean", "centered rmsprop forgets to subtract gbar**2",
             "optimizers.py:rmsprop_update", "np.sqrt(v - gbar ** 2) + eps",
             "np.sqrt(v) + eps"),
    Mutation("rmsprop_momentum_holds_the_lr", "rmsprop's momentum buffer accumulates lr g / d "
             "(optax's form) and is multiplied by lr again", "optimizers.py:rmsprop_update",
             "mu * b + s, step", "mu * b + lr * s, step"),
    Mutation("adagrad_lr_decay_from_t", "adagrad decays lr by 1 + t lr_decay (not t - 1)",
             "optimizers.py:adagrad_update", '(1 + (t - 1) * hyper["lr_decay"])',
             '(1 + t * hyper["lr_decay"])'),
    Mutation("adagrad_accumulator_starts_at_zero", "adagrad ignores initial_accumulator_value",
             "optimizers.py:adagrad_init",
             '_zeros_like(params, hyper["initial_accumulator_value"])', "_zeros_like(params)"),
    Mutation("clip_norm_without_epsilon", "clip_norm scales by limit / n (optax's), not torch's "
             "limit / (n + 1e-6)", "optimizers.py:clip_gradients",
             "clip_norm / (norm + CLIP_NORM_EPS)", "clip_norm / norm",
             shown=('the first: clipping', 'handwritten.optimizers.clip_gradients')),
    Mutation("clip_value_one_sided", "clip_value clips only from above",
             "optimizers.py:clip_gradients", "np.clip(g, -clip_value, clip_value)",
             "np.minimum(g, clip_value)",
             shown=('the first: clipping', 'handwritten.optimizers.clip_gradients')),
    Mutation("schedule_one_step_ahead", "step t takes the schedule's lr_t, not lr_(t-1)",
             "optimizers.py:rule_update", 'optimizer.learning_rate(state["t"])',
             'optimizer.learning_rate(state["t"] + 1)'),
    Mutation("cosine_full_period", "cosine annealing over 2 t_max (cos(pi k / (2 t_max)))",
             "schedules.py:cosine_lr", 'math.cos(math.pi * k / settings["t_max"])',
             'math.cos(math.pi * k / (2 * settings["t_max"]))'),
    Mutation("warmup_one_step_late", "warm-up's k-th factor at (k + 1) / w",
             "schedules.py:warmup", "(1 - start) * k / steps", "(1 - start) * (k + 1) / steps"),
    Mutation("onecycle_peak_at_pct_start_total", "onecycle peaks at pct_start * total_steps "
             "(optax's boundary), not one step earlier", "schedules.py:onecycle_lr",
             'peak_at = settings["pct_start"] * settings["total_steps"] - 1',
             'peak_at = settings["pct_start"] * settings["total_steps"]'),
    # issue 24: the layer contract -- each layer's own derivation, and the fold over them
    Mutation("residual_gradient_added_twice", "a Residual's backward adds the skip's d_out "
             "twice", "layers/residual.py:Residual.join_backward",
             "return d_body_in + d_out", "return d_body_in + 2 * d_out",
             shown=SKIP_SHOWN),
    Mutation("residual_without_the_skip_in_backward", "a Residual's backward forgets the "
             "skip: d_h = d_body_in", "layers/residual.py:Residual.join_backward",
             "return d_body_in + d_out", "return d_body_in + 0 * d_out",
             shown=SKIP_SHOWN),
    Mutation("batch_norm_evaluation_with_the_batch", "BatchNorm1d in evaluation mode "
             "normalizes with the batch's statistics (state ignored)",
             "layers/norm.py:BatchNorm1d.forward", "if not ctx.training:",
             "if not ctx.training and False:",
             shown=("evaluation mode", "handwritten.layers.norm.BatchNorm1d.forward")),
    Mutation("running_count_from_the_features", "BatchNorm1d's state update takes N from the "
             "features, not the batch", "layers/norm.py:BatchNorm1d.update_state",
             'cache["x_hat"].shape[0]', 'cache["x_hat"].shape[1]',
             shown=("running_var, layer 1", "handwritten.layers.norm.BatchNorm1d.update_state")),
    Mutation("dense_tangent_without_the_params_tangent", "a Dense's tangent forgets h @ W_dot "
             "(the layer's own params' tangent)", "layers/dense.py:Dense.tangent",
             'z_dot = cache["h"] @ p_dot["W"] + p_dot["b"]',
             'z_dot = 0 * cache["h"] @ p_dot["W"] + p_dot["b"]', shown=TANGENT_SHOWN),
    Mutation("dense_tangent_without_the_input_tangent", "a Dense's tangent forgets h_dot @ W",
             "layers/dense.py:Dense.tangent", 'z_dot += h_dot @ p["W"]',
             'z_dot += 0 * h_dot @ p["W"]', shown=TANGENT_SHOWN),
    Mutation("norm_tangent_without_the_variance_path", "a norm's tangent forgets how the "
             "variance moves", "layers/norm.py:normalize_tangent",
             "return var_dot, inv_std * c_dot - x_hat * var_dot * inv_std**2 / 2",
             "return var_dot, inv_std * c_dot",
             shown=r_shown("layer 1 R{x_hat}, layers case 1",
                           "handwritten.layers.norm.BatchNorm1d.tangents")),
    Mutation("norm_tangent_without_gamma_dot", "a norm's tangent forgets gamma_dot x_hat",
             "layers/norm.py:_Norm.tangents", 'n_dot = p_dot["gamma"] * x_hat + p_dot["beta"]',
             'n_dot = 0 * p_dot["gamma"] * x_hat + p_dot["beta"]',
             shown=r_shown("layer 0 R{n}, layers case 0",
                           "handwritten.layers.norm.LayerNorm.tangents")),
    Mutation("dropout_tangent_without_the_mask", "dropout's tangent passes h_dot unmasked",
             "layers/dropout.py:Dropout.tangent",
             'return blocks.dropout(h_dot, cache["mask"], self.p)', "return h_dot",
             shown=r_shown("layer 4 R{out}, layers case 0",
                           "handwritten.layers.dropout.Dropout.tangent")),
    Mutation("fused_loss_through_the_activation_again", "the fold runs the fused loss's "
             "gradient d_z through the output activation's backward once more",
             "layers/fold.py:backward_from_loss",
             "layers = seq.layers[:-1] if seq.fused_output else seq.layers",
             "layers = seq.layers",
             shown=("layer 1 d_z (handwritten vs", "handwritten.losses.bce_with_logits_grad")),
    Mutation("fold_grads_without_the_weight_decay", "the penalty is in the loss, but the fold "
             "hands the layers no weight decay", "layers/fold.py:loss_and_grads",
             "run = Pass(masks=masks, weight_decay=seq.weight_decay)",
             "run = Pass(masks=masks)",
             shown=("d_W (loss_and_grads) (handwritten vs",
                    "handwritten.layers.dense.Dense.backward")),
    Mutation("residual_tangent_without_the_skip", "a Residual's tangent drops the skip's h_dot",
             "layers/fold.py:_tangent", "h_dot if body_dot is None else layer.join(body_dot, "
             "h_dot))", "h_dot if body_dot is None else body_dot)",
             shown=r_shown("layer 2 R{out}, layers case 1",
                           "handwritten.layers.residual.Residual.join")),
    Mutation("dense_r_op_without_the_weight_tangent", "a Dense's R-operator forgets d_z @ "
             "W_dot.T in R{d_h} (the layer's params' tangent)", "layers/dense.py:Dense.r_backward",
             'r_d_h += d_z @ p_dot["W"].T', 'r_d_h += 0 * d_z @ p_dot["W"].T',
             shown=("layer 1 R{d_a} (handwritten vs", R_BACKWARD)),
    Mutation("dense_r_op_without_the_input_tangent", "a Dense's R{d_W} forgets h_dot.T @ d_z",
             "layers/dense.py:Dense.r_backward", "r_d_W += h_dot.T @ d_z",
             "r_d_W += 0 * h_dot.T @ d_z", shown=("layer 2 R{d_W} (handwritten vs", R_BACKWARD)),
    Mutation("activation_r_op_without_f_second", "an Activation's R-operator forgets d_a f''(z) "
             "z_dot", "layers/activation.py:Activation.r_backward",
             'r_d_z = r_d_z + entry.second(cache["z"], cache["a"], d_a, z_dot)',
             'r_d_z = r_d_z + 0 * entry.second(cache["z"], cache["a"], d_a, z_dot)',
             shown=("layer 1 R{d_z} (handwritten vs",
                                                  "handwritten.activations.tanh_second")),
    Mutation("norm_r_op_without_gamma_dot", "a norm's R-operator forgets d_n gamma_dot in "
             "R{d_x_hat}", "layers/norm.py:_Norm.r_backward",
             'r_d_x_hat = r_d_x_hat + d_n * p_dot["gamma"]',
             'r_d_x_hat = r_d_x_hat + 0 * d_n * p_dot["gamma"]',
             shown=r_shown("layer 0 R{d_x_hat}, layers case 0",
                           "handwritten.layers.norm.LayerNorm.r_backward")),
    Mutation("norm_r_op_without_the_moving_scale", "a norm's R-operator forgets how s = "
             "1/sqrt(var + eps) moves", "layers/norm.py:_Norm.r_backward",
             "r_d_h -= inv_std**2 * var_dot / 2 * d_h",
             "r_d_h -= 0 * inv_std**2 * var_dot / 2 * d_h",
             shown=r_shown("layer 2.1 R{d_a}, layers case 1",
                           "handwritten.layers.norm.LayerNorm.r_backward",
                           "R{d_a} = R{d_h} of [2.2] LayerNorm")),
    Mutation("layer_norm_per_example_gamma_without_x_hat", "LayerNorm's per-example d_gamma "
             "forgets x_hat", "layers/norm.py:LayerNorm.per_example",
             '{"gamma": d_n * cache["x_hat"]', '{"gamma": d_n.copy()',
             shown=("per-example d_gamma", "handwritten.layers.norm.LayerNorm.per_example")),
    Mutation("dense_per_example_divided_by_batch", "a Dense's per-example d_b divided by the "
             "batch again", "layers/dense.py:Dense.per_example", '"b": d_z.copy()}',
             '"b": d_z / d_z.shape[0]}',
             shown=("per-example layer 0 b (handwritten vs",
                    "handwritten.derivatives.per_example_grads")),
    # issue 25: the convolution chapter -- the backwards students get wrong
    Mutation("conv_kernel_flipped_in_the_forward", "the forward convolves (kernel flipped), "
             "where torch.nn.Conv2d cross-correlates", "layers/conv.py:_ConvNd.conv",
             "z = self._matrix(W) @ cols",
             "z = self._matrix(np.flip(W, axis=tuple(range(2, W.ndim)))) @ cols",
             shown=("layer 0 z", "handwritten.layers.conv.Conv2d.forward")),
    Mutation("conv_d_h_with_the_kernel_flipped", "d_h scatters d_z through the flipped kernel "
             "(the full-convolution form's flip applied to the scatter form)",
             "layers/conv.py:_ConvNd.conv_t",
             "d_cols = self._matrix(W).transpose(0, 2, 1)",
             "d_cols = self._matrix(np.flip(W, axis=tuple(range(2, W.ndim)))).transpose(0, 2, 1)",
             shown=("layer 3 d_out", "handwritten.layers.conv.Conv2d.backward")),
    Mutation("conv_stride_ignored_in_d_h", "d_h sends d_z back to consecutive positions, not "
             "every s-th (the stride's zeros left out)", "layers/conv.py:_ConvNd.conv_t",
             "for k, (_, window) in enumerate(self._windows(out)):",
             "for k, (_, window) in enumerate(windows(self.geometry[0], (1,) * self.DIMS,"
             "\n                                                self.geometry[2], out)):",
             shown=("layer 3 d_out", "handwritten.layers.conv.Conv1d.backward")),
    Mutation("conv_padding_not_cropped_from_d_h", "d_h keeps the padding's rows and columns "
             "and drops the input's last ones", "layers/conv.py:_ConvNd.conv_t",
             "(Ellipsis, *(slice(lo, lo + size)", "(Ellipsis, *(slice(0, size)",
             shown=("layer 3 d_out", "handwritten.layers.conv.Conv2d.backward")),
    Mutation("conv_dilation_missing_from_d_h", "d_h sends d_z back through undilated "
             "windows", "layers/conv.py:_ConvNd.conv_t",
             "for k, (_, window) in enumerate(self._windows(out)):",
             "for k, (_, window) in enumerate(windows(self.geometry[0], self.geometry[1],"
             "\n                                                (1,) * self.DIMS, out)):",
             shown=("layer 3 d_out", "handwritten.layers.conv.Conv2d.backward")),
    Mutation("conv_groups_mixing_channels", "the groups take every G-th channel, not G "
             "consecutive blocks (channels of other groups mixed in)",
             "layers/conv.py:_ConvNd._padded",
             "return hp.reshape(h.shape[0], self.groups, -1, *hp.shape[2:])",
             "return hp.reshape(h.shape[0], -1, self.groups, *hp.shape[2:]).swapaxes(1, 2)",
             shown=("layer 4 z", "handwritten.layers.conv.Conv2d.forward")),
    Mutation("conv_tangent_without_the_input_tangent", "a convolution's tangent forgets "
             "conv(h_dot, W)", "layers/conv.py:_ConvNd.tangent",
             'z_dot += self.conv(self.columns(h_dot, out), p["W"], n, out)',
             'z_dot += 0 * self.conv(self.columns(h_dot, out), p["W"], n, out)',
             shown=r_shown("layer 4 R{z}, conv case 0", "handwritten.layers.conv.Conv2d.tangent")),
    Mutation("conv_r_op_without_the_input_tangent", "a convolution's R{d_W} forgets "
             "corr(h_dot, d_z)", "layers/conv.py:_ConvNd.r_backward",
             "r_d_W += self.corr(self.columns(h_dot, d_z.shape[2:]), d_z)",
             "r_d_W += 0 * self.corr(self.columns(h_dot, d_z.shape[2:]), d_z)",
             shown=r_shown("layer 4 R{d_W}, conv case 0",
                           "handwritten.layers.conv.Conv2d.r_backward")),
    Mutation("conv_per_example_bias_divided_by_batch", "a convolution's per-example d_b "
             "divided by the batch", "layers/conv.py:_ConvNd.per_example",
             'grads["b"] = d_z.sum(axis=tuple(range(2, d_z.ndim)))',
             'grads["b"] = d_z.sum(axis=tuple(range(2, d_z.ndim))) / d_z.shape[0]',
             shown=("per-example d_b", "handwritten.layers.conv.Conv1d.per_example")),
    Mutation("max_pool_tie_to_the_last_maximum", "max pooling hands a tie to a later "
             "maximum of the window, not its first as torch and JAX do",
             "layers/pool.py:MaxPool2d.forward",
             "took_over = win > out", "took_over = win >= out",
             shown=("layer 2 d_a", "handwritten.layers.pool.MaxPool2d.backward")),
    Mutation("max_pool_gradient_to_every_window_element", "max pooling's gradient goes to "
             "every element of the window, not its winner", "layers/pool.py:MaxPool2d._route",
             "d_hp[window] += won * d_out if finite else np.where(won, d_out, 0)",
             "d_hp[window] += d_out",
             shown=("layer 2 d_a", "handwritten.layers.pool.MaxPool2d.backward")),
    Mutation("avg_pool_counts_the_padding", "average pooling divides by kh kw where "
             "count_include_pad=False asks for the window's elements inside the input",
             "layers/pool.py:AvgPool2d._count",
             "if self.count_include_pad or not any(padding):", "if True:",
             shown=("layer 5 out", "handwritten.layers.pool.AvgPool2d.forward")),
    Mutation("avg_pool_backward_without_the_divisor", "average pooling's backward hands each "
             "element d_out, not d_out / count", "layers/pool.py:AvgPool2d.backward",
             'share = d_out / cache["count"]', "share = d_out",
             shown=("layer 4 d_z", "handwritten.layers.pool.AvgPool2d.backward")),
    Mutation("flatten_channels_last", "Flatten orders (y, x, c), not torch's (c, y, x)",
             "layers/pool.py:Flatten.forward", "out = h.reshape(h.shape[0], -1)",
             "out = np.moveaxis(h, 1, -1).reshape(h.shape[0], -1)",
             shown=("layer 6 out", "handwritten.layers.pool.Flatten.forward")),
    Mutation("batch_norm_2d_over_the_wrong_axes", "spatial batch norm reshapes (batch, C, H, "
             "W) to rows without moving the channel axis last (statistics over mixed "
             "elements)", "layers/norm.py:rows",
             "return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])",
             "return x.reshape(-1, x.shape[1])",
             shown=("layer 1 mu", "handwritten.layers.norm.BatchNorm2d.forward")),
    Mutation("batch_norm_2d_running_count_from_the_batch", "BatchNorm2d's running variance "
             "corrected with the batch's count N, not N H W", "layers/norm.py:"
             "BatchNorm2d.update_state", "return super().update_state(state, "
             "self._as_rows(cache))", "return super().update_state(state, cache)",
             shown=("running_var, layer 1", "handwritten.layers.norm.BatchNorm2d.update_state")),
    Mutation("group_norm_d_x_hat_without_gamma", "GroupNorm's backward forgets the affine's "
             "gamma in d_x_hat", "layers/norm.py:GroupNorm.backward",
             'd_x_hat = d_n * self._channel(p["gamma"], d_n.ndim)', "d_x_hat = d_n",
             shown=("layer 1 d_x_hat", "handwritten.layers.norm.GroupNorm.backward")),
    Mutation("group_norm_r_op_without_gamma_dot", "GroupNorm's R-operator forgets d_n "
             "gamma_dot in R{d_x_hat}", "layers/norm.py:GroupNorm.r_backward",
             "r_d_x_hat = r_d_x_hat + d_n * gamma_dot",
             "r_d_x_hat = r_d_x_hat + 0 * d_n * gamma_dot",
             shown=r_shown("layer 1 R{d_x_hat}, conv case 1",
                           "handwritten.layers.norm.GroupNorm.r_backward")),
]


# generic mutations: mutmut-like operator swaps on the derivation's code lines ----------------

GENERIC_FILES = ("activations.py", "losses.py", "network.py", "optimizers.py")
GENERIC_SWAPS = [(" + ", " - "), (" - ", " + "), (" * ", " / "), (" / ", " * "), ("**", "*"),
                 (".T ", " "), (".sum(", ".mean("), ("np.sum(", "np.mean("), ("axis=0", "axis=1"),
                 ("axis=1", "axis=0"), ("beta1", "beta2"), ("beta2", "beta1"), (" > ", " >= "),
                 (" < ", " <= "), ("(1 - ", "(1 + "), ("np.sqrt(", "np.square(")]


def generic(n: int, seed: int = 14) -> list[Mutation]:
    """n single-operator mutations of the derivation's code (not docstrings, comments or
    error messages), drawn with a seeded Generator from every place a swap applies."""
    import numpy as np

    candidates = []
    for file in GENERIC_FILES:
        source = (ROOT / "handwritten" / file).read_text()
        tree = ast.parse(source)
        lines = source.splitlines()
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            body = node.body[1:] if ast.get_docstring(node) else node.body
            start, end = body[0].lineno, node.end_lineno or body[0].lineno
            text = "\n".join(lines[start - 1:end])
            for number in range(start, end + 1):
                line = lines[number - 1]
                code = line.split("#")[0]
                if not code.strip() or "raise" in code or '"' in code or "'" in code:
                    continue
                for old, new in GENERIC_SWAPS:
                    if old in code and text.count(code.rstrip()) == 1:
                        mutated = code.replace(old, new, 1).rstrip()
                        candidates.append(Mutation(
                            f"generic_{file[:-3]}_{number}_{len(candidates)}",
                            f"{file}:{number} {old.strip()!r} -> {new.strip()!r}",
                            f"{file}:{node.name}", code.rstrip(), mutated))
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(candidates), size=min(n, len(candidates)), replace=False))
    return [candidates[i] for i in picked]


CHECK_ALL = ["-m", "bpnet.cli", "check", "--all", "--quiet"]


def property_tests_for(file: str) -> list[str]:
    """PROPERTY_TESTS with the modules that cover handwritten/<file> (tests/quick.py's map)
    first: a mistake is caught by the tests of its own file, without first paying for the
    slow properties of the others (each group keeps PROPERTY_TESTS' order)."""
    from tests.quick import TESTS

    own = {entry.partition("::")[0] for entry in TESTS.get(f"handwritten/{file}", [])}
    first = [t for t in PROPERTY_TESTS if Path(t).stem in own]
    return first + [t for t in PROPERTY_TESTS if t not in first]


def quick_command(mutation: Mutation) -> list[str]:
    """What ``make quick`` runs for an edit of the mutation's file (python's arguments), in
    one process: the mutation runs are parallel already."""
    from tests.quick import pytest_command, select_tests

    command = pytest_command(select_tests([f"handwritten/{mutation.file}"]))[1:]
    if "-n" in command:
        at = command.index("-n")
        command[at:at + 2] = ["-p", "no:xdist"]
    return command


def run(mutation: Mutation, timeout: float = 1200.0, check_all: bool = False,
        command: list[str] | None = None, profile: str = "ci") -> tuple[bool, str, float]:
    """Apply one mutation to a copy of the project and run the property tests (or
    ``bpnet check --all``, or ``python`` with the arguments ``command``) against it.

    Returns (caught, the output -- its last lines for the tests, with the summary line of
    the test that failed --, seconds).
    """
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bpnet-mutant-") as tmp:
        work = Path(tmp)
        for part in ("handwritten", "bpnet", "reference_torch", "reference_jax", "tests"):
            shutil.copytree(ROOT / part, work / part,
                            ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
        target = work / "handwritten" / mutation.file
        target.write_text(mutation.apply(target.read_text()))
        # the project's JAX cache (tests/conftest.py): the references' programs are the same
        # in every copy (no mutation touches them), compiled once for all the runs
        env = os.environ | {"HYPOTHESIS_PROFILE": profile, "OMP_NUM_THREADS": "1",
                            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                            "BPNET_JAX_CACHE": os.environ.get(
                                "BPNET_JAX_CACHE", str(ROOT / ".cache" / "jax"))}
        # `python -m` puts the copy first on sys.path: its handwritten is imported.
        copy = str(work / "handwritten")
        check = ("import handwritten, pathlib, sys; sys.exit(pathlib.Path(handwritten.__file__)"
                 f".parent != pathlib.Path({copy!r}))")
        subprocess.run([sys.executable, "-c", check], cwd=work, env=env, check=True)
        pytest = not (check_all or command)
        command = command or (CHECK_ALL if check_all else [
            "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", "-p", "no:xdist",
            "--no-header", "-o", "addopts=", *property_tests_for(mutation.file)])
        result = subprocess.run([sys.executable, *command], cwd=work, env=env,
                                capture_output=True, text=True, timeout=timeout, check=False)
    lines = (result.stdout + result.stderr).strip().splitlines()
    if pytest:
        failed = [line for line in lines if line.startswith("FAILED ")]
        lines = [*failed[:1], *lines[-3:]]              # the whole verdict
    return result.returncode == 1, "\n".join(lines), time.perf_counter() - start


def caught_by(output: str) -> str:
    """The test that failed first in a run's output (``run``), or "" when none did."""
    for line in output.splitlines():
        if line.startswith("FAILED "):
            return line.split()[1].removeprefix("tests/")
    return ""


def main(argv: list[str]) -> int:
    check_all = "--check-all" in argv
    planted = "--planted" in argv
    names = [a for a in argv if not a.startswith("--")]
    if "--generic" in argv:        # python -m tests.mutations --generic 24 [--check-all]
        count = int(names.pop(0)) if names and names[0].isdigit() else 24
        pool = generic(count)
    else:
        pool = MUTATIONS
    chosen = [m for m in pool if (not names or m.name in names)
              and (not planted or m.planted)]
    caught = 0
    for m in chosen:
        reason = m.applies((ROOT / "handwritten" / m.file).read_text())
        if reason:
            print(f"skipped {reason}")
            continue
        if "--quick" in argv:
            ok, tail, seconds = run(m, command=quick_command(m), profile="quick")
        else:
            ok, tail, seconds = run(m, check_all=check_all)
        caught += ok
        by = "" if check_all else f"  by {caught_by(tail) or '?'}"
        print(f"{'caught' if ok else 'MISSED'}  {m.name:34s} {seconds:6.1f}s  {m.what}{by}")
        if check_all or not ok:
            print("    " + "\n    ".join(tail.splitlines()[-5:]))
    by = "bpnet check --all" if check_all else "the property tests"
    print(f"{caught} of {len(chosen)} mutations caught by {by}")
    return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
