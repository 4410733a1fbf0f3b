"""PseudoTransient: implicit Euler steps whose pseudo-time step grows as the residual falls (SER).

Properties a user relies on: the step grows by the residual's fall (Kelley & Keyes' rule) until the
iteration is Newton's method (quadratic convergence at the end), stiff transients are damped (the
issue's diag(-1, -1e4) system in a few dozen steps), linear invariants of the flow are kept (the
steady state reached from u0 on a closed reaction network), an unstable equilibrium of a
SteadyStateProblem is refused, every backend, batches with per-element steps, jax.jit, the
matrix-free variant, the registry and both adapters.
"""

import numpy as np
import pytest
from helpers import assert_honest, slow_on

import steadysolve as ss
from steadysolve.algorithms.pseudo_transient import PseudoTransient as _PTC

from benchmarks.problems import stiff as stiff_set

RC = ss.ReturnCode


def _np(bk, x):
    return x if isinstance(x, (np.ndarray, int, float)) else np.asarray(bk.to_numpy(x))


def _diag(bk, rates=(1.0, 1e4)):
    D = bk.asarray(np.array(rates))
    return ss.SteadyStateProblem(lambda u, p, t: -p * (u - 1.0) - 0.1 * u * u * u, bk.asarray(np.zeros(len(rates))), D)


@slow_on("jax")
def test_stiff_system_on_every_backend(bk):
    prob = _diag(bk)
    sol = ss.solve(prob, ss.PseudoTransient(), abstol=1e-12, reltol=0.0)
    assert sol.retcode is RC.Success, sol
    assert sol.stats.niter < 40 and sol.stats.nreject == 0
    assert_honest(bk, prob, sol, 1e-12, 0.0)
    # one evaluation per iteration (plus F(u0)); the Jacobian by AD or n finite differences per iteration
    # (NumPy, array_api_strict: each finite-difference JVP is a call of f, counted in nf too)
    fd = sol.stats.njvp if bk.name in ("numpy", "array_api_strict") else 0
    assert sol.stats.nf == 1 + sol.stats.niter + fd and sol.stats.njac == sol.stats.niter
    assert sol.stats.njvp == 2 * sol.stats.niter


def _trace(monkeypatch, prob, alg, **kw):
    seen = []
    step = _PTC.step

    def spy(self, p, state, ctx):
        new = step(self, p, state, ctx)
        seen.append((np.asarray(state.dt, dtype=float).copy(), np.asarray(state.fnorm, dtype=float).copy(),
                     np.asarray(new.dt, dtype=float).copy(), np.asarray(new.fnorm, dtype=float).copy()))
        return new

    monkeypatch.setattr(_PTC, "step", spy)
    return ss.solve(prob, alg, **kw), seen


def test_ser_step_growth_and_newton_tail(monkeypatch):
    """dt_new = dt * ||F_old|| / ||F_new|| (growth 1), so dt * ||F|| is constant along the run; the step
    grows into Newton's method, whose last steps converge quadratically."""
    prob = _diag(_NP)
    sol, seen = _trace(monkeypatch, prob, ss.PseudoTransient(), abstol=1e-11, reltol=0.0)
    assert sol.retcode is RC.Success

    def rule(growth, dt, fn, fn_new):  # SER, the growth per step capped at MAX_RATIO = 1e3, dt at dtmax
        return np.minimum(np.minimum(growth * dt * fn / fn_new, 1e3 * dt), 1e12)

    for dt, fn, dt_new, fn_new in seen:
        np.testing.assert_allclose(dt_new, rule(1.0, dt, fn, fn_new), rtol=1e-12)
    assert sum(dt_new[0] * fn_new[0] == pytest.approx(dt[0] * fn[0]) for dt, fn, dt_new, fn_new in seen) > 10
    dts = np.array([s[0][0] for s in seen])
    assert dts[-1] > 1e6 * dts[0]  # from a transient step to Newton's
    fns = np.array([s[3][0] for s in seen])
    last = fns[-4:]
    assert last[-1] <= 1e-4 * last[-2] ** 1.5 or last[-1] <= 1e-11  # superlinear at the end
    # growth > 1 also grows the step while the residual stagnates: dt_new = growth * dt * ratio
    sol, seen = _trace(monkeypatch, prob, ss.PseudoTransient(growth=1.5), abstol=1e-11, reltol=0.0)
    for dt, fn, dt_new, fn_new in seen:
        np.testing.assert_allclose(dt_new, rule(1.5, dt, fn, fn_new), rtol=1e-12)


class _NP:  # numpy as a minimal "backend" for _diag
    @staticmethod
    def asarray(x):
        return np.asarray(x, dtype=float)


