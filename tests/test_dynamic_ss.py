"""DynamicSS: time-stepping to steady state with adaptive Tsit5."""

import math

import numpy as np
import pytest
from helpers import assert_honest, xp_of
from benchmarks.problems.honesty import h_map, h_matrix, h_reference, mlp_reference, tanh_mlp

import steadysolve as ss

RC = ss.ReturnCode


def _np(bk, x):
    """A stats entry (a backend array or already NumPy) as NumPy."""
    return x if isinstance(x, np.ndarray) else np.asarray(bk.to_numpy(x))

@pytest.fixture(scope="module")
def linear_system():
    rng = np.random.default_rng(3)
    n = 8
    Q = rng.normal(size=(n, n))
    A = -(np.eye(n) + 0.3 * Q @ Q.T / n)  # symmetric negative definite: stable
    b = rng.normal(size=n)
    return A, b, np.linalg.solve(A, -b)


@pytest.mark.slow
def test_linear_stable_system(bk, linear_system):
    A, b, ref = linear_system
    prob = ss.SteadyStateProblem(lambda u, p, t: p[0] @ u + p[1], bk.asarray(np.zeros(len(b))),
                                 (bk.asarray(A), bk.asarray(b)))
    sol = ss.solve(prob, ss.DynamicSS(ss.Tsit5()), abstol=1e-10, reltol=0.0)
    assert sol.retcode is RC.Success
    np.testing.assert_allclose(bk.to_numpy(sol.u), ref, atol=1e-9)
    assert_honest(bk, prob, sol, 1e-10, 0.0)
    st = sol.stats
    assert st.naccept + st.nreject == st.niter
    # f(u0, p, t0), the initial step, 6 per attempted step; solve() also evaluated f(u0, p, inf)
    assert st.nf == 3 + 6 * st.niter
    assert st.t > 5.0  # slowest mode ~ exp(-t): the integration really ran in time


@pytest.mark.slow
def test_h_equation_as_ode(bk):
    M = bk.asarray(h_matrix())
    prob = ss.SteadyStateProblem(lambda u, p, t: h_map(u, p) - u, bk.asarray(np.ones(100)), M)
    sol = ss.solve(prob, "dynamic_ss", abstol=1e-10, reltol=0.0)
    assert sol.retcode is RC.Success
    np.testing.assert_allclose(bk.to_numpy(sol.u), h_reference(), atol=1e-8)
    assert_honest(bk, prob, sol, 1e-10, 0.0)


@pytest.mark.slow
def test_batched_mlp_per_element_convergence(bk):
    prob, kw = tanh_mlp(bk.xp)
    sol = ss.solve(prob, ss.DynamicSS(), maxiters=500, **kw)
    assert sol.retcode is RC.Success and all(rc is RC.Success for rc in sol.retcodes)
    np.testing.assert_allclose(bk.to_numpy(sol.u), mlp_reference(), atol=1e-8)
    assert_honest(bk, prob, sol, kw["abstol"], kw["reltol"], batch_axis=0)
    per = _np(bk, sol.stats.niter_per_element)
    nacc = _np(bk, sol.stats.naccept)
    t = _np(bk, sol.stats.t)
    assert per.shape == (16,) and nacc.shape == (16,) and t.shape == (16,)
    assert len(set(per.tolist())) > 1 and len(set(t.tolist())) > 1  # elements stop at their own time
    assert per.max() == sol.stats.niter
    np.testing.assert_array_equal(nacc + _np(bk, sol.stats.nreject), per)


@pytest.mark.slow
def test_unstable_system_never_succeeds(bk):
    prob = ss.NonlinearProblem(lambda u, p: u, bk.asarray([1.0, -2.0]))
    sol = ss.solve(prob, ss.DynamicSS(), abstol=1e-8, reltol=1e-6, maxiters=2000)
    assert sol.retcode in (RC.Diverged, RC.NonFinite, RC.TimeLimit), sol
    assert np.all(np.isfinite(bk.to_numpy(sol.u)))
    assert_honest(bk, prob, sol, 1e-8, 1e-6)


