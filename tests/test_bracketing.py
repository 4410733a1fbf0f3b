"""IntervalNonlinearProblem and the bracketing methods (ITP, Brent, Bisection, Ridder).

Known roots of the 154 Alefeld-Potra-Shi cases, the bracketing invariants after every iteration
count, the per-element codes (no sign change, NaN, a root at an end, a pole), exact per-element
iteration counts, ITP's worst-case bound, the tolerance semantics, jit / vmap, and the error messages.
"""

import math
import os
import sys
import warnings

import numpy as np
import pytest

import steadysolve as ss
from steadysolve import _backend as backend
from steadysolve._backend import fused
from helpers import get_backend, xp_of

from benchmarks.problems import aps

METHODS = ("itp", "brent", "bisection", "ridder")
RC = ss.ReturnCode


def _codes(sol):
    return [rc.name for rc in sol.retcodes]


def _np(bk, x):
    return bk.to_numpy(x)


def _problem(bk, f, lo, hi, p=None):
    conv = (lambda v: tuple(bk.asarray(a) for a in v)) if isinstance(p, tuple) else (
        lambda v: None if v is None else bk.asarray(v))
    return ss.IntervalNonlinearProblem(f, (bk.asarray(lo), bk.asarray(hi)), conv(p))


def _eval(f, x, p):
    """``f`` on NumPy values (the tests' own check of the returned brackets)."""
    return f(np.asarray(x, dtype=np.float64), p)


def _f_at(bk, f, x, p):
    """``f`` at the backend's own array ``x`` (the solver's arithmetic), as NumPy."""
    conv = tuple(bk.asarray(v) for v in p) if isinstance(p, tuple) else p
    return _np(bk, f(x, conv))


# --------------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------------

_ALL = aps.all_cases()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # f evaluates all 15 functions, some out of their domain
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.slow
def test_known_roots_of_the_alefeld_potra_shi_set(bk, method):
    """All 154 cases (the 15 functions) in one call, to the tolerance asked."""
    abstol, reltol = 1e-11, 1e-13
    f, lo, hi, p, roots, names = _ALL
    sol = ss.solve(_problem(bk, f, lo, hi, p), method, abstol=abstol, reltol=reltol, maxiters=200)
    assert _codes(sol) == ["Success"] * len(lo), [(n, c) for n, c in zip(names, _codes(sol)) if c != "Success"]
    u = _np(bk, sol.u)
    plateau = np.array(names) == "aps13"  # x exp(-1/x^2) is exactly 0 near its root: any such x is a root
    assert np.all(_eval(f, u, p)[plateau] == 0.0) and np.all(np.abs(u[plateau]) < 0.04), u[plateau]
    err = np.abs(u - roots)
    bad = ~plateau & (err > abstol + reltol * np.abs(roots))
    assert not bad.any(), [(n, e) for n, e, b in zip(names, err, bad) if b]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.slow
def test_the_bracket_always_holds_a_sign_change_and_the_root(bk, method):
    """After every iteration count: the reported bracket lies inside the previous one, f changes sign
    across it, u is one of its ends (the one with the smaller |f|), and a Success bracket is within
    tolerance."""
    abstol, reltol = 1e-12, 1e-14
    f, lo, hi, p, _, _ = _ALL
    prob = _problem(bk, f, lo, hi, p)
    prev_lo, prev_hi = lo, hi
    for k in (1, 2, 3, 5, 8, 13, 21, 34):
        sol = ss.solve(prob, method, abstol=abstol, reltol=reltol, maxiters=k)
        assert set(_codes(sol)) <= {"Success", "MaxIters"}, (k, _codes(sol))
        blo, bhi = (_np(bk, v) for v in sol.stats.bracket)
        u = _np(bk, sol.u)
        assert np.all((prev_lo <= blo) & (blo <= bhi) & (bhi <= prev_hi)), k
        flo, fhi = (_f_at(bk, f, v, p) for v in sol.stats.bracket)
        assert np.all((np.sign(flo) != np.sign(fhi)) | (flo == 0) | (fhi == 0)), k
        assert np.all((u == blo) | (u == bhi)), k
        fu = _np(bk, sol.resid)
        # the value at u, not a copy of another (JAX: compiled, so the last bit may differ)
        np.testing.assert_allclose(fu, _f_at(bk, f, sol.u, p), rtol=0, atol=0 if bk.name != "jax" else 1e-13)
        slack = 0 if bk.name != "jax" else 1e-13
        assert np.all(np.abs(fu) <= np.minimum(np.abs(flo), np.abs(fhi)) + slack)
        ok = np.array(_codes(sol)) == "Success"
        width_tol = abstol + reltol * np.minimum(np.abs(blo), np.abs(bhi))
        assert np.all((bhi - blo)[ok] <= width_tol[ok]), k
        prev_lo, prev_hi = blo, bhi


