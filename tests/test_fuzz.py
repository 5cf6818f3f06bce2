"""Two properties that look for the next adversarial input themselves (issue 22).

The hand-written cases of tests/test_cli.py and tests/test_bad_input.py each pin one input
someone thought of; these draw them.

- The command line: every command of ``bpnet.cli.main`` with drawn options, valid and
  malformed (numbers negative, 0, 1e308, inf, nan or no number at all; lists of the wrong
  length; unknown names; sizes far beyond memory; ``--replay`` texts from a small grammar
  of valid and broken ``Problem(...)`` lines).  No exception escapes, the exit status is
  0, 1 or 2, a failure is one line on stderr, and ``--json`` prints strict JSON.
- The Python API's arrays: ``loss_and_grads``, ``trace``, ``predict``, ``step`` and
  ``train`` with one or two arguments spoiled (ndarray subclasses, lists, every dtype,
  NaN and inf, other shapes, other memory layouts).  Either a TypeError/ValueError that
  names the argument, with the caller's arrays unchanged, or a finite result in the
  inputs' float dtype.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import event, given, note
from hypothesis import strategies as st

import handwritten as hw
from bpnet.cli import main
from bpnet.problems import HIDDEN_ACTIVATIONS, losses_for
from handwritten.checks import FLOAT_DTYPES
from handwritten.schedules import SCHEDULE_SETTINGS
from handwritten.spec import FLAGS, OPTIMIZER_DEFAULTS
from handwritten.training import draw_masks
from tests.helpers import assert_unchanged, snapshot

# the command line ----------------------------------------------------------------------

TMP = "{tmp}"
"""Stands for the example's own temporary directory in a drawn command line."""

REALS = ("0.1", "1", "0.5", "2", "1e-8", "1000")
BAD_REALS = ("0", "-1", "-0", "1e308", "-1e308", "inf", "-inf", "nan", "1e-320", "1e999", "x",
             "", "0x10")
SMALL = ("1", "2", "3")
BAD_INTS = ("0", "-1", "1.5", "x", "", "nan", "inf", "1e3", "-0")
HUGE = ("1000000000000", "1" + "0" * 30)
"""Sizes and counts far beyond this machine's memory: the memory preflight refuses them
before anything is allocated.  Sizes between the tiny ones and these are not drawn: they
pass the preflight and are computed, as they should be, for minutes (finite differences
over a million params, a hundred million epochs)."""

DATASETS = {"blog": (1, 1), "sin": (1, 1), "xor": (2, 1), "moons": (2, 2), "spirals": (2, 3)}
ACTIVATIONS = (*sorted(hw.ACTIVATIONS), "leaky_relu:0.2", "elu:nan", "celu:-1",
               "leaky_relu:1e308", "leaky_relu:inf", "tanh:2", "elu:", "Tanh", "nosuch", "")
PLOTS = (f"{TMP}/plot.png", f"{TMP}/new/dir/plot.svg", f"{TMP}/plot.txt", f"{TMP}/noending",
         TMP, f"{TMP}/plot.png/inside.png")
ONLY = ("tanh", "blog", "extremes", "clipping", "schedule", "init", "sgd", "mse (sum)",
        "relu (saturated units)", "nothing", "TANH", " ")
"""--all entries and groups that take under a second (not "" either: it selects all of
--all, some 30 s)."""


CLEAN, SPARSE, MIXED = 0, 1, 2
"""How malformed a command line is drawn: only valid values; about one malformed value
(most options take a valid one twelve times as often); or many (three times as often)."""


def _value(clean: int, good: tuple[str, ...], bad: tuple[str, ...] = ()
           ) -> st.SearchStrategy[str]:
    """A value, valid or malformed as ``clean`` says; failures shrink towards the first
    valid one."""
    return st.sampled_from(good if clean == CLEAN else good * (12 if clean == SPARSE else 3)
                           + bad)