def test_tmax_gives_time_limit(bk):
    prob = ss.NonlinearProblem(lambda u, p: -0.05 * u, bk.asarray([1.0, 2.0]))
    sol = ss.solve(prob, ss.DynamicSS(tmax=10.0), abstol=1e-10, reltol=0.0)
    assert sol.retcode is RC.TimeLimit
    assert sol.stats.t <= 10.0
    # the best iterate is still the integrated state near t = 10
    np.testing.assert_allclose(bk.to_numpy(sol.u), np.exp(-0.05 * sol.stats.t) * np.array([1.0, 2.0]), rtol=1e-6)


def test_no_drift_to_overflow_without_steady_state():
    # du/dt = 1: the local error is exactly 0, the step grows 10x per step; with tmax = inf the
    # run must end with TimeLimit long before t overflows, never with NaN. (reltol = 0: with a
    # relative test, |du/dt| = 1 <= reltol * |u| would eventually count as converged.)
    prob = ss.NonlinearProblem(lambda u, p: np.ones_like(u), np.zeros(3))
    sol = ss.solve(prob, ss.DynamicSS(), abstol=1e-8, reltol=0.0, maxiters=3000)
    # rounding in u + h k (|u| ~ t) eventually exceeds the absolute local tolerance and holds the
    # step while the residual stays 1: Stalled (the watch); where it stalls late enough, u has run
    # away: Diverged. Never Success/NaN.
    assert sol.retcode in (RC.TimeLimit, RC.MaxIters, RC.Diverged, RC.Stalled)
    assert np.all(np.isfinite(sol.u)) and math.isfinite(sol.stats.t) and sol.stats.t > 1e3
    # with a relative local-error tolerance the step keeps growing: u runs away while du/dt
    # stays 1, which the safe termination calls Diverged (long before t reaches its cap)
    sol = ss.solve(prob, ss.DynamicSS(controller=ss.PIController(reltol=1e-6, abstol=1e-8)), abstol=1e-8,
                   reltol=0.0, maxiters=3000)
    assert sol.retcode is RC.Diverged
    assert np.all(np.isfinite(sol.u)) and math.isfinite(sol.stats.t)


def test_maxiters_counts_steps():
    prob = ss.NonlinearProblem(lambda u, p: -0.01 * u, np.ones(4))
    sol = ss.solve(prob, ss.DynamicSS(), abstol=1e-12, reltol=0.0, maxiters=7)
    assert sol.retcode is RC.MaxIters
    assert sol.stats.niter == 7 and sol.stats.naccept + sol.stats.nreject == 7


# the user's u ** 3 overflows at the step the solver rejects
@pytest.mark.filterwarnings("ignore:overflow encountered in power:RuntimeWarning:test_dynamic_ss")
def test_rejected_steps_keep_u():
    # a too-large first step is rejected: the state must not move on a rejection
    seen = []
    prob = ss.SteadyStateProblem(lambda u, p, t: -(u ** 3) + 1.0, np.full(2, 3.0))
    sol = ss.solve(prob, ss.DynamicSS(dt0=5.0), abstol=1e-10, reltol=0.0, maxiters=500,
                   callback=lambda it, u, fn: seen.append(np.array(u)))
    assert sol.retcode is RC.Success and sol.stats.nreject >= 1
    np.testing.assert_allclose(sol.u, 1.0, atol=1e-9)
    np.testing.assert_allclose(seen[0], 3.0)  # first attempt (h = 5) rejected: u unchanged


def test_time_passed_to_f():
    ts = []

    def f(u, p, t):
        ts.append(t)
        rate = 1.0 + 0.0 * (t[:, None] if np.ndim(t) == 1 else t)
        return -(u - 1.0) * rate

    u0 = np.zeros((3, 2))
    sol = ss.solve(ss.SteadyStateProblem(f, u0), ss.DynamicSS(), abstol=1e-9, reltol=0.0, batch_axis=0)
    assert sol.retcode is RC.Success
    assert all(np.ndim(t) == 0 for t in ts[1:])  # ts[0] is solve()'s f(u0, p, inf)
    assert math.isinf(ts[0]) and ts[1] == 0.0 and max(ts[1:]) > 5.0
    ts.clear()
    sol = ss.solve(ss.SteadyStateProblem(f, u0), ss.DynamicSS(per_element_time=True), abstol=1e-9, reltol=0.0,
                   batch_axis=0)
    assert sol.retcode is RC.Success and all(np.shape(t) == (3,) for t in ts[1:])


