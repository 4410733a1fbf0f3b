"""Algorithms by name.

``register(name)`` is a class decorator used by each algorithm module (the algorithm
modules import this one, never the other way round); ``resolve(alg)`` turns a name, a
class or an instance into an instance; ``available()`` lists the names. Unknown names
raise ``ValueError`` listing the valid names (with a close-match suggestion).
"""

from __future__ import annotations

from ._checks import suggest

__all__ = ["register", "resolve", "available", "NONLINEAR", "LINEAR"]

NONLINEAR: dict[str, type] = {}
LINEAR: dict[str, type] = {}


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


def available(kind: str = "nonlinear") -> list[str]:
    """The registered names of one kind (``"nonlinear"`` algorithms or ``"linear"`` solvers), sorted.

    >>> import steadysolve as ss
    >>> "anderson" in ss.available() and "gmres" in ss.available("linear")
    True
    """
    return sorted(LINEAR if kind == "linear" else NONLINEAR)


def _is_algorithm(obj) -> bool:
    return callable(getattr(obj, "init", None)) and callable(getattr(obj, "step", None))


_DEFAULTS: dict = {}


def _default(cls):
    """The default-constructed instance of a registered class, made once (instances are frozen)."""
    inst = _DEFAULTS.get(cls)
    if inst is None:
        inst = _DEFAULTS[cls] = cls()
    return inst


def resolve(alg, kind: str = "nonlinear"):
    """An algorithm instance from an instance, a class or a registered name."""
    table = LINEAR if kind == "linear" else NONLINEAR
    what = "linear solver" if kind == "linear" else "algorithm"
    if isinstance(alg, str):
        key = alg.strip().lower().replace("-", "_")
        if key in table:
            return _default(table[key])
        names = sorted(table)
        close = suggest(key, names, cutoff=0.5)
        hint = f" Did you mean {close!r}?" if close else ""
        raise ValueError(f"unknown {what} {alg!r}.{hint} Valid names: {', '.join(names)}")
    if isinstance(alg, type) and alg in table.values():
        return _default(alg)
    if kind == "nonlinear" and not isinstance(alg, type) and _is_algorithm(alg):
        return alg
    if kind == "linear" and type(alg) in table.values():
        return alg
    raise TypeError(
        f"expected a {what} (an instance such as steadysolve.Anderson() or one of the names "
        f"{', '.join(sorted(table))}), got {type(alg).__name__}"
    )
