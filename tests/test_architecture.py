"""The layering of docs/architecture.md (DESIGN.md §2), checked on the source: imports run downward only,
no cycles.

Every ``import`` statement is read (module level and inside functions alike) from
``steadysolve/``, ``adapters/`` (installed as ``steadysolve.adapters``) and ``benchmarks/``; tests,
benchmarks and examples never edit ``sys.path``.
"""

import ast
import inspect
import os
import re
from pathlib import Path

import pytest

import steadysolve as ss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def _read_layers():
    """The layer list of docs/architecture.md (its ``layer k:`` lines), lowest first: the one place the
    developer page shows and this test checks."""
    text = Path(ROOT, "docs", "architecture.md").read_text(encoding="utf-8")
    layers = []
    for line in text.splitlines():
        m = re.match(r"layer (\d+):\s+(.*)$", line.strip())
        if m:
            assert int(m.group(1)) == len(layers), f"docs/architecture.md: layers out of order at {line!r}"
            layers.append(set(m.group(2).split()))
    assert layers, "docs/architecture.md has no layer list"
    return layers


# layer of each package module, lowest first (a module may import its own layer or lower ones)
LAYERS = _read_layers()


def _modules():
    """(module name, path) of every source file of the package and the adapters."""
    out = []
    for base, prefix in (("steadysolve", "steadysolve"), ("adapters", "steadysolve.adapters")):
        for dirpath, _, files in os.walk(os.path.join(ROOT, base)):
            for f in sorted(files):
                if not f.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, f), os.path.join(ROOT, base))
                parts = rel[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                out.append((".".join([prefix] + parts), os.path.join(dirpath, f)))
    return out


def _imports(name, path, is_package):
    """Absolute names of the package modules imported by one file."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), path)
    pkg = name if is_package else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if node.module is None or node.level and not node.module:
                found.update(f"{mod}.{a.name}" for a in node.names)
            else:
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in found if m == "steadysolve" or m.startswith("steadysolve.")}


def _layer(mod, known):
    """Layer of a module: its own entry, or its nearest listed parent package."""
    while mod not in known:
        if "." not in mod:
            return None
        mod = mod.rsplit(".", 1)[0]
    return known[mod]


def _graph():
    mods = _modules()
    names = {m for m, _ in mods}
    graph = {}
    for m, path in mods:
        deps = set()
        for imp in _imports(m, path, path.endswith("__init__.py")):
            while imp not in names and "." in imp:  # "from .x import Name" -> module .x
                imp = imp.rsplit(".", 1)[0]
            if imp in names and imp != m:
                deps.add(imp)
        graph[m] = deps
    return graph


def test_every_module_has_a_layer():
    known = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    missing = [m for m in _graph() if _layer(m, known) is None]
    assert not missing, f"modules without a layer in DESIGN §2 order: {missing}"


def test_imports_run_downward_only():
    known = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    bad = []
    for m, deps in _graph().items():
        for d in deps:
            if d.startswith(m + "."):  # a package's __init__ importing its own modules
                continue
            if _layer(d, known) > _layer(m, known):
                bad.append(f"{m} (layer {_layer(m, known)}) imports {d} (layer {_layer(d, known)})")
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def _cycles(graph):
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for d in sorted(graph.get(node, ())):
            visit(d)
        stack.pop()

    for node in sorted(graph):
        visit(node)
    return cycles


def test_no_import_cycles_in_the_package():
    graph = _graph()
    # a package __init__ that re-exports its modules is not a cycle edge from those modules' view
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    assert not _cycles(graph), _cycles(graph)


def _imported(path):
    """Every module name an ``import`` statement of the file names (absolute imports only)."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _benchmark_modules():
    """``benchmarks.x`` -> path, for every module under benchmarks/ (scripts, ``_common``, ``problems``)."""
    out = {}
    for dirpath, _, files in os.walk(os.path.join(ROOT, "benchmarks")):
        for f in sorted(files):
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3].split(os.sep)
                out[".".join(rel[:-1] if rel[-1] == "__init__" else rel)] = os.path.join(dirpath, f)
    return out


