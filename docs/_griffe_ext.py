"""Griffe extensions for the API reference (loaded by mkdocs.yml; not part of the package).

``AdaptersSubpackage``: the adapters' source lives in the top-level ``adapters/`` folder and
is installed as ``steadysolve.adapters`` (``[tool.setuptools.package-dir]``), so Griffe's
static finder, which walks ``steadysolve/``, does not see it. This hook loads that folder
(located through the import system, so editable and regular installs both work) as the
``adapters`` submodule of ``steadysolve``.

``CompactNumpyDocstrings``: the package's docstrings write parameters compactly, NumPy
style without a type (``memory : number of stored pairs``; the types are in the
signatures). Griffe would read the prose after the colon as a type, so such lines become
``memory`` + an indented description before parsing; Sphinx roles (``:class:`X```) become
plain code. The JAX adapter appends its shared keyword documentation (``_DOC_COMMON``) to
``fixed_point`` / ``root`` / ``steady_state`` at import time; the static reader gets the same
text from the module's source. Its Equinox ``DEQ`` is defined under ``if eqx is not None:``
with an error-raising fallback in the ``else`` branch, which a static reader sees last; the
documented class is the real one. Only the rendered text changes, never the source.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import textwrap
from pathlib import Path

import griffe

_SECTIONS = {"parameters", "other parameters", "attributes", "keyword arguments"}
_TYPE = re.compile(r"^[\w.\[\]|, ]+$")
_ROLE = re.compile(r":(?:class|func|meth|attr|mod|obj|data|exc):`~?([^`]+)`")


def _is_type(text: str) -> bool:
    words = text.replace(", optional", "").replace(" or ", ",").split(",")
    return bool(_TYPE.match(text)) and all(len(w.split()) <= 1 for w in words)


def compact_to_numpy(doc: str) -> str:
    """Rewrite ``name : prose`` entries of the parameter-like sections as ``name`` + description."""
    lines = doc.split("\n")
    out, section, indent, skip = [], None, None, set()
    for i, line in enumerate(lines):
        if i in skip:
            continue
        stripped = line.strip()
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if stripped and nxt and set(nxt) == {"-"} and len(nxt) >= 3:
            section, indent = stripped.lower(), None
            out.append(line)
            continue
        if section in _SECTIONS and stripped and not set(stripped) == {"-"}:
            lead = len(line) - len(line.lstrip())
            if indent is None:
                indent = lead
            m = re.match(r"^([\w*, ]+?)\s*:\s+(.*)$", stripped) if lead == indent else None
            if m and not _is_type(m.group(2)):
                names = [n.strip() for n in m.group(1).split(",") if n.strip()]
                body = [m.group(2)]
                j = i + 1
                while j < len(lines) and lines[j].strip() and len(lines[j]) - len(lines[j].lstrip()) > lead:
                    body.append(lines[j].strip())
                    j += 1
                # one entry per name: Griffe gives a grouped entry the first name's default
                for k, name in enumerate(names):
                    out.append(" " * lead + name)
                    text = body if k == 0 or sum(map(len, body)) < 160 else [f"See ``{names[0]}``."]
                    out.extend(" " * (lead + 4) + b for b in text)
                skip.update(range(i + 1, j))
                continue
        out.append(line)
    return _ROLE.sub(r"``\1``", "\n".join(out))


class AdaptersSubpackage(griffe.Extension):
    def on_package(self, *, pkg, loader, **kwargs):
        if pkg.name != "steadysolve" or "adapters" in pkg.members:
            return
        spec = importlib.util.find_spec("steadysolve.adapters")
        if spec is None or spec.origin is None:
            return
        folder = Path(spec.origin).parent
        sub = loader._load_module("adapters", folder / "__init__.py", submodules=False, parent=pkg)
        pkg.set_member("adapters", sub)
        for path in sorted(folder.glob("*.py")):
            if path.stem != "__init__":
                sub.set_member(path.stem, loader._load_module(path.stem, path, submodules=False, parent=sub))


class CompactNumpyDocstrings(griffe.Extension):
    def on_package(self, *, pkg, loader, **kwargs):
        if pkg.name != "steadysolve":
            return
        _append_shared_jax_keywords(pkg)
        _real_jax_deq(pkg)
        seen = set()

        def visit(obj):
            if id(obj) in seen or obj.is_alias:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = compact_to_numpy(obj.docstring.value)
            for member in list(obj.members.values()):
                if not member.is_alias:
                    visit(member)

        visit(pkg)


def _append_shared_jax_keywords(pkg) -> None:
    try:
        mod = pkg["adapters"]["jax"]
        common = ast.literal_eval(str(mod["_DOC_COMMON"].value))
    except (KeyError, ValueError, SyntaxError):
        return
    common = textwrap.dedent(common).strip("\n").replace("Keyword arguments\n-----------------", "Parameters\n----------")
    for name in ("fixed_point", "root", "steady_state"):
        fn = mod.members.get(name)
        if fn is None or fn.is_alias or fn.docstring is None or "Parameters\n---" in fn.docstring.value:
            continue
        doc = fn.docstring.value
        at = doc.find("\nExamples\n--------")
        fn.docstring.value = (doc + "\n\n" + common) if at < 0 else (doc[:at] + "\n\n" + common + "\n" + doc[at:])


def _real_jax_deq(pkg) -> None:
    """Replace the fallback ``DEQ`` of the JAX adapter by the first (documented) definition."""
    try:
        mod = pkg["adapters"]["jax"]
        source = Path(mod.filepath).read_text(encoding="utf-8")
    except (KeyError, OSError, TypeError):
        return
    lines = source.split("\n")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == "DEQ" and ast.get_docstring(node):
            code = textwrap.dedent("\n".join(lines[node.lineno - 1:node.end_lineno]))
            tmp = griffe.visit("_deq", filepath=Path(mod.filepath), code=code)
            cls = tmp["DEQ"]
            mod.set_member("DEQ", cls)
            return
