"""Type checkers see the installed package: pyright resolves ``steadysolve`` and its adapters under the
README's editable install, accepts a user's script, and rejects misspelled keywords.

The scripts live in ``tests/typecheck/`` and are checked from a temporary folder outside the
checkout, where a user's own project lives (inside it, the source folder ``steadysolve/`` would be
found first). ``.ci/run`` runs the same check on ``user_script.py``.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("pyright", reason="pyright is part of the test extra: pip install -e '.[test]'")

pytestmark = pytest.mark.slow

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "typecheck")


def _pyright(tmp_path, name):
    shutil.copy(os.path.join(HERE, name), tmp_path / name)
    out = subprocess.run([sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable, name],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    start = out.stdout.find("{")
    assert start >= 0, out.stdout + out.stderr
    return [d for d in json.loads(out.stdout[start:])["generalDiagnostics"] if d["severity"] == "error"]


def test_the_user_script_type_checks(tmp_path):
    errors = _pyright(tmp_path, "user_script.py")
    assert errors == [], [f"{d['range']['start']['line'] + 1}: {d['message']}" for d in errors]


def test_misspelled_keywords_are_type_errors(tmp_path):
    lines = open(os.path.join(HERE, "misspelled.py"), encoding="utf-8").read().splitlines()
    expected = {i + 1: re.findall(r"(\w+)=", line)[-1]
                for i, line in enumerate(lines) if line.endswith("# expect-error")}
    assert len(expected) >= 15
    errors = _pyright(tmp_path, "misspelled.py")
    found = {}
    for d in errors:
        found.setdefault(d["range"]["start"]["line"] + 1, []).append(d["message"])
    assert set(found) == set(expected), {"missed": sorted(set(expected) - set(found)),
                                         "unexpected": {k: found[k] for k in set(found) - set(expected)}}
    for line, word in expected.items():  # the error names the misspelled keyword
        assert any(f'"{word}"' in m for m in found[line]), (line, word, found[line])