def test_brackets_of_any_shape_and_broadcasting_parameters(bk):
    lo, hi = np.zeros((3, 4)), np.full((3, 4), 4.0)
    p = np.array([[1.0], [2.0], [3.0]]) * np.ones((1, 4)) + np.arange(4.0)  # (3, 4)
    sol = ss.solve(_problem(bk, lambda x, p: x * x - p, lo, hi, p))
    assert tuple(sol.u.shape) == (3, 4) and tuple(sol.retcode_array.shape) == (3, 4)
    assert tuple(sol.stats.niter_per_element.shape) == (3, 4)
    np.testing.assert_allclose(_np(bk, sol.u), np.sqrt(p), rtol=1e-12)
    # a parameter of another shape broadcasts inside f
    sol = ss.solve(_problem(bk, lambda x, p: x * x - p, lo, hi, np.array([1.0, 2.0, 3.0, 4.0])))
    np.testing.assert_allclose(_np(bk, sol.u), np.broadcast_to(np.sqrt([1.0, 2.0, 3.0, 4.0]), (3, 4)), rtol=1e-12)


def test_a_scalar_bracket_gives_scalar_results():
    prob = ss.IntervalNonlinearProblem(lambda x, p: x * x - 2.0, (0.0, 2.0))
    sol = ss.solve(prob)
    assert isinstance(sol.u, np.ndarray) and sol.u.shape == () and sol.u.dtype == np.float64
    assert abs(float(sol.u) - math.sqrt(2.0)) < 1e-12 and sol.retcode is RC.Success
    assert sol.stats.niter_per_element is None and sol.retcode_array.shape == ()
    assert [v.shape for v in sol.stats.bracket] == [(), ()]


def test_float32_keeps_its_dtype_and_tolerance(bk):
    lo = bk.asarray(np.zeros(3), dtype=np.float32)
    hi = bk.asarray(np.full(3, 3.0), dtype=np.float32)
    p = bk.asarray(np.array([2.0, 3.0, 5.0]), dtype=np.float32)
    sol = ss.solve(ss.IntervalNonlinearProblem(lambda x, p: x * x - p, (lo, hi), p))
    assert sol.u.dtype == lo.dtype and sol.resid.dtype == lo.dtype
    assert _codes(sol) == ["Success"] * 3
    eps32 = float(np.finfo(np.float32).eps)
    err = np.abs(_np(bk, sol.u).astype(np.float64) - np.sqrt([2.0, 3.0, 5.0]))
    assert np.all(err <= eps32 ** 0.8 + 4 * eps32 * 3 + 3 * eps32), err  # the defaults, and the rounding of sqrt(p)


# --------------------------------------------------------------------------------------------
# codes
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_a_bracket_without_a_sign_change_is_NoBracket_never_a_guess(bk, method):
    lo, hi = np.array([-1.0, 0.0, -3.0]), np.array([2.0, 2.0, -1.0])
    p = np.array([1.0, -2.0, 0.5])  # x^2 + 1 > 0: no root; x^2 - 2: a root; x^2 + 0.5 on negatives: none
    sol = ss.solve(_problem(bk, lambda x, p: x * x + p, lo, hi, p), method)
    assert _codes(sol) == ["NoBracket", "Success", "NoBracket"]
    u, fu = _np(bk, sol.u), _np(bk, sol.resid)
    assert u[0] == -1.0 and fu[0] == 2.0 and u[2] == -1.0 and fu[2] == 1.5  # the end with the smaller |f|
    assert abs(u[1] - math.sqrt(2.0)) < 1e-12
    blo, bhi = (_np(bk, v) for v in sol.stats.bracket)
    assert blo[0] == -1.0 and bhi[0] == 2.0  # untouched
    assert list(_np(bk, sol.stats.niter_per_element)[[0, 2]]) == [0, 0]
    assert not sol.successful and sol.retcode is RC.NoBracket and sol.nfailed == 2
    assert "same sign" in RC.NoBracket.value


