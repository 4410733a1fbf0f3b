"""Smoke runs of the examples (examples/*.py) and of ``steadysolve demo --quick``: each asserts on outputs."""

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("mlxtend")
pytest.importorskip("tqdm")
pytest.importorskip("PIL")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))


def _image(path, kind):
    assert os.path.exists(path), f"{path} was not written"
    assert os.path.getsize(path) > 1024, f"{path} is only {os.path.getsize(path)} bytes"
    with open(path, "rb") as fh:
        head = fh.read(8)
    if kind == "png":
        assert head == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    else:
        assert head[:6] in (b"GIF87a", b"GIF89a"), f"{path} is not a GIF"
        from PIL import Image
        with Image.open(path) as im:
            assert getattr(im, "n_frames", 1) > 1, f"{path} is not animated"


def test_quickstart_gradient_matches_finite_differences(capsys):
    import quickstart
    errs = quickstart.main(["--quick"])
    assert set(errs) == {"torch", "jax"}
    assert all(e < 1e-4 for e in errs.values()), errs
    assert "gradient check passed" in capsys.readouterr().out


def test_quickstart_readme_tolerance_gradient_is_close_to_tight():
    import quickstart
    import numpy as np
    _, g = quickstart.run_torch(verbose=False)
    assert len(g) == 4 and all(np.all(np.isfinite(a)) for a in g)  # Linear W, b, and the two bias-free W


def test_regression_predicts_minus_ten(tmp_path):
    import regression
    preds, path = regression.main(["--quick", "--out", str(tmp_path)])
    for fw, p in preds.items():
        assert abs(p + 10) <= 1, (fw, p)
    _image(path, "png")


def test_trajectories_depth_and_time(tmp_path):
    import numpy as np
    import trajectories
    depth, us, paths = trajectories.main(["--quick", "--out", str(tmp_path)])
    assert depth.shape[1] == 10 and len(depth) <= 101
    assert np.abs(depth[-1] - depth[-2]).max() <= 1e-3  # converged within the depth cap
    assert np.abs(us[-1] - depth[-1]).max() < 5e-2  # continuous and discrete views meet at z*
    for p in paths:
        _image(p, "png")


@pytest.fixture(scope="module")
def mnist_checkpoint(tmp_path_factory):
    """One quick MNIST DEQ training for the whole module: its history and the checkpoint it wrote."""
    import mnist_deq
    path = str(tmp_path_factory.mktemp("mnist") / "deq.pt")
    _, hist, _, _ = mnist_deq.main(["--quick", "--no-progress", "--checkpoint", path])
    return path, hist


def test_mnist_quick_is_well_above_chance(mnist_checkpoint):
    path, hist = mnist_checkpoint
    assert len(hist) == 1
    assert hist[-1]["test_acc"] > 0.5, hist  # chance is 0.1
    assert hist[-1]["mean_nfe"] > 0
    assert os.path.getsize(path) > 100_000  # ~0.5 MB of float32 weights


def test_mnist_checkpoint_round_trips(mnist_checkpoint):
    import mnist_deq
    path, hist = mnist_checkpoint
    model, hist2, _, _ = mnist_deq.main(["--quick", "--no-progress", "--checkpoint", path])  # loads, no training
    assert hist2 == hist
    assert model[2].solver.name == "dynamic_ss" and not model.training


def test_feature_clusters_and_solver_comparison_files(tmp_path, mnist_checkpoint):
    import feature_clusters
    import solver_comparison

    import steadysolve as ss
    ck = ["--checkpoint", mnist_checkpoint[0]]
    png, gif = feature_clusters.main(["--quick", "--out", str(tmp_path)] + ck)
    _image(png, "png")
    _image(gif, "gif")
    rows, path = solver_comparison.main(["--quick", "--out", str(tmp_path)] + ck)
    assert [r["name"] for r in rows] == ss.available()
    assert any(r["accuracy"] > 0.5 for r in rows)
    _image(path, "png")


@pytest.mark.parametrize("script", ["quickstart", "regression", "trajectories", "mnist_deq", "feature_clusters",
                                    "solver_comparison"])
def test_every_example_has_help_and_quick(script, capsys):
    mod = __import__(script)
    with pytest.raises(SystemExit) as e:
        mod.main(["--help"])
    assert e.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_demo_quick_subprocess(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, "-m", "steadysolve.demo", "--quick", "--no-progress", "--out", str(out)],
                       capture_output=True, text=True, timeout=600, env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("trajectories.png", "clusters.png", "solvers.png"):
        _image(str(out / name), "png")
    _image(str(out / "clusters.gif"), "gif")
    acc = float(re.search(r"final test accuracy ([0-9.]+)", r.stdout).group(1))
    assert acc > 0.5, r.stdout
    assert str(out) in r.stdout


def test_import_steadysolve_does_not_pull_in_torch_or_matplotlib():
    code = "import sys, steadysolve, steadysolve.demo; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


def test_main_cli_help_and_unknown_command():
    r = subprocess.run([sys.executable, "-m", "steadysolve", "frobnicate"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "steadysolve", "demo", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "--quick" in r.stdout
