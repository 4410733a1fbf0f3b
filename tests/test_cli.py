"""The ``steadysolve`` command: ``--version``, argparse sub-commands with one usage text, and
``steadysolve demo`` refusing bad options before any training (usage, ``error:`` line, exit 2)."""

import os
import subprocess
import sys

import pytest

import steadysolve as ss
from steadysolve.__main__ import main

for _mod in ("torch", "matplotlib", "mlxtend", "tqdm", "PIL"):  # the demo's libraries (the examples extra)
    pytest.importorskip(_mod)


def _run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_version(capsys):
    code, out, _ = _run(["--version"], capsys)
    assert code == 0 and out.strip() == f"steadysolve {ss.__version__}"


def test_top_level_usage_lists_the_demo_and_demo_help_is_argparse(capsys):
    code, out, _ = _run(["--help"], capsys)
    assert code == 0 and out.startswith("usage: steadysolve [-h] [-V] COMMAND") and "demo" in out
    code, out, _ = _run(["demo", "--help"], capsys)
    assert code == 0 and out.startswith("usage: steadysolve demo [-h] [--quick]")
    for option in ("--out DIR", "--checkpoint FILE", "--epochs EPOCHS", "--data-dir DIR"):
        assert option in out


def test_python_m_steadysolve_demo_has_the_same_usage(capsys):
    from steadysolve.demo.cli import main as demo_main

    code, top, _ = _run(["demo", "--help"], capsys)
    with pytest.raises(SystemExit):
        demo_main(["--help"])
    assert capsys.readouterr().out == top


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["demo", "--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    (["demo", "--epochs", "two"], "argument --epochs: expected an integer >= 1, got 'two'"),
    (["demo", "--batch", "-3"], "argument --batch: must be >= 1"),
    (["demo", "--threads", "0"], "argument --threads: must be >= 1"),
    (["demo", "--lr", "0"], "argument --lr: must be a finite number > 0"),
    (["demo", "--abstol", "nan"], "argument --abstol: must be a finite number >= 0"),
    (["demo", "--reltol", "-1"], "argument --reltol: must be a finite number >= 0"),
    (["demo", "--solver", "andersen"], "argument --solver: unknown solver 'andersen'; choose from anderson"),
    (["demo", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_values_are_argparse_errors(argv, message, capsys):
    code, out, err = _run(argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith("usage: steadysolve") and message in err.splitlines()[-1], err


def test_bad_paths_are_refused_before_training(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    cases = [
        (["--out", str(a_file)], f"argument --out: {a_file} exists and is not a folder"),
        (["--out", str(a_file / "sub")], f"argument --out: {a_file} is not a folder"),
        (["--data-dir", str(tmp_path / "nope")], "argument --data-dir: "),
        (["--data-dir", str(tmp_path)], "does not hold the four MNIST IDX files"),
        (["--checkpoint", str(tmp_path)], "argument --checkpoint: "),
        (["--checkpoint", str(junk)], "is not a model checkpoint written by steadysolve demo"),
        (["--checkpoint", str(a_file / "x.pt")], "cannot be written after training"),
    ]
    for extra, message in cases:
        code, out, err = _run(["demo", "--quick", "--out", str(tmp_path / "out"), *extra], capsys)
        assert code == 2 and out == "", (extra, out)
        assert message in err.splitlines()[-1], (extra, err)
    assert not (tmp_path / "out").exists()  # nothing was written: every check runs before the work


@pytest.mark.slow
def test_the_console_script_reports_without_a_traceback(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x04not a pickle")
    r = subprocess.run([sys.executable, "-m", "steadysolve", "demo", "--checkpoint", str(junk)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[-1].startswith("steadysolve demo: error: argument --checkpoint:")
    assert os.listdir(tmp_path) == ["junk.pt"]
