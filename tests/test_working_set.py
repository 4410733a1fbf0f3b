"""The eager batched driver's working set: once most elements have stopped, it steps the running
rows alone (steadysolve._engine.rows.WorkingSet). The answers must be those of the whole batch / of each
element solved alone, and a problem with per-element parameters must never be narrowed."""

import numpy as np
import pytest

import steadysolve as ss
from helpers import np_norm, slow_on

ALGS = ["newton", "newton_krylov", "broyden", "trust_region", "levenberg_marquardt", "auto"]
# five easy starts near the root of u**3 = 2 and one far away (many more iterations)
STARTS = np.array([[1.2, 1.3], [1.3, 1.2], [1.25, 1.25], [1.1, 1.4], [1.4, 1.1], [30.0, 25.0]])
ROOT = 2.0 ** (1.0 / 3.0)


def _cubic(calls):
    def f(u, p):
        calls.append(int(u.shape[0]))
        return u * u * u - 2.0
    return f


@pytest.mark.parametrize("alg", ALGS)
@slow_on("jax")
@pytest.mark.slow
def test_narrowed_batch_matches_each_element_alone(bk, alg):
    calls = []
    sol = ss.solve(ss.NonlinearProblem(_cubic(calls), bk.asarray(STARTS)), alg, abstol=1e-10, batch_axis=0)
    B = STARTS.shape[0]
    assert min(calls) < B, "the stragglers were not stepped alone"
    codes = [rc.name for rc in sol.retcodes]
    assert codes == ["Success"] * B
    u = bk.to_numpy(sol.u)
    np.testing.assert_allclose(u, ROOT, rtol=1e-9)
    assert np.all(np_norm(bk.to_numpy(sol.resid), "max", 0) <= 1e-10)
    for i in range(B):  # the same iterate and iteration count as the element solved on its own
        one = ss.solve(ss.NonlinearProblem(_cubic([]), bk.asarray(STARTS[i])), alg, abstol=1e-10)
        assert one.retcode.name == "Success"
        np.testing.assert_allclose(u[i], bk.to_numpy(one.u), rtol=1e-12, atol=0)
        if alg != "auto":
            assert int(sol.stats.niter_per_element[i]) == int(one.stats.niter)


def test_trace_and_counts_cover_the_whole_batch(bk):
    sol = ss.solve(ss.NonlinearProblem(_cubic([]), bk.asarray(STARTS)), "newton", abstol=1e-10, batch_axis=0,
                   store_trace=True)
    trace = np.asarray(sol.trace)
    assert trace.shape == (int(sol.stats.niter) + 1, STARTS.shape[0])
    # every column ends at that element's final residual norm (the narrowed rows carry theirs on)
    np.testing.assert_allclose(trace[-1], np_norm(bk.to_numpy(sol.resid), "max", 0), rtol=1e-12)
    niter = np.asarray(sol.stats.niter_per_element)
    assert niter[-1] == int(sol.stats.niter) and np.all(niter[:-1] < niter[-1])


def test_per_element_parameters_keep_the_whole_batch(bk):
    calls = []
    target = bk.asarray(np.linspace(1.0, 3.0, STARTS.shape[0])[:, None])  # (B, 1): one per element

    def f(u, p):
        calls.append(int(u.shape[0]))
        return u * u * u - p

    sol = ss.solve(ss.NonlinearProblem(f, bk.asarray(STARTS), target), "newton", abstol=1e-10, batch_axis=0)
    assert set(calls) == {STARTS.shape[0]}
    np.testing.assert_allclose(bk.to_numpy(sol.u), np.cbrt(bk.to_numpy(target)) * np.ones((1, 2)), rtol=1e-9)


@pytest.mark.slow
def test_nonfinite_straggler_keeps_its_best_iterate(bk):
    xp = bk.xp

    def f(u, p):  # NaN on 2 < u < 3: on the straggler's way down from 30, never near the easy ones
        r = u * u * u - 2.0
        return xp.where((u > 2.0) & (u < 3.0), xp.asarray(float("nan"), dtype=u.dtype), r)

    starts = STARTS
    sol = ss.solve(ss.NonlinearProblem(f, bk.asarray(starts)), "newton", abstol=1e-10, batch_axis=0)
    assert [rc.name for rc in sol.retcodes][:-1] == ["Success"] * (starts.shape[0] - 1)
    assert np.all(np.isfinite(bk.to_numpy(sol.u))) and np.all(np.isfinite(bk.to_numpy(sol.resid)))


def test_closure_with_per_element_data_falls_back_to_the_whole_batch(bk):
    # per-element data captured outside p: f on a smaller batch broadcasts to the whole one (or
    # fails); the solve notices the first time, goes on with the whole batch, and answers as before
    target = bk.asarray(np.linspace(1.0, 3.0, STARTS.shape[0])[:, None])
    calls = []

    def f(u, p):
        calls.append(int(u.shape[0]))
        return u * u * u - target

    sol = ss.solve(ss.NonlinearProblem(f, bk.asarray(STARTS)), "newton", abstol=1e-10, batch_axis=0)
    assert [rc.name for rc in sol.retcodes] == ["Success"] * STARTS.shape[0]
    np.testing.assert_allclose(bk.to_numpy(sol.u), np.cbrt(bk.to_numpy(target)) * np.ones((1, 2)), rtol=1e-9)
    assert sum(c < STARTS.shape[0] for c in calls) == 1  # tried once, then never again
    plain = []
    ref = ss.solve(ss.NonlinearProblem(lambda u, p: (plain.append(1), f(u, p))[1], bk.asarray(STARTS), rowwise=False),
                   "newton", abstol=1e-10, batch_axis=0)
    assert len(calls) == 2 * len(plain) + 1  # (f above also logs the reference's calls) the one try ...
    assert int(sol.stats.nf) == int(ref.stats.nf) + 1  # ... is counted
    np.testing.assert_array_equal(bk.to_numpy(sol.u), bk.to_numpy(ref.u))


@pytest.mark.slow
def test_rowwise_option(bk):
    calls = []
    prob = ss.NonlinearProblem(_cubic(calls), bk.asarray(STARTS), rowwise=False)
    sol = ss.solve(prob, "newton", abstol=1e-10, batch_axis=0)
    assert sol.successful and set(calls) == {STARTS.shape[0]}
    # a shared p that merely has an axis of the batch's size: rowwise=True still narrows
    B = STARTS.shape[0]
    calls.clear()
    shared = bk.asarray(np.full((B,), 2.0))
    prob = ss.NonlinearProblem(lambda u, p: _cubic(calls)(u, p) + 2.0 - p[0], bk.asarray(STARTS), shared,
                               rowwise=True)
    sol = ss.solve(prob, "newton", abstol=1e-10, batch_axis=0)
    assert sol.successful and min(calls) < B
    with pytest.raises(TypeError, match="rowwise must be True, False or None"):
        ss.NonlinearProblem(_cubic([]), bk.asarray(STARTS), rowwise="yes")