def test_benchmarks_share_code_only_through_common_and_the_problem_sets():
    mods = _benchmark_modules()
    shared = {m for m in mods if m == "benchmarks._common" or m.startswith("benchmarks.problems")}
    scripts = {m for m in mods if m not in shared and m != "benchmarks"}
    assert {"benchmarks.robustness", "benchmarks.run_all"} <= scripts and "benchmarks.problems.mgh" in shared
    bare = {m.rsplit(".", 1)[1] for m in mods if m != "benchmarks"} | {"helpers", "problems"}
    graph = {}
    for m, path in mods.items():
        imported = _imported(path)
        # a bare name (``from _common import``, ``import _mgh``) resolves only through a sys.path edit
        assert not {n.split(".")[0] for n in imported} & bare, f"{path} imports {imported & bare}"
        graph[m] = {n for n in imported if n in mods}
    for s in scripts:  # scripts share code only through _common and benchmarks.problems
        assert graph[s] <= shared | {"benchmarks"}, f"{s} imports another benchmark script: {graph[s] - shared}"
    assert graph["benchmarks._common"] <= {"benchmarks"}, graph["benchmarks._common"]
    for m in shared - {"benchmarks._common"}:  # the problem sets are data: no script, no _common
        assert graph[m] <= {d for d in shared if d.startswith("benchmarks.problems")}, f"{m} imports {graph[m]}"
    assert not _cycles(graph), _cycles(graph)


def test_tests_import_only_the_problem_sets_of_benchmarks():
    for f in sorted(os.listdir(os.path.join(ROOT, "tests"))):
        if f.endswith(".py"):
            used = {n for n in _imported(os.path.join(ROOT, "tests", f)) if n.split(".")[0] == "benchmarks"}
            assert all(n.startswith("benchmarks.problems") for n in used), f"tests/{f} imports {used}"


def _edits_sys_path(path):
    """Lines where the file changes ``sys.path`` (a call on it, an assignment or augmented assignment)."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), path)

    def is_sys_path(node):
        return isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
            and node.value.id == "sys"

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and is_sys_path(node.func.value):
            lines.append(node.lineno)
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(is_sys_path(t) or isinstance(t, ast.Subscript) and is_sys_path(t.value) for t in targets):
                lines.append(node.lineno)
    return sorted(lines)


def test_no_sys_path_edits_in_tests_benchmarks_and_examples():
    """Shared code is imported as a package (``benchmarks.problems``; pytest's ``pythonpath`` for the
    tests, ``python -m benchmarks.<script>`` for the scripts), never found by editing ``sys.path``."""
    assert _edits_sys_path(__file__) == []
    bad = []
    for folder in ("tests", "benchmarks", "examples"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for f in sorted(files):
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    bad += [f"{os.path.relpath(path, ROOT)}:{n}" for n in _edits_sys_path(path)]
    assert not bad, f"sys.path edited at {bad}"


def test_the_sys_path_check_sees_an_edit(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("import sys\nsys.path.insert(0, 'a')\nsys.path += ['b']\nsys.path[:0] = ['c']\nprint(sys.path)\n")
    assert _edits_sys_path(str(f)) == [2, 3, 4]


def test_only_backend_imports_array_api_compat():
    users = []
    for m, path in _modules():
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "array_api_compat" for n in names):
                users.append(m)
    assert set(users) == {"steadysolve._backend"}, users


def test_layer_checker_catches_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: a backend module importing solve would be reported."""
    fake = tmp_path / "steadysolve"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "backend.py").write_text("from .solve import solve\n")
    (fake / "solve.py").write_text("from . import backend\n")
    deps = _imports("steadysolve._backend", str(fake / "backend.py"), False)
    assert "steadysolve.solve" in deps
    known = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    assert _layer("steadysolve.solve", known) > _layer("steadysolve._backend", known)
    assert _cycles({"a": {"b"}, "b": {"a"}}) and not _cycles({"a": {"b"}, "b": set()})


def test_solve_has_a_real_signature():
    params = inspect.signature(ss.solve).parameters
    for name in ("prob", "alg", "abstol", "reltol", "maxiters", "norm", "batch_axis", "throw", "store_trace",
                 "callback"):
        assert name in params, name
    assert params["maxiters"].default == 1000 and params["norm"].default == "max"
    assert params["abstol"].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("path, limit", [("adapters/torch.py", 350), ("adapters/jax.py", 350)])
def test_adapters_are_glue(path, limit):
    n = len(Path(ROOT, path).read_text(encoding="utf-8").splitlines())
    assert n <= limit, f"{path} has {n} lines (> {limit}): numerics belong in the core or adapters/_implicit.py"
