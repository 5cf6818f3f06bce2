"""The command line, driven through its entry point: every command, --json, the error paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from bpnet.cli import main
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


def test_explain_prints_the_derivation_with_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain"]) == 0
    text = capsys.readouterr().out
    assert "z0 = x @ W0 + b0" in text and "(N, 1) @ (1, 10) + (10,) -> (N, 10)" in text
    assert "d_W0 = x.T @ d_z0" in text and "d_z1 = d_a1 * a1 * (1 - a1)" in text
    assert main(["explain", "--layers", "2,3,2", "--activations", "relu,softmax", "--loss",
                 "softmax_cross_entropy", "--values", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["autograd"] == "reference_torch"
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
