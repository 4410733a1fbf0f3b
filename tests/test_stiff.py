"""Rosenbrock integrators: the tableaus check themselves, the methods have their order and are
L-stable, the error estimate drives the step, and DynamicSS / integrate use them on every backend
(batched with per-element steps, under jax.jit). The stiff problem set is benchmarks/problems/stiff.py."""

import dataclasses
import math

import numpy as np
import pytest
from helpers import assert_honest, slow_on

import steadysolve as ss
from steadysolve.ode import rosenbrock as rb
from steadysolve.ode._elements import elements
from steadysolve.ode._rosenbrock_step import rosenbrock_attempt, rosenbrock_step
from steadysolve.ode._trees import trees

from benchmarks.problems import stiff as stiff_set

RC = ss.ReturnCode
METHODS = [ss.Rosenbrock23, ss.Rodas4, ss.Rodas5P]
TABLEAUS = [rb.ROSENBROCK23_TABLEAU, rb.RODAS4_TABLEAU, rb.RODAS5P_TABLEAU]


def _np(bk, x):
    return x if isinstance(x, (np.ndarray, int, float)) else np.asarray(bk.to_numpy(x))


# -- the tableau checks itself -----------------------------------------------------------------------

def test_rooted_tree_counts():
    # OEIS A000081: the number of order conditions per order
    assert [len(ts) for ts in trees(6).values()] == [1, 1, 2, 4, 9, 20]


def _bump_row(rows, i, j, delta=1e-3):
    rows = [list(r) for r in rows]
    rows[i][j] += delta
    return tuple(tuple(r) for r in rows)


def _bump(vec, i, delta=1e-3):
    v = list(vec)
    v[i] += delta
    return tuple(v)


