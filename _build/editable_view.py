"""The editable install (``pip install -e .``) that both Python and static tools can follow.

The adapters' source is the top-level ``adapters/`` folder, installed as ``steadysolve.adapters``
(``[tool.setuptools.package-dir]``). No single ``sys.path`` entry shows that layout, so setuptools'
default editable install resolves it with an import hook, which type checkers and IDEs (pyright,
mypy, Pylance, Jedi) never run: for them ``steadysolve`` did not exist. Its "strict" mode (a tree of
file links) fixes the type checkers but not ``python -m pytest`` run from the checkout, where the
checkout's own ``steadysolve/`` comes first on ``sys.path`` and has no ``adapters`` inside, and a
module added later stays invisible until the next install.

This command keeps setuptools' default install (the import hook, which also answers for modules
added after the install) and adds a *view*: ``build/__editable__.<name>.view/steadysolve/`` holds one
link per entry of ``steadysolve/`` (sub-packages linked whole, so files added inside them show at
once) plus ``adapters`` linked to ``adapters/``, and a ``.pth`` file puts the view on ``sys.path``.
Python then imports from the view, falling back to the hook for a top-level module added since;
static tools read the ``.pth`` line and see the installed layout. Where links cannot be made (Windows
without the symlink privilege) the view is left out and the install is setuptools' default.

Used through ``[tool.setuptools.cmdclass]`` in pyproject.toml; not part of the package.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from setuptools.command.editable_wheel import editable_wheel


class EditableWheel(editable_wheel):
    def _select_strategy(self, name, tag, build_lib):
        inner = super()._select_strategy(name, tag, build_lib)
        view = Path(self.project_dir, "build", f"__editable__.{name}.view").resolve()
        return _WithView(inner, name, view, self._links())

    def _links(self) -> dict:
        """``{path inside the view: source folder}`` for every package folder of the build."""
        root = Path(self.project_dir).resolve()
        pkg_dir = dict(self.package_dir)
        links = {}
        for pkg in sorted(self.distribution.packages or []):
            parts = pkg.split(".")
            for i in range(len(parts), 0, -1):  # the longest mapped prefix decides the folder
                prefix = ".".join(parts[:i])
                if prefix in pkg_dir:
                    src = root / pkg_dir[prefix] / Path(*parts[i:])
                    break
            else:
                src = root / pkg_dir.get("", ".") / Path(*parts)
            links[Path(*parts)] = src
        return links


class _WithView:
    """Setuptools' strategy, plus the view and the ``.pth`` line that points at it."""

    def __init__(self, inner, name: str, view: Path, links: dict):
        self.inner, self.name, self.view, self.links = inner, name, view, links

    def __call__(self, wheel, files, mapping):
        self.inner(wheel, files, mapping)
        if self._build():
            wheel.writestr(f"__editable__.{self.name}.view.pth", f"{self.view}\n".encode())

    def _build(self) -> bool:
        shutil.rmtree(self.view, ignore_errors=True)
        try:
            self.view.mkdir(parents=True)
            for rel, src in sorted(self.links.items(), key=lambda kv: len(kv[0].parts)):
                parent = self.links.get(rel.parent)
                if parent is not None and src == parent / rel.name:
                    continue  # a plain sub-folder: linked with its parent
                for up in reversed(rel.parents[:-1]):  # the folders above it become real folders of links
                    _expand(self.view / up)
                dst = self.view / rel
                if dst.is_symlink():
                    dst.unlink()
                dst.symlink_to(src, target_is_directory=True)
            return True
        except OSError:
            shutil.rmtree(self.view, ignore_errors=True)
            return False

    def __enter__(self):
        self.inner.__enter__()
        return self

    def __exit__(self, *exc):
        return self.inner.__exit__(*exc)


def _expand(folder: Path) -> None:
    """Turn a linked folder into a real one that links each of its entries."""
    if not folder.is_symlink():
        return
    src = Path(os.readlink(folder))
    folder.unlink()
    folder.mkdir()
    for entry in src.iterdir():
        if entry.name != "__pycache__":
            (folder / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