@pytest.mark.parametrize("method", METHODS)
def test_a_root_at_an_end_is_Success_at_once(bk, method):
    lo, hi = np.array([1.0, -2.0, 0.0]), np.array([3.0, 1.0, 2.0])
    sol = ss.solve(_problem(bk, lambda x, p: x - p, lo, hi, np.array([1.0, 1.0, 0.5])), method)
    assert _codes(sol) == ["Success"] * 3
    u = _np(bk, sol.u)
    assert u[0] == 1.0 and u[1] == 1.0 and abs(u[2] - 0.5) <= 1e-12
    niter = _np(bk, sol.stats.niter_per_element)
    assert list(niter[:2]) == [0, 0] and niter[2] >= 1
    assert list(_np(bk, sol.stats.nf_per_element)[:2]) == [2, 2]


@pytest.mark.parametrize("method", METHODS)
def test_nan_stops_its_element_only_with_NonFinite(bk, method):
    def f(x, p):
        xp = backend.namespace(("x", x))
        inner = (x > 0.05) & (x < 0.95) & (p > 0.5)
        return xp.where(inner, xp.nan, x - 0.5 + 0.1 * p)

    lo, hi = np.zeros(3), np.ones(3)
    sol = ss.solve(_problem(bk, f, lo, hi, np.array([1.0, 0.0, 1.0])), method)
    assert _codes(sol) == ["NonFinite", "Success", "NonFinite"]
    u, fu = _np(bk, sol.u), _np(bk, sol.resid)
    assert np.all(np.isfinite(u)) and np.all(np.isfinite(fu))
    blo, bhi = (_np(bk, v) for v in sol.stats.bracket)
    assert blo[0] == 0.0 and bhi[0] == 1.0  # the last bracket with finite values: the first
    assert abs(u[1] - 0.5) < 1e-12
    assert sol.retcode is RC.NonFinite


def test_nan_at_an_end_and_f_never_leaves_the_brackets():
    seen = []

    def f(x, p):
        seen.append(np.array(x, copy=True))
        return np.where(x < -0.5, np.nan, x - p)

    lo, hi, p = np.array([-1.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0]), np.array([0.3, 0.3, 2.0])
    for method in METHODS:
        seen.clear()
        sol = ss.solve(ss.IntervalNonlinearProblem(f, (lo, hi), p), method)
        assert _codes(sol) == ["NonFinite", "Success", "NoBracket"]
        assert sol.u[0] == 1.0 and sol.resid[0] == 0.7  # the finite end
        xs = np.stack(seen)
        assert np.all((xs >= lo) & (xs <= hi)), method  # stopped elements are evaluated at an end


@pytest.mark.parametrize("method", METHODS)
def test_a_pole_is_not_a_root(bk, method):
    """A sign change through a pole: the bracket closes on it, and |f| there exceeds its values at
    both ends, so the code is Diverged, not Success."""
    sol = ss.solve(_problem(bk, lambda x, p: 1.0 / (x - p), np.zeros(2), np.ones(2), np.array([0.3, 2.0])), method)
    assert _codes(sol) == ["Diverged", "NoBracket"]
    assert abs(_np(bk, sol.u)[0] - 0.3) < 1e-9 and abs(_np(bk, sol.resid)[0]) > 1e6


def test_maxiters_keeps_a_valid_bracket_and_counts():
    prob = ss.IntervalNonlinearProblem(lambda x, p: x - p, (np.zeros(2), np.ones(2)), np.array([1 / 3, 0.5]))
    sol = ss.solve(prob, "bisection", maxiters=5)
    assert _codes(sol) == ["MaxIters", "Success"]  # 0.5 is the first midpoint: f is exactly 0 there
    assert sol.stats.niter == 5 and list(sol.stats.niter_per_element) == [5, 1]
    blo, bhi = sol.stats.bracket
    assert blo[0] <= 1 / 3 <= bhi[0] and bhi[0] - blo[0] == 2.0 ** -5


# --------------------------------------------------------------------------------------------
# counts and tolerances
# --------------------------------------------------------------------------------------------

def test_bisection_counts_every_element_exactly(bk):
    """Widths 2^k shrink to 2^-20 in k + 20 halvings; the root (an irrational fraction) is never hit."""
    ks = np.array([0, 1, 3, 6])
    hi = 2.0 ** ks
    sol = ss.solve(_problem(bk, lambda x, p: x - p, np.zeros(4), hi, hi / math.sqrt(2.0)), "bisection",
                   abstol=2.0 ** -20, reltol=0.0)
    assert _codes(sol) == ["Success"] * 4
    niter = _np(bk, sol.stats.niter_per_element)
    assert list(niter) == list(ks + 20)
    assert list(_np(bk, sol.stats.nf_per_element)) == list(ks + 22)
    assert sol.stats.niter == 26 and sol.stats.nf == 28


