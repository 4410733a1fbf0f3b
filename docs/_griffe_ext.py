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
plain code. Only the rendered text changes, never the source.
"""

from __future__ import annotations

import importlib.util
import re
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
    out, section, indent = [], None, None
    for i, line in enumerate(lines):
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
            m = re.match(r"^([\w*, ]+?)\s*:\s+(.*)$", stripped)
            if lead == indent and m and not _is_type(m.group(2)):
                out.append(" " * lead + m.group(1))
                out.append(" " * (lead + 4) + m.group(2))
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
