"""Algorithms by name.

``register(name)`` is a class decorator used by each algorithm module (the algorithm
modules import this one, never the other way round); ``resolve(alg)`` turns a name, a
class or an instance into an instance; ``available()`` lists the names. Unknown names
raise ``ValueError`` listing the valid names (with a close-match suggestion).

Three kinds, one table each: ``"nonlinear"`` algorithms (``solve`` on a NonlinearProblem,
SteadyStateProblem or FixedPointProblem), ``"linear"`` solvers (``linear_solve``) and
``"bracketing"`` methods (``solve`` on an IntervalNonlinearProblem).
"""

from __future__ import annotations

from ._checks import suggest

__all__ = ["register", "resolve", "available", "NONLINEAR", "LINEAR", "BRACKETING"]

NONLINEAR: dict[str, type] = {}
LINEAR: dict[str, type] = {}
BRACKETING: dict[str, type] = {}
_TABLES = {"nonlinear": NONLINEAR, "linear": LINEAR, "bracketing": BRACKETING}
_WHAT = {"nonlinear": "algorithm", "linear": "linear solver", "bracketing": "bracketing method"}
_A_WHAT = {"nonlinear": "an algorithm", "linear": "a linear solver", "bracketing": "a bracketing method"}
_EXAMPLE = {"nonlinear": "steadysolve.Anderson()", "linear": "steadysolve.GMRES()", "bracketing": "steadysolve.ITP()"}
_SOLVES = {"nonlinear": "a NonlinearProblem, SteadyStateProblem or FixedPointProblem",
           "linear": "linear_solve", "bracketing": "an IntervalNonlinearProblem"}


def _table(kind: str) -> dict:
    if kind not in _TABLES:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(repr(k) for k in _TABLES)}")
    return _TABLES[kind]


def register(name: str, kind: str = "nonlinear"):
    table = _table(kind)

    def deco(cls):
        if name in table and table[name] is not cls:
            raise ValueError(f"algorithm name {name!r} is already registered to {table[name].__name__}")
        table[name] = cls
        if not cls.__dict__.get("name"):
            cls.name = name
        return cls

    return deco


def available(kind: str = "nonlinear") -> list[str]:
    """The registered names of one kind, sorted: ``"nonlinear"`` algorithms (the default),
    ``"linear"`` solvers or ``"bracketing"`` methods (for an IntervalNonlinearProblem).

    Parameters
    ----------
    kind : str
        ``"nonlinear"`` (default: the names ``solve`` and the adapters accept) or ``"linear"``
        (the names ``linear_solve`` and ``Implicit(solver=...)`` accept).

    Returns
    -------
    list of str
        The names, sorted.

    Examples
    --------
    >>> import steadysolve as ss
    >>> "anderson" in ss.available() and "gmres" in ss.available("linear")
    True
    >>> ss.available("bracketing")
    ['bisection', 'brent', 'itp', 'ridder']
    """
    return sorted(_table(kind))


def _is_algorithm(obj) -> bool:
    return callable(getattr(obj, "init", None)) and callable(getattr(obj, "step", None))


def _elsewhere(key: str, kind: str) -> str:
    """A hint when ``key`` names something of another kind (``"itp"`` passed for a NonlinearProblem)."""
    for other, table in _TABLES.items():
        if other != kind and key in table:
            return f" {key!r} is {_A_WHAT[other]}: it solves {_SOLVES[other]}, not {_SOLVES[kind]}."
    return ""


_DEFAULTS: dict = {}


def _default(cls):
    """The default-constructed instance of a registered class, made once (instances are frozen)."""
    inst = _DEFAULTS.get(cls)
    if inst is None:
        inst = _DEFAULTS[cls] = cls()
    return inst


def resolve(alg, kind: str = "nonlinear"):
    """An algorithm instance from an instance, a class or a registered name."""
    table = _table(kind)
    what = _WHAT[kind]
    if isinstance(alg, str):
        key = alg.strip().lower().replace("-", "_")
        if key in table:
            return _default(table[key])
        names = sorted(table)
        close = suggest(key, names, cutoff=0.5)
        hint = _elsewhere(key, kind) or (f" Did you mean {close!r}?" if close else "")
        raise ValueError(f"unknown {what} {alg!r}.{hint} Valid names: {', '.join(names)}")
    if isinstance(alg, type) and alg in table.values():
        return _default(alg)
    bracketing = getattr(alg, "bracketing", False) is True
    if kind == "nonlinear" and not isinstance(alg, type) and _is_algorithm(alg) and not bracketing:
        return alg
    if kind == "bracketing" and not isinstance(alg, type) and bracketing:
        return alg
    if kind == "linear" and type(alg) in table.values():
        return alg
    if bracketing or (isinstance(alg, type) and getattr(alg, "bracketing", False) is True):
        raise TypeError(f"{getattr(alg, '__name__', type(alg).__name__)} is a bracketing method: it solves "
                        f"{_SOLVES['bracketing']}, not {_SOLVES[kind]}")
    raise TypeError(
        f"expected a {what} (an instance such as {_EXAMPLE[kind]} or one of the names "
        f"{', '.join(sorted(table))}), got {type(alg).__name__}"
    )
