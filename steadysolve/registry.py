"""Algorithms by name.

``register(name)`` is a class decorator used by each algorithm module;
``resolve(alg)`` turns a name or an instance into an instance. Unknown names
raise ``ValueError`` listing the valid names (with a close-match suggestion).
"""

from __future__ import annotations

import difflib
import importlib

__all__ = ["register", "resolve", "available", "NONLINEAR", "LINEAR"]

NONLINEAR: dict[str, type] = {}
LINEAR: dict[str, type] = {}

# Modules that register algorithms when imported (kept here so that a name can be
# resolved before the user touched the class).
_MODULES = (
    "steadysolve.algorithms",
    "steadysolve.linear",
)


def register(name: str, kind: str = "nonlinear"):
    table = LINEAR if kind == "linear" else NONLINEAR

    def deco(cls):
        if name in table and table[name] is not cls:
            raise ValueError(f"algorithm name {name!r} is already registered to {table[name].__name__}")
        table[name] = cls
        if not cls.__dict__.get("name"):
            cls.name = name
        return cls

    return deco


def _load() -> None:
    for mod in _MODULES:
        importlib.import_module(mod)


def available(kind: str = "nonlinear") -> list[str]:
    _load()
    return sorted(LINEAR if kind == "linear" else NONLINEAR)


def resolve(alg, kind: str = "nonlinear"):
    """An algorithm instance from an instance, a class or a registered name."""
    from .algorithms.base import Algorithm

    _load()
    table = LINEAR if kind == "linear" else NONLINEAR
    what = "linear solver" if kind == "linear" else "algorithm"
    if isinstance(alg, str):
        key = alg.strip().lower().replace("-", "_")
        if key in table:
            return table[key]()
        names = sorted(table)
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown {what} {alg!r}.{hint} Valid names: {', '.join(names)}")
    if isinstance(alg, type) and alg in table.values():
        return alg()
    if kind == "nonlinear" and isinstance(alg, Algorithm):
        return alg
    if kind == "linear" and type(alg) in table.values():
        return alg
    raise TypeError(
        f"expected a {what} (an instance such as steadysolve.Anderson() or one of the names "
        f"{', '.join(sorted(table))}), got {type(alg).__name__}"
    )
