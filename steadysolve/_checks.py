"""Option and input checks shared by every layer (the floor of the package, with ``_backend``).

Every public object validates its options here, so that one rule holds everywhere:
numbers are any real Python/NumPy scalar (``numbers.Real``, never ``bool``), integers any
``numbers.Integral`` (never ``bool``), flags real ``bool``\\ s, and a wrong name gets one
"did you mean" hint. Each check returns the normalised value (``float`` / ``int``).
"""

from __future__ import annotations

import difflib
import math
import numbers
from typing import Any, Iterable, Mapping, Optional

__all__ = [
    "check_real",
    "check_positive",
    "check_tol",
    "check_int",
    "check_bool",
    "check_choice",
    "check_callable",
    "check_batch_axis",
    "suggest",
    "reject_unknown",
]


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_real(owner: str, name: str, value, *, allow_none: bool = False, allow_inf: bool = False) -> Optional[float]:
    """A real number (any Python/NumPy scalar, not bool, not NaN), as a ``float``."""
    if value is None and allow_none:
        return None
    if not _is_real(value):
        raise TypeError(f"{owner}: {name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{owner}: {name} must be a finite number, got {value!r}")
    return v


def check_positive(owner: str, name: str, value, *, allow_zero: bool = False, allow_none: bool = False,
                   allow_inf: bool = False) -> Optional[float]:
    """A number ``> 0`` (``>= 0`` with ``allow_zero``), as a ``float``."""
    v = check_real(owner, name, value, allow_none=allow_none, allow_inf=allow_inf)
    if v is None:
        return None
    if v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{owner}: {name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v


def check_tol(owner: str, name: str, value, *, allow_none: bool = True) -> Optional[float]:
    """A tolerance: a finite number ``>= 0`` (or ``None`` for "the default")."""
    if type(value) is float and 0.0 <= value < math.inf:  # the common case, without the checks below
        return value
    if value is None and allow_none:
        return None
    if not _is_real(value):
        raise TypeError(f"{owner}: {name} must be a non-negative number, got {type(value).__name__}")
    v = float(value)
    if not v >= 0 or math.isinf(v):
        raise ValueError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")
    return v


def check_int(owner: str, name: str, value, minimum: Optional[int] = 1, *, allow_none: bool = False) -> Optional[int]:
    """An integer (any ``numbers.Integral`` but bool) ``>= minimum``, as an ``int``."""
    if type(value) is int and (minimum is None or value >= minimum):  # the common case
        return value
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__}")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {v}")
    return v


def check_bool(owner: str, name: str, value) -> bool:
    """A real ``bool`` (``"no"`` or ``1`` are refused, not read as true)."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")
    return value


def check_callable(owner: str, name: str, value, *, allow_none: bool = False, what: str = "callable"):
    if value is None and allow_none:
        return None
    if not callable(value):
        raise TypeError(f"{owner}: {name} must be {what}, got {type(value).__name__}")
    return value


def suggest(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> Optional[str]:
    """The closest candidate to ``name`` (for "did you mean ...?"), or None."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=cutoff)
    return close[0] if close else None


def check_choice(owner: str, name: str, value, choices) -> Any:
    """``value`` if it is one of ``choices``, else a ``ValueError`` naming them (with a close match)."""
    try:
        if value in choices:
            return value
    except TypeError:  # an unhashable value against a set of choices
        pass
    close = suggest(str(value), choices)
    hint = f" (did you mean {close!r}?)" if close else ""
    raise ValueError(f"{owner}: unknown {name} {value!r}{hint}; valid: {', '.join(repr(c) for c in choices)}")


def reject_unknown(owner: str, unknown: Mapping[str, Any], valid: Iterable[str],
                   aliases: Optional[Mapping[str, str]] = None) -> None:
    """Raise ``TypeError`` for the first unknown keyword, pointing at ours (an alias or a close match)."""
    if not unknown:
        return
    valid = list(valid)
    key = next(iter(unknown))
    hint_name = (aliases or {}).get(key) or suggest(key, valid, cutoff=0.75)
    hint = f" (did you mean '{hint_name}'?)" if hint_name else ""
    raise TypeError(f"{owner} got an unexpected keyword argument {key!r}{hint}; valid keywords: {', '.join(valid)}")


def check_batch_axis(owner: str, batch_axis, shape, what: str = "u0") -> Optional[int]:
    """``None`` or an axis of an array of ``shape``, normalised to ``0 <= axis < ndim``."""
    if batch_axis is None:
        return None
    ndim = len(shape)
    axis = check_int(owner, "batch_axis", batch_axis, minimum=None)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{owner}: batch_axis={axis} is out of range for {what} with shape {tuple(shape)}")
    axis %= ndim
    if shape[axis] == 0:
        raise ValueError(f"{owner}: the batch axis of {what} is empty (shape {tuple(shape)})")
    return axis