def _comma(element: st.SearchStrategy[str], low: int = 1, high: int = 3
           ) -> st.SearchStrategy[str]:
    return st.lists(element, min_size=low, max_size=high).map(",".join)


@st.composite
def _options(draw: st.DrawFn, choices: dict[str, st.SearchStrategy[str]]) -> list[str]:
    """Some of ``choices``, each as ``--name value`` or ``--name=value``."""
    argv: list[str] = []
    for name, values in choices.items():
        if draw(st.booleans()):
            value = draw(values)
            argv += [f"--{name}={value}"] if draw(st.booleans()) else [f"--{name}", value]
    return argv


@st.composite
def _network(draw: st.DrawFn, clean: int, ends: tuple[int, int] | None) -> list[str]:
    """--layers (tiny, or between the dataset's ``ends``), --activations, --loss, ...; or
    nothing, which leaves the preset's network.  ``clean``: one activation per layer and a
    loss that takes the output activation."""
    if draw(st.booleans()):
        return []
    size = _value(clean, SMALL, BAD_INTS + HUGE)
    if ends:
        sizes = [str(ends[0]), *draw(st.lists(size, max_size=2)), str(ends[1])]
    else:
        sizes = draw(st.lists(size, min_size=2 if clean == CLEAN else 1, max_size=4))
    if clean == CLEAN:
        names = [*draw(st.lists(st.sampled_from(HIDDEN_ACTIVATIONS), min_size=len(sizes) - 2,
                                max_size=len(sizes) - 2)),
                 draw(st.sampled_from(sorted(hw.ACTIVATIONS)))]
        loss = st.sampled_from(losses_for(names[-1]))
    else:
        names = draw(st.lists(st.sampled_from(ACTIVATIONS), min_size=1, max_size=3))
        loss = _value(clean, tuple(sorted(hw.LOSSES)), ("hinge",))
    options = draw(_options({
        "loss": loss, "reduction": _value(clean, hw.REDUCTIONS, ("avg",)),
        "weight-decay": _value(clean, ("0", "0.1"), BAD_REALS)}))
    return ["--layers", ",".join(sizes), "--activations", ",".join(names), *options]


def _blocks(clean: int) -> dict[str, st.SearchStrategy[str]]:
    """--norms, --dropout, --residual: one value for every hidden layer when CLEAN."""
    high = 1 if clean == CLEAN else 3
    return {"norms": _comma(_value(clean, ("none", "batch", "layer"), ("Batch", "")), 1, high),
            "dropout": _comma(_value(clean, ("0", "0.1", "0.5"), (*BAD_REALS, "1")), 1, high),
            "residual": _comma(_value(clean, ("0",), ("1", "true", "2", "x", "")), 1, high)}


HYPER_KEYS = sorted({key for defaults in OPTIMIZER_DEFAULTS.values() for key in defaults})
SCHEDULE_KEYS = sorted({key for settings in SCHEDULE_SETTINGS.values() for key in settings})
SCHEDULES = ("constant", "cosine", "onecycle", "step:step_size=1", "exponential:gamma=0.5",
             "multistep:milestones=1/2,gamma=0.5", "step:step_size=1,gamma=0.5")
"""Valid --schedule values (cosine's t_max and onecycle's total_steps: the run's steps)."""


def _setting(clean: int, keys: list[str]) -> st.SearchStrategy[str]:
    pair = st.builds(lambda k, v: f"{k}={v}", _value(clean, tuple(keys), ("betas", "")),
                     _value(clean, ("0.5", "0.1"), BAD_REALS + BAD_INTS + ("1/2", "2/-5")))
    malformed = st.sampled_from(("momentum", "=1", "a=b=c", ""))
    return pair if clean == CLEAN else st.one_of(pair, malformed)