@pytest.mark.parametrize("method", ["itp", "brent", "ridder"])
def test_per_element_counts_add_up(bk, method):
    f, lo, hi, p, _ = aps.cases("aps06")
    sol = ss.solve(_problem(bk, f, lo, hi, p), method)
    niter, nf = _np(bk, sol.stats.niter_per_element), _np(bk, sol.stats.nf_per_element)
    k = 2 if method == "ridder" else 1
    assert niter.max() == sol.stats.niter and len(set(niter.tolist())) > 1  # elements stop on their own
    assert np.all(nf == 2 + k * niter) and sol.stats.nf == 2 + k * sol.stats.niter


def test_tolerances_bind_on_the_bracket_width():
    root = np.array([math.sqrt(2.0), 1e6 * math.sqrt(2.0), 1e-8 * math.sqrt(2.0)])
    prob = ss.IntervalNonlinearProblem(lambda x, p: x - p, (root / 2, root * 2), root)
    loose = ss.solve(prob, "bisection", abstol=1e-3, reltol=0.0)
    tight = ss.solve(prob, "bisection", abstol=1e-12, reltol=0.0)
    assert loose.successful and tight.successful
    assert np.all(np.abs(loose.u - root) <= 1e-3) and np.all(loose.stats.niter_per_element < tight.stats.niter_per_element)
    rel = ss.solve(prob, "bisection", abstol=0.0, reltol=1e-6)
    assert rel.successful and np.all(np.abs(rel.u - root) <= 1e-6 * root)
    blo, bhi = rel.stats.bracket
    assert np.all(bhi - blo <= 1e-6 * blo)


@pytest.mark.parametrize("method", METHODS)
def test_tolerances_below_the_resolution_end_at_adjacent_floats(method):
    root = np.array([math.pi, 1e300 / 3.0, -1e-300 / 7.0, 0.0])
    prob = ss.IntervalNonlinearProblem(lambda x, p: np.where(x < p, -1.0, 1.0),  # only the sign tells
                                       (np.array([0.0, 0.0, -1.0, -1.0]), np.array([4.0, 1e300, 0.0, 1.0])), root)
    sol = ss.solve(prob, method, abstol=0.0, reltol=0.0, maxiters=3000)
    assert sol.successful, _codes(sol)
    blo, bhi = sol.stats.bracket
    assert np.all((np.nextafter(blo, np.inf) >= bhi) | (bhi - blo <= np.finfo(float).smallest_normal))
    assert np.all((blo < root) & (root <= bhi))


def test_defaults_are_the_packages_abstol_and_4_eps_relative():
    f, lo, hi, p, roots = aps.cases("aps12")  # roots 2..33
    sol = ss.solve(ss.IntervalNonlinearProblem(f, (lo, hi), p), "brent")
    eps = np.finfo(float).eps
    blo, bhi = sol.stats.bracket
    assert sol.successful and np.all(bhi - blo <= eps ** 0.8 + 4 * eps * np.minimum(np.abs(blo), np.abs(bhi)))
    assert np.all(np.abs(sol.u - roots) <= eps ** 0.8 + 4 * eps * roots)


@pytest.mark.parametrize("n0", [0, 1, 10])
def test_itp_never_needs_more_than_n0_iterations_beyond_bisection(n0):
    """Oliveira & Takahashi's minmax bound: ceil(log2(width0 / (2 eps))) + n0 iterations at most."""
    abstol = 1e-10
    for name in aps.FUNCTIONS:
        f, lo, hi, p, _ = aps.cases(name)
        sol = ss.solve(ss.IntervalNonlinearProblem(f, (lo, hi), p), ss.ITP(n0=n0), abstol=abstol, reltol=0.0)
        eps = 0.5 * (abstol + np.finfo(float).eps * np.where(lo * hi > 0, np.minimum(abs(lo), abs(hi)), 0.0))
        bound = np.ceil(np.log2(np.maximum((hi - lo) / (2 * eps), 1.0))) + n0
        assert sol.successful and np.all(sol.stats.niter_per_element <= bound), name