def test_keeps_the_conservation_law_and_reaches_the_flows_steady_state():
    """Robertson's y1 + y2 + y3 = 1 and HIRES's y7 + y8: the exact Jacobian has c^T J = 0, so every step
    keeps c . u; the steady state is the flow's (the root finders' dense Newton loses the sum on Robertson)."""
    for P in (stiff_set.robertson, stiff_set.hires):
        prob = ss.SteadyStateProblem(P.f(np), P.u0.copy(), P.p, jac=P.jac(np))
        sol = ss.solve(prob, ss.PseudoTransient(), abstol=1e-8, reltol=0.0)
        assert sol.retcode is RC.Success, (P.name, sol)
        if P.name == "robertson":
            assert abs(sol.u.sum() - 1.0) < 1e-10 and sol.u[2] > 0.999
        else:
            assert abs(sol.u[6] + sol.u[7] - (P.u0[6] + P.u0[7])) < 1e-12
            np.testing.assert_allclose(sol.u, P.reference(), atol=1e-9)


def test_unstable_equilibrium_is_refused():
    """OREGO has no stable steady state: both equilibria are unstable, the flow is a limit cycle. Long
    PTC steps are Newton's method and would converge to one; a SteadyStateProblem refuses it."""
    P = stiff_set.orego
    prob = ss.SteadyStateProblem(P.f(np), P.u0.copy(), P.p, jac=P.jac(np))
    sol = ss.solve(prob, ss.PseudoTransient(), abstol=1e-8, reltol=0.0)
    assert sol.retcode is not RC.Success
    # the same equations as a root problem: an unstable root is a root
    root = ss.solve(ss.NonlinearProblem(lambda u, p: P.f(np)(u, p, 0.0), np.array([480.0, 1.0, 480.0]), P.p,
                                        jac=P.jac(np)), ss.PseudoTransient(dt0=1e6), abstol=1e-8, reltol=0.0)
    assert root.retcode is RC.Success
    # du/dt = u - u^3 from next to its unstable equilibrium 0, with a first step long enough for implicit
    # Euler to damp the unstable mode (R = 1 / (1 - dt) < 0): Newton-like steps onto u = 0, refused
    bistable = ss.SteadyStateProblem(lambda u, p, t: u - u ** 3, np.array([1e-3]))
    sol = ss.solve(bistable, ss.PseudoTransient(dt0=100.0), abstol=1e-10)
    assert sol.retcode is RC.Diverged and abs(sol.u[0]) < 1e-2 and "unstable equilibrium" in sol.message


@slow_on("jax")
def test_batched_per_element_steps(bk):
    rates = np.array([[1.0, 1e4], [1.0, 10.0], [1e-2, 1.0]])
    D = bk.asarray(rates)
    prob = ss.SteadyStateProblem(lambda u, p, t: -p * (u - 1.0) - 0.1 * u * u * u, bk.asarray(np.zeros((3, 2))), D)
    sol = ss.solve(prob, ss.PseudoTransient(), abstol=1e-12, reltol=0.0, batch_axis=0)
    assert all(rc is RC.Success for rc in sol.retcodes), sol.retcodes
    per = _np(bk, sol.stats.niter_per_element)
    assert len(set(per.tolist())) > 1  # each element its own step sequence
    for b in range(3):
        one = ss.solve(ss.SteadyStateProblem(lambda u, p, t: -p * (u - 1.0) - 0.1 * u * u * u,
                                             bk.asarray(np.zeros(2)), bk.asarray(rates[b])),
                       ss.PseudoTransient(), abstol=1e-12, reltol=0.0)
        assert int(per[b]) == one.stats.niter
        np.testing.assert_allclose(_np(bk, sol.u)[b], _np(bk, one.u), rtol=1e-10)


@pytest.mark.slow
def test_jit_equals_eager():
    import jax
    import jax.numpy as jnp

    D = jnp.asarray([1.0, 1e4])

    def run(u0):
        prob = ss.SteadyStateProblem(lambda u, p, t: -p * (u - 1.0) - 0.1 * u ** 3, u0, D)
        sol = ss.solve(prob, ss.PseudoTransient(), abstol=1e-12, reltol=0.0)
        return sol.u, sol.retcode_array, sol.stats.niter, sol.stats.nf

    eager = run(jnp.zeros(2))
    jitted = jax.jit(run)(jnp.zeros(2))
    np.testing.assert_allclose(np.asarray(jitted[0]), np.asarray(eager[0]), rtol=1e-12)
    assert int(jitted[1]) == 0 and int(jitted[2]) == eager[2] and int(jitted[3]) == eager[3]
    us, codes, *_ = jax.jit(jax.vmap(run))(jnp.stack([jnp.zeros(2), jnp.ones(2) * 3.0]))
    assert np.all(np.asarray(codes) == 0)


