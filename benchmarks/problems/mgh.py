"""The 23 Moré–Garbow–Hillstrom / MINPACK-1 nonlinear-equation test problems, in NumPy.

Each problem is an :class:`MGHProblem` with ``name``, ``n``, the standard start ``x0`` and
the known root ``root`` (``None`` when no closed-form root is published). ``F(x)`` takes a
1-D float64 array of length ``n`` and returns one of the same shape. The set is the one
collected in TEST_NONLIN / NonlinearProblemLibrary.jl (problems 1-14 are MINPACK-1's
``hybrd`` test set, 15-23 the additions); the dimensions are those of MINPACK's hybrd test
driver (Rosenbrock 2, Watson 6, Chebyquad 5, the scalable ones 10). Written from the
published formulas (Moré, Garbow & Hillstrom, ACM TOMS 7 (1981); Kelley's Chandrasekhar
H-equation with c = 0.9 and midpoint nodes).

``pairs()`` yields ``(problem, scale, x0 * scale)`` for the driver's scales 1, 10, 100
(23 × 3 = 69 pairs). A zero start stays zero when scaled (as in the MINPACK driver, which
uses ``factor`` itself for an all-zero start): we follow the driver and use ``scale`` for
an all-zero ``x0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np

__all__ = ["MGHProblem", "PROBLEMS", "SCALES", "pairs", "by_name"]

SCALES = (1.0, 10.0, 100.0)


@dataclass(frozen=True)
class MGHProblem:
    name: str
    n: int
    F: Callable[[np.ndarray], np.ndarray]
    x0: np.ndarray
    root: Optional[np.ndarray] = None

    def __call__(self, x):
        return self.F(np.asarray(x, dtype=np.float64))


def rosenbrock(x):
    f = np.empty_like(x)
    f[0] = 1.0 - x[0]
    f[1:] = 10.0 * (x[1:] - x[:-1] ** 2)
    return f


def powell_singular(x):
    return np.array([x[0] + 10.0 * x[1], np.sqrt(5.0) * (x[2] - x[3]), (x[1] - 2.0 * x[2]) ** 2,
                     np.sqrt(10.0) * (x[0] - x[3]) ** 2])


def powell_badly_scaled(x):
    return np.array([1e4 * x[0] * x[1] - 1.0, np.exp(-x[0]) + np.exp(-x[1]) - 1.0001])


def wood(x):
    t1 = x[1] - x[0] ** 2
    t2 = x[3] - x[2] ** 2
    return np.array([-200.0 * x[0] * t1 - (1.0 - x[0]),
                     200.0 * t1 + 20.2 * (x[1] - 1.0) + 19.8 * (x[3] - 1.0),
                     -180.0 * x[2] * t2 - (1.0 - x[2]),
                     180.0 * t2 + 20.2 * (x[3] - 1.0) + 19.8 * (x[1] - 1.0)])


def helical_valley(x):
    tpi = 2.0 * np.pi
    if x[0] > 0:
        theta = np.arctan(x[1] / x[0]) / tpi
    elif x[0] < 0:
        theta = np.arctan(x[1] / x[0]) / tpi + 0.5
    else:
        theta = 0.25 if x[1] >= 0 else -0.25
    return np.array([10.0 * (x[2] - 10.0 * theta), 10.0 * (np.hypot(x[0], x[1]) - 1.0), x[2]])


def watson(x):
    """Gradient of the Watson least-squares function (MINPACK's square-system form)."""
    n = x.size
    f = np.zeros_like(x)
    k = np.arange(n, dtype=np.float64)
    for i in range(1, 30):
        t = i / 29.0
        sum1 = np.sum(k[1:] * x[1:] * t ** (k[1:] - 1.0))
        sum2 = np.sum(x * t ** k)
        r = sum1 - sum2 * sum2 - 1.0
        f += t ** (k - 1.0) * (k - 2.0 * t * sum2) * r
    t = x[1] - x[0] ** 2 - 1.0
    f[0] += x[0] * (1.0 - 2.0 * t)
    f[1] += t
    return f


def chebyquad(x):
    n = x.size
    f = np.zeros_like(x)
    for xj in x:
        t_prev, t = 1.0, 2.0 * xj - 1.0
        y2 = 2.0 * t
        for i in range(n):
            f[i] += t
            t_prev, t = t, y2 * t - t_prev
    f /= n
    k = np.arange(1, n + 1)
    even = k % 2 == 0
    f[even] += 1.0 / (k[even] ** 2 - 1.0)
    return f


def brown_almost_linear(x):
    n = x.size
    f = x + np.sum(x) - (n + 1.0)
    f[-1] = np.prod(x) - 1.0
    return f


def _grid(n):
    h = 1.0 / (n + 1)
    return h, h * np.arange(1, n + 1)


def discrete_bvp(x):
    h, t = _grid(x.size)
    xp = np.concatenate(([0.0], x, [0.0]))
    return 2.0 * x - xp[:-2] - xp[2:] + 0.5 * h * h * (x + t + 1.0) ** 3


def discrete_integral(x):
    n = x.size
    h, t = _grid(n)
    c = (x + t + 1.0) ** 3
    a = np.cumsum(t * c)  # sum_{j<=k} t_j c_j
    b = np.concatenate((np.cumsum(((1.0 - t) * c)[::-1])[::-1][1:], [0.0]))  # sum_{j>k}
    return x + 0.5 * h * ((1.0 - t) * a + t * b)


def trigonometric(x):
    n = x.size
    k = np.arange(1, n + 1)
    return n - np.sum(np.cos(x)) + k * (1.0 - np.cos(x)) - np.sin(x)


def variably_dimensioned(x):
    n = x.size
    k = np.arange(1, n + 1)
    s = np.sum(k * (x - 1.0))
    return x - 1.0 + k * s * (1.0 + 2.0 * s * s)


def broyden_tridiagonal(x):
    xp = np.concatenate(([0.0], x, [0.0]))
    return (3.0 - 2.0 * x) * x - xp[:-2] - 2.0 * xp[2:] + 1.0


def broyden_banded(x, ml=5, mu=1):
    n = x.size
    g = x * (1.0 + x)
    f = np.empty_like(x)
    for k in range(n):
        lo, hi = max(0, k - ml), min(n, k + mu + 1)
        f[k] = x[k] * (2.0 + 5.0 * x[k] ** 2) + 1.0 - (np.sum(g[lo:hi]) - g[k])
    return f


def _hammarling(m):
    A = np.zeros((m, m))
    A[np.arange(m), np.arange(m)] = 1e-4
    A[0, 1] = 1.0

    def F(x):
        X = x.reshape(m, m)
        return (X @ X - A).reshape(-1)
    return F


def dennis_schnabel(x):
    return np.array([x[0] + x[1] - 3.0, x[0] ** 2 + x[1] ** 2 - 9.0])


def sample18(x):
    f1 = x[1] ** 2 * (-np.expm1(-x[0] ** 2)) / x[0] if x[0] != 0 else 0.0
    f2 = x[0] * (-np.expm1(-x[1] ** 2)) / x[1] if x[1] != 0 else 0.0
    return np.array([f1, f2])


def sample19(x):
    r = x[0] ** 2 + x[1] ** 2
    return np.array([x[0] * r, x[1] * r])


def scalar(x):
    return x * (x - 5.0) ** 2


def freudenstein_roth(x):
    y = x[1]
    return np.array([x[0] - 13.0 + ((5.0 - y) * y - 2.0) * y, x[0] - 29.0 + ((y + 1.0) * y - 14.0) * y])


def boggs(x):
    return np.array([x[0] ** 2 - x[1] + 1.0, x[0] - np.cos(0.5 * np.pi * x[1])])


def chandrasekhar(x, c=0.9):
    n = x.size
    mu = (np.arange(1, n + 1) - 0.5) / n
    K = mu[:, None] / (mu[:, None] + mu[None, :])
    return x - 1.0 / (1.0 - (c / (2.0 * n)) * (K @ x))


def _a(*v):
    return np.array(v, dtype=np.float64)


def _build():
    n = 10
    h, t = _grid(n)
    k = np.arange(1, n + 1)
    return [
        MGHProblem("rosenbrock", 2, rosenbrock, _a(-1.2, 1.0), _a(1.0, 1.0)),
        MGHProblem("powell_singular", 4, powell_singular, _a(3.0, -1.0, 0.0, 1.0), np.zeros(4)),
        MGHProblem("powell_badly_scaled", 2, powell_badly_scaled, _a(0.0, 1.0),
                   _a(1.0981593296997093e-05, 9.106146739867421)),
        MGHProblem("wood", 4, wood, _a(-3.0, -1.0, -3.0, -1.0), np.ones(4)),
        MGHProblem("helical_valley", 3, helical_valley, _a(-1.0, 0.0, 0.0), _a(1.0, 0.0, 0.0)),
        MGHProblem("watson", 6, watson, np.zeros(6)),
        MGHProblem("chebyquad", 5, chebyquad, np.arange(1, 6) / 6.0),
        MGHProblem("brown_almost_linear", n, brown_almost_linear, np.full(n, 0.5), np.ones(n)),
        MGHProblem("discrete_bvp", n, discrete_bvp, t * (t - 1.0)),
        MGHProblem("discrete_integral", n, discrete_integral, t * (t - 1.0)),
        MGHProblem("trigonometric", n, trigonometric, np.full(n, 1.0 / n), np.zeros(n)),
        MGHProblem("variably_dimensioned", n, variably_dimensioned, 1.0 - k / n, np.ones(n)),
        MGHProblem("broyden_tridiagonal", n, broyden_tridiagonal, -np.ones(n)),
        MGHProblem("broyden_banded", n, broyden_banded, -np.ones(n)),
        MGHProblem("hammarling_2x2", 4, _hammarling(2), _a(1.0, 0.0, 0.0, 1.0), _a(0.01, 50.0, 0.0, 0.01)),
        MGHProblem("hammarling_3x3", 9, _hammarling(3), np.eye(3).reshape(-1),
                   _a(0.01, 50.0, 0.0, 0.0, 0.01, 0.0, 0.0, 0.0, 0.01)),
        MGHProblem("dennis_schnabel", 2, dennis_schnabel, _a(1.0, 5.0), _a(0.0, 3.0)),
        MGHProblem("sample18", 2, sample18, _a(2.0, 2.0), np.zeros(2)),
        MGHProblem("sample19", 2, sample19, _a(3.0, 3.0), np.zeros(2)),
        MGHProblem("scalar", 1, scalar, _a(1.0), _a(5.0)),
        MGHProblem("freudenstein_roth", 2, freudenstein_roth, _a(0.5, -2.0), _a(5.0, 4.0)),
        MGHProblem("boggs", 2, boggs, _a(1.0, 0.0), _a(0.0, 1.0)),
        MGHProblem("chandrasekhar", n, chandrasekhar, np.ones(n)),
    ]


PROBLEMS = _build()


def by_name(name: str) -> MGHProblem:
    for p in PROBLEMS:
        if p.name == name:
            return p
    raise KeyError(f"no MGH problem {name!r}; names: {', '.join(p.name for p in PROBLEMS)}")


def start(prob: MGHProblem, scale: float) -> np.ndarray:
    """The driver's scaled start: ``scale * x0``, or ``scale`` everywhere for an all-zero ``x0``."""
    if scale != 1.0 and not np.any(prob.x0):
        return np.full(prob.n, scale)
    return scale * prob.x0


def pairs(scales=SCALES) -> Iterator[tuple]:
    for p in PROBLEMS:
        for s in scales:
            yield p, s, start(p, s)
