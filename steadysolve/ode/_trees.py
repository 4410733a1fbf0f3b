"""Order conditions of (generalised) Rosenbrock methods from rooted trees, on Python floats.

A Rosenbrock method with ``s`` stages, written in its *untransformed* form (Hairer & Wanner,
Solving ODEs II, IV.7), advances ``y' = f(y)`` by ``y1 = y0 + sum_i b_i k_i`` with

    k_i = h sum_{j<=i} E_ij f(y0 + sum_{l<j} alpha_jl k_l) + h J sum_{j<=i} Gamma_ij k_j,

``J = f'(y0)``, ``Gamma`` lower triangular with the diagonal ``gamma`` and ``E`` lower triangular with a unit
diagonal. ``E = I`` is the classical method; Shampine's ode23s error stage mixes earlier ``f`` values
(``E_31``, ``E_32``), which this form covers too. Expanding ``k_i`` in B-series, the elementary
weight of a tree ``t = [t_1, ..., t_m]`` is

    Phi(t) = E F(t) + [m == 1] Gamma Phi(t_1),      F(t) = prod_l alpha Phi(t_l)

(the Jacobian term feeds only trees whose root has one child), and the method has order ``p`` when
``b . Phi(t) = 1 / t!`` (the density) for every tree with at most ``p`` vertices.

The transformed coefficients the integrator uses (``U_i = sum_j Gamma_ij k_j``: the stage solves
``(I / (h gamma) - J) U_i = sum_j E_ij f_j + sum_j (C_ij / h) U_j``, stage inputs ``y0 + sum_j A_ij U_j``,
``y1 = y0 + sum_j m_j U_j``) map back by ``Gamma = (diag(1 / gamma) - C)^-1``, ``alpha = A Gamma``,
``b = m Gamma`` (:func:`untransform`).
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

__all__ = ["trees", "tree_order", "density", "untransform", "order_defects", "stability_at_infinity"]

Tree = Tuple  # a rooted tree: the sorted tuple of its children's subtrees (a leaf is ())
Matrix = List[List[float]]


def trees(p: int) -> Dict[int, List[Tree]]:
    """Every rooted tree with ``1..p`` vertices, by order (1, 1, 2, 4, 9, 20, ... of them)."""
    by: Dict[int, List[Tree]] = {1: [()]}
    for n in range(2, p + 1):
        found = set()

        def grow(rest, largest, children):
            # children as a multiset of subtrees, listed in non-increasing (order, tree) so each appears once
            if rest == 0:
                found.add(tuple(sorted(children)))
                return
            for k in range(min(rest, largest[0]), 0, -1):
                for t in by[k]:
                    if (k, t) <= largest:
                        grow(rest - k, (k, t), children + [t])

        grow(n - 1, (n, ()), [])
        by[n] = sorted(found)
    return by


def tree_order(t: Tree) -> int:
    return 1 + sum(tree_order(c) for c in t)


def density(t: Tree) -> int:
    """``t!``: the order of ``t`` times the densities of its subtrees."""
    return tree_order(t) * math.prod(density(c) for c in t)


def _matvec(M: Matrix, v: Sequence[float]) -> List[float]:
    return [math.fsum(a * x for a, x in zip(row, v)) for row in M]


def _matmul(A: Matrix, B: Matrix) -> Matrix:
    cols = list(zip(*B))
    return [[math.fsum(a * b for a, b in zip(row, col)) for col in cols] for row in A]


def _lower_inverse(L: Matrix) -> Matrix:
    """Inverse of a lower-triangular matrix with a non-zero diagonal (forward substitution)."""
    s = len(L)
    X = [[0.0] * s for _ in range(s)]
    for c in range(s):
        for i in range(c, s):
            acc = (1.0 if i == c else 0.0) - math.fsum(L[i][j] * X[j][c] for j in range(c, i))
            X[i][c] = acc / L[i][i]
    return X


def untransform(gamma: float, A: Matrix, C: Matrix, m: Sequence[float]):
    """``(alpha, Gamma, b)`` of the untransformed method from the transformed ``A``, ``C``, ``m``."""
    s = len(m)
    G_inv = [[(1.0 / gamma if i == j else -C[i][j]) for j in range(s)] for i in range(s)]
    Gamma = _lower_inverse(G_inv)
    alpha = _matmul(A, Gamma)
    b = [math.fsum(m[i] * Gamma[i][j] for i in range(s)) for j in range(s)]
    return alpha, Gamma, b


def _weights(t: Tree, alpha: Matrix, Gamma: Matrix, E: Matrix, memo: dict) -> List[float]:
    if t not in memo:
        F = [1.0] * len(alpha)
        for c in t:
            F = [x * y for x, y in zip(F, _matvec(alpha, _weights(c, alpha, Gamma, E, memo)))]
        phi = _matvec(E, F)
        if len(t) == 1:
            phi = [x + y for x, y in zip(phi, _matvec(Gamma, _weights(t[0], alpha, Gamma, E, memo)))]
        memo[t] = phi
    return memo[t]


def order_defects(alpha: Matrix, Gamma: Matrix, E: Matrix, b: Sequence[float], p: int):
    """``[(tree, b . Phi(tree) - 1 / tree!)]`` for every tree of order ``<= p``."""
    memo: dict = {}
    out = []
    for n, ts in trees(p).items():
        for t in ts:
            phi = _weights(t, alpha, Gamma, E, memo)
            out.append((t, math.fsum(x * y for x, y in zip(b, phi)) - 1.0 / density(t)))
    return out


def stability_at_infinity(alpha: Matrix, Gamma: Matrix, E: Matrix, b: Sequence[float]) -> float:
    """``R(inf) = 1 - b . (E alpha + Gamma)^-1 E 1`` of the stability function on ``y' = lambda y``
    (``E alpha + Gamma`` is lower triangular with the diagonal ``gamma``): 0 for an L-stable method."""
    M = [[x + y for x, y in zip(ra, rg)] for ra, rg in zip(_matmul(E, alpha), Gamma)]
    x = _matvec(_lower_inverse(M), [math.fsum(row) for row in E])
    return 1.0 - math.fsum(bi * xi for bi, xi in zip(b, x))