@pytest.mark.parametrize("tab", TABLEAUS, ids=lambda t: t.name)
@pytest.mark.parametrize("what, change, message", [
    ("a", lambda t: {"a": _bump_row(t.a, 2, 1)}, r"nodes\[2\]|order condition"),
    ("couple", lambda t: {"couple": _bump_row(t.couple, 2, 0)}, r"d\[\d\]|nodes\[\d\]|order condition"),
    ("m", lambda t: {"m": _bump(t.m, 1)}, "fails for m"),
    ("m_err", lambda t: {"m_err": _bump(t.m_err, 0)}, "fails for m - m_err"),
    ("nodes", lambda t: {"nodes": _bump(t.nodes, 1)}, r"nodes\[1\] = "),
    ("d", lambda t: {"d": _bump(t.d, 0)}, r"d\[0\] = "),
    ("gamma", lambda t: {"gamma": t.gamma + 1e-3}, "RosenbrockTableau"),
])
def test_a_corrupted_coefficient_raises(tab, what, change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(tab, **change(tab))


def test_the_l_stability_claim_is_checked():
    # ode23s's third-order comparison formula (Rosenbrock32) is not L-stable: R(inf) = 1.61
    t = rb.ROSENBROCK23_TABLEAU
    m3 = tuple(x - y for x, y in zip(t.m, t.m_err))
    kw = dict(m=m3, m_err=tuple(-x for x in t.m_err), order=3, error_order=2, dense=None, dense_order=0)
    with pytest.raises(ValueError, match=r"R\(inf\)"):
        dataclasses.replace(t, **kw)
    assert dataclasses.replace(t, l_stable=False, **kw).order == 3


def test_declared_orders_are_the_tableaus():
    with pytest.raises(ValueError, match="order 6"):
        dataclasses.replace(rb.RODAS5P_TABLEAU, order=6)
    assert [t.fsal for t in TABLEAUS] == [True, False, False]


def test_bad_options():
    with pytest.raises(TypeError, match="linsolve must be None or a W-solver"):
        ss.Rodas5P(linsolve="lu")
    with pytest.raises(TypeError, match="autonomous must be a bool"):
        ss.Rodas5P(autonomous=1)
    with pytest.raises(TypeError, match="tableau must be a RosenbrockTableau"):
        rb.Rosenbrock(ss.Tsit5().tableau)
    with pytest.raises(TypeError, match="jac must be a callable"):
        ss.integrate(lambda u, p, t: -u, np.ones(1), (0.0, 1.0), ss.Tsit5(), jac=lambda u, p, t: -np.eye(1))


# -- order, L-stability, error estimate --------------------------------------------------------------

_A = np.array([[-1.0, 0.5], [0.2, -2.0]])


def _forced_linear(xp):
    """``u' = A u + sin(t)``: non-autonomous, so the df/dt term is exercised."""
    return lambda u, p, t: u @ p.T + xp.sin(t)


def _forced_linear_exact(T):
    from scipy.integrate import solve_ivp

    return solve_ivp(lambda t, y: _A @ y + np.sin(t), (0.0, T), [1.0, 0.5], rtol=1e-13, atol=1e-15,
                     method="DOP853").y[:, -1]


def _fixed_steps(bk, method, N):
    """``u(1)`` after N steps of 1/N (tolerances that never reject, dtmax pinning the step)."""
    ctl = ss.PIController(reltol=1e6, abstol=1e6, dtmax=1.0 / N)
    sol = ss.integrate(_forced_linear(bk.xp), bk.asarray([1.0, 0.5]), (0.0, 1.0), method, p=bk.asarray(_A),
                       dt0=1.0 / N, controller=ctl, saveat=[1.0])
    assert sol.stats.niter == N and sol.stats.nreject == 0
    return bk.to_numpy(sol.us)[0]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
@pytest.mark.slow
def test_order_of_convergence(bk, method):
    """Fixed steps h, h/2, h/4 on a non-autonomous linear system: error ratios 2^p. Without the df/dt
    term (declaring the field autonomous, wrongly) the error grows (Rodas4 and Rodas5P drop to order 1-2)."""
    ref = _forced_linear_exact(1.0)
    errs = [np.abs(_fixed_steps(bk, method(), N) - ref).max() for N in (8, 16, 32)]  # steps exact in binary
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    p = method().order
    assert all(abs(r - p) < 0.35 for r in rates), (errs, rates)
    wrong = np.abs(_fixed_steps(bk, method(autonomous=True), 16) - ref).max()
    assert wrong > (2.0 if p == 2 else 100.0) * errs[1]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
def test_error_estimate_has_its_order(method):
    """The local error estimate of one step shrinks like h^(q+1), q = min(order, error_order)."""
    f = _forced_linear(np)
    u = np.array([[1.0, 0.5]])
    J = _A[None]
    est = []
    for h in (0.1, 0.05, 0.025):
        r = rosenbrock_step(method(), lambda t, v: f(v, _A, t), J, np.zeros((1, 1)), u, np.full((1, 1), h),
                            f(u, _A, np.zeros((1, 1))), np, tderiv=True)
        est.append(np.abs(r.err).max())
    q1 = method().tableau.control_orders[0]
    assert all(abs(math.log2(est[i] / est[i + 1]) - q1) < 0.3 for i in range(2)), est


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
@pytest.mark.slow
def test_l_stable_one_step(bk, method):
    """One step of h lambda = -1e10 lands on the steady state of u' = lambda (u - 1) (R(inf) = 0)."""
    xp = bk.xp
    lam = bk.asarray([[-1e10]])
    u = bk.asarray([[0.0]])
    field = lambda t, v: lam * (v - 1.0)  # noqa: E731
    r = rosenbrock_step(method(), field, xp.reshape(lam, (1, 1, 1)), None, u, bk.asarray([[1.0]]), field(None, u), xp)
    assert abs(float(bk.to_numpy(r.u)[0, 0]) - 1.0) < 1e-8


def _diag_problem(bk, rates=(1.0, 1e4)):
    D = bk.asarray(np.array(rates))
    return ss.SteadyStateProblem(lambda u, p, t: -p * (u - 1.0), bk.asarray(np.zeros(len(rates))), D)


@pytest.mark.parametrize("method", [ss.Rosenbrock23, ss.Rodas5P], ids=lambda m: m.__name__)
@slow_on("jax")
@pytest.mark.slow
def test_very_stiff_linear_system(bk, method):
    """The issue's du/dt = diag(-1, -1e4)(u - 1): the stiff DynamicSS succeeds in a few steps where
    Tsit5, held at its stability limit, stops early with Stalled and a hint towards the stiff integrator."""
    prob = _diag_problem(bk)
    sol = ss.solve(prob, ss.DynamicSS(method()), abstol=1e-10, reltol=0.0)
    assert sol.retcode is RC.Success, sol
    assert sol.stats.niter <= 150
    np.testing.assert_allclose(bk.to_numpy(sol.u), [1.0, 1.0], atol=1e-9)
    assert_honest(bk, prob, sol, 1e-10, 0.0)
    st = sol.stats
    tab = method().tableau
    assert st.nsolve == tab.stages * st.niter and st.nfact == st.niter and st.njac == st.naccept
    # per attempt: the stages' new evaluations, df/dt, and f(u_new) unless FSAL; plus f(u0, p, inf),
    # f(u0, p, t0) and the initial step's evaluation; on NumPy / array_api_strict also one evaluation
    # per finite-difference Jacobian column (a JVP: counted in nf and njvp)
    per = tab.stages - 1 + 1 + (0 if tab.fsal else 1)
    fd = st.njvp if bk.name in ("numpy", "array_api_strict") else 0
    assert st.nf == 3 + per * st.niter + fd and st.njvp == 2 * st.njac
    explicit = ss.solve(prob, ss.DynamicSS(ss.Tsit5()), abstol=1e-10, reltol=0.0)
    assert explicit.retcode is RC.Stalled and explicit.stats.niter < 300 and "Rodas5P" in explicit.message


def test_default_tolerance_within_reach():
    """The default tolerance (3e-13) with rates whose rounding floor (rate * eps) is below it."""
    prob = ss.SteadyStateProblem(lambda u, p, t: -p * (u - 1.0), np.zeros(2), np.array([1.0, 1e3]))
    sol = ss.solve(prob, ss.DynamicSS(ss.Rodas5P(autonomous=True)))
    assert sol.retcode is RC.Success and sol.stats.niter <= 100


def test_rejections_then_acceptance():
    """A first step far too long for the transient is rejected, the step shrinks, the retry is accepted."""
    f = lambda t, u: -(u - 1.0) + 0.0 * t  # noqa: E731
    J = -np.eye(1)[None]
    u, t = np.zeros((1, 1)), np.zeros(1)
    h, err_prev, rejected = np.full(1, 50.0), np.full(1, 1e-4), np.zeros(1, dtype=bool)
    seen = []
    for _ in range(20):
        a = rosenbrock_attempt(elements(np), ss.Rodas5P(), ss.PIController(), f, J, t, h, u, f(t, u), err_prev, rejected,
                               1e-8, 1e-10, math.inf)
        seen.append(bool(a.accept[0]))
        if a.accept[0]:
            break
        assert a.h[0] < h[0] and a.t[0] == t[0] and np.array_equal(a.u, u)  # rejected: shrink, stay
        h, err_prev, rejected = a.h, a.err_prev, a.rejected
    assert seen[0] is False and seen[-1] is True
    np.testing.assert_allclose(a.u, 1.0 - np.exp(-a.h_used[:, None]), rtol=1e-7)
    sol = ss.solve(ss.SteadyStateProblem(lambda u, p, t: -(u - 1.0), np.zeros(1)),
                   ss.DynamicSS(ss.Rodas5P(), dt0=50.0), abstol=1e-10)
    assert sol.retcode is RC.Success and sol.stats.nreject >= 1


# -- batches, jit, the problem set -------------------------------------------------------------------

@slow_on("jax")
@pytest.mark.slow
def test_batched_per_element_steps(bk):
    """Each element keeps its own step: the batch gives every element the steps it takes alone."""
    rates = np.array([[1.0, 1e4], [0.5, 1e5]])

    def jac(u, p):
        xp = bk.xp
        return -p[..., :, None] * xp.eye(2, dtype=p.dtype)

    def make(r, u0):
        return ss.SteadyStateProblem(lambda u, p, t: -p * (u - 1.0), u0, bk.asarray(r), jac=jac)

    alg = ss.DynamicSS(ss.Rodas5P(autonomous=True))
    sol = ss.solve(make(rates, bk.asarray(np.zeros((2, 2)))), alg, abstol=1e-10, reltol=0.0, batch_axis=0)
    assert sol.retcode is RC.Success
    np.testing.assert_allclose(bk.to_numpy(sol.u), np.ones((2, 2)), atol=1e-9)
    alone = [ss.solve(make(rates[i], bk.asarray(np.zeros(2))), alg, abstol=1e-10, reltol=0.0) for i in range(2)]
    t_alone = [float(_np(bk, s.stats.t)) for s in alone]
    assert abs(t_alone[0] - t_alone[1]) > 1.0  # the elements do take different steps
    assert list(_np(bk, sol.stats.naccept)) == [int(_np(bk, s.stats.naccept)) for s in alone]
    # one NumPy system runs the small-system twin, whose controller rounds its powers on floats (an ulp
    # of the step size, magnified by the error estimate's cancellation): times agree to ~1e-6 there; JAX
    # applies a small W's inverse as a (batched) matrix product, whose rounding depends on the batch
    rtol = {"numpy": 1e-5, "jax": 1e-6}.get(bk.name, 1e-10)
    np.testing.assert_allclose(_np(bk, sol.stats.t), t_alone, rtol=rtol)


@pytest.mark.slow
def test_under_jax_jit():
    import jax
    import jax.numpy as jnp

    rates = jnp.asarray([[1.0, 1e4], [0.5, 1e5]])

    def run(u0, p):
        prob = ss.SteadyStateProblem(lambda u, p, t: -p * (u - 1.0), u0, p)
        s = ss.solve(prob, ss.DynamicSS(ss.Rodas5P()), abstol=1e-10, reltol=0.0, batch_axis=0)
        return s.u, s.retcode_array, s.stats.naccept

    u, codes, nacc = jax.jit(run)(jnp.zeros((2, 2)), rates)
    eager = run(jnp.zeros((2, 2)), rates)
    assert np.all(np.asarray(codes) == 0)
    np.testing.assert_allclose(np.asarray(u), 1.0, atol=1e-9)
    assert list(np.asarray(nacc)) == list(np.asarray(eager[2]))

    def path(u0):
        s = ss.integrate(lambda u, p, t: -1e3 * (u - jnp.cos(t)), u0, (0.0, 1.0), ss.Rodas5P(), saveat=[0.5, 1.0],
                         reltol=1e-8, abstol=1e-10)
        return s.us, s.stats.niter

    us, it = jax.jit(path)(jnp.zeros(1))
    exact = (1e6 * np.cos([0.5, 1.0]) + 1e3 * np.sin([0.5, 1.0]) - 1e6 * np.exp(-1e3 * np.array([0.5, 1.0]))) / (1e6 + 1)
    np.testing.assert_allclose(np.asarray(us)[:, 0], exact, rtol=1e-7)
    assert abs(int(it) - int(path(jnp.zeros(1))[1])) <= 2  # eager: the same steps up to rounding


def _prothero_robinson(xp):
    return lambda u, p, t: -1e3 * (u - xp.cos(t)) - xp.sin(t)  # exact solution cos(t) from u(0) = 1


@pytest.mark.parametrize("method", [ss.Rosenbrock23, ss.Rodas5P], ids=lambda m: m.__name__)
@slow_on("jax")
@pytest.mark.slow
def test_integrate_dense_output(bk, method):
    """Prothero-Robinson (stiff, non-autonomous): cos(t) at the saved times, from the dense output."""
    ts = [0.3, 0.7, 1.0]
    sol = ss.integrate(_prothero_robinson(bk.xp), bk.asarray([1.0]), (0.0, 1.0), method(), saveat=ts, reltol=1e-6,
                       abstol=1e-8)
    assert sol.retcode is RC.Success
    err = np.abs(bk.to_numpy(sol.us)[:, 0] - np.cos(ts)).max()
    assert err < 1e-5, err
    st = sol.stats
    assert st.njac == st.niter and st.nsolve == method().tableau.stages * st.niter and st.nfact == st.niter


@pytest.mark.parametrize("name", ["hires", "stiff_linear"])
@pytest.mark.slow
def test_problem_set_steady_states(bk, name):
    """DynamicSS(Rodas5P) on the problem set with its analytic Jacobians reaches the reference; HIRES
    keeps its conservation law y7 + y8 = 0.0057 (a Rosenbrock step with the exact J preserves linear
    invariants), so it lands on the steady state of u0 although the Jacobian is singular."""
    P = stiff_set.by_name(name)
    xp = bk.xp
    p = None if P.p is None else tuple(bk.asarray(a) for a in P.p)
    prob = ss.SteadyStateProblem(P.f(xp), bk.asarray(P.u0), p, jac=P.jac(xp))
    sol = ss.solve(prob, ss.DynamicSS(ss.Rodas5P(autonomous=True)), abstol=1e-10, reltol=0.0)
    assert sol.retcode is RC.Success, sol
    u = bk.to_numpy(sol.u)
    np.testing.assert_allclose(u, P.reference(), rtol=1e-6, atol=1e-10)
    if name == "hires":
        assert abs(u[6] + u[7] - 0.0057) < 1e-15


def test_problem_set_without_a_stable_steady_state():
    """OREGO: a limit cycle. DynamicSS(stiff) must not report Success."""
    P = stiff_set.orego
    prob = ss.SteadyStateProblem(P.f(np), P.u0.copy(), jac=P.jac(np))
    sol = ss.solve(prob, ss.DynamicSS(ss.Rodas5P(autonomous=True)), maxiters=300)
    assert sol.retcode is not RC.Success


def test_brusselator_small():
    P = stiff_set.brusselator(50)
    prob = ss.SteadyStateProblem(P.f(np), P.u0.copy(), P.p, jac=P.jac(np))
    sol = ss.solve(prob, ss.DynamicSS(ss.Rosenbrock23(autonomous=True)), abstol=1e-9, reltol=1e-9)
    assert sol.retcode is RC.Success
    np.testing.assert_allclose(sol.u, P.reference(), atol=1e-8)


@pytest.mark.slow
def test_rosenbrock23_crosses_the_hires_plateau(bk):
    """HIRES under the second-order Rosenbrock23: the residual rises above an early minimum, then falls
    by ~1e-4 of itself per step across a long plateau (t ~ 30 to 320) before it drops. That descent is
    progress: the patience watch counts steps on which the residual did not fall, so the solve ends
    Success on the flow's steady state, where a count of steps without the residual halving (the old
    watch: 167 such steps here, against a patience of 100) stopped it Stalled."""
    P = stiff_set.hires
    xp = bk.xp
    prob = ss.SteadyStateProblem(P.f(xp), bk.asarray(P.u0), jac=P.jac(xp))
    alg = ss.DynamicSS(ss.Rosenbrock23(autonomous=True), controller=ss.PIController(reltol=1e-4, abstol=1e-8),
                       patience=100)
    sol = ss.solve(prob, alg, abstol=1e-8, reltol=0.0, maxiters=2000)
    assert sol.retcode is RC.Success, sol
    u = bk.to_numpy(sol.u)
    np.testing.assert_allclose(u, P.reference(), atol=1e-6)
    assert abs(u[6] + u[7] - 0.0057) < 1e-14  # the steady state the flow reaches from u0


@pytest.mark.parametrize("method", [ss.Rosenbrock23, ss.Rodas5P])
def test_a_limit_cycle_still_stops_within_patience(method):
    """OREGO's limit cycle: its residual rises on every turn without beating the first turn's minimum, so
    the rate-based watch still stops it (Stalled with the settle hint, or Diverged), a few hundred steps
    in."""
    P = stiff_set.orego
    prob = ss.SteadyStateProblem(P.f(np), P.u0.copy(), jac=P.jac(np))
    sol = ss.solve(prob, ss.DynamicSS(method(autonomous=True), patience=100), maxiters=20_000)
    assert sol.retcode in (RC.Stalled, RC.Diverged), sol
    assert sol.stats.niter < 400
    if sol.retcode is RC.Stalled:
        assert "did not settle" in sol.message or "does not settle" in sol.message


@pytest.mark.parametrize("n", [5, 70])
@pytest.mark.slow
def test_dense_w_solver_under_jax(n):
    """JAX states up to INVERSE_MAX_N unknowns solve W U = rhs with W^-1 from the LU (one product per
    stage), larger ones with the LU's triangular solves: both agree with NumPy's solve, and a singular
    W gives non-finite stages (the step is rejected), not an exception."""
    jnp = pytest.importorskip("jax.numpy")
    from steadysolve.ode import DenseLU
    from steadysolve.ode._wsolve import INVERSE_MAX_N

    rng = np.random.default_rng(n)
    J = -np.eye(n) * np.logspace(0, 4, n) + 0.1 * rng.standard_normal((n, n))
    hg = np.array([[0.3], [2e-3]])
    rhs = rng.standard_normal((2, n))
    Js = np.stack([J, J])
    fact = DenseLU().factor(jnp, jnp.asarray(Js), jnp.asarray(hg))
    assert (fact[0] == "inv") is (n <= INVERSE_MAX_N)
    x = np.asarray(DenseLU().solve(jnp, fact, jnp.asarray(rhs)))
    want = np.stack([np.linalg.solve(np.eye(n) / hg[b, 0] - J, rhs[b]) for b in range(2)])
    np.testing.assert_allclose(x, want, rtol=1e-10, atol=1e-12)
    singular = np.stack([np.eye(n) / 0.5, J])  # W = I / 0.5 - I / 0.5 = 0 for element 0
    x = np.asarray(DenseLU().solve(jnp, DenseLU().factor(jnp, jnp.asarray(singular), jnp.asarray([[0.5], [0.3]])),
                                   jnp.asarray(rhs)))
    assert not np.isfinite(x[0]).all() and np.isfinite(x[1]).all()