def test_brent_matches_scipy_brentq_and_find_root():
    from scipy.optimize import brentq
    from scipy.optimize.elementwise import find_root

    for name in ("aps01", "aps04", "aps06", "aps09", "aps12"):
        f, lo, hi, p, roots = aps.cases(name)
        ours = ss.solve(ss.IntervalNonlinearProblem(f, (lo, hi), p), "brent", abstol=2e-12)
        ref = np.array([brentq(lambda x, *a: float(f(np.asarray(x), tuple(np.asarray(v) for v in a))), a_, b_,
                               args=tuple(v[i] for v in p)) for i, (a_, b_) in enumerate(zip(lo, hi))])
        tol = 2e-12 + 4 * np.finfo(float).eps * np.abs(ref)
        assert np.all(np.abs(ours.u - ref) <= 2 * tol), name
        fr = find_root(lambda x, *a: f(x, a), (lo, hi), args=p, tolerances=dict(xatol=2e-12))
        assert np.all(np.abs(ours.u - fr.x) <= 2 * tol), name


# --------------------------------------------------------------------------------------------
# JAX
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_jit_gives_the_eager_answer(method):
    import jax
    import jax.numpy as jnp

    f, lo, hi, p, roots = aps.cases("aps10")

    @jax.jit
    def run(lo, hi, p):
        sol = ss.solve(ss.IntervalNonlinearProblem(f, (lo, hi), p), method)
        return sol.u, sol.retcode_array, sol.stats.niter_per_element, sol.stats.bracket, sol.successful

    u, codes, niter, (blo, bhi), ok = run(jnp.asarray(lo), jnp.asarray(hi), tuple(jnp.asarray(v) for v in p))
    eager = ss.solve(ss.IntervalNonlinearProblem(f, (lo, hi), p), method)
    np.testing.assert_allclose(np.asarray(u), roots, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(u), eager.u, rtol=0, atol=1e-12)
    assert np.asarray(codes).tolist() == eager.retcode_array.tolist() and bool(ok)
    # (XLA may contract a * b + c into one rounding: an element may stop one iteration apart)
    assert np.all(np.abs(np.asarray(niter) - eager.stats.niter_per_element) <= 1)
    assert np.all(np.asarray(bhi - blo) <= eager.stats.bracket[1] - eager.stats.bracket[0] + 1e-12)


def test_vmap_over_scalar_brackets_and_a_jitted_solution():
    import jax
    import jax.numpy as jnp

    f = aps.cases("aps06")[0]
    _, lo, hi, p, roots = aps.cases("aps06")

    def one(lo, hi, n):
        return ss.solve(ss.IntervalNonlinearProblem(f, (lo, hi), (n,)), "itp", abstol=1e-13)

    sols = jax.jit(jax.vmap(one))(jnp.asarray(lo), jnp.asarray(hi), jnp.asarray(p[0]))
    assert isinstance(sols, ss.Solution)  # a pytree through jit
    np.testing.assert_allclose(np.asarray(sols.u), roots, atol=1e-13)
    assert np.asarray(sols.retcode_array).tolist() == [0] * len(lo)


def test_throw_under_jit_raises_at_run_time():
    import jax
    import jax.numpy as jnp

    @jax.jit
    def run(lo, hi):
        return ss.solve(ss.IntervalNonlinearProblem(lambda x, p: x * x + 1.0, (lo, hi)), throw=True).u

    with pytest.raises(Exception, match="did not converge"):
        jax.block_until_ready(run(jnp.zeros(2), jnp.ones(2)))


# --------------------------------------------------------------------------------------------
# input checks and errors
# --------------------------------------------------------------------------------------------

def _f(x, p):
    return x - 0.5


@pytest.mark.parametrize("bracket, err, match", [
    ((np.zeros(3), np.ones(2)), ValueError, r"lo has shape \(3,\) but hi has shape \(2,\)"),
    ((np.zeros(2), np.ones(2, dtype=np.float32)), TypeError, "lo has dtype float64 but hi has dtype float32"),
    ((np.zeros(2, dtype=np.int64), np.ones(2, dtype=np.int64)), TypeError, "real floating-point dtype, got int64"),
    ((np.array([0.0, 2.0]), np.array([1.0, 1.0])), ValueError, r"lo > hi at 1 element\(s\).*flat index 1"),
    ((np.array([0.0, np.nan]), np.ones(2)), ValueError, "lo contains NaN or Inf"),
    ((np.zeros(2), np.array([1.0, np.inf])), ValueError, "hi contains NaN or Inf"),
    ((np.full(1, -1e308), np.full(1, 1e308)), ValueError, "hi - lo overflows"),
    ((np.zeros(0), np.zeros(0)), ValueError, "empty"),
    ((np.zeros(2),), TypeError, "a pair"),
    (np.zeros((2, 3)), TypeError, "a pair"),
    ((0.0, np.ones(2)), TypeError, "lo is a Python number but the other end is an array"),
    (([0.0], [1.0]), TypeError, "lo must be an array"),
])
def test_bad_brackets_are_refused_at_construction(bracket, err, match):
    with pytest.raises(err, match=match):
        ss.IntervalNonlinearProblem(_f, bracket)


