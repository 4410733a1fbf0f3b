"""The Rosenbrock tableau as data that checks itself (see :mod:`~steadysolve.ode.rosenbrock` for the
method and its coefficients, :mod:`~steadysolve.ode._trees` for the order conditions)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

from . import _trees

__all__ = ["RosenbrockTableau", "hermite_dense"]

_TOL = 1e-10  # the published coefficients have 16 digits; C entries up to ~300 amplify rounding

Rows = Tuple[Tuple[float, ...], ...]


def _tree_str(t) -> str:
    return "*" if not t else "[" + ", ".join(_tree_str(c) for c in t) + "]"


def _square(rows: Rows, s: int):
    return [[float(v) for v in row] + [0.0] * (s - len(row)) for row in rows]


@dataclass(frozen=True)
class RosenbrockTableau:
    """A Rosenbrock pair in transformed form (see the module notes); rows ``a[i]``, ``couple[i]``
    and ``mix[i]`` have ``i`` entries (stage ``i`` uses stages ``< i``).

    ``order`` is the order of ``u_new``; ``error_order`` that of the comparison solution whose
    difference is the error estimate (it may exceed ``order``: ode23s compares its second-order
    step with a third-order one). ``dense`` holds, per stage, the coefficients ``(d_1, ..., d_k)``
    of ``b_i(theta) = sum_k d_k theta**k`` with ``u(t + theta h) = u + sum_i b_i(theta) U_i``,
    accurate to ``dense_order``.
    """

    name: str
    gamma: float
    a: Rows
    couple: Rows
    nodes: Tuple[float, ...]
    d: Tuple[float, ...]
    m: Tuple[float, ...]
    m_err: Tuple[float, ...]
    order: int
    error_order: int
    l_stable: bool = True
    mix: Optional[Rows] = None
    dense: Optional[Rows] = None
    dense_order: int = 0

    def __post_init__(self):
        s = len(self.m)
        where = f"RosenbrockTableau {self.name!r}"
        if not (isinstance(self.gamma, float) and self.gamma > 0):
            raise ValueError(f"{where}: gamma must be a positive float, got {self.gamma!r}")
        for label, vec in (("nodes", self.nodes), ("d", self.d), ("m_err", self.m_err)):
            if len(vec) != s:
                raise ValueError(f"{where}: {label} must have one entry per stage ({s}), got {len(vec)}")
        for label, rows in (("a", self.a), ("couple", self.couple), ("mix", self.mix)):
            if rows is None:
                continue
            if len(rows) != s or any(len(r) != i for i, r in enumerate(rows)):
                raise ValueError(f"{where}: {label} must have {s} rows, row i with i entries (stage i uses "
                                 "the stages before it)")
        if not (isinstance(self.order, int) and isinstance(self.error_order, int) and self.order >= 1
                and self.error_order >= 1 and self.error_order != self.order):
            raise ValueError(f"{where}: need integer orders >= 1 with error_order != order, got "
                             f"order={self.order}, error_order={self.error_order}")
        E = _square(self.mix or ((),) * s, s)
        E = [[1.0 if i == j else v for j, v in enumerate(row)] for i, row in enumerate(E)]
        alpha, Gamma, b = _trees.untransform(self.gamma, _square(self.a, s), _square(self.couple, s), self.m)
        ones = [math.fsum(row) for row in E]
        self._agree(where, "nodes", self.nodes, [math.fsum(x * y for x, y in zip(r, ones)) for r in alpha])
        self._agree(where, "d", self.d, [math.fsum(x * y for x, y in zip(r, ones)) for r in Gamma])
        b_hat = [x - y for x, y in zip(self.m, self.m_err)]
        b_hat = [math.fsum(b_hat[i] * Gamma[i][j] for i in range(s)) for j in range(s)]
        for label, weights, p in (("m", b, self.order), ("m - m_err", b_hat, self.error_order)):
            self._conditions(where, label, _trees.order_defects(alpha, Gamma, E, weights, p))
        if self.l_stable:
            r_inf = _trees.stability_at_infinity(alpha, Gamma, E, b)
            if abs(r_inf) > _TOL:
                raise ValueError(f"{where}: declared L-stable but R(inf) = {r_inf!r}, not 0")
        if self.dense is not None:
            if len(self.dense) != s:
                raise ValueError(f"{where}: dense must have one polynomial per stage")
            for theta in (0.3, 0.7):
                bt = [math.fsum(c * theta ** (k + 1) for k, c in enumerate(poly)) for poly in self.dense]
                bt = [math.fsum(bt[i] * Gamma[i][j] for i in range(s)) for j in range(s)]
                defects = [(t, x + 1.0 / _trees.density(t) - theta ** _trees.tree_order(t) / _trees.density(t))
                           for t, x in _trees.order_defects(alpha, Gamma, E, bt, self.dense_order)]
                self._conditions(where, f"dense output at theta={theta}", defects)
            for i, poly in enumerate(self.dense):
                if abs(math.fsum(poly) - self.m[i]) > _TOL * max(1.0, abs(self.m[i])):
                    raise ValueError(f"{where}: dense output b_{i}(1) = {math.fsum(poly)!r} differs from "
                                     f"m[{i}] = {self.m[i]!r}")

    @staticmethod
    def _agree(where, label, declared, implied):
        for i, (x, y) in enumerate(zip(declared, implied)):
            if abs(x - y) > _TOL * max(1.0, abs(y)):
                raise ValueError(f"{where}: {label}[{i}] = {x!r} but the coefficients imply {y!r}")

    @staticmethod
    def _conditions(where, label, defects):
        for t, defect in defects:
            if abs(defect) > _TOL:
                raise ValueError(f"{where}: the order condition of tree {_tree_str(t)} (order "
                                 f"{_trees.tree_order(t)}) fails for {label}: residual {defect:.3g}")

    @property
    def stages(self) -> int:
        return len(self.m)

    @property
    def fsal(self) -> bool:
        """The last stage is evaluated at the new solution (its ``f`` is the next step's first)."""
        s = self.stages
        return (self.nodes[-1] == 1.0 and self.m[-1] == 0.0
                and all(abs(x - y) <= _TOL * max(1.0, abs(y)) for x, y in zip(self.a[-1], self.m[:s - 1])))

    @property
    def control_orders(self) -> Tuple[int, int]:
        """``(q + 1, q)`` with ``q = min(order, error_order)``: the estimate is ``O(h^(q + 1))``."""
        q = min(self.order, self.error_order)
        return q + 1, q


def hermite_dense(m, H):
    """Per-stage polynomials of ``u(theta) = (1 - theta) u0 + theta (u1 + (1 - theta)(K_1 + theta K_2 + ...))``
    with ``K_r = sum_j H[r][j] U_j`` (the Rodas dense output)."""
    R = len(H)
    return tuple((m[j] + H[0][j],) + tuple(H[k][j] - H[k - 1][j] for k in range(1, R)) + (-H[R - 1][j],)
                 for j in range(len(m)))
