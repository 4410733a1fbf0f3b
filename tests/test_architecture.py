"""The layering of docs/architecture.md (DESIGN.md §2), checked on the source: imports run downward only,
no cycles.

Every ``import`` statement is read (module level and inside functions alike) from
``steadysolve/``, ``adapters/`` (installed as ``steadysolve.adapters``) and ``benchmarks/``.
"""

import ast
import inspect
import os
import re

import pytest

import steadysolve as ss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def _read_layers():
    """The layer list of docs/architecture.md (its ``layer k:`` lines), lowest first: the one place the
    developer page shows and this test checks."""
    text = open(os.path.join(ROOT, "docs", "architecture.md")).read()
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
    tree = ast.parse(open(path).read(), path)
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


def test_no_import_cycles_in_benchmarks():
    bdir = os.path.join(ROOT, "benchmarks")
    scripts = {f[:-3] for f in os.listdir(bdir) if f.endswith(".py")}
    graph = {}
    for s in scripts:
        tree = ast.parse(open(os.path.join(bdir, s + ".py")).read())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                deps.add(node.module.split(".")[0])
        graph[s] = deps & scripts
    assert not _cycles(graph), _cycles(graph)
    helpers = {s for s in scripts if s.startswith("_")}  # shared modules: _common and data such as _mgh
    for s, deps in graph.items():  # scripts share code only through the underscore helper modules
        assert deps <= helpers, f"benchmarks/{s}.py imports another benchmark script: {deps - helpers}"
    for h in helpers:  # and the helpers import no script
        assert graph.get(h, set()) <= {"_common"}, f"benchmarks/{h}.py imports {graph[h]}"
    assert graph.get("_common", set()) == set()
    problems = os.path.join(bdir, "problems")  # the problem sets shared with the tests: a package of data
    for f in sorted(os.listdir(problems)):
        if f.endswith(".py"):
            tree = ast.parse(open(os.path.join(problems, f)).read())
            mods = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
            mods |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module and not node.level}
            assert not mods & (scripts | {"benchmarks"}), f"benchmarks/problems/{f} imports {mods & scripts}"


def test_only_backend_imports_array_api_compat():
    users = []
    for m, path in _modules():
        tree = ast.parse(open(path).read())
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
    n = sum(1 for _ in open(os.path.join(ROOT, path)))
    assert n <= limit, f"{path} has {n} lines (> {limit}): numerics belong in the core or adapters/_implicit.py"