@st.composite
def _optimizer(draw: st.DrawFn, clean: int) -> list[str]:
    """--optimizer and its options (clean: hyperparameters it has, a schedule as given)."""
    name = draw(_value(clean, tuple(sorted(hw.OPTIMIZERS)), ("sgdd",)))
    keys = (sorted(set(OPTIMIZER_DEFAULTS.get(name, HYPER_KEYS)) - FLAGS) if clean == CLEAN
            else HYPER_KEYS)
    schedule = (st.sampled_from(SCHEDULES) if clean == CLEAN else st.builds(
        lambda n, settings: f"{n}:{settings}" if settings else n,
        _value(clean, tuple(sorted(SCHEDULE_SETTINGS)), ("cosinus", "")),
        st.one_of(st.just(""), _comma(_setting(clean, SCHEDULE_KEYS), 1, 2))))
    flags = [f for f in sorted(FLAGS)
             if clean != CLEAN or f in OPTIMIZER_DEFAULTS.get(name, {})]
    options = draw(_options({
        "lr": _value(clean, REALS, BAD_REALS),
        "hyper": (_comma(_setting(clean, keys), 1, 1 if clean == CLEAN else 2) if keys
                  else st.just("")),
        "schedule": schedule,
        "warmup": _value(clean, SMALL, BAD_INTS + HUGE),
        "warmup-start": _value(clean, ("0.5", "1"), BAD_REALS),
        "clip-norm": _value(clean, REALS, BAD_REALS),
        "clip-value": _value(clean, REALS, BAD_REALS)}))
    return ["--optimizer", name, *options, *draw(_flags(flags))]


def _common(clean: int) -> dict[str, st.SearchStrategy[str]]:
    return {"seed": _value(clean, ("0", "1", "4294967296"), ("-1", "x", "1.5", *HUGE))}


@st.composite
def _flags(draw: st.DrawFn, names: list[str]) -> list[str]:
    return [f"--{name}" for name in names if draw(st.booleans())]


# --replay: a small grammar of Problem(...) lines, then perhaps a mutation of the text

def _tuple(items: list[str]) -> str:
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


REPLAY_SIZES = ("1", "2", "3", "0", "-1", "True", "2.0", "None", "'2'", "10**3", *HUGE)
REPLAY_NAMES = (*tuple(f"'{name}'" for name in ACTIVATIONS), "None", "1", "[]")


@st.composite
def _spec_text(draw: st.DrawFn) -> str:
    sizes = draw(st.lists(st.sampled_from(REPLAY_SIZES), min_size=1, max_size=4))
    names = draw(st.lists(st.sampled_from(REPLAY_NAMES), min_size=len(sizes) - 1,
                          max_size=len(sizes) - 1)) or ["'tanh'"]
    args = [_tuple(sizes), _tuple(names)]
    loss = draw(st.sampled_from((*sorted(hw.LOSSES), "hinge")))
    optional = {"loss": f"'{loss}'", "reduction": draw(st.sampled_from(("'mean'", "'sum'", "1"))),
                "weight_decay": draw(st.sampled_from(("0.0", "0.1", "-1", "1e308", "1e999"))),
                "norms": _tuple(draw(st.lists(st.sampled_from(("None", "'batch'", "'layer'",
                                                               "'x'")), min_size=1, max_size=2))),
                "dropout": _tuple(draw(st.lists(st.sampled_from(("0.0", "0.5", "1.0", "-0.5")),
                                                min_size=1, max_size=2))),
                "residual": _tuple(draw(st.lists(st.sampled_from(("False", "True", "1")),
                                                 min_size=1, max_size=2)))}
    args += [f"{key}={value}" for key, value in optional.items() if draw(st.booleans())]
    return f"NetworkSpec({', '.join(args)})"


