"""The 27 NIST StRD nonlinear regression problems, in NumPy.

The data files in ``nist_strd/`` are NIST's own (Statistical Reference Datasets, Information
Technology Laboratory; a work of the US government, public domain): each states the model, two
starting points and the certified parameters (computed by NIST to 11 significant digits in
128-bit arithmetic) with the certified residual sum of squares. This module parses them and
writes each model from the formula in its file's ``Model:`` section.

Each :class:`NISTProblem` has ``name``, ``difficulty`` (``"lower"``, ``"average"``, ``"higher"``),
``starts`` (the two starting vectors), ``certified`` (the parameters), ``rss`` (the certified
residual sum of squares) and ``residual(b)``: the ``m`` residuals ``model(x, b) - y`` (for
``Nelson``, whose model is ``log(y) = ...``, ``model - log(y)``). ``cases()`` yields
``(problem, start_index, b0)`` for both starts of every problem (54 cases).

``digits(b, certified)`` is the log relative error of NIST's guidance (the smallest over the
parameters of ``-log10(|b - c| / |c|)``): a fit "solves" a problem when it agrees to at least 4
significant digits.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

__all__ = ["NISTProblem", "PROBLEMS", "NAMES", "load", "cases", "digits", "SOLVED_DIGITS"]

#: significant digits of agreement with the certified parameters that count as a solve
SOLVED_DIGITS = 4.0

_DIR = Path(__file__).with_name("nist_strd")


def _exp_sum(x, b):  # Lanczos: three exponentials
    return b[0] * np.exp(-b[1] * x) + b[2] * np.exp(-b[3] * x) + b[4] * np.exp(-b[5] * x)


def _gauss(x, b):  # Gauss1-3: an exponential baseline and two Gaussian peaks
    return (b[0] * np.exp(-b[1] * x) + b[2] * np.exp(-((x - b[3]) ** 2) / b[4] ** 2)
            + b[5] * np.exp(-((x - b[6]) ** 2) / b[7] ** 2))


def _rational_33(x, b):  # Hahn1, Thurber: cubic over cubic
    return (b[0] + b[1] * x + b[2] * x ** 2 + b[3] * x ** 3) / (1.0 + b[4] * x + b[5] * x ** 2 + b[6] * x ** 3)


def _chwirut(x, b):
    return np.exp(-b[0] * x) / (b[1] + b[2] * x)


def _misra1a(x, b):  # also BoxBOD
    return b[0] * (1.0 - np.exp(-b[1] * x))


def _enso(x, b):
    w = 2.0 * np.pi * x
    return (b[0] + b[1] * np.cos(w / 12.0) + b[2] * np.sin(w / 12.0) + b[4] * np.cos(w / b[3])
            + b[5] * np.sin(w / b[3]) + b[7] * np.cos(w / b[6]) + b[8] * np.sin(w / b[6]))


#: the model of each problem, ``f(x, b)`` (``x`` is ``(m,)``, or ``(m, 2)`` for Nelson)
_MODELS: dict[str, Callable] = {
    "Misra1a": _misra1a,
    "Chwirut2": _chwirut,
    "Chwirut1": _chwirut,
    "Lanczos3": _exp_sum,
    "Gauss1": _gauss,
    "Gauss2": _gauss,
    "DanWood": lambda x, b: b[0] * x ** b[1],
    "Misra1b": lambda x, b: b[0] * (1.0 - (1.0 + b[1] * x / 2.0) ** -2.0),
    "Kirby2": lambda x, b: (b[0] + b[1] * x + b[2] * x ** 2) / (1.0 + b[3] * x + b[4] * x ** 2),
    "Hahn1": _rational_33,
    "Nelson": lambda x, b: b[0] - b[1] * x[:, 0] * np.exp(-b[2] * x[:, 1]),
    "MGH17": lambda x, b: b[0] + b[1] * np.exp(-x * b[3]) + b[2] * np.exp(-x * b[4]),
    "Lanczos1": _exp_sum,
    "Lanczos2": _exp_sum,
    "Gauss3": _gauss,
    "Misra1c": lambda x, b: b[0] * (1.0 - (1.0 + 2.0 * b[1] * x) ** -0.5),
    "Misra1d": lambda x, b: b[0] * b[1] * x / (1.0 + b[1] * x),
    "Roszman1": lambda x, b: b[0] - b[1] * x - np.arctan(b[2] / (x - b[3])) / np.pi,
    "ENSO": _enso,
    "MGH09": lambda x, b: b[0] * (x ** 2 + x * b[1]) / (x ** 2 + x * b[2] + b[3]),
    "Thurber": _rational_33,
    "BoxBOD": _misra1a,
    "Rat42": lambda x, b: b[0] / (1.0 + np.exp(b[1] - b[2] * x)),
    "MGH10": lambda x, b: b[0] * np.exp(b[1] / (x + b[2])),
    "Eckerle4": lambda x, b: (b[0] / b[1]) * np.exp(-0.5 * ((x - b[2]) / b[1]) ** 2),
    "Rat43": lambda x, b: b[0] / (1.0 + np.exp(b[1] - b[2] * x)) ** (1.0 / b[3]),
    "Bennett5": lambda x, b: b[0] * (b[1] + x) ** (-1.0 / b[2]),
}

#: NIST's order (by level of difficulty)
NAMES = tuple(_MODELS)

_PARAM = re.compile(r"^\s*b(\d+)\s*=\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")


@dataclass(frozen=True)
class NISTProblem:
    name: str
    difficulty: str
    x: np.ndarray
    y: np.ndarray
    starts: tuple
    certified: np.ndarray
    rss: float
    model: Callable

    @property
    def n(self) -> int:
        return int(self.certified.shape[0])

    @property
    def m(self) -> int:
        return int(self.y.shape[0])

    def residual(self, b) -> np.ndarray:
        """``model(x, b) - y`` (``Nelson``: ``- log(y)``), float64 ``(m,)``."""
        return self.model(self.x, b) - self.y


def _parse(name: str) -> NISTProblem:
    lines = (_DIR / f"{name}.dat").read_text().splitlines()
    starts1, starts2, cert = [], [], []
    rss = math.nan
    difficulty = ""
    data_at = None
    for i, line in enumerate(lines):
        hit = _PARAM.match(line)
        if hit:
            starts1.append(float(hit.group(2)))
            starts2.append(float(hit.group(3)))
            cert.append(float(hit.group(4)))
        elif line.startswith("Residual Sum of Squares:"):
            rss = float(line.split(":")[1])
        elif "Level of Difficulty" in line:
            difficulty = line.split()[0].lower()
        elif line.startswith("Data:") and line.split()[1] == "y":
            data_at = i + 1
    if data_at is None or not cert:
        raise ValueError(f"nist: cannot parse {name}.dat")
    rows = np.array([[float(v) for v in ln.split()] for ln in lines[data_at:] if ln.strip()], dtype=np.float64)
    y, x = rows[:, 0], (rows[:, 1:] if rows.shape[1] > 2 else rows[:, 1])
    if name == "Nelson":
        y = np.log(y)
    return NISTProblem(name, difficulty, x, y, (np.array(starts1), np.array(starts2)), np.array(cert), rss,
                       _MODELS[name])


@lru_cache(maxsize=None)
def load(name: str) -> NISTProblem:
    """The problem ``name`` (one of :data:`NAMES`), parsed once."""
    if name not in _MODELS:
        raise KeyError(f"nist: unknown problem {name!r}; valid: {', '.join(NAMES)}")
    return _parse(name)


def PROBLEMS() -> list:
    """All 27 problems, in NIST's order."""
    return [load(n) for n in NAMES]


def cases() -> Iterator[tuple]:
    """``(problem, start_index (1 or 2), b0)`` for both starts of every problem."""
    for prob in PROBLEMS():
        for k, b0 in enumerate(prob.starts, start=1):
            yield prob, k, b0.copy()


def digits(b, certified) -> float:
    """The smallest over the parameters of the significant digits that agree (NIST's log relative
    error, capped at 11, the digits NIST certifies); 0 for a non-finite fit."""
    b = np.asarray(b, dtype=np.float64)
    if b.shape != certified.shape or not np.all(np.isfinite(b)):
        return 0.0
    rel = np.abs(b - certified) / np.abs(certified)
    with np.errstate(divide="ignore"):
        lre = -np.log10(np.maximum(rel, 1e-11))
    return float(max(0.0, np.min(lre)))