def test_mixed_libraries_and_a_non_callable_are_refused():
    import torch

    with pytest.raises(TypeError, match="mixed array libraries"):
        ss.IntervalNonlinearProblem(_f, (np.zeros(2), torch.ones(2, dtype=torch.float64)))
    with pytest.raises(TypeError, match="f must be callable"):
        ss.IntervalNonlinearProblem(1.0, (0.0, 1.0))


@pytest.mark.parametrize("f, err, match", [
    (lambda x, p: x[:1], ValueError, r"f returned shape \(1,\) but lo has shape \(2,\); f must be elementwise"),
    (lambda x, p: x.astype(np.float32), TypeError, "f returned dtype float32 but lo has dtype float64"),
    (lambda x, p: float(x.sum()), TypeError, "must return an array"),
])
def test_f_is_checked_before_any_iteration(f, err, match):
    with pytest.raises(err, match=match):
        ss.solve(ss.IntervalNonlinearProblem(f, (np.zeros(2), np.ones(2))))


def test_f_of_another_library_is_refused():
    import torch

    with pytest.raises(TypeError, match="f returned a torch array for a numpy lo: mixed array libraries"):
        ss.solve(ss.IntervalNonlinearProblem(lambda x, p: torch.as_tensor(x), (np.zeros(2), np.ones(2))))


def test_names_kinds_and_keywords():
    prob = ss.IntervalNonlinearProblem(_f, (np.zeros(2), np.ones(2)))
    assert ss.available("bracketing") == ["bisection", "brent", "itp", "ridder"]
    assert not set(ss.available("bracketing")) & set(ss.available())
    assert ss.solve(prob, ss.Brent).successful and ss.solve(prob, ss.Ridder()).successful
    with pytest.raises(ValueError, match="'newton' is an algorithm: it solves a NonlinearProblem"):
        ss.solve(prob, "newton")
    with pytest.raises(ValueError, match="unknown bracketing method 'britt'. Did you mean 'brent'"):
        ss.solve(prob, "britt")
    with pytest.raises(TypeError, match="expected a bracketing method .* got NewtonRaphson"):
        ss.solve(prob, ss.NewtonRaphson())
    nl = ss.NonlinearProblem(lambda u, p: u - 0.5, np.zeros(2))
    with pytest.raises(ValueError, match="'itp' is a bracketing method: it solves an IntervalNonlinearProblem"):
        ss.solve(nl, "itp")
    with pytest.raises(TypeError, match="ITP is a bracketing method"):
        ss.solve(nl, ss.ITP())
    for kw, match in ((dict(norm="l2"), "norm='l2' does not apply"), (dict(batch_axis=0), "batch_axis=0"),
                      (dict(store_trace=True), "store_trace"), (dict(callback=print), "callback"),
                      (dict(verbose=True), "verbose")):
        with pytest.raises(TypeError, match=match):
            ss.solve(prob, **kw)
    with pytest.raises(TypeError, match="did you mean 'abstol' or 'reltol'"):
        ss.solve(prob, xtol=1e-6)
    with pytest.raises(ValueError, match="maxiters must be >= 1"):
        ss.solve(prob, maxiters=0)
    with pytest.raises(ValueError, match="abstol must be a finite number >= 0"):
        ss.solve(prob, abstol=-1.0)
    with pytest.raises(ValueError, match="unknown kind"):
        ss.available("bracket")


@pytest.mark.parametrize("kw, match", [(dict(k1=0.0), "k1 must be > 0"), (dict(k2=0.5), r"k2 must be in \[1"),
                                       (dict(k2=2.7), r"k2 must be in \[1"), (dict(n0=-1), "n0 must be >= 0"),
                                       (dict(n0=1.5), "n0 must be an int")])
