"""Butcher tableaux as data, and Tsitouras' 5(4) pair.

A tableau is plain numbers (tuples of floats): the stage nodes ``c``, the strictly
lower-triangular coefficients ``a``, the solution weights ``b``, the error weights
``b_err = b - b_hat`` (solution minus embedded weights) and, optionally, the
coefficients of a free dense-output polynomial. It checks itself when it is built:
every row of ``a`` sums to its ``c``, ``b`` sums to 1, ``b_err`` sums to 0, the
dense output reproduces ``b`` at the end of the step. A typo in a coefficient is
an import-time error, not a silently first-order integrator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from functools import cached_property
from typing import Optional, Tuple

__all__ = ["ButcherTableau", "ExplicitRK", "Tsit5", "TSIT5_TABLEAU"]

_TOL = 1e-12


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge-Kutta pair with an embedded error estimate.

    Parameters
    ----------
    c
        Stage nodes, ``c[0] == 0``.
    a
        Rows ``a[i]`` of length ``i`` (``a[0]`` is empty): stage ``i`` is evaluated at
        ``u + h * sum_j a[i][j] k_j``.
    b
        Weights of the propagated solution (order ``order``).
    b_err
        ``b - b_hat``; the local error estimate is ``h * sum_j b_err[j] k_j``.
    order
        Order of the propagated solution; ``error_order`` is the embedded one.
    dense
        Optional ``dense[i] = (d_1, ..., d_m)`` with
        ``b_i(theta) = sum_k d_k theta**k``; then
        ``u(t + theta h) = u + h sum_i b_i(theta) k_i``.
    """

    name: str
    c: Tuple[float, ...]
    a: Tuple[Tuple[float, ...], ...]
    b: Tuple[float, ...]
    b_err: Tuple[float, ...]
    order: int
    error_order: int
    dense: Optional[Tuple[Tuple[float, ...], ...]] = field(default=None)

    def __post_init__(self):
        s = len(self.c)
        where = f"ButcherTableau {self.name!r}"
        if s < 1 or len(self.a) != s or len(self.b) != s or len(self.b_err) != s:
            raise ValueError(f"{where}: c, a, b and b_err must all have one entry per stage ({s})")
        if self.c[0] != 0:
            raise ValueError(f"{where}: c[0] must be 0 for an explicit method, got {self.c[0]}")
        for i, row in enumerate(self.a):
            if len(row) != i:
                raise ValueError(f"{where}: row a[{i}] must have {i} entries (explicit method), got {len(row)}")
            if abs(math.fsum(row) - self.c[i]) > _TOL * max(1.0, abs(self.c[i])):
                raise ValueError(f"{where}: row a[{i}] sums to {math.fsum(row)!r}, not c[{i}] = {self.c[i]!r}")
        if abs(math.fsum(self.b) - 1.0) > _TOL:
            raise ValueError(f"{where}: the weights b sum to {math.fsum(self.b)!r}, not 1")
        if abs(math.fsum(self.b_err)) > _TOL:
            raise ValueError(f"{where}: the error weights b_err sum to {math.fsum(self.b_err)!r}, not 0")
        if not (isinstance(self.order, int) and isinstance(self.error_order, int)
                and 1 <= self.error_order < self.order):
            raise ValueError(f"{where}: need integer orders 1 <= error_order < order, got "
                             f"order={self.order}, error_order={self.error_order}")
        if self.dense is not None:
            if len(self.dense) != s:
                raise ValueError(f"{where}: dense must have one polynomial per stage")
            for i, poly in enumerate(self.dense):
                if abs(math.fsum(poly) - self.b[i]) > 1e-9:
                    raise ValueError(f"{where}: dense output b_{i}(1) = {math.fsum(poly)!r} differs from "
                                     f"b[{i}] = {self.b[i]!r}")

    @property
    def stages(self) -> int:
        return len(self.c)

    @cached_property
    def fsal(self) -> bool:
        """First Same As Last: the last stage is evaluated at the new solution."""
        return (self.c[-1] == 1.0 and self.b[-1] == 0.0
                and all(abs(x - y) <= _TOL for x, y in zip(self.a[-1], self.b[:-1])))

    @cached_property
    def stability_limit(self) -> float:
        """Where the stability region meets the negative real axis: the largest ``x`` with
        ``|R(-y)| <= 1`` for all ``0 < y <= x`` (``R`` the stability function of the propagated solution)."""
        def amplification(z):  # R(z) = 1 + z b^T (I - z A)^-1 1, by forward substitution
            g = []
            for i in range(self.stages):
                g.append(1.0 + z * math.fsum(a * gj for a, gj in zip(self.a[i], g)))
            return abs(1.0 + z * math.fsum(b * gi for b, gi in zip(self.b, g)))

        x = 0.0
        while x < 100.0 and amplification(-(x + 0.01)) <= 1.0:
            x += 0.01
        lo, hi = x, x + 0.01
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if amplification(-mid) <= 1.0 else (lo, mid)
        return lo

    @cached_property
    def error_inputs(self) -> tuple:
        """``w = b_err^T A``: ``sum_j b_err_j y_j = u + sum_l w_l h k_l`` is the stage inputs' combination
        that the error estimate ``sum_j b_err_j h f(y_j)`` is ``h J`` times, to first order (the weights
        ``b_err`` sum to 0). Their ratio estimates ``h |lambda|`` of the mode the error estimate follows:
        at an explicit method's stability limit the stiffest one (``Attempted.hrho``)."""
        return tuple(math.fsum(self.b_err[j] * (self.a[j][l] if l < j else 0.0) for j in range(self.stages))
                     for l in range(self.stages))

    @property
    def new_evaluations(self) -> int:
        """Vector-field evaluations per step once the first stage is known (FSAL reuse)."""
        return self.stages - 1 if self.fsal else self.stages