# solve() checks f's output shape at t = inf (a steady state is the limit t -> inf), where cos is NaN
@pytest.mark.filterwarnings("ignore:invalid value encountered in cos:RuntimeWarning:test_dynamic_ss")
def test_non_autonomous_relaxation():
    # du/dt = -(u - cos(t) * exp(-t)) relaxes to 0; t enters f as a 0-d array
    def f(u, p, t):
        xp = xp_of(u)
        return -(u - xp.cos(t) * xp.exp(-t))

    sol = ss.solve(ss.SteadyStateProblem(f, np.full(2, 3.0)), ss.DynamicSS(), abstol=1e-9, reltol=0.0)
    assert sol.retcode is RC.Success and sol.stats.t > 15.0
    np.testing.assert_allclose(sol.u, 0.0, atol=1e-7)


@pytest.mark.slow
def test_jit_equals_eager_and_vmap():
    import jax
    import jax.numpy as jnp

    M = jnp.asarray(h_matrix())

    def run(u0):
        prob = ss.SteadyStateProblem(lambda u, p, t: h_map(u, p) - u, u0, M)
        sol = ss.solve(prob, ss.DynamicSS(), abstol=1e-10, reltol=0.0)
        return sol.u, sol.retcode_array, sol.stats.nf, sol.stats.naccept, sol.stats.t

    u0 = jnp.ones(100)
    eager = run(u0)
    jitted = jax.jit(run)(u0)
    np.testing.assert_allclose(np.asarray(jitted[0]), np.asarray(eager[0]), rtol=1e-12, atol=1e-13)
    assert np.all(np.asarray(jitted[1]) == 0)
    assert int(jitted[2]) == eager[2] and int(jitted[3]) == eager[3]
    assert float(jitted[4]) == pytest.approx(eager[4], rel=1e-12)
    batch = jnp.stack([jnp.ones(100), 0.5 * jnp.ones(100)])
    us, codes, *_ = jax.jit(jax.vmap(run))(batch)
    np.testing.assert_allclose(np.asarray(us), np.stack([h_reference()] * 2), atol=1e-8)
    assert np.all(np.asarray(codes) == 0)


def test_float32_torch():
    import torch

    M = torch.as_tensor(h_matrix(), dtype=torch.float32)
    prob = ss.FixedPointProblem(h_map, torch.ones(100, dtype=torch.float32), M)
    sol = ss.solve(prob, ss.DynamicSS())
    assert sol.retcode is RC.Success and sol.u.dtype == torch.float32
    np.testing.assert_allclose(sol.u.numpy(), h_reference(), atol=1e-4)


def test_loose_local_error_tolerance_fails_honestly():
    # A local-error tolerance far looser than the steady-state one lets an explicit method
    # settle at its stability boundary with a residual of the order of rtol (the plateau of a
    # stiff system): the solve ends early with Stalled and says why, never with a false Success.
    # Tied tolerances (the default) converge.
    prob = ss.FixedPointProblem(h_map, np.ones(100), h_matrix())
    tied = ss.solve(prob, ss.DynamicSS(), abstol=1e-10, reltol=0.0)
    loose = ss.solve(prob, ss.DynamicSS(controller=ss.PIController(reltol=1e-4, abstol=1e-6)), abstol=1e-10,
                     reltol=0.0, maxiters=300)
    assert tied.retcode is RC.Success
    assert loose.retcode is RC.Stalled and loose.stats.niter < 100 and "stability limit" in loose.message
    assert np.max(np.abs(loose.resid)) > 1e-8


@pytest.mark.parametrize("kw, err, msg", [
    (dict(tmax=-1.0), ValueError, "tmax must be > 0"),
    (dict(t0=5.0, tmax=1.0), ValueError, "must be greater than t0"),
    (dict(dt0=0.0), ValueError, "dt0 must be > 0"),
    (dict(integrator="tsit5"), TypeError, "integrator must be an explicit Runge-Kutta"),
    (dict(controller=0.1), TypeError, "controller must be a PIController"),
    (dict(per_element_time=1), TypeError, "per_element_time must be a bool"),
    (dict(t0=float("nan")), ValueError, "t0 must be a finite number"),
])
def test_bad_options(kw, err, msg):
    with pytest.raises(err, match=msg):
        ss.DynamicSS(**kw)