@st.composite
def replay_texts(draw: st.DrawFn) -> str:
    """A Problem(...) line as the suite prints it, its fields drawn valid or not, perhaps
    cut short, with a token put in or a name replaced."""
    fields = {"batch": draw(st.sampled_from(REPLAY_SIZES)),
              "seed": draw(st.sampled_from(("0", "1", "-1", "2**64", "10**30", "1.0"))),
              "dtype": draw(st.sampled_from(("'float64'", "'float32'", "'float16'", "1"))),
              "labels": draw(st.sampled_from(("False", "True", "'yes'"))),
              "scale": draw(st.sampled_from(("1.0", "6", "0", "-1", "1e308", "1e999", "1j")))}
    given = [key for key in fields if key in ("batch", "seed") or draw(st.booleans())]
    text = (f"Problem({draw(_spec_text())}, {', '.join(f'{k}={fields[k]}' for k in given)})"
            + draw(st.sampled_from(("", "  # from bpnet.problems import Problem"))))
    mutation = draw(st.sampled_from(("none", "none", "cut", "insert", "rename", "other")))
    at = draw(st.integers(0, len(text)))
    if mutation == "cut":
        text = text[:at]
    elif mutation == "insert":
        token = draw(st.sampled_from(("(", ")", ",", "**{}", "*[]", "'", "\\", "\n", "lambda: 0",
                                      "x.y", "{[]: 1}", "-" * 3000, "1" * 5000, "\x00", "é")))
        text = text[:at] + token + text[at:]
    elif mutation == "rename":
        old = draw(st.sampled_from(("Problem", "NetworkSpec")))
        new = draw(st.sampled_from(("problem", "OptimizerSpec", "LRSchedule", "print",
                                    "Problem", "NetworkSpec", "type")))
        text = text.replace(old, new, 1)
    elif mutation == "other":
        text = draw(st.sampled_from(("NetworkSpec((1, 1), ('tanh',))", "OptimizerSpec('sgd', 0.1)",
                                     "Problem", "None", "[]", "1", "Problem()", "Problem(1, 2, 3)",
                                     "()" * 100, "f'{1}'", " ", "")))
    return text


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    """Any command with options drawn valid or not (a third of the command lines hold only
    valid values, so that runs happen; a third about one malformed value, so that it is
    not refused for another); every run tiny (a few epochs through small networks), or
    refused before it starts."""
    command = draw(st.sampled_from(("fit", "check", "compare", "explain", "hessian", "all")))
    clean = draw(st.sampled_from((CLEAN, SPARSE, MIXED)))
    if command == "all":
        return ["check", "--all", "--only", draw(st.sampled_from(ONLY)),
                *draw(_options(_common(clean))), *draw(_flags(["json", "quiet"]))]
    argv = [command]
    if command in ("fit", "compare", "hessian"):
        dataset = draw(_value(clean, tuple(DATASETS), ("mnist",)))
        argv += ["--dataset", dataset, "--epochs", draw(_value(clean, ("1", "2"),
                                                               BAD_INTS + HUGE))]
        argv += draw(_network(clean, DATASETS.get(dataset) if draw(st.booleans()) else None))
        argv += draw(_options({"batch-size": _value(clean, ("7", "50"), BAD_INTS + HUGE),
                               "dtype": _value(clean, ("float64", "float32"), ("float16",)),
                               "init": _value(clean, hw.INIT_SCHEMES, ("xavier",)),
                               "out": _value(clean, PLOTS[:2], PLOTS[2:])}))
        # the preset's optimizer takes --lr too (1000 saturates, 1e308 diverges)
        argv += draw(_optimizer(clean) if draw(st.booleans()) else
                     _options({"lr": _value(clean, REALS, BAD_REALS)}))
    else:
        argv += draw(_network(clean, None))
    if command in ("fit", "check", "compare", "explain"):
        argv += draw(_options(_blocks(clean)))
    if command == "check":
        argv += draw(_options({"batch": _value(clean, SMALL, BAD_INTS + HUGE),
                               "replay": replay_texts()})) + draw(_flags(["labels"]))
        argv += draw(_optimizer(clean)) if draw(st.booleans()) else []
    if command == "explain":
        argv += draw(_options({"values": _value(clean, SMALL, BAD_INTS + HUGE)}))
        argv += draw(_flags(["derivatives"]))
    if command == "hessian":
        argv += draw(_options({"top": _value(clean, SMALL, (*BAD_INTS, "50", *HUGE)),
                               "every": _value(clean, ("1", "2"), BAD_INTS + HUGE)}))
    # --quiet is drawn, not always given: the verbose printing of every result (a table
    # with inf in it, a diverged run's log) is where a format can meet a value it was not
    # written for; the output is captured, never shown
    return argv + draw(_options(_common(clean))) + draw(_flags(["json", "quiet"]))


