"""The README's demo: trains the blog network, prints the blog's log, writes a real PNG."""

from __future__ import annotations

from pathlib import Path

import pytest

from bpnet import demo


def test_demo_prints_the_log_and_writes_a_png(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plots" / "fit.png"
    assert demo.main(["--epochs", "30", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines[:3]] == ["epoch: 0", "epoch: 10", "epoch: 20"]
    assert lines[-1] == f"plot saved to {out}"
    import matplotlib.image

    image = matplotlib.image.imread(out)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0            # not a blank canvas


def test_demo_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        demo.main(["--epochs", "0"])
    assert info.value.code == 2
    assert "--epochs must be a positive integer" in capsys.readouterr().err
