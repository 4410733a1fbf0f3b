"""Smoke runs of the examples (examples/*.py) and of ``steadysolve demo --quick``: each asserts on outputs.

Every script takes ``--help``, ``--quick`` and ``--out`` (default: the current folder) and runs here
with ``--quick``, from a working folder it must leave empty (it writes into ``--out`` only).
"""

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("mlxtend")
pytest.importorskip("tqdm")
pytest.importorskip("PIL")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
sys.path.insert(0, EXAMPLES)
SCRIPTS = sorted(f[:-3] for f in os.listdir(EXAMPLES) if f.endswith(".py") and not f.startswith("_"))


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """A working folder that the script must leave empty (its files go to ``--out``)."""
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    yield here
    assert os.listdir(here) == [], "the script wrote into the working folder instead of --out"


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


def test_quickstart_gradient_matches_finite_differences(capsys, cwd, tmp_path):
    import quickstart
    errs = quickstart.main(["--quick", "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "quickstart.json").exists()
    assert set(errs) == {"torch", "jax"}
    assert all(e < 1e-4 for e in errs.values()), errs
    assert "gradient check passed" in capsys.readouterr().out


def test_quickstart_readme_tolerance_gradient_is_close_to_tight():
    import quickstart
    import numpy as np
    _, g = quickstart.run_torch(verbose=False)
    assert len(g) == 4 and all(np.all(np.isfinite(a)) for a in g)  # Linear W, b, and the two bias-free W


def test_regression_predicts_minus_ten(tmp_path, cwd):
    import regression
    preds, path = regression.main(["--quick", "--out", str(tmp_path)])
    for fw, p in preds.items():
        assert abs(p + 10) <= 1, (fw, p)
    _image(path, "png")


def test_trajectories_depth_and_time(tmp_path, cwd):
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
    folder = tmp_path_factory.mktemp("mnist")
    path = str(folder / "deq.pt")
    _, hist, _, _ = mnist_deq.main(["--quick", "--no-progress", "--checkpoint", path, "--out", str(folder)])
    assert (folder / "mnist_deq_history.json").exists()
    return path, hist


def test_mnist_quick_is_well_above_chance(mnist_checkpoint):
    path, hist = mnist_checkpoint
    assert len(hist) == 1
    assert hist[-1]["test_acc"] > 0.5, hist  # chance is 0.1
    assert hist[-1]["mean_nfe"] > 0
    assert os.path.getsize(path) > 100_000  # ~0.5 MB of float32 weights


def test_mnist_checkpoint_round_trips(mnist_checkpoint, tmp_path):
    import mnist_deq
    path, hist = mnist_checkpoint
    model, hist2, _, _ = mnist_deq.main(["--quick", "--no-progress", "--checkpoint", path,  # loads, no training
                                         "--out", str(tmp_path)])
    assert hist2 == hist
    assert model[2].solver.name == "dynamic_ss" and not model.training


def test_feature_clusters_and_solver_comparison_files(tmp_path, mnist_checkpoint, cwd):
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


def test_deq_jax_predicts_minus_ten_and_every_sample_converges(tmp_path, cwd):
    import json

    import deq_jax
    pred, losses, converged = deq_jax.main(["--quick", "--out", str(tmp_path)])
    assert abs(pred + 10) < 1 and losses[-1] < 0.1 * losses[0]
    assert converged == 64
    assert json.loads((tmp_path / "deq_jax.json").read_text())["converged"] == 64


def test_demo_script_tours_the_core(tmp_path, cwd, capsys):
    import demo
    demo.main(["--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert out.count("Success") >= 8 and "jitted, all elements Success: True" in out
    assert re.search(r"prediction at x = -5: -(9|10)\.\d+", out), out
    _image(str(tmp_path / "demo_trajectory.png"), "png")


def test_every_example_runs_here_quick():
    """Each script in examples/ has a --quick run in this file (or, multiscale_digits, in test_multiscale.py)."""
    here = open(__file__, encoding="utf-8").read()
    missing = [s for s in SCRIPTS if f"import {s}\n" not in here and s != "multiscale_digits"]
    assert not missing, f"no --quick smoke test for examples/{missing}.py"


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_example_has_help_quick_and_out(script, capsys):
    mod = __import__(script)
    with pytest.raises(SystemExit) as e:
        mod.main(["--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--quick" in out and "--out DIR" in out and "default: the current folder" in out


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_example_refuses_an_unwritable_out(script, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    mod = __import__(script)
    with pytest.raises(SystemExit) as e:
        mod.main(["--quick", "--out", str(tmp_path / "file")])
    assert e.value.code == 2 and "argument --out:" in capsys.readouterr().err


def test_demo_quick_subprocess(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, "-m", "steadysolve", "demo", "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=600, env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "epoch 1/1" in r.stderr and "epoch 1/1" not in r.stdout  # the progress bar is on stderr
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