def _strict_json(text: str) -> Any:
    """json.loads refusing NaN, Infinity and -Infinity (not JSON)."""
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in --json output: not strict JSON")

    return json.loads(text, parse_constant=refuse)


def _run(argv: list[str]) -> tuple[object, str, str]:
    """main(argv) in this process: its exit status (a returned one or SystemExit's), stdout
    and stderr.  Any other exception escapes: that is a traceback for the user."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: object = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


# Every example runs a tiny command or is refused before it starts: most take
# milliseconds, one that runs torch and JAX takes up to a second (JAX's persistent cache
# holds the programs of the ci profile's derandomized draws); the ci profile's 150: ~26 s.
@given(command_lines())
def test_the_command_line_never_shows_a_traceback(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        argv = [arg.replace(TMP, tmp) for arg in argv]
        code, out, err = _run(argv)
    note(f"exit status {code}\nstderr: {err}\nstdout: {out[:2000]}")
    assert code in (0, 1, 2), f"exit status {code!r}"
    event(f"{argv[0]}: exit status {code}")
    assert "Traceback" not in err
    if code != 0:
        assert len(err.strip().splitlines()) <= 1, f"stderr has more than one line:\n{err}"
    if "--json" in argv:
        _strict_json(out)


# the Python API's arrays -----------------------------------------------------------------

SPECS = {
    "plain": hw.NetworkSpec((3, 4, 2), ("tanh", "sigmoid"), "half_mse", "mean"),
    "labels": hw.NetworkSpec((3, 4, 3), ("relu", "softmax"), "softmax_cross_entropy", "sum",
                             0.1),
    "one-hot": hw.NetworkSpec((2, 3, 3), ("gelu", "softmax"), "softmax_cross_entropy"),
    "bce": hw.NetworkSpec((3, 4, 2), ("elu", "sigmoid"), "bce"),
    "blocks": hw.NetworkSpec((3, 4, 4, 2), ("tanh", "relu", "identity"), "mse",
                             norms=("batch", "layer"), dropout=(0.5, 0.0),
                             residual=(False, True)),
}
OPTIMIZERS = (hw.OptimizerSpec("sgd", 0.05), hw.OptimizerSpec("adam", 0.01),
              hw.OptimizerSpec("rmsprop", 0.01, {"centered": True, "momentum": 0.5}),
              hw.OptimizerSpec("adagrad", 0.05))
ENTRIES: dict[str, tuple[str, ...]] = {
    "loss_and_grads": ("params", "x", "y", "masks"), "trace": ("params", "x", "y", "masks"),
    "predict": ("params", "x", "running"), "step": ("params", "grads", "state"),
    "train": ("params", "x", "y")}
"""Each entry point and the arguments it takes (the ones a spoil may reach)."""

DTYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
          np.uint64, np.float16, np.float32, np.float64, np.longdouble, np.complex64,
          np.complex128, np.object_)


class Subclass(np.ndarray):
    """An ndarray subclass of the user's own."""