@slow_on("jax")
def test_matrix_free_variant(bk):
    """Large systems (or linsolve=GMRES()) take Jacobian-vector products only: the 1-D Brusselator."""
    P = stiff_set.brusselator(60)
    f = P.f(bk.xp)
    prob = ss.SteadyStateProblem(f, bk.asarray(P.u0), bk.asarray(P.p) if isinstance(P.p, np.ndarray) else P.p)
    sol = ss.solve(prob, ss.PseudoTransient(), abstol=1e-8, reltol=0.0)  # n = 120 > 100: matrix-free
    assert sol.retcode is RC.Success, sol
    assert sol.stats.njac == 0 and sol.stats.nkrylov > 0 and sol.stats.njvp == sol.stats.nkrylov
    np.testing.assert_allclose(_np(bk, sol.u), P.reference(), atol=1e-7)
    dense = ss.solve(prob, ss.PseudoTransient(linsolve="dense"), abstol=1e-8, reltol=0.0)
    assert dense.retcode is RC.Success and dense.stats.nkrylov == 0 and dense.stats.njac == dense.stats.niter


def test_registered_options_and_errors():
    assert "pseudo_transient" in ss.available()
    prob = _diag(_NP)
    assert isinstance(ss.solve(prob, "pseudo_transient", abstol=1e-10).alg, ss.PseudoTransient)
    for kw, err, msg in [(dict(linsolve="lu"), TypeError, "linsolve must be None, 'dense', 'sparse' or a GMRES"),
                         (dict(dt0=0.0), ValueError, "dt0 must be > 0"),
                         (dict(growth=0.5), ValueError, "growth must be >= 1"),
                         (dict(forcing=1.5), ValueError, "forcing must be < 1"),
                         (dict(max_size=0), ValueError, "max_size")]:
        with pytest.raises(err, match=msg):
            ss.PseudoTransient(**kw)
    with pytest.raises(ValueError, match="above max_size"):
        ss.solve(ss.NonlinearProblem(lambda u, p: -u, np.ones(20)), ss.PseudoTransient(linsolve="dense", max_size=10))


def test_non_finite_trials_are_rejected_then_the_element_stops():
    """A field that is NaN beyond u > 2: trials there are rejected (dt shrinks tenfold, u stays), and
    the solve stops honestly instead of stepping into NaN."""
    def f(u, p, t):
        with np.errstate(invalid="ignore"):
            return 1.0 + 0.0 * np.sqrt(2.0 - u)

    sol = ss.solve(ss.SteadyStateProblem(f, np.zeros(2)), ss.PseudoTransient(dt0=10.0), abstol=1e-8, maxiters=200)
    assert sol.retcode is not RC.Success and np.all(np.isfinite(sol.u)) and sol.stats.nreject >= 1


def test_both_adapters_resolve_it_by_name_with_gradients_and_budgets():
    import jax
    import jax.numpy as jnp
    import torch

    from steadysolve.adapters.jax import fixed_point as jax_fixed_point
    from steadysolve.adapters.torch import fixed_point as torch_fixed_point

    rng = np.random.default_rng(0)
    W = 0.1 * rng.normal(size=(8, 8))
    x = rng.normal(size=(4, 8))
    xt = torch.tensor(x, requires_grad=True)
    z, _ = torch_fixed_point(lambda z, x: torch.tanh(z @ torch.tensor(W).T + x), torch.zeros_like(xt), xt,
                             solver="pseudo_transient", abstol=1e-10)
    z.sum().backward()
    ref = ss.solve(ss.FixedPointProblem(lambda z, p: np.tanh(z @ W.T + x), np.zeros((4, 8))), ss.NewtonRaphson(),
                   abstol=1e-12, batch_axis=0)
    np.testing.assert_allclose(z.detach().numpy(), ref.u, atol=1e-6)
    gt = xt.grad.numpy()

    def loss(x):
        z, _ = jax_fixed_point(lambda z, x: jnp.tanh(z @ jnp.asarray(W).T + x), jnp.zeros_like(x), x,
                               solver=ss.PseudoTransient(linsolve=ss.GMRES(restart=4)), abstol=1e-10)
        return z.sum()

    gj = jax.jit(jax.grad(loss))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(gj), gt, rtol=1e-5)
    # a DEQ budget counts one evaluation and the dense Jacobian (or one GMRES cycle) per iteration
    assert ss.PseudoTransient().cost(8) == 9
    assert ss.PseudoTransient(linsolve=ss.GMRES(restart=4)).cost(8) == 5
    assert ss.DynamicSS(ss.Rodas5P()).cost(8) == 8 + 1 + 8
    calls = []

    def g(z, x):
        calls.append(1)
        return torch.tanh(z @ torch.tensor(W).T + x)

    zb, _ = torch_fixed_point(g, torch.zeros_like(xt), xt.detach(), solver="pseudo_transient", max_nfe=60, batch_axis=0)
    resid = np.abs(np.tanh(zb.detach().numpy() @ W.T + x) - zb.detach().numpy()).max()
    assert len(calls) <= 60 + 2 and resid < 1e-2  # within the budget (and the attached call), near the layer's tol
