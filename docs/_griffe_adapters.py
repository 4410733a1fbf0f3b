"""Griffe extension for the API reference: attach ``steadysolve.adapters`` to ``steadysolve``.

The adapters' source lives in the top-level ``adapters/`` folder and is installed as
``steadysolve.adapters`` (``[tool.setuptools.package-dir]``), so Griffe's static finder, which
walks ``steadysolve/``, does not see it. This hook loads that folder (located through the
import system, so editable and regular installs both work) as the ``adapters`` submodule.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import griffe


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