def problem(spec: hw.NetworkSpec, batch: int, seed: int, dtype: type, mask_dtype: type,
            label_dtype: type) -> dict[str, Any]:
    """Every argument of every entry point, valid, from one seed; dropout's keep-masks and
    class labels in any dtype that holds them."""
    rng = np.random.default_rng(seed)
    params = hw.init_params(spec, rng, "glorot_uniform", dtype)
    x = rng.uniform(-2, 2, (batch, spec.layer_sizes[0])).astype(dtype)
    n_out = spec.layer_sizes[-1]
    if spec.activations[-1] == "softmax":
        labels = rng.integers(0, n_out, batch).astype(label_dtype)
        y = labels if spec.reduction == "sum" else np.eye(n_out, dtype=dtype)[labels]
    else:
        y = rng.uniform(0, 1, (batch, n_out)).astype(dtype)
    masks = (draw_masks(spec, batch, rng, np.dtype(mask_dtype)) if any(spec.dropout)
             else None)
    opt = OPTIMIZERS[seed % len(OPTIMIZERS)]
    grads = [{k: rng.normal(size=v.shape).astype(dtype) for k, v in layer.items()}
             for layer in params]
    state = hw.init_state(opt, params)
    for _ in range(2):              # the buffers away from their start, as a run leaves them
        _, state = hw.step(opt, params, grads, state)
    return {"params": params, "x": x, "y": y, "masks": masks, "opt": opt,
            "running": hw.init_running(spec, dtype) if "batch" in spec.norms else None,
            "grads": grads, "state": state}


def leaves(args: dict[str, Any], names: tuple[str, ...]) -> list[tuple[tuple[Any, ...], str]]:
    """Every array among the arguments ``names``: its path and the name a message gives it."""
    found = []

    def walk(value: Any, path: tuple[Any, ...], name: str) -> None:
        if isinstance(value, np.ndarray):
            found.append((path, name))
        elif isinstance(value, dict):
            for key in value:
                walk(value[key], (*path, key), f"{name}[{key!r}]")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, (*path, i), f"{name}[{i}]")

    for name in names:
        walk(args[name], (name,), name)
    return found


