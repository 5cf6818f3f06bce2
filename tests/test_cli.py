"""The command line, driven through its entry point: every command, --json, the error paths."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pytest

import handwritten as hw
from bpnet.cli import main
from bpnet.tolerances import LANCZOS_RTOL
from handwritten import seed
from tests.blog_program import blog_training_run


def _png_ok(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200 and image.std() > 0


def test_fit_default_is_the_blog_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Same data, init, lr, epochs and printed log as the blog's program (seed 0)."""
    out = tmp_path / "fit.png"
    assert main(["fit", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    log = [line for line in lines if line.startswith("epoch: ")]
    assert [int(line.split(",")[0][7:]) for line in log] == list(range(0, 1000, 10))
    x, y, *weights = seed.blog_problem(np.random.default_rng(0))
    *_, printed = blog_training_run(x, y, *weights, lr=0.1, epochs=1000)
    np.testing.assert_allclose([float(line.split("loss: ")[1]) for line in log], printed,
                               rtol=1e-9)
    assert lines[-1] == f"plot saved to {out}"
    _png_ok(out)


@pytest.mark.parametrize("dataset", ["sin", "xor", "moons", "spirals"])
def test_fit_every_dataset_json(dataset: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"{dataset}.png"
    assert main(["fit", "--dataset", dataset, "--epochs", "30", "--batch-size", "32", "--json",
                 "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["epochs"] == 30 and result["plot"] == str(out)
    assert [epoch for epoch, _ in result["log"]] == [0, 10, 20]
    assert np.isfinite(result["final_loss"])
    _png_ok(out)


def test_fit_float32_and_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--dtype", "float32", "--optimizer", "momentum", "--lr", "0.01",
                 "--epochs", "20", "--init", "he_normal", "--layers", "1,6,6,1",
                 "--activations", "tanh,gelu,identity", "--loss", "mse", "--reduction", "mean",
                 "--quiet", "--out", str(tmp_path / "f.png")]) == 0
    assert "epoch:" not in capsys.readouterr().out


def test_check_passes_and_reports_every_quantity(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--layers", "3,5,4,2", "--activations", "tanh,relu,softmax",
                 "--loss", "softmax_cross_entropy", "--labels", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["first_failure"] is None
    names = [row["quantity"] for row in result["rows"]]
    assert names[:2] == ["layer 0 z", "layer 0 a"] and "loss" in names
    assert names[-4:] == ["layer 0 d_a", "layer 0 d_z", "layer 0 d_W", "layer 0 d_b"]
    assert all(row["vs reference_torch"]["ok"] and row["vs reference_jax"]["ok"]
               for row in result["rows"])
    assert sum("vs finite differences" in row for row in result["rows"]) == 6


def test_check_fails_and_names_the_first_wrong_quantity(tmp_path: Path) -> None:
    """A planted bug in tanh's derivative, in a copy of the project: exit 1, 'layer 0 d_z'."""
    import shutil

    root = Path(__file__).resolve().parent.parent
    for part in ("handwritten", "bpnet", "reference_torch", "reference_jax"):
        shutil.copytree(root / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    act = tmp_path / "handwritten" / "activations.py"
    source = act.read_text()
    assert source.count("d_z = a * a\n") == 1          # tanh' = 1 - a**2 starts with a**2
    act.write_text(source.replace("d_z = a * a\n", "d_z = a.copy()\n"))      # now 1 - a
    result = subprocess.run([sys.executable, "-m", "bpnet.cli", "check", "--layers", "2,4,3,1",
                             "--activations", "tanh,sigmoid,identity", "--loss", "mse"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "first disagreement in derivation order: layer 0 d_z" in result.stdout


def test_compare_trains_all_three_and_plots(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "compare.png"
    assert main(["compare", "--epochs", "50", "--json", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 50
    assert set(result["final_loss"]) == {"handwritten", "reference_torch", "reference_jax"}
    assert max(result["max_divergence"].values()) < 1e-12
    _png_ok(out)


def test_compare_prints_the_loss_fit_prints(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Both print the mean loss of the final params (the blog trains on the sum)."""
    args = ["--epochs", "30", "--quiet", "--json"]
    assert main(["fit", *args, "--out", str(tmp_path / "f.png")]) == 0
    fitted = json.loads(capsys.readouterr().out)["final_loss"]
    assert main(["compare", *args, "--out", str(tmp_path / "c.png")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["final_loss"]["handwritten"] == fitted
    assert result["within_envelope"] is True


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_compare_says_it_cannot_judge_batch_norm_under_an_adaptive_optimizer(
        optimizer: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A batch-norm layer's bias follows rounding noise under a step that divides by the
    gradient's scale (rmsprop with eps 0 drifted it 4.4 apart, and the evaluation losses
    0.0135 / 0.0155 / 0.0289, while compare said "within the envelope"): no verdict, and
    the reason, in text and JSON; sgd on the same network is still judged."""
    args = ["--dataset", "moons", "--norms", "batch", "--batch-size", "50", "--epochs", "3",
            "--out", str(tmp_path / "c.png")]
    # eps 1e-30, not 0: the bias's gradient is rounding noise, and where a NumPy's summation
    # cancels it to exactly 0 (NumPy 2.4's does at step 1 here), 0 / sqrt(0) is NaN
    hyper = ["--hyper", "eps=1e-30"] if optimizer == "rmsprop" else []
    assert main(["compare", *args, "--optimizer", optimizer, *hyper, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["within_envelope"] is None and result["outside_envelope"] == []
    assert result["not_judged"].startswith("not judged: the bias before a batch norm")
    assert main(["compare", *args, "--optimizer", optimizer, *hyper]) == 0
    assert "not judged: the bias before a batch norm" in capsys.readouterr().out
    assert main(["compare", *args, "--optimizer", "sgd", "--json"]) == 0
    judged = json.loads(capsys.readouterr().out)
    assert judged["within_envelope"] is True and judged["not_judged"] is None


def test_compare_fails_when_a_trajectory_leaves_the_envelope(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """Adam without its second bias correction, in handwritten only: exit 1, naming the first
    step outside the suite's envelope (before, compare printed a divergence and exited 0)."""
    from handwritten import optimizers

    def no_correction(grads, state, params, lr, hyper):  # type: ignore[no-untyped-def]
        updates, new = optimizers.adam_update(grads, state, params, lr, hyper)
        c = (1 - hyper["beta2"] ** new["t"]) ** 0.5   # v's correction undone, eps aside
        return [{k: u * c for k, u in layer.items()} for layer in updates], new

    monkeypatch.setitem(hw.OPTIMIZERS, "adam", optimizers.OptimizerRule(
        no_correction, optimizers.adam_buffers))
    assert main(["compare", "--optimizer", "adam", "--lr", "0.01", "--epochs", "20", "--out",
                 str(tmp_path / "c.png")]) == 1
    out = capsys.readouterr().out
    assert "FAIL: handwritten vs reference_torch: the params after step 1 differ by" in out
    assert "outside the suite's envelope" in out


def test_explain_prints_the_derivation_with_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain"]) == 0
    text = capsys.readouterr().out
    assert "z0 = x @ W0 + b0" in text and "(N, 1) @ (1, 10) + (10,) -> (N, 10)" in text
    assert "d_W0 = x.T @ d_z0" in text and "d_z1 = d_a1 * a1 * (1 - a1)" in text
    assert main(["explain", "--layers", "2,3,2", "--activations", "relu,softmax", "--loss",
                 "softmax_cross_entropy", "--values", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["autograd"] == "reference_torch"
    assert set(result["inputs"]) == {"x", "y", "W0", "b0", "W1", "b1"}
    order = [e["quantity"] for e in result["values"]]
    assert order[:4] == ["layer 0 z", "layer 0 a", "layer 1 z", "layer 1 a"]
    assert order[4] == "loss" and order[-1] == "layer 0 d_b"
    assert all(e["equation"] and e["max_rel_error"] < 1e-10 for e in result["values"])
    # the entries worked by hand: the sum of the printed terms is handwritten's value
    worked = [line for line in result["by_hand"] if "(handwritten: " in line]
    assert len(worked) == 2
    for line in worked:
        value, mine = line.split("= ")[-1].split("   (handwritten: ")
        assert float(value) == pytest.approx(float(mine.rstrip(")")), rel=1e-12)
    for entry in result["values"]:
        np.testing.assert_allclose(entry["handwritten"], entry["reference_torch"], rtol=1e-10,
                                   atol=1e-14)


def test_explain_prints_each_registered_equation() -> None:
    """explain takes every activation's and loss's equation (and constants such as the leaky
    slope) from the registries: each appears, with layer indices, in its derivation."""
    from bpnet.explain import at_layer, derivation
    from handwritten import ACTIVATIONS, LOSSES, NetworkSpec

    assert at_layer("d_a * (1 - a**2)", 3) == "d_a3 * (1 - a3**2)"
    assert at_layer("sum_k y_k z_k, sigmoid(z)", 0) == "sum_k y_k z_k, sigmoid(z0)"
    for name, activation in ACTIVATIONS.items():
        spec = (NetworkSpec((2, 3), (name,), "half_mse") if activation.output_only else
                NetworkSpec((2, 3, 1), (name, "identity"), "half_mse"))
        assert at_layer(activation.derivative, 0) in "\n".join(derivation(spec)), name
    for name, loss in LOSSES.items():
        out = sorted(loss.output_activations or ["identity"])[0]
        text = "\n".join(derivation(NetworkSpec((2, 3, 2), ("tanh", out), name)))
        assert f"L = {loss.equation}" in text and at_layer(loss.gradient, 1) in text, name


def test_explain_derivatives_prints_every_second_derivative_with_shapes(
        capsys: pytest.CaptureFixture[str]) -> None:
    """--derivatives: the tangent pass, the R-operator's backward with each activation's f''
    and the loss's Hessian from the registries (the Gauss-Newton terms marked *), and the
    per-example gradients, each with this architecture's shapes."""
    from bpnet.explain import at_layer, beyond_the_gradient
    from handwritten import ACTIVATIONS, LOSSES, NetworkSpec

    assert at_layer("d_a * f(z) * z_dot, a_dot", 2) == "d_a2 * f(z2) * z2_dot, a2_dot"
    assert main(["explain", "--derivatives", "--layers", "4,5,3", "--activations",
                 "gelu,softmax", "--loss", "softmax_cross_entropy", "--weight-decay", "0.1"]) == 0
    text = capsys.readouterr().out
    assert "z1_dot = a0_dot @ W1 + a0 @ W1_dot + b1_dot" in text and "(N, 3)" in text
    assert "R{d_W0} = x.T @ R{d_z0} + 0.1 W0_dot" in text
    assert "R{d_a0} = R{d_z1} @ W1.T + *[d_z1 @ W1_dot.T]" in text
    assert "d_W1[i] = outer(a0[i], d_z1[i])" in text and "(N, 5, 3)" in text
    for name, activation in ACTIVATIONS.items():
        if activation.output_only or activation.second_derivative == "0":
            continue
        lines = beyond_the_gradient(NetworkSpec((2, 3, 1), (name, "identity"), "half_mse"))
        assert at_layer(activation.second_derivative, 0) in "\n".join(lines), name
    for name, loss in LOSSES.items():
        out = sorted(loss.output_activations or ["identity"])[0]
        lines = beyond_the_gradient(NetworkSpec((2, 3, 2), ("tanh", out), name))
        assert at_layer(loss.hessian, 1) in "\n".join(lines), name


@pytest.mark.parametrize(("argv", "words"), [
    (["fit", "--loss", "hinge"], "invalid choice: 'hinge'"),
    (["fit", "--epochs", "0"], "expected a positive integer"),
    (["fit", "--lr", "-1"], "expected a positive number"),
    (["fit", "--layers", "1,x,1"], "expected comma-separated integers"),
    (["fit", "--layers", "1,4,2"], "has 1 output(s), but --layers ends with 2"),
    (["fit", "--dataset", "moons", "--loss", "mse"], "has integer class labels"),
    (["check", "--layers", "2,3", "--activations", "tanh,tanh"], "inconsistent network"),
    (["check", "--activations", "softmax,sigmoid"], "only on the output layer"),
    (["fit", "--batch-size", "500"], "--batch-size must be at most 100"),
    (["fit", "--out", "x.txt"], "must end in a plot format matplotlib writes"),
    (["fit", "--out", "noext"], "must end in a plot format matplotlib writes"),
    (["compare", "--out", "/etc/hostname/plot.png"], "which is a file, not a directory"),
    (["fit", "--seed", "-1"], "--seed: expected a non-negative integer"),
    (["check", "--seed", "-1"], "--seed: expected a non-negative integer"),
    (["compare", "--seed", "-1"], "--seed: expected a non-negative integer"),
    (["explain", "--seed", "-1"], "--seed: expected a non-negative integer"),
    (["fit", "--layers", "1,10000000000,1"], "of memory, more than this machine's"),
    (["compare", "--layers", "1,10000000000,1"], "of memory, more than this machine's"),
    (["check", "--batch", "1000000000"], "of memory, more than this machine's"),
    (["explain", "--values", "1000000000"], "of memory, more than this machine's"),
    (["fit", "--activations", "sigmoid,,sigmoid"], "expected comma-separated names"),
    (["check", "--labels"], "--labels needs a loss with class targets"),
    (["check", "--only", "tanh"], "--only selects entries of --all: give --all too"),
    (["check", "--lr", "0.1"], "--lr is the learning rate of --optimizer"),
    (["check", "--all", "--optimizer", "adam"], "it takes no --optimizer or --replay"),
    (["check", "--all", "--only", "nothing"], "--only 'nothing' matches no entry of --all"),
    (["check", "--replay", "Problem(NetworkSpec((1, 1), ('tanh',), 'mse'), batch=0, seed=1)"],
     "batch"),
    # batch norm needs two samples: refused as fit refuses it, not a traceback
    (["check", "--layers", "3,4,2", "--activations", "tanh,identity", "--norms", "batch",
      "--batch", "1"], "a batch of 1 under batch norm"),
    (["check", "--replay", "Problem(NetworkSpec((3, 4, 2), ('tanh', 'identity'), "
      "norms=('batch',)), batch=1, seed=0)"], "a batch of 1 under batch norm"),
    # a replayed case is sized before anything is drawn, as --layers and --batch are
    (["check", "--replay", "Problem(NetworkSpec((1000000, 1000000, 1), ('tanh', 'identity')), "
      "batch=1, seed=0)"], "of memory, more than this machine's"),
    (["check", "--replay", "Problem(NetworkSpec((1, 1), ('tanh',)), batch=100000000000, "
      "seed=0)"], "of memory, more than this machine's"),
    # malformed replay text: one line, never the default case
    (["check", "--replay", ""], "--replay is empty"),
    (["check", "--replay", "  "], "--replay is empty"),
    (["check", "--replay=" + "-" * 3000 + "1"], "--replay nests too deeply"),
    (["check", "--replay=" + "-" * 100_000 + "1"], "--replay nests too deeply"),
    (["check", "--replay", "Problem(NetworkSpec((1, 1), ('tanh',)), batch=" + "-" * 3000
      + "1, seed=0)"], "--replay nests too deeply"),
])
def test_bad_input_is_one_line_exit_2(argv: list[str], words: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert words in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_framework_is_one_line_exit_2() -> None:
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n"
            "            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from bpnet.cli import main\n"
            "sys.exit(main(['check']))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 2
    assert "pip install -e '.[torch]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "bpnet"
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0
    for command in ("fit", "check", "compare", "explain"):
        assert command in result.stdout


def test_out_that_is_a_directory_is_refused(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root may write anywhere: no directory is unwritable to it")
def test_out_in_a_directory_without_write_permission_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main(["fit", "--epochs", "1", "--out", str(locked / "fit.png")]) == 2
    assert "no permission to write" in capsys.readouterr().err


def test_an_error_with_json_is_also_a_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--json", "--seed", "-1"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out) == {"error": err.split("error: ", 1)[1].strip(), "exit_status": 2}


@pytest.mark.parametrize("command", ["fit", "check", "compare", "explain"])
def test_every_command_takes_quiet(command: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    extra = {"fit": ["--epochs", "20", "--out", str(tmp_path / "f.png")],
             "compare": ["--epochs", "3", "--out", str(tmp_path / "c.png")],
             "check": [], "explain": ["--values", "2"]}[command]
    assert main([command, "--quiet", *extra]) == 0
    out = capsys.readouterr().out
    assert "epoch:" not in out and "values for batch" not in out
    if command == "check":
        assert out.strip() == "ok: every quantity agrees within the tolerance policy"


def _run(*args: str, env: dict[str, str] | None = None, **kwargs: Any
         ) -> subprocess.Popen[str]:
    exe = Path(sys.executable).parent / "bpnet"
    return subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=None if env is None else os.environ | env, **kwargs)


def test_ctrl_c_is_one_line_exit_130_and_fit_saves_the_plot_so_far(tmp_path: Path) -> None:
    out = tmp_path / "fit.png"
    # Ctrl-C as a terminal delivers it: a suite started in the background (`make test &`)
    # has SIGINT ignored, and a child would inherit that (Python then installs no handler);
    # with a handler here, the child starts with the default
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = _run("fit", "--epochs", "100000000", "--batch-size", "50", "--out", str(out))
    finally:
        signal.signal(signal.SIGINT, ignored)
    with proc:
        assert proc.stdout is not None and proc.stdout.readline().startswith("epoch: 0")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [
        f"bpnet fit: interrupted; the plot of the params so far is in {out}"]
    _png_ok(out)


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """bpnet fit | head -1: the reader goes away; no traceback, no message, status 141."""
    with _run("fit", "--out", str(tmp_path / "fit.png")) as proc:
        assert proc.stdout is not None and proc.stdout.readline().startswith("epoch: 0")
        proc.stdout.close()
        proc.wait(timeout=120)
        assert proc.stderr is not None
        err = proc.stderr.read()
    assert err == "" and proc.returncode == 141


def test_an_ascii_terminal_gets_no_traceback(tmp_path: Path) -> None:
    with _run("compare", "--epochs", "3", "--out", str(tmp_path / "c.png"),
              env={"PYTHONIOENCODING": "ascii"}) as proc:
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "largest parameter divergence" in out and "Traceback" not in err


def test_huge_epochs_draw_the_batch_order_one_epoch_at_a_time() -> None:
    """--epochs 100000000 --batch-size 50 once drew every epoch's order up front (~90 GB)."""
    from bpnet.runs import TrainingCase
    from handwritten import Shuffle

    case = TrainingCase.make("blog", seed.BLOG_SPEC, seed=0, dtype="float64", epochs=10**8,
                             batch_size=50)
    assert isinstance(case.batch_order, Shuffle)


def test_a_run_that_does_not_train_warns_in_one_line(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """--lr 1000 saturates every unit: the loss goes flat, every gradient is exactly zero."""
    assert main(["fit", "--lr", "1000", "--quiet", "--out", str(tmp_path / "f.png")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bpnet fit: warning: training did not train")
    assert "every gradient is exactly zero" in err[0] and "units saturated" in err[0]
    assert main(["fit", "--lr", "1000", "--json", "--out", str(tmp_path / "f.png")]) == 0
    assert "every gradient is exactly zero at the final params" in json.loads(
        capsys.readouterr().out)["warnings"]
    assert main(["compare", "--lr", "1000", "--epochs", "200", "--quiet", "--out",
                 str(tmp_path / "c.png")]) == 0
    assert "warning: training did not train" in capsys.readouterr().err


def test_a_nan_in_the_check_table_is_nan_and_fail() -> None:
    """A reference returning NaN: the table prints nan and FAIL, never 0.00e+00."""
    import types

    import handwritten as hw
    from bpnet.check import cross_check

    def nan_trace(spec: Any, params: Any, x: Any, y: Any) -> Any:
        t = hw.trace(spec, params, x, y)
        t.layers[0]["d_z"] = np.full_like(t.layers[0]["d_z"], np.nan)
        return t

    fake = types.SimpleNamespace(trace=nan_trace, loss_and_grads=hw.loss_and_grads)
    x, y, *weights = seed.blog_problem(np.random.default_rng(0), n=5)
    report = cross_check(seed.BLOG_SPEC, seed.to_params(*weights), x, y,
                         {"handwritten": hw, "fake": fake})
    row = next(line for line in report.table().splitlines() if line.startswith("layer 0 d_z"))
    assert "nan FAIL" in row and "0.00e+00" not in row
    assert "layer 0 d_z" in report.verdict() and not report.ok


def test_fit_takes_every_optimizer_option(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's command line: adam with amsgrad, a cosine schedule over the run (t_max
    filled in: 1000 epochs of one step) and clipping; the loss falls."""
    assert main(["fit", "--optimizer", "adam", "--amsgrad", "--schedule", "cosine",
                 "--clip-norm", "1", "--json", "--out", str(tmp_path / "f.png")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["optimizer"]["repr"] == (
        "OptimizerSpec('adam', lr=0.1, hyperparams={'amsgrad': True}, schedule=LRSchedule("
        "'cosine', {'t_max': 1000, 'eta_min': 0.0}), clip_norm=1.0)")
    assert result["final_loss"] < result["log"][0][1] / 10
    assert main(["fit", "--optimizer", "momentum", "--hyper", "momentum=0.5,dampening=0.1",
                 "--maximize", "--schedule", "multistep:milestones=10/20,gamma=0.5",
                 "--warmup", "5", "--clip-value", "0.5", "--epochs", "30", "--json",
                 "--out", str(tmp_path / "g.png")]) == 0
    opt = json.loads(capsys.readouterr().out)["optimizer"]
    assert opt["hyperparams"] | {} == {"momentum": 0.5, "dampening": 0.1, "weight_decay": 0.0,
                                       "maximize": True}
    assert "LRSchedule('multistep', {'milestones': (10, 20), 'gamma': 0.5}, warmup=5" in \
        opt["repr"]


@pytest.mark.parametrize(("args", "words"), [
    (["--schedule", "cosinus"], "argument --schedule: expected a schedule name from"),
    (["--schedule", "step:step_size"], "expected KEY=VALUE pairs"),
    (["--schedule", "step"], "schedule 'step' needs ['step_size'] (no default)"),
    (["--hyper", "betas=0.9"], "hyperparams ['betas'] are unknown for 'sgd'"),
    (["--optimizer", "nesterov", "--hyper", "dampening=0.1"], "torch refuses nesterov with "
     "dampening"),
    (["--clip-norm", "1", "--clip-value", "1"], "give clip_norm or clip_value, not both"),
    (["--schedule", "onecycle:total_steps=10", "--epochs", "20"], "the schedule's total_steps "
     "is 10, but the optimizer would take step 20"),
    # values torch takes: the message says why bpnet refuses them
    (["--lr", "inf"], "got inf: torch takes inf, but then the first step makes the params"),
    (["--optimizer", "adam", "--hyper", "eps=inf"], "torch takes inf, but then every update "
     "is 0"),
    (["--optimizer", "momentum", "--hyper", "momentum=inf"], "torch takes inf, but then the "
     "params are inf or NaN"),
    (["--clip-norm", "0"], "torch takes 0 (and less), but then every gradient is clipped to 0"),
    (["--clip-value", "inf"], "torch takes inf, which clips nothing"),
    (["--schedule", "step:step_size=2,gamma=0"], "torch takes gamma <= 0, but 0 makes the "
     "learning rate 0"),
    (["--schedule", "exponential:gamma=-0.5"], "a negative gamma makes it negative"),
    (["--schedule", "multistep:milestones=-5"], "torch takes a negative milestone, but no step "
     "ever reaches it"),
])
def test_bad_optimizer_options_are_one_line_usage_errors(
        args: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", *args, "--out", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err


def test_compare_runs_an_option_optax_lacks_in_torch_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--optimizer", "adam", "--amsgrad", "--epochs", "20",
                 "--out", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "reference_jax    not run: optax.amsgrad keeps the maximum" in out
    assert "reference_torch  final loss" in out and "reference_jax    final loss" not in out
    assert "within the suite's envelope" in out


def test_hessian_lanczos_on_hvp_matches_jax_hessian(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """bpnet hessian on the blog network: Lanczos's top eigenvalues at every checkpoint are
    the largest of jax.hessian's exact spectrum, the plot is written, the exit status 0."""
    out = tmp_path / "hessian.png"
    assert main(["hessian", "--epochs", "60", "--every", "20", "--top", "4", "--json",
                 "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["epochs"] == [0, 20, 40, 60]
    assert result["agrees"] and result["largest_relative_difference"] <= LANCZOS_RTOL
    for top, exact in zip(result["lanczos"], result["exact"]):
        assert len(top) == 4 and len(exact) == 31                 # the blog network's params
        np.testing.assert_allclose(top, exact[:4], rtol=0, atol=LANCZOS_RTOL * max(
            abs(e) for e in exact))
    _png_ok(out)


TINY_CNN = ("Sequential([MaxPool2d(2), Conv2d(1, 2, 3), Activation('relu'), Flatten(), "
            "Dense(8, 10), Activation('softmax')], loss='softmax_cross_entropy', "
            "in_shape=(1, 8, 8))")
"""A convolutional Sequential of 110 params (a 4-D kernel, layers without params) small
enough for jax.hessian's exact spectrum over the digits' 1,438 training images."""


@pytest.mark.parametrize(("dataset", "network", "n_params"), [
    ("digits", TINY_CNN, 110),
    ("moons", "Sequential([Dense(2, 6), BatchNorm1d(6), Activation('tanh'), Residual([Dense(6, "
     "6), LayerNorm(6), Activation('tanh')]), Dense(6, 2), Activation('softmax')], "
     "loss='softmax_cross_entropy', weight_decay=0.01)", 98),
])
def test_hessian_of_a_sequential_matches_jax_hessian(
        dataset: str, network: str, n_params: int, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """bpnet hessian --network: Lanczos on the hand-derived hvp of a Sequential (a CNN on the
    digits; batch norm, a residual around a layer norm and weight decay on the moons) finds
    the largest of every eigenvalue of jax.hessian (reference_jax's loss of the Sequential),
    at every checkpoint."""
    out = tmp_path / "hessian.png"
    assert main(["hessian", "--dataset", dataset, "--network", network, "--epochs", "2",
                 "--every", "1", "--top", "3", "--json", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["epochs"] == [0, 1, 2]
    assert result["agrees"] and result["largest_relative_difference"] <= LANCZOS_RTOL
    for top, exact in zip(result["lanczos"], result["exact"], strict=True):
        assert len(top) == 3 and len(exact) == n_params
        np.testing.assert_allclose(top, exact[:3], rtol=0, atol=LANCZOS_RTOL * max(
            abs(e) for e in exact))
    assert result["lanczos"][0] != result["lanczos"][-1]        # the params trained
    _png_ok(out)


def test_hessian_skips_the_exact_spectrum_of_the_digits_cnn() -> None:
    """The digits' CNN has fewer than EXACT_LIMIT params (1,898), but jax.hessian over its
    training images would hold about 114 GiB: no exact spectrum, and the line says why;
    the tiny CNN above gets one; an MLP is judged by its params alone, as before."""
    from bpnet import datasets, hessian

    cnn = datasets.DIGITS_CNN
    params = hw.init_params(cnn, np.random.default_rng(0), "he_normal")
    why = hessian.no_exact(cnn, params, 1438)
    assert why.startswith("1898 params through 1876 values a sample over 1438 samples: "
                          "jax.hessian would hold about 114 GiB, more than 2 GiB")
    tiny = hw.Sequential([hw.layers.MaxPool2d(2), hw.layers.Conv2d(1, 2, 3),
                          hw.layers.Activation("relu"), hw.layers.Flatten(),
                          hw.layers.Dense(8, 10)], "mse", in_shape=(1, 8, 8))
    assert hessian.no_exact(tiny, hw.init_params(tiny, np.random.default_rng(0)), 1438) == ""
    blog = hw.init_params(seed.BLOG_SPEC, np.random.default_rng(0))
    assert hessian.no_exact(seed.BLOG_SPEC, blog, 10**9) == ""


@pytest.mark.parametrize(("registry", "name", "kind"), [
    ("reference_jax.layers", "Conv2d", "layer"),
    ("reference_jax.activations", "relu", "activation"),
])
def test_hessian_refuses_a_name_without_its_jax_counterpart_on_one_line(
        registry: str, name: str, kind: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """hessian's exact spectrum is reference_jax's (jax.hessian of its loss): a layer kind or
    an activation of the network without its counterpart there is a usage error before
    anything runs -- exit 2, one line, fit's and check's message (``_refuse_gaps``); torch's
    registries play no part."""
    import importlib

    from handwritten.checks import no_counterpart

    module = importlib.import_module(registry)
    table = "LAYERS" if kind == "layer" else "ACTIVATIONS"
    monkeypatch.delitem(getattr(module, table), name)
    assert main(["hessian", "--dataset", "digits", "--network", TINY_CNN, "--epochs", "1",
                 "--out", str(tmp_path / "h.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    where = f"{registry.replace('.', '/')}.py" + (" (LAYERS)" if kind == "layer" else "")
    assert err == [f"bpnet hessian: error: {no_counterpart(kind, name, where)}"], err


def test_hessian_refuses_a_top_beyond_the_params(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hessian", "--top", "31", "--epochs", "2", "--out", "unused.png"]) == 2
    assert "--top must be between 1 and the number of params - 1 (30), got 31" in \
        capsys.readouterr().err


def test_explain_shows_hidden_blocks(capsys: pytest.CaptureFixture[str]) -> None:
    """--norms, --dropout, --residual (one value for every hidden layer, or one per layer):
    the block's forward and backward with shapes; what is not written yet is refused."""
    assert main(["explain", "--layers", "3,4,4,2", "--activations", "tanh,relu,identity",
                 "--norms", "batch,layer", "--dropout", "0.2,0", "--residual", "0,1"]) == 0
    text = capsys.readouterr().out
    for line in ("mu0, var0 = mean, biased var of z0 (axis=0)", "n1 = gamma1 * x_hat1 + beta1",
                 "a0 = h0 * m0 / (1 - 0.2)", "a1 = h1 + a0", "d_h0 = d_a0 * m0 / (1 - 0.2)",
                 "d_n0 = d_h0 * (1 - h0**2)", "d_a0 = d_z1 @ W1.T + d_a1",
                 "d_gamma1 = sum(d_n1 * x_hat1, axis=0)", "(sums over axis 1,"):
        assert line in text, line
    assert main(["explain", "--layers", "3,4,4,2", "--activations", "tanh,relu,identity",
                 "--residual", "1"]) == 2
    assert "residual[0] needs fan_in == fan_out" in capsys.readouterr().err
    assert main(["explain", "--layers", "3,4,4,2", "--activations", "tanh,relu,identity",
                 "--norms", "batch", "--values", "4"]) == 2
    assert "do not take hidden blocks yet" in capsys.readouterr().err


def test_check_replays_a_block_case(capsys: pytest.CaptureFixture[str]) -> None:
    """tests/test_blocks.py prints the case and its replay command: `bpnet check --replay`
    compares every block quantity against torch and JAX (no finite differences)."""
    case = ("Problem(NetworkSpec(layer_sizes=(2, 3, 3, 1), activations=('tanh', 'relu', "
            "'identity'), loss='mse', reduction='mean', weight_decay=0.0, norms=('batch', "
            "'layer'), dropout=(0.3, 0.0), residual=(False, True)), batch=5, seed=0, "
            "dtype='float64', labels=False)")
    assert main(["check", "--replay", case]) == 0
    text = capsys.readouterr().out
    for row in ("layer 0 mu", "layer 0 x_hat", "layer 0 h", "layer 1 d_h", "layer 0 d_x_hat",
                "layer 1 d_gamma"):
        assert row in text, row
    assert main(["check", "--replay", case, "--optimizer", "adam"]) == 0
    text = capsys.readouterr().out
    for row in ("step 3: layer 0 gamma", "step 1: v of layer 0 beta", "step 2: layer 1 W"):
        assert row in text, row


BLOCK_NET = ["--layers", "2,8,8,3", "--activations", "relu,relu,softmax", "--loss",
             "softmax_cross_entropy", "--norms", "batch,layer", "--dropout", "0.1",
             "--residual", "0,1"]


def test_check_takes_hidden_block_flags(capsys: pytest.CaptureFixture[str]) -> None:
    """check --norms/--dropout/--residual: every block quantity against torch and JAX, and
    an optimizer's steps on gamma and beta too."""
    assert main(["check", *BLOCK_NET, "--batch", "6", "--optimizer", "momentum"]) == 0
    text = capsys.readouterr().out
    for row in ("layer 0 var", "layer 1 d_n", "layer 0 d_beta", "step 3: layer 1 gamma"):
        assert row in text, row


def test_fit_and_compare_train_hidden_blocks(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """fit and compare with blocks: dropout's masks drawn from the case's seed, batch norm's
    running statistics carried and compared; a batch size that leaves one sample under
    batch norm is refused before training (exit 2)."""
    train = ["--dataset", "spirals", "--epochs", "4", "--batch-size", "60", *BLOCK_NET]
    assert main(["fit", *train, "--json", "--out", str(tmp_path / "f.png")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["spec"]["norms"] == ["batch", "layer"] and (tmp_path / "f.png").exists()
    assert main(["compare", *train, "--optimizer", "sgd", "--out", str(tmp_path / "c.png")]) == 0
    text = capsys.readouterr().out
    assert "batch norm's running statistics at the end, handwritten vs reference_torch" in text
    assert "within the suite's envelope at every step" in text
    assert main(["fit", "--dataset", "spirals", *BLOCK_NET, "--batch-size", "299",
                 "--out", str(tmp_path / "g.png")]) == 2
    assert "leaves one sample in the last batch" in capsys.readouterr().err


def test_fit_trains_the_digits_cnn_and_reports_held_out_accuracy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """scikit-learn's digits through the preset CNN: a log line per epoch with the held-out
    accuracy (359 of 1,797 images never trained on), the figure, and after 3 epochs an
    accuracy far above chance (10%: the preset reaches 98-99% in its 20 epochs, README)."""
    out = tmp_path / "digits.png"
    assert main(["fit", "--dataset", "digits", "--epochs", "3", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    log = [line for line in lines if line.startswith("epoch: ")]
    assert [line.split(",")[0] for line in log] == ["epoch: 0", "epoch: 1", "epoch: 2"]
    assert all(", held-out accuracy: " in line for line in log)
    final = next(line for line in lines if line.startswith("held-out accuracy: "))
    assert final.endswith("(359 samples never trained on)")
    assert float(final.split()[2].rstrip("%")) > 80
    _png_ok(out)
    assert main(["fit", "--dataset", "digits", "--epochs", "1", "--json", "--quiet",
                 "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["spec"].startswith("Sequential([Conv2d(")
    assert 0 <= result["held_out_accuracy"] <= 1



BN_DIGITS = ('Sequential([Flatten(), BatchNorm1d(64), Dense(64, 10), Activation("softmax")], '
             '"softmax_cross_entropy", "mean", in_shape=(1, 8, 8))')


def test_fit_digits_with_batch_norm_logs_held_out_accuracy_under_the_datasets_statistics(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run's own running statistics exist only once it ends, so the log's held-out
    accuracy normalizes with the training set's statistics, as the log's loss does.  Before
    this, the log's predict had no statistics and the run ended in a traceback."""
    from bpnet.check_all import parse_network
    from bpnet.runs import TrainingCase

    assert main(["fit", "--dataset", "digits", "--epochs", "2", "--network", BN_DIGITS,
                 "--out", str(tmp_path / "bn.png")]) == 0
    log = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch: ")]
    assert len(log) == 2 and all(", held-out accuracy: " in line for line in log)
    # the statistics: each pixel's mean and (biased) variance over the training images
    case = TrainingCase.make("digits", parse_network(BN_DIGITS), seed=0, dtype="float64")
    stats = case.dataset_statistics(case.params)
    pixels = case.x.reshape(case.x.shape[0], -1)
    assert stats[0] == {} and stats[2] == {} and stats[3] == {}
    np.testing.assert_allclose(stats[1]["mean"], pixels.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(stats[1]["var"], pixels.var(axis=0), rtol=1e-12, atol=1e-15)


def test_compare_trains_the_digits_cnn_in_all_three(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--dataset", "digits", "--epochs", "1", "--batch-size", "256",
                 "--out", str(tmp_path / "c.png")]) == 0
    assert "within the suite's envelope at every step" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["fit", "--dataset", "digits", "--layers", "64,10"],
     "dataset 'digits' trains a convolutional Sequential (conv 8@3x3 relu maxpool 2 "),
    (["hessian", "--dataset", "digits", "--layers", "64,10"],
     "dataset 'digits' trains a convolutional Sequential (conv 8@3x3 relu maxpool 2 "),
    (["hessian", "--dataset", "digits", "--network", "Sequential([Flatten(), Dense(64, 10)], "
      "in_shape=(1, 8, 8), loss='softmax_cross_entropy')", "--activations", "relu"],
     "--network describes the whole network: give it without --activations"),
    (["hessian", "--dataset", "digits", "--network", "Sequential([Flatten(), Dropout(0.2), "
      "Dense(64, 10), Activation('softmax')], in_shape=(1, 8, 8), "
      "loss='softmax_cross_entropy')"],
     "bpnet hessian takes no dropout (1 Dropout(p=0.2)): the objective of a run with dropout "
     "is random"),
    (["hessian", "--dataset", "digits", "--top", "1898"],   # the preset runs: all its params
     "--top must be between 1 and the number of params - 1 (1897), got 1898"),
    (["fit", "--dataset", "moons", "--network",
      "Sequential([Dense(3, 2), Activation('softmax')], loss='softmax_cross_entropy')"],
     "dataset 'moons' has inputs of shape (2,), but the network takes (3,)"),
    (["fit", "--dataset", "digits", "--network", "Sequential([Flatten(), Dense(64, 10)], "
      "in_shape=(1, 8, 8), loss='mse')"], "dataset 'digits' has integer class labels"),
    (["fit", "--dataset", "digits", "--network", "Sequential([Dense(2, 1)])", "--loss", "mse"],
     "--network describes the whole network: give it without --loss"),
])
def test_a_network_that_does_not_fit_the_dataset_is_refused_in_one_line(
        args: list[str], message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*args, "--out", str(tmp_path / "unused.png")]) == 2
    assert message in _one_line(capsys.readouterr().err)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("options", [
    ["--optimizer", "rmsprop", "--hyper", "alpha=2"],
    ["--optimizer", "rmsprop", "--hyper", "momentum=1e300"],
    ["--optimizer", "sgd", "--lr", "1e308"],
    ["--optimizer", "rmsprop", "--centered", "--hyper", "alpha=0"],
], ids=["alpha=2", "momentum=1e300", "lr=1e308", "centered,alpha=0"])
def test_a_diverging_optimizer_in_check_is_a_result(options: list[str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Its steps leave the float range: exit 1 and one line naming the step (once, a
    traceback ending in "params must be finite" from the step after)."""
    assert main(["check", *options]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("bpnet check: OptimizerSpec(") and " diverged: " in line, line
    assert "non-finite after step " in line, line


def test_torchs_scheduler_overflowing_in_python_floats_is_a_result(
        capsys: pytest.CaptureFixture[str]) -> None:
    """torch's MultiStepLR multiplies by gamma ** (times a milestone repeats) in Python
    floats, which raise OverflowError where handwritten's decay is inf: exit 1, one line
    (once, a traceback from inside torch.optim.lr_scheduler)."""
    assert main(["check", "--optimizer", "sgd", "--lr", "1e-300", "--schedule",
                 "multistep:milestones=1/1,gamma=1e200"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("bpnet check: a number left the float range"), line


def test_hessian_trains_in_float32(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The Hessian is taken in float64 from float32 params, x and y alike (once, y stayed
    float32 and the float64 check refused the mix)."""
    assert main(["hessian", "--dtype", "float32", "--epochs", "2", "--json",
                 "--out", str(tmp_path / "h.png")]) == 0
    assert json.loads(capsys.readouterr().out)["agrees"]


@pytest.mark.parametrize(("schedule", "epochs"), [("exponential:gamma=2", "1100"),
                                                  ("step:step_size=1,gamma=1e200", "3")])
def test_a_schedule_beyond_the_float_range_diverges_on_one_line(
        schedule: str, epochs: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """gamma ** k beyond the largest float: the learning rate is torch's inf, the run
    diverges, and that is one line naming the step (once, an OverflowError's traceback)."""
    assert main(["fit", "--schedule", schedule, "--epochs", epochs, "--quiet",
                 "--out", str(tmp_path / "f.png")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("bpnet fit: training diverged: ") and " step " in line, line


def test_running_statistics_that_overflow_are_a_diverged_run_on_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Batch norm's running variance overflowing while the loss stays finite was a traceback
    (a ValueError from predict, plotting the fit); now the run has diverged, on one line."""
    assert main(["fit", "--dataset", "spirals", "--norms", "batch", "--lr", "1e100",
                 "--epochs", "3", "--quiet", "--out", str(tmp_path / "f.png")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("bpnet fit: training diverged: batch norm's running statistics"), line


def _strict_json(text: str) -> Any:
    """json.loads that refuses NaN, Infinity and -Infinity (not JSON, though Python writes
    them by default)."""
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in --json output: not strict JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("argv", [
    ["explain", "--values", "2", "--weight-decay", "1e308"],
    ["check", "--weight-decay", "1e308"],
], ids=["explain", "check"])
def test_json_output_is_strict_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A weight decay of 1e308 makes the loss inf: the numbers are the strings "Infinity"
    and "NaN" (README, the command line), never the bare NaN or Infinity."""
    main([*argv, "--json"])
    out = capsys.readouterr().out
    assert "Infinity" in out or "NaN" in out
    _strict_json(out)


def test_hessian_json_without_an_exact_spectrum_is_strict(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Over 2000 params there is no jax.hessian to compare with: the largest difference is
    "NaN", a string."""
    assert main(["hessian", "--layers", "1,50,40,1", "--activations", "tanh,tanh,identity",
                 "--epochs", "1", "--json", "--out", str(tmp_path / "h.png")]) == 0
    assert _strict_json(capsys.readouterr().out)["largest_relative_difference"] == "NaN"


def test_a_single_milestone_is_accepted(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """torch takes milestones=[5]; the command line spells it milestones=5."""
    assert main(["fit", "--schedule", "multistep:milestones=5", "--epochs", "10", "--json",
                 "--out", str(tmp_path / "f.png")]) == 0
    repr_ = json.loads(capsys.readouterr().out)["optimizer"]["repr"]
    assert "LRSchedule('multistep', {'milestones': (5,), 'gamma': 0.1})" in repr_
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "milestone: milestones=50" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(("options", "status", "words"), [
    (["--lr", "1000"], 0, ""),
    (["--lr", "1e308"], 1, "bpnet hessian: training diverged: "),
    (["--weight-decay", "1e308"], 1, "bpnet hessian: training diverged: "),
], ids=["saturated", "lr=1e308", "weight-decay=1e308"])
def test_hessian_of_a_run_that_saturates_or_diverges(
        options: list[str], status: int, words: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found by tests/test_fuzz.py: a saturated network's Hessian is 0, which ARPACK refuses
    ("Starting vector is zero": now every top eigenvalue is 0, as jax.hessian's); params
    that left the float range reached hvp's input check; a weight decay of 1e308 overflowed
    the symmetrized exact Hessian (eigvalsh: "did not converge").  Each was a traceback."""
    code = main(["hessian", "--epochs", "2", *options, "--json", "--out",
                 str(tmp_path / "h.png")])
    out, err = capsys.readouterr()
    assert code == status
    if status == 0:
        result = _strict_json(out)
        assert result["agrees"] and result["lanczos"][-1] == [0.0, 0.0, 0.0]
        # the run did not train, and says so as fit does (hessian said nothing before)
        assert _one_line(err).startswith("bpnet hessian: warning: training did not train: ")
        assert result["warnings"] and "saturated" in " ".join(result["warnings"])
    else:
        assert words in _one_line(err)


# what a newcomer tripped on (issue 23) ---------------------------------------------------

def test_the_readmes_leaky_relu_network_fits(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A network other than the blog's trains on the mean, as check takes it: the README's
    example exits 0 (it diverged at step 7 on the blog's sum, a gradient 100x the printed
    loss's at the blog's lr)."""
    assert main(["fit", "--activations", "leaky_relu:0.2,identity", "--layers", "1,10,1",
                 "--loss", "half_mse", "--json", "--out", str(tmp_path / "f.png")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["spec"]["reduction"] == "mean" and result["final_loss"] < 0.01


@pytest.mark.parametrize("args, reduction", [
    ([], "sum"),                                                      # the blog's network
    (["--activations", "leaky_relu:0.2,identity"], "mean"),
    (["--layers", "1,4,1"], "mean"),
    (["--loss", "mse"], "mean"),
    (["--layers", "1,10,1", "--reduction", "sum", "--loss", "mse"], "sum")])
def test_fit_and_check_take_one_default_reduction(
        args: list[str], reduction: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The blog's sum for the blog's network alone, in fit as in check (test_check_all's
    test_the_blogs_sum_is_the_default_only_for_the_blogs_network)."""
    assert main(["fit", *args, "--epochs", "1", "--json", "--out",
                 str(tmp_path / "f.png")]) == 0
    assert json.loads(capsys.readouterr().out)["spec"]["reduction"] == reduction


def test_every_commands_help_states_the_default_reduction(
        capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("fit", "check", "compare", "hessian", "explain"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert ("default: mean, except for a preset's own network, which keeps the preset's: "
                "sum for the blog's 1,10,1 sigmoid,sigmoid half_mse" in
                " ".join(capsys.readouterr().out.split())), command


def test_numpys_warnings_on_a_diverging_run_are_said_in_its_one_line(tmp_path: Path) -> None:
    """A run that overflows on its way to a NaN loss: one line on stderr, naming the step
    and what NumPy reported, with no RuntimeWarning and no source path (a terminal got four
    'RuntimeWarning: overflow encountered in matmul' lines with their source lines)."""
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-m", "bpnet.cli", "fit", "--lr", "1e300",
                             "--dtype", "float32", "--quiet", "--out", str(tmp_path / "f.png")],
                            cwd=root, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert "RuntimeWarning" not in result.stderr and ".py:" not in result.stderr, line
    assert line.startswith("bpnet fit: training diverged: the loss is nan at step "), line
    assert "; try a smaller learning rate (NumPy reported overflow (" in line, line
    assert line.endswith(" on the way)"), line


def test_numpys_warnings_in_a_finished_command_are_one_warning_line(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A weight decay of 1e308 overflows the loss: check prints its table (inf, FAIL) and
    one line on stderr saying so; a RuntimeWarning issued by warnings.warn (SciPy's,
    NumPy's 'Mean of empty slice') is counted the same way, never printed raw."""
    main(["check", "--weight-decay", "1e308"])
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("bpnet check: warning: NumPy reported overflow ("), line
    assert "what is printed may carry an inf or a NaN" in line
    from bpnet import explain

    derivation = explain.derivation

    def warns(*args: Any) -> list[str]:
        np.mean(np.zeros(0))                 # RuntimeWarning: Mean of empty slice
        return derivation(*args)

    monkeypatch.setattr(explain, "derivation", warns)
    assert main(["explain"]) == 0
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("bpnet explain: warning: NumPy reported Mean of empty slice"), line
    assert np.geterr()["over"] == "warn"        # as it was before main


def test_the_compare_plot_shows_the_mean_loss_compare_prints(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """The curves handed to the plot are the printed quantity, the mean over samples and
    outputs on all the data, from the initial params to the printed final loss (the plot
    showed the blog's summed batch loss, ~18 falling to 0.47, beside a printed 0.00475),
    and the axis says so."""
    from bpnet import plots
    from bpnet.runs import TrainingCase

    handed: dict[str, Any] = {}
    compare, save = plots.compare, plots._save

    def keep(losses: dict[str, np.ndarray], *args: Any) -> None:
        handed["losses"] = losses
        compare(losses, *args)

    def keep_figure(fig: Any, path: Path) -> None:
        handed["ylabel"] = fig.axes[0].get_ylabel()
        save(fig, path)

    monkeypatch.setattr(plots, "compare", keep)
    monkeypatch.setattr(plots, "_save", keep_figure)
    assert main(["compare", "--epochs", "30", "--json", "--out", str(tmp_path / "c.png")]) == 0
    printed = json.loads(capsys.readouterr().out)["final_loss"]
    initial = TrainingCase.make("blog", seed.BLOG_SPEC, seed=0, dtype="float64")
    assert set(handed["losses"]) == set(printed)
    for name, curve in handed["losses"].items():
        assert curve[0] == pytest.approx(initial.mean_loss(initial.params), rel=1e-12)
        assert curve[-1] == printed[name] and len(curve) == 31     # after step 0, ..., 30
    assert handed["ylabel"] == "mean loss on all the data, as printed"


def test_the_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """Every registered subcommand, in the first line of bpnet --help and in its list with
    its own help (the first line said 'fit, check, compare, explain': no hessian)."""
    import argparse

    from bpnet.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions
                    if isinstance(a, argparse._SubParsersAction)).choices
    assert "hessian" in commands
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    first = text.split("\n\n")[1]
    assert first.startswith(f"bpnet: {', '.join(commands)}."), first
    for name in commands:
        assert re.search(rf"^    {name} +\S", text, re.MULTILINE), name


_TRAINING_OPTIONS = [
    "--norms", "batch", "--dropout", "0.1", "--weight-decay", "1e-4", "--optimizer", "adam",
    "--amsgrad", "--hyper", "beta2=0.99", "--schedule", "step:step_size=5,gamma=0.5",
    "--warmup", "2", "--clip-norm", "1", "--batch-size", "20", "--init", "he_normal",
    "--dtype", "float32", "--seed", "3", "--epochs", "3"]


@pytest.mark.parametrize(("command", "plot", "options", "phrases"), [
    ("fit", "fit_regression", _TRAINING_OPTIONS, []),
    ("compare", "compare", _TRAINING_OPTIONS, []),
    ("hessian", "hessian_spectrum", _TRAINING_OPTIONS[4:], []),
    ("fit", "fit_regression", [
        "--layers", "1,8,8,1", "--activations", "tanh,tanh,identity", "--residual", "0,1",
        "--optimizer", "rmsprop", "--centered", "--clip-value", "0.5", "--schedule",
        "multistep:milestones=5/10", "--epochs", "3"],
     ["network (1, 8, 8, 1) tanh/tanh/identity, half_mse (mean)", "residual 0/1",
      "rmsprop lr 0.1, centered, schedule multistep (milestones 5/10, gamma 0.1)",
      "clip value 0.5", "3 epochs, full batch, init blog, float64, seed 0"])],
    ids=["fit", "compare", "hessian", "fit-residual"])
def test_a_plots_title_carries_every_option_that_changes_the_run(
        command: str, plot: str, options: list[str], phrases: list[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs that differ in any option have different titles (the titles named the
    network, the optimizer and the lr, and not the blocks, the options, the schedule or
    the clipping, so plots of different runs looked alike)."""
    from bpnet import plots

    titles: list[str] = []
    monkeypatch.setattr(plots, plot, lambda *args: titles.append(
        args[4] if plot == "fit_regression" else args[-1]))
    main([command, *options, "--quiet", "--out", str(tmp_path / "p.png")])
    title = " ".join(titles[0].split())
    expected = phrases or [
        "adam lr 0.1, beta2 0.99, amsgrad, schedule step (step_size 5, gamma 0.5), "
        "warm-up 2 steps from 0.333, clip norm 1",
        "3 epochs, batch 20, init he_normal, float32, seed 3",
        "weight decay 0.0001" + (", norms batch, dropout 0.1" if command != "hessian" else "")]
    for phrase in expected:
        assert phrase in title, (phrase, title)


def test_the_figures_module_writes_under_out_unless_told(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    """python -m bpnet.figures writes out/spirals_batch_norm.png; a path given is taken
    (the README's 'python -m bpnet.figures docs/img/spirals_batch_norm.png' overwrote a
    tracked image, and without a path it refused to run)."""
    from bpnet import figures

    written: list[Path] = []

    def draw(out: Path) -> dict[str, np.ndarray]:
        written.append(out)
        return {"without": np.ones(figures.EPOCHS)}

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(figures, "spirals_batch_norm", draw)
    assert figures.main([]) == 0
    assert written[-1] == Path("out/spirals_batch_norm.png")
    assert written[-1].resolve().parent == tmp_path / "out"
    assert capsys.readouterr().out.endswith("plot saved to out/spirals_batch_norm.png\n")
    assert figures.main(["elsewhere/figure.png"]) == 0
    assert written[-1] == Path("elsewhere/figure.png")
    assert figures.main(["a.png", "b.png"]) == 2
    assert "expected at most one output path" in capsys.readouterr().err