def _poly(*factors):
    """Multiply polynomials given as coefficient tuples in increasing powers."""
    out = (1.0,)
    for f in factors:
        res = [0.0] * (len(out) + len(f) - 1)
        for i, x in enumerate(out):
            for j, y in enumerate(f):
                res[i + j] += x * y
        out = tuple(res)
    return out


def _dense_coeffs(const, *factors):
    """Coefficients ``(d_1, ..., d_m)`` of ``const * prod(factors)`` (whose constant term is 0)."""
    p = _poly(*factors)
    if p[0] != 0.0:
        raise ValueError(f"dense-output polynomial must vanish at theta = 0, its constant term is {p[0]}")
    return tuple(const * x for x in p[1:])


# Tsitouras, "Runge-Kutta pairs of order 5(4) satisfying only the first column
# simplifying assumption", Comput. Math. Appl. 62 (2011) 770-775. Coefficients to
# double precision as published in that paper (and used by OrdinaryDiffEq / diffrax).
_T = (0.0, 1.0)  # theta
_B7 = (0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742,
       -3.290069515436081, 2.324710524099774, 0.0)
_B_HAT = (0.09468075576583945, 0.009183565540343254, 0.4877705284247616, 1.234297566930479,
          -2.7077123499835256, 1.866628418170587, 1.0 / 66.0)

TSIT5_TABLEAU = ButcherTableau(
    name="Tsit5",
    c=(0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0),
    a=(
        (),
        (0.161,),
        (-0.008480655492356989, 0.335480655492357),
        (2.897153057105493, -6.359448489975075, 4.3622954328695815),
        (5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525),
        (5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401,
         -0.028269050394068383),
        _B7[:6],
    ),
    b=_B7,
    b_err=tuple(x - y for x, y in zip(_B7, _B_HAT)),
    order=5,
    error_order=4,
    dense=(
        _dense_coeffs(-1.0530884977290216, _T, (-1.3299890189751412, 1.0),
                      (0.7139816917074209, -1.4364028541716351, 1.0)),
        _dense_coeffs(0.1017, _T, _T, (1.2949852507374631, -2.1966568338249754, 1.0)),
        _dense_coeffs(2.490627285651252793, _T, _T, (1.57803468208092486, -2.38535645472061657, 1.0)),
        _dense_coeffs(-16.54810288924490272, _T, _T, (-1.21712927295533244, 1.0),
                      (-0.61620406037800089, 1.0)),
        _dense_coeffs(47.37952196281928122, _T, _T, (-1.203071208372362603, 1.0),
                      (-0.658047292653547382, 1.0)),
        _dense_coeffs(-34.87065786149660974, _T, _T, (-1.2, 1.0), (-2.0 / 3.0, 1.0)),
        _dense_coeffs(2.5, _T, _T, (-1.0, 1.0), (-0.6, 1.0)),
    ),
)


@dataclass(frozen=True)
class ExplicitRK:
    """An explicit Runge-Kutta integrator defined by its tableau (data, not code)."""

    tableau: ButcherTableau

    def __post_init__(self):
        if not isinstance(self.tableau, ButcherTableau):
            raise TypeError(f"{type(self).__name__}: tableau must be a ButcherTableau, "
                            f"got {type(self.tableau).__name__}")

    @property
    def order(self) -> int:
        return self.tableau.order


@dataclass(frozen=True)
class Tsit5(ExplicitRK):
    """Tsitouras' 5(4) pair: 7 stages, FSAL (6 new evaluations per step), free
    4th-order dense output. The default integrator of ``DynamicSS``.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> sol = ss.integrate(lambda u, p, t: np.cos(t) + 0.0 * u, np.zeros(1), (0.0, 1.0), ss.Tsit5(), saveat=[1.0])
    >>> np.round(sol.us[0], 6)                        # sin(1)
    array([0.841471])
    """

    tableau: ButcherTableau = TSIT5_TABLEAU

    def __repr__(self) -> str:
        return "Tsit5()"