def replaced(args: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """``args`` with the value at ``path`` replaced; nothing of the caller's is modified
    (the containers on the way are copied, the arrays shared)."""
    if len(path) == 1:
        return {**args, path[0]: value} if isinstance(args, dict) else [
            value if i == path[0] else item for i, item in enumerate(args)]
    head = copy.copy(args[path[0]])
    head = replaced(head, path[1:], value)
    if isinstance(args, dict):
        return {**args, path[0]: head}
    return [head if i == path[0] else item for i, item in enumerate(args)]


def _quietly(make: Callable[[], Any]) -> Any:
    """Make a spoiled array without NumPy's warnings (np.matrix's, a cast's)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return make()


@st.composite
def spoiled(draw: st.DrawFn, a: np.ndarray, kind: str) -> tuple[Any, str, str]:
    """A replacement for the array ``a``, how it was made, and what the entry point must do
    with it: "valid" (take it), "invalid" (refuse it: a TypeError or ValueError naming it),
    "relational" (valid alone, maybe not beside the other arguments: a dtype or a shape
    they disagree with) or "either" (a big-endian float: refusing it is fine too).

    ``kind``: "float" (x, y, params, ...), "labels" (y as integer class labels) or "mask"
    (dropout's keep-masks: 0s and 1s of any real dtype).
    """
    how = draw(st.sampled_from(("list", "matrix", "masked", "subclass", "dtype", "byteswap",
                                "nonfinite", "shape", "layout", "scalar")))
    if how == "list":
        return a.tolist(), how, "invalid"
    if how == "matrix" and a.ndim == 2:
        return _quietly(lambda: np.asmatrix(a)), how, "invalid"
    if how == "masked":
        mask = draw(st.sampled_from((False, True)))
        return np.ma.masked_array(a, mask=np.full(a.shape, mask)), how, "invalid"
    if how == "subclass":
        return a.view(Subclass), how, "invalid"
    if how == "dtype":
        dtype = np.dtype(draw(st.sampled_from([d for d in DTYPES if d != a.dtype])))
        value = _quietly(lambda: a.astype(dtype))
        if kind == "float":
            return value, f"dtype {dtype}", ("relational" if dtype in FLOAT_DTYPES
                                             else "invalid")
        real = dtype.kind in ("iu" if kind == "labels" else "biuf")
        return value, f"dtype {dtype}", "valid" if real else "invalid"
    if how == "byteswap" and a.dtype.kind == "f":
        return a.astype(a.dtype.newbyteorder()), how, "either"
    if how == "nonfinite" and a.size:
        value = a.copy()
        index = draw(st.integers(0, a.size - 1))
        if kind == "labels":
            limits = np.iinfo(a.dtype)          # a class beyond the last, or below 0
            value.flat[index] = draw(st.sampled_from((limits.max, -1) if limits.min < 0
                                                     else (limits.max,)))
        else:
            value = value.astype(np.float64) if kind == "mask" else value
            value.flat[index] = draw(st.sampled_from((np.nan, np.inf, -np.inf) + (
                (0.5, -1.0) if kind == "mask" else ())))     # a keep-mask is 0s and 1s
        return value, f"{how} at {index}", "invalid"
    if how == "shape":
        shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
        if shape == a.shape:
            return a, "same shape", "valid"
        value = np.ones(shape, dtype=a.dtype)
        if kind == "labels":
            value = np.zeros(shape, dtype=a.dtype)
        return value, f"shape {shape}", "relational" if len(shape) == a.ndim else "invalid"
    if how == "layout":             # the same values in another memory layout
        layout = draw(st.sampled_from(("fortran", "strided", "read-only", "read-only view")))
        if layout == "fortran":
            value = np.asfortranarray(a)
        elif layout == "strided":       # every other element of an array twice as long
            value = np.repeat(a, 2, axis=-1)[..., ::2] if a.ndim else a
        elif layout == "read-only":
            value = a.copy()
            value.flags.writeable = False
        else:
            value = np.broadcast_to(a, a.shape)
        return value, layout, "valid"
    scalar = draw(st.sampled_from(("python float", "numpy scalar", "0-d", "None")))
    first = a.flat[0] if a.size else 0
    value = {"python float": float(first), "numpy scalar": first,
             "0-d": np.asarray(first), "None": None}[scalar]
    return value, scalar, "invalid"


CONTAINERS: dict[str, list[tuple[str, Callable[[Any], Any], str]]] = {
    "params": [("tuple", tuple, "valid"), ("a layer short", lambda p: p[:-1], "relational"),
               ("a dict", lambda p: dict(enumerate(p)), "invalid"),
               ("a key more", lambda p: [p[0] | {"c": p[0]["b"]}, *p[1:]], "invalid")],
    "masks": [("tuple", tuple, "valid"), ("None", lambda m: None, "invalid"),
              ("the array alone", lambda m: m[0], "invalid"), ("empty", lambda m: [], "invalid"),
              ("an entry more", lambda m: [*m, None], "invalid")],
    "no masks": [("a number", lambda m: 5, "invalid"), ("[None]", lambda m: [None], "valid"),
                 ("an array", lambda m: np.ones((2, 4)), "invalid")],
    "running": [("None", lambda r: None, "invalid"), ("tuple", tuple, "valid")],
}
"""Spoils of a whole argument: (how, the change, what the entry point must do); "no masks":
of masks on a spec without dropout."""


def _names(message: str, name: str) -> bool:
    """``name`` (x, y, params[1]['W'], masks, ...) in the message as a word of its own."""
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", message) is not None


def _finite_leaves(result: Any) -> list[tuple[str, np.ndarray]]:
    """Every array and NumPy scalar of a result (Trace, History, (loss, grads), ...)."""
    found: list[tuple[str, np.ndarray]] = []

    def walk(value: Any, name: str) -> None:
        if isinstance(value, (np.ndarray, np.generic)) and not isinstance(value, np.integer):
            found.append((name, np.asarray(value)))
        elif isinstance(value, dict):
            for key in value:
                walk(value[key], f"{name}[{key!r}]")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{name}[{i}]")

    if isinstance(result, hw.History):
        for field in ("losses", "params", "state", "running"):
            walk(getattr(result, field), field)
    else:
        walk(result, "result")
    return found


def call(entry: str, spec: hw.NetworkSpec, args: dict[str, Any]) -> Any:
    if entry == "loss_and_grads":
        return hw.loss_and_grads(spec, args["params"], args["x"], args["y"], args["masks"])
    if entry == "trace":
        return hw.trace(spec, args["params"], args["x"], args["y"], args["masks"])
    if entry == "predict":
        return hw.predict(spec, args["params"], args["x"], args["running"])
    if entry == "step":
        return hw.step(args["opt"], args["params"], args["grads"], args["state"])
    return hw.train(spec, args["params"], args["x"], args["y"], args["opt"], epochs=2,
                    rng=np.random.default_rng(0))


REAL_DTYPES = [d for d in DTYPES if np.dtype(d).kind in "biuf"]
INT_DTYPES = [d for d in DTYPES if np.dtype(d).kind in "iu"]


@given(st.data(), st.sampled_from(sorted(ENTRIES)), st.sampled_from(sorted(SPECS)),
       st.sampled_from((np.float64, np.float32)), st.integers(1, 5), st.integers(0, 2**16),
       st.sampled_from(REAL_DTYPES), st.sampled_from(INT_DTYPES))
def test_every_array_argument_is_taken_or_refused_by_name(
        data: st.DataObject, entry: str, spec_name: str, dtype: type, batch: int,
        seed: int, mask_dtype: type, label_dtype: type) -> None:
    spec = SPECS[spec_name]
    args = problem(spec, max(batch, 2), seed, dtype, mask_dtype, label_dtype)
    arguments = tuple(name for name in ENTRIES[entry]
                      if args[name] is not None or name == "masks")
    spoils: list[tuple[str, str, str]] = []           # (argument's name, how, verdict)
    for _ in range(data.draw(st.integers(1, 2), label="spoils")):
        targets = leaves(args, arguments)
        containers = [name for name in arguments if name in CONTAINERS]
        if containers and data.draw(st.integers(0, 4), label="whole argument?") == 0:
            name = data.draw(st.sampled_from(containers), label="argument")
            spoils_of = "no masks" if name == "masks" and not any(spec.dropout) else name
            how, change, verdict = data.draw(st.sampled_from(CONTAINERS[spoils_of]), label="how")
            args = {**args, name: change(args[name])}
        else:
            # an argument first, then one of its arrays: x is drawn as often as all params
            argument = data.draw(st.sampled_from(sorted({path[0] for path, _ in targets})),
                                 label="argument")
            path, name = data.draw(st.sampled_from([t for t in targets if t[0][0] == argument]),
                                   label="array")
            a = args[path[0]]
            for key in path[1:]:
                a = a[key]
            kind = ("mask" if path[0] == "masks" else
                    "labels" if a.dtype.kind in "iu" else "float")
            value, how, verdict = data.draw(spoiled(a, kind), label=name)
            args = replaced(args, path, value)
        spoils.append((name, how, verdict))
        if verdict == "invalid":
            break
    note(f"{entry}, {spec_name} {np.dtype(dtype)}, batch {max(batch, 2)}: {spoils}")
    before = snapshot(args)
    try:
        result = call(entry, spec, args)
    except (TypeError, ValueError) as error:
        message = str(error)
        assert_unchanged(before, args)
        assert any(v != "valid" for _, _, v in spoils), f"valid arguments refused: {message}"
        named = any(_names(message, name) for name, _, _ in spoils) or (
            any(v in ("relational", "either") for _, _, v in spoils)
            and any(_names(message, name) for name in arguments))
        assert named, f"the message names no spoiled argument: {message}"
        event(f"{entry}: refused")
        return
    assert_unchanged(before, args)
    assert not any(v == "invalid" for _, _, v in spoils), "an invalid argument was taken"
    for name, value in _finite_leaves(result):
        assert value.dtype == np.dtype(dtype), f"{name} has dtype {value.dtype}, not {dtype}"
        assert np.isfinite(value).all(), f"{name} is not finite"
    event(f"{entry}: taken")
