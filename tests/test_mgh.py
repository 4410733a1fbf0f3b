"""The ported Moré–Garbow–Hillstrom / MINPACK-1 problems (benchmarks/problems/mgh.py) are correct."""

import numpy as np
import pytest

from benchmarks.problems import mgh

NAMES = [p.name for p in mgh.PROBLEMS]


def test_counts():
    assert len(mgh.PROBLEMS) == 23
    assert len(set(NAMES)) == 23
    assert len(list(mgh.pairs())) == 69
    assert len(list(mgh.pairs((1.0,)))) == 23


def test_dimensions_of_the_minpack_driver():
    dims = {p.name: p.n for p in mgh.PROBLEMS}
    assert dims["rosenbrock"] == 2 and dims["powell_singular"] == 4 and dims["watson"] == 6
    assert dims["chebyquad"] == 5 and dims["hammarling_3x3"] == 9 and dims["scalar"] == 1
    assert dims["chandrasekhar"] == dims["brown_almost_linear"] == dims["broyden_banded"] == 10


@pytest.mark.parametrize("name", NAMES)
def test_start_shape_and_finite(name):
    p = mgh.by_name(name)
    assert p.x0.shape == (p.n,) and p.x0.dtype == np.float64
    for s in mgh.SCALES:
        x = mgh.start(p, s)
        assert x.shape == (p.n,)
    f = p(p.x0)
    assert f.shape == (p.n,) and f.dtype == np.float64
    assert np.all(np.isfinite(f))
    assert np.max(np.abs(f)) > 1e-6  # no start is already a root


@pytest.mark.parametrize("name", [p.name for p in mgh.PROBLEMS if p.root is not None])
def test_known_root_is_a_root(name):
    p = mgh.by_name(name)
    assert p.root.shape == (p.n,)
    assert np.max(np.abs(p(p.root))) <= 1e-12


def test_known_values():
    # Rosenbrock at the start: F = (1 - (-1.2), 10 (1 - 1.44)) = (2.2, -4.4)
    np.testing.assert_allclose(mgh.by_name("rosenbrock")(np.array([-1.2, 1.0])), [2.2, -4.4], rtol=1e-15)
    # Powell singular at x0 = (3, -1, 0, 1): (-7, -sqrt5, 1, 4 sqrt10)
    np.testing.assert_allclose(mgh.by_name("powell_singular")(np.array([3.0, -1.0, 0.0, 1.0])),
                               [-7.0, -np.sqrt(5.0), 1.0, 4.0 * np.sqrt(10.0)], rtol=1e-15)
    # Chebyquad: the 2-point Gauss-Chebyshev-type root for n = 2 is (1/2 -+ 1/(2 sqrt3))
    r = 0.5 / np.sqrt(3.0)
    assert np.max(np.abs(mgh.chebyquad(np.array([0.5 - r, 0.5 + r])))) < 1e-15
    # Watson in MINPACK form is a gradient: check it against finite differences of the sum of squares
    rng = np.random.default_rng(0)
    x = rng.normal(size=6) * 0.3

    def ssq(x):
        t = np.arange(1, 30) / 29.0
        j = np.arange(6)
        s1 = np.array([np.sum(j[1:] * x[1:] * ti ** (j[1:] - 1.0)) for ti in t])
        s2 = np.array([np.sum(x * ti ** j) for ti in t])
        r = s1 - s2 ** 2 - 1.0
        return 0.5 * (np.sum(r ** 2) + x[0] ** 2 + (x[1] - x[0] ** 2 - 1.0) ** 2)
    h = 1e-6
    g = np.array([(ssq(x + h * e) - ssq(x - h * e)) / (2 * h) for e in np.eye(6)])
    np.testing.assert_allclose(mgh.watson(x), g, rtol=1e-6, atol=1e-6)


def test_problems_without_a_published_root_are_solvable():
    """Each problem with ``root=None`` has a root SciPy's hybr finds from x0 (so the set is fair)."""
    import scipy.optimize as so
    for p in mgh.PROBLEMS:
        if p.root is None:
            r = so.root(p.F, p.x0, method="hybr", options={"xtol": 1e-13})
            assert np.max(np.abs(p(r.x))) <= 1e-8, p.name


def test_discrete_integral_matches_loop_definition():
    x = np.linspace(-0.3, 0.2, 10)
    n = x.size
    h = 1.0 / (n + 1)
    t = h * np.arange(1, n + 1)
    ref = np.empty(n)
    for k in range(n):
        s1 = sum(t[j] * (x[j] + t[j] + 1.0) ** 3 for j in range(k + 1))
        s2 = sum((1.0 - t[j]) * (x[j] + t[j] + 1.0) ** 3 for j in range(k + 1, n))
        ref[k] = x[k] + h * ((1.0 - t[k]) * s1 + t[k] * s2) / 2.0
    np.testing.assert_allclose(mgh.discrete_integral(x), ref, rtol=1e-14)