def test_itp_options_are_checked(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ss.ITP(**kw)


def test_throw_raises_a_convergence_error_carrying_the_solution():
    prob = ss.IntervalNonlinearProblem(lambda x, p: x * x + 1.0, (np.zeros(2), np.ones(2)))
    with pytest.raises(ss.ConvergenceError, match="NoBracket") as info:
        ss.solve(prob, throw=True)
    assert info.value.solution.retcode is RC.NoBracket


def test_the_codes_are_appended_never_renumbered():
    assert [rc.code for rc in RC] == list(range(len(RC)))
    assert RC.NoBracket.code == 7 and RC.from_code(7) is RC.NoBracket and RC.TimeLimit.code == 6


def test_no_warning_from_our_arithmetic_but_the_users_error_state_holds_in_f():
    def f(x, p):  # -inf at 0 without a warning, a finite root at 1
        safe = np.where(x > 0, x, 1.0)
        return np.where(x > 0, np.log(safe), -np.inf)

    prob = ss.IntervalNonlinearProblem(f, (np.zeros(3), np.full(3, 4.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method in METHODS:
            sol = ss.solve(prob, method)
            assert sol.successful and np.allclose(sol.u, 1.0, atol=1e-12), method
    with np.errstate(divide="raise"):
        with pytest.raises(FloatingPointError):
            ss.solve(ss.IntervalNonlinearProblem(lambda x, p: 1.0 / x - 1.0, (np.zeros(2), np.full(2, 4.0))))


def test_repr_and_remake():
    prob = ss.IntervalNonlinearProblem(_f, (np.zeros(2), np.ones(2)), 3.0)
    assert repr(prob) == "IntervalNonlinearProblem(f='_f', bracket=<numpy (2,)>)"
    other = prob.remake(bracket=(np.ones(2), np.full(2, 2.0)))
    assert other.p == 3.0 and other.lo[0] == 1.0 and prob.bracket[1][0] == 1.0


# --------------------------------------------------------------------------------------------
# the bitwise select of the NumPy / PyTorch paths
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_fused_select_is_where_bit_for_bit(name):
    bk = get_backend(name)
    rng = np.random.default_rng(0)
    n = 5000
    x, y = rng.standard_normal(n), rng.standard_normal(n)
    x[:3] = [np.nan, -0.0, np.inf]
    y[:3] = [0.0, np.nan, -np.inf]
    cond = rng.random(n) < 0.5
    i32 = rng.integers(-5, 5, n).astype(np.int32)
    for dtype in (np.float64, np.float32):
        X, Y, C = bk.asarray(x, dtype), bk.asarray(y, dtype), bk.asarray(cond, bool)
        I, J = bk.asarray(i32, np.int32), bk.asarray(-i32, np.int32)
        xp = backend.namespace(("x", X))
        got = fused.select(xp, C, [(X, Y), (I, J)])
        want = [xp.where(C, X, Y), xp.where(C, I, J)]
        for g, w in zip(got, want):
            g, w = bk.to_numpy(g), bk.to_numpy(w)
            assert g.dtype == w.dtype and g.tobytes() == w.tobytes()


# --------------------------------------------------------------------------------------------
# the eager loop on the running elements alone (NumPy, PyTorch)
# --------------------------------------------------------------------------------------------

def _kepler(E, p):  # increasing, elementwise in x and p
    e, M = p
    return E - e * xp_of(E).tanh(E) - M


def _kepler_batch(n=8192, shape=None):
    rng = np.random.default_rng(3)
    e, M = rng.uniform(0.0, 0.95, n), rng.uniform(0.01, 1.5, n)
    lo, hi = np.zeros(n), 3.0 * 2.0 ** rng.integers(0, 12, n)  # widths from 3 to 6144
    if shape is not None:
        e, M, lo, hi = (a.reshape(shape) for a in (e, M, lo, hi))
    return lo, hi, (e, M)


@pytest.mark.parametrize("name", ["numpy", "torch"])
@pytest.mark.parametrize("method", METHODS)
def test_narrowing_to_the_running_elements_changes_nothing_but_the_work(name, method, monkeypatch):
    bk = get_backend(name)
    lo, hi, p = _kepler_batch(shape=(64, 128))
    prob = _problem(bk, _kepler, lo, hi, p)
    narrowed = ss.solve(prob, method)
    monkeypatch.setattr("steadysolve._engine.bracket_parts.NARROW_AT", 0.0)  # never narrow
    whole = ss.solve(prob, method)
    assert narrowed.successful and whole.successful
    assert narrowed.stats.nf == whole.stats.nf + 1  # the one check that f is elementwise in p
    assert narrowed.stats.niter == whole.stats.niter
    for a, b in ((narrowed.u, whole.u), (narrowed.resid, whole.resid), (narrowed.retcode_array, whole.retcode_array),
                 (narrowed.stats.niter_per_element, whole.stats.niter_per_element),
                 (narrowed.stats.bracket[0], whole.stats.bracket[0]), (narrowed.stats.bracket[1], whole.stats.bracket[1])):
        assert tuple(a.shape) == (64, 128)
        np.testing.assert_array_equal(bk.to_numpy(a), bk.to_numpy(b))


def test_an_f_not_elementwise_in_p_is_solved_on_the_whole_batch():
    lo, hi, (e, M) = _kepler_batch()
    seen = []

    def f(E, p):  # uses p across elements: gathering p would change it
        seen.append(E.shape)
        return E - p[0] * np.tanh(E) - p[1] + 1e-3 * p[1].mean()

    def g(E, p):  # needs the brackets' shape
        return (E - p[0] * np.tanh(E) - p[1]).reshape(64, 128).reshape(-1)

    sol = ss.solve(ss.IntervalNonlinearProblem(f, (lo, hi), (e, M)))
    assert sol.successful and sol.stats.nf == 2 + sol.stats.niter + 1  # the check, then the whole batch
    assert seen.count((8192,)) == sol.stats.nf - 1  # every call but the check on the whole batch
    np.testing.assert_allclose(sol.u - e * np.tanh(sol.u), M - 1e-3 * M.mean(), atol=1e-11)
    sol2 = ss.solve(ss.IntervalNonlinearProblem(g, (lo, hi), (e, M)))
    assert sol2.successful and sol2.stats.nf == 2 + sol2.stats.niter + 1
    np.testing.assert_allclose(sol2.u - e * np.tanh(sol2.u), M, atol=1e-11)


@pytest.mark.parametrize("method", ["itp", "brent"])
def test_numpy_blocks_give_the_whole_batchs_answer(method, monkeypatch):
    lo, hi, p = _kepler_batch(n=60_000, shape=(200, 300))  # above 2 x BLOCK: solved in 3 blocks
    prob = ss.IntervalNonlinearProblem(_kepler, (lo, hi), p)
    blocks = ss.solve(prob, method)
    monkeypatch.setattr("steadysolve._engine.bracket_parts.BLOCK", 10 ** 9)
    whole = ss.solve(prob, method)
    assert blocks.successful and whole.successful
    for a, b in ((blocks.u, whole.u), (blocks.resid, whole.resid), (blocks.stats.niter_per_element,
                 whole.stats.niter_per_element), (blocks.stats.bracket[0], whole.stats.bracket[0])):
        assert a.shape == (200, 300)
        np.testing.assert_array_equal(a, b)
    # every block's calls count (the loop runs once per block), and one check that f is elementwise in p
    assert blocks.stats.nf > whole.stats.nf and blocks.stats.niter <= whole.stats.niter


def test_blocks_fall_back_to_the_whole_batch_for_an_f_not_elementwise_in_p():
    lo, hi, (e, M) = _kepler_batch(n=60_000)
    sol = ss.solve(ss.IntervalNonlinearProblem(lambda E, p: E - p[0] * np.tanh(E) - p[1] + 1e-3 * p[1].mean(),
                                               (lo, hi), (e, M)))
    assert sol.successful and sol.stats.nf == 2 + sol.stats.niter + 2  # the blocks' check and the narrowing's
    np.testing.assert_allclose(sol.u - e * np.tanh(sol.u), M - 1e-3 * M.mean(), atol=1e-11)


@pytest.mark.slow
def test_the_benchmark_script_runs_and_its_roots_agree_with_brentq(tmp_path):
    import json
    import subprocess

    out = tmp_path / "b.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bracketing", "--n", "3000", "--families", "kepler,aps11", "--backends", "numpy",
                           "--repeats", "1", "--json", str(out)], capture_output=True, text=True, timeout=600,
                          cwd=os.path.join(os.path.dirname(__file__), os.pardir))
    assert proc.returncode == 0, proc.stderr
    assert "agree" in proc.stdout and "brentq loop" in proc.stdout
    rows = json.loads(out.read_text())["benchmarks"]["bracketing"]["rows"]
    assert len(rows) == 8  # 2 families x (ITP, Brent) x (vs loop, vs find_root)
    assert {r["peer"] for r in rows} == {"scipy brentq loop", "scipy find_root"}
    assert all(r["target"] in (0.02, 1.0) and r["ratio"] > 0 for r in rows)
    assert all(r["agree"] == 3000 and r["solved"] == 3000 for r in rows if "agree" in r)
