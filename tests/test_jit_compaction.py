"""Compaction under jax.jit (steadysolve/_engine/compaction.py): a batched, row-wise solve whose last running
elements are few continues on a gathered batch of static size. Every per-element result must be the
one of the whole-batch loop (``rowwise=False`` turns compaction off), and a problem that is not
row-wise must keep the whole batch."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import steadysolve as ss  # noqa: E402
from steadysolve._engine import compaction as loop_compact  # noqa: E402

B = loop_compact.MIN_BATCH  # the smallest batch that compacts
ROOT = 2.0 ** (1.0 / 3.0)
TOL = 1e-12


def _starts(B=B, n=2, seed=0):
    """Most elements start near the root of u**3 = 2, every 100th far away (several times the iterations)."""
    rng = np.random.default_rng(seed)
    U = ROOT + 0.1 * rng.standard_normal((B, n))
    U[::100] = [30.0, 25.0] if n == 2 else 30.0
    return U


def _cubic(calls):
    def f(u, p):
        calls.append(int(u.shape[0]))
        return u * u * u - 2.0
    return f


def _halving(calls):  # a fixed-point map with the same fixed point: u <- (u + 2 / u**2) / 2
    def g(u, p):
        calls.append(int(u.shape[0]))
        return 0.5 * (u + 2.0 / (u * u))
    return g


def _run(alg, U, rowwise, *, fixed_point=False, batch_axis=0, **kw):
    """A jitted solve; returns its results as NumPy arrays and the batch sizes ``f`` was traced with."""
    calls = []

    @jax.jit
    def solve(u0):
        f = _halving(calls) if fixed_point else _cubic(calls)
        prob = (ss.FixedPointProblem if fixed_point else ss.NonlinearProblem)(f, u0, rowwise=rowwise)
        sol = ss.solve(prob, alg, abstol=TOL, batch_axis=batch_axis, store_trace=True, **kw)
        return dict(u=sol.u, resid=sol.resid, codes=sol.retcode_array, niter_el=sol.stats.niter_per_element,
                    niter=sol.stats.niter, nf=sol.stats.nf, trace=sol.trace)

    out = jax.tree.map(np.asarray, solve(jnp.asarray(U)))
    return out, calls


def _assert_same(a, b, nf_extra=1):
    np.testing.assert_array_equal(a["codes"], b["codes"])
    np.testing.assert_array_equal(a["niter_el"], b["niter_el"])
    assert int(a["niter"]) == int(b["niter"])
    assert int(a["nf"]) == int(b["nf"]) + nf_extra  # the row-wise check is one evaluation of f
    np.testing.assert_allclose(a["u"], b["u"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(a["resid"], b["resid"], rtol=0, atol=1e-13)
    np.testing.assert_allclose(a["trace"], b["trace"], rtol=1e-9, atol=1e-13)


# each case compiles the solve twice (compacted and whole): the fast loop keeps one algorithm
@pytest.mark.parametrize("alg", ["broyden"] + [pytest.param(a, marks=pytest.mark.slow) for a in
                                               ("newton", "anderson", "newton_krylov", "trust_region", "auto")])
@pytest.mark.slow
def test_compacted_jit_solve_matches_the_whole_batch(alg):
    fixed_point = alg == "anderson"
    U = _starts()
    comp, calls = _run(alg, U, None, fixed_point=fixed_point)
    whole, calls_whole = _run(alg, U, False, fixed_point=fixed_point)
    assert set(calls_whole) == {B}
    assert min(calls) < B, "the stragglers were not stepped on a smaller batch"
    assert np.all(comp["codes"] == 0)
    niter = comp["niter_el"]
    assert niter.max() >= 2 * np.median(niter), "no stragglers: the test does not exercise compaction"
    _assert_same(comp, whole)
    np.testing.assert_allclose(comp["u"], ROOT, rtol=1e-10)
    # the trace keeps the whole batch: every column ends at that element's final residual norm
    assert comp["trace"].shape[1] == B
    np.testing.assert_allclose(comp["trace"][int(comp["niter"])], np.max(np.abs(comp["resid"]), axis=1), rtol=1e-12)


@pytest.mark.slow
def test_rowwise_true_skips_the_check():
    U = _starts()
    comp, calls = _run("newton", U, True)
    whole, _ = _run("newton", U, False)
    assert min(calls) < B
    _assert_same(comp, whole, nf_extra=0)


@pytest.mark.slow
def test_batch_axis_not_first_and_maxiters():
    U = _starts().T.copy()  # (2, B): the batch on axis 1
    comp, calls = _run("broyden", U, None, batch_axis=1, maxiters=15)
    whole, _ = _run("broyden", U, False, batch_axis=1, maxiters=15)
    assert min(calls) < B
    codes = comp["codes"]
    assert np.any(codes == ss.ReturnCode.MaxIters.code) and np.any(codes == 0)  # stragglers stopped by maxiters
    _assert_same(comp, whole)


@pytest.mark.slow
def test_two_levels_for_a_large_batch():
    big = loop_compact.MIN_BATCH * loop_compact.SHRINK
    assert len(loop_compact.levels(big, 100)) == 2
    U = _starts(big, n=1)
    comp, calls = _run("newton", U, None)
    whole, _ = _run("newton", U, False)
    assert sorted(set(calls))[:3] == sorted(loop_compact.levels(big, 100)) + [big]
    _assert_same(comp, whole)


def test_small_batches_are_not_compacted():
    assert loop_compact.levels(loop_compact.MIN_BATCH - 1, 100) == ()
    out, calls = _run("newton", _starts(64), None)
    assert set(calls) == {64} and np.all(out["codes"] == 0)


def test_nonfinite_straggler_keeps_its_best_iterate():
    calls = []

    @jax.jit
    def solve(u0):
        def f(u, p):  # NaN on 2 < u < 3: on the stragglers' way down from 30, never near the easy ones
            calls.append(int(u.shape[0]))
            r = u * u * u - 2.0
            return jnp.where((u > 2.0) & (u < 3.0), jnp.nan, r)

        outs = []
        for rw in (None, False):
            sol = ss.solve(ss.NonlinearProblem(f, u0, rowwise=rw), "newton", abstol=TOL, batch_axis=0)
            outs.append((sol.u, sol.retcode_array, sol.stats.niter_per_element))
        return outs

    (u, codes, niter), (u_w, codes_w, niter_w) = jax.tree.map(np.asarray, solve(jnp.asarray(_starts())))
    assert min(calls) < B
    np.testing.assert_array_equal(codes, codes_w)
    np.testing.assert_array_equal(niter, niter_w)
    far = np.zeros(B, dtype=bool)
    far[::100] = True
    assert np.all(codes[far] != 0) and np.all(codes[~far] == 0)  # the stragglers fail (NaN in their way)
    assert np.all(np.isfinite(u))
    np.testing.assert_allclose(u, u_w, rtol=1e-12)


def _calls_of(f_maker, U, p=None):
    calls = []

    @jax.jit
    def solve(u0, p):
        sol = ss.solve(ss.NonlinearProblem(f_maker(calls), u0, p), "newton", abstol=TOL, batch_axis=0)
        return sol.u, sol.retcode_array, sol.stats.nf

    return jax.tree.map(np.asarray, solve(jnp.asarray(U), p)), calls


def test_per_element_parameters_keep_the_whole_batch():
    U = _starts()
    target = jnp.asarray(np.linspace(1.0, 3.0, B)[:, None])  # (B, 1): one per element

    def maker(calls):
        def f(u, p):
            calls.append(int(u.shape[0]))
            return u * u * u - p
        return f

    (u, codes, _), calls = _calls_of(maker, U, target)
    assert set(calls) == {B} and np.all(codes == 0)
    np.testing.assert_allclose(u, np.cbrt(np.asarray(target)) * np.ones((1, 2)), rtol=1e-10)


def test_closure_with_per_element_data_keeps_the_whole_batch():
    U = _starts()
    target = jnp.asarray(np.linspace(1.0, 3.0, B)[:, None])

    def maker(calls):
        def f(u, p):  # the data is not in p: on fewer rows the shapes do not broadcast
            calls.append(int(u.shape[0]))
            return u * u * u - target
        return f

    (u, codes, _), calls = _calls_of(maker, U)
    assert max(calls) == B and np.all(codes == 0)
    np.testing.assert_allclose(u, np.cbrt(np.asarray(target)) * np.ones((1, 2)), rtol=1e-10)


@pytest.mark.slow
def test_f_that_depends_on_the_batch_keeps_the_whole_batch():
    """f shifted by the batch's size (as a batch statistic would): right shapes on fewer rows, other
    residuals, so the run-time check keeps the whole batch. The same compiled solve compacts when the
    shift is off (a parameter)."""
    U = _starts()
    seen = []

    @jax.jit
    def solve(u0, c):
        def f(u, p):
            seen.append(int(u.shape[0]))
            return u * u * u - 2.0 - p * (u.shape[0] - B)
        sol = ss.solve(ss.NonlinearProblem(f, u0, c), "newton", abstol=TOL, batch_axis=0)
        return sol.u, sol.retcode_array, sol.stats.nf, sol.stats.niter_per_element

    whole, _ = _run("newton", U, False)
    for c in (0.0, 1e-2):  # with 1e-2 the stragglers would solve u**3 = 2 - 0.01 (B - cap) on fewer rows
        out = jax.tree.map(np.asarray, solve(jnp.asarray(U), c))
        np.testing.assert_array_equal(out[1], whole["codes"])
        np.testing.assert_array_equal(out[3], whole["niter_el"])
        np.testing.assert_allclose(out[0], whole["u"], rtol=1e-12)
        assert int(out[2]) == int(whole["nf"]) + 1  # the check counts either way
    assert min(seen) < B


@pytest.mark.slow
def test_vmap_over_compacted_solves():
    U2 = np.stack([_starts(seed=1), _starts(seed=2)[::-1]])  # the stragglers at other rows
    calls = []

    def solve(u0):
        sol = ss.solve(ss.NonlinearProblem(_cubic(calls), u0), "newton", abstol=TOL, batch_axis=0)
        return sol.u, sol.retcode_array, sol.stats.niter_per_element

    u, codes, niter = jax.tree.map(np.asarray, jax.jit(jax.vmap(solve))(jnp.asarray(U2)))
    assert min(calls) < B
    for k in range(2):
        one, _ = _run("newton", U2[k], False)
        np.testing.assert_array_equal(codes[k], one["codes"])
        np.testing.assert_array_equal(niter[k], one["niter_el"])
        np.testing.assert_allclose(u[k], one["u"], rtol=1e-12)


@pytest.mark.slow
def test_forward_mode_through_a_compacted_solve():
    """jax.jvp through the loop (a shared scalar parameter: row-wise): the same tangent as the whole
    batch's loop, and the implicit function theorem's du/dp = 1 / (3 u**2)."""
    U = jnp.asarray(_starts())

    def solve(p, rowwise):
        prob = ss.NonlinearProblem(lambda u, p: u * u * u - p, U, p, rowwise=rowwise)
        return ss.solve(prob, "newton", abstol=TOL, reltol=0.0, batch_axis=0).u

    p0 = jnp.asarray(2.0)
    u, du = jax.jit(lambda p: jax.jvp(lambda q: solve(q, None), (p,), (jnp.ones_like(p),)))(p0)
    u_w, du_w = jax.jit(lambda p: jax.jvp(lambda q: solve(q, False), (p,), (jnp.ones_like(p),)))(p0)
    np.testing.assert_allclose(np.asarray(du), np.asarray(du_w), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(du), 1.0 / (3.0 * np.asarray(u) ** 2), rtol=1e-6)