def test_registered_and_zero_tolerances_rejected():
    assert "dynamic_ss" in ss.available()
    assert isinstance(ss.solve(ss.NonlinearProblem(lambda u, p: -u, np.ones(2)), "dynamic_ss").alg, ss.DynamicSS)
    with pytest.raises(ValueError, match="local-error tolerances"):
        ss.solve(ss.NonlinearProblem(lambda u, p: -u, np.ones(2)), "dynamic_ss", abstol=0.0, reltol=0.0)


# f is NaN past u = 5 by design (sqrt) and, with the forcing, at the shape check's t = inf (cos)
@pytest.mark.filterwarnings("ignore:invalid value encountered in (cos|sqrt):RuntimeWarning:test_dynamic_ss",
                            "ignore:invalid value encountered in (cos|sqrt):RuntimeWarning:array_api_strict")
@pytest.mark.parametrize("per_element_time", [False, True])
@pytest.mark.slow
def test_batched_numpy_and_strict_take_the_same_steps(per_element_time):
    # The one attempt on NumPy (stages multiplied into views of the workspace, ``dot`` products) and on
    # array_api_strict (``set_at`` writes, ``matmul``): per element the same verdicts and counts, and the
    # same states up to rounding, through rejections (dt0 too large), a time limit, a time-dependent
    # field (per-element times; with the batch's one time an element that stops early would hold the
    # others' clock), an element that blows up in finite time (u' = u^2) and one that drifts into
    # u > 5 where f is NaN: non-finite stages mid-solve are rejected, never accepted.
    import array_api_strict as xps

    a = np.array([1.0, 3.0, 0.02, 0.0, 0.0])  # relaxation rates; element 3 blows up, element 4 drifts
    b = np.array([0.0, 0.0, 0.0, 1.0, 0.0])
    c = np.array([0.0, 0.0, 0.0, 0.0, 1.0])  # ... into u > 5, where f is NaN
    target = np.array([[0.5], [-1.0], [2.0], [0.0], [0.0]])

    def f(u, p, t):
        xp = xp_of(u)
        tt = xp.asarray(t, dtype=u.dtype)
        tt = xp.reshape(tt, (-1, 1)) if tt.ndim == 1 else tt
        forcing = 0.1 * xp.exp(-tt) * xp.cos(tt) if per_element_time else 0.0
        return p[0] * (p[2] - u + forcing) + p[1] * u * u + p[3] * (1.0 + 0.0 * xp.sqrt(5.0 - u))

    u0 = np.tile(np.array([1.0, 0.5, -0.5]), (5, 1))
    alg = ss.DynamicSS(dt0=2.0, tmax=60.0, per_element_time=per_element_time)
    out = []
    for asarray in (np.asarray, lambda x: xps.asarray(x)):
        p = (asarray(a[:, None]), asarray(b[:, None]), asarray(target), asarray(c[:, None]))
        sol = ss.solve(ss.SteadyStateProblem(f, asarray(u0), p), alg, abstol=1e-9, reltol=1e-7, batch_axis=0,
                       maxiters=400)
        out.append(sol)
    ours, ref = out
    assert [rc.name for rc in ours.retcodes] == [rc.name for rc in ref.retcodes]
    assert ours.retcodes[:2] == [RC.Success, RC.Success] and ours.retcodes[2] is RC.TimeLimit
    assert ours.retcodes[3] in (RC.NonFinite, RC.Stalled, RC.Diverged)
    assert ours.retcodes[4] in (RC.NonFinite, RC.Stalled) and np.asarray(ours.stats.extra["nreject"])[4] >= 3
    same = [0, 1, 2, 4]  # near the blow-up (element 3) rounding decides the number of steps
    for key in ("naccept", "nreject"):
        np.testing.assert_array_equal(np.asarray(ours.stats.extra[key])[same], np.asarray(ref.stats.extra[key])[same])
    assert np.asarray(ours.stats.extra["nreject"])[0] >= 1  # dt0 = 2 is rejected by the fast element
    np.testing.assert_allclose(np.asarray(ours.stats.extra["t"]), np.asarray(ref.stats.extra["t"]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ours.u), np.asarray(ref.u), rtol=1e-6, atol=1e-9)
    assert np.all(np.isfinite(np.asarray(ours.u)))  # the best iterate, never a non-finite one
