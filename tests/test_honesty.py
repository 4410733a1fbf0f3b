"""`Success` means a root, a cap is a cap, a tolerance given binds: the regression tests of the
honesty issue beyond the honesty matrix (tests/test_all_algorithms.py holds the no-root classes
for every algorithm on every backend)."""

import numpy as np
import pytest
from helpers import get_backend

import steadysolve as ss

RC = ss.ReturnCode


# -- what Success means ------------------------------------------------------------------------

def test_root_whose_residual_cannot_reach_abstol_succeeds_relative_to_the_size_of_its_terms():
    # F = atan(u - 1e8): the root is 1e8, where the residual is accurate to ~eps * 1e8 only; the size
    # of F's terms there (norm(J u) = 1e8) makes the relative test meaningful, the start's scale would not
    f = lambda u, p: np.arctan(u - 1e8)
    for alg in ("newton", "newton_krylov", "trust_region"):
        sol = ss.solve(ss.NonlinearProblem(f, np.full(2, 1e8 - 1.0)), alg)
        assert sol.retcode is RC.Success, (alg, sol)
        np.testing.assert_allclose(sol.u, 1e8, rtol=1e-12)


def test_far_root_with_a_small_slope_succeeds():
    # the residual dropped from 1 to rounding level at u = 1e10: a measured root, not a runaway
    prob = ss.NonlinearProblem(lambda u, p: 1e-10 * u - 1.0, np.zeros(1), jac=lambda u, p: np.full((1, 1), 1e-10))
    sol = ss.solve(prob, "newton")
    assert sol.retcode is RC.Success and abs(sol.u[0] - 1e10) < 1e-2


@pytest.mark.parametrize("alg", ["anderson", "broyden", "fixed_point", "newton", "auto"])
def test_map_whose_residual_rounds_to_zero_far_out_is_not_a_root(alg):
    # g(z) = z + 1 in float32: g(z) - z is exactly 0 once |z| > 1.7e7, with no fixed point anywhere
    prob = ss.FixedPointProblem(lambda z, p: z + np.float32(1.0), np.zeros(3, dtype=np.float32))
    sol = ss.solve(prob, alg, maxiters=500)
    assert sol.retcode is not RC.Success and np.all(np.isfinite(sol.u)), sol
    assert np.max(np.abs(sol.resid)) > 0.5  # the reported best iterate has a measured residual


@pytest.mark.slow
def test_jitted_broyden_agrees_with_eager_on_a_map_without_fixed_point():
    import jax
    import jax.numpy as jnp

    def run(z0):
        return ss.solve(ss.FixedPointProblem(lambda z, p: z + 1.0, z0), "broyden", maxiters=500)

    eager = run(jnp.zeros(3, dtype=jnp.float32))
    jitted = jax.jit(run)(jnp.zeros(3, dtype=jnp.float32))
    assert eager.retcode is not RC.Success and jitted.retcode is not RC.Success
    assert np.all(np.isfinite(np.asarray(jitted.u)))


@pytest.mark.parametrize("backend", ["numpy", "torch", pytest.param("jax", marks=pytest.mark.slow)])
def test_batch_with_a_floor_element_beside_a_root(backend):
    bk = get_backend(backend)
    xp = bk.xp
    c = bk.asarray(np.array([-1.0, 1e-4, -2.0])[:, None])  # exp(u) = 1, no root, exp(u) = 2
    prob = ss.NonlinearProblem(lambda u, p: xp.exp(u) + p, bk.asarray(np.full((3, 2), 0.5)), c)
    sol = ss.solve(prob, "newton", batch_axis=0, reltol=1e-2)
    assert [rc is RC.Success for rc in sol.retcodes] == [True, False, True], sol.retcodes
    u = bk.to_numpy(sol.u)
    np.testing.assert_allclose(u[[0, 2]], [[0.0, 0.0], [np.log(2.0)] * 2], atol=1e-2)
    assert np.all(np.isfinite(u))


# -- every cap is a cap --------------------------------------------------------------------------

def _hard():
    # no root (a minimum of |F| at u = 0): every attempt of the chain fails, so all of them run
    return ss.NonlinearProblem(lambda u, p: u ** 2 + 1.0, np.array([3.0, -2.0]))


@pytest.mark.parametrize("maxiters", [1, 10, 60])
def test_auto_shares_one_budget_of_iterations(maxiters):
    sol = ss.solve(_hard(), maxiters=maxiters)
    assert sol.retcode is not RC.Success
    per = sol.stats.attempts
    assert sum(s.niter for s in per.values()) == sol.stats.niter <= maxiters, per


@pytest.mark.slow
def test_auto_budget_under_jit():
    import jax
    import jax.numpy as jnp

    run = jax.jit(lambda u0: ss.solve(ss.NonlinearProblem(lambda u, p: u ** 2 + 1.0, u0), maxiters=10))
    sol = run(jnp.array([3.0, -2.0]))
    assert int(sol.stats.niter) <= 10 and not sol.successful


def test_torch_deq_auto_is_bounded_by_maxiters_and_by_max_nfe():
    torch = pytest.importorskip("torch")
    from steadysolve.adapters.torch import DEQ

    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 16)
    with torch.no_grad():
        lin.weight.mul_(4.0)  # not contractive: Anderson fails and the chain goes on
    cell = lambda z, x: torch.tanh(lin(z) + x)
    deq = DEQ(cell, solver="auto", maxiters=30, on_failure="ignore")
    deq(torch.randn(8, 16))
    assert deq.forward_stats.niter <= 30
    deq = DEQ(cell, solver="auto", max_nfe=40, on_failure="ignore")
    deq(torch.randn(8, 16))
    st = deq.forward_stats
    assert st.nf + st.njvp + st.nvjp <= 40, st


# -- a tolerance given binds --------------------------------------------------------------------

def test_abstol_alone_binds_in_solve():
    f = lambda u, p: u - 0.5 * np.cos(u)
    loose = ss.solve(ss.NonlinearProblem(f, np.zeros(3)), "anderson", reltol=1e-4)
    tight = ss.solve(ss.NonlinearProblem(f, np.zeros(3)), "anderson", abstol=1e-15)
    assert loose.successful and tight.successful
    assert np.max(np.abs(tight.resid)) <= 1e-15 < np.max(np.abs(loose.resid))


def test_abstol_alone_binds_in_the_torch_deq():
    torch = pytest.importorskip("torch")
    from steadysolve.adapters.torch import DEQ

    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 6).double()
    cell = lambda z, x: torch.tanh(0.5 * lin(z) + x)
    x = torch.randn(4, 6, dtype=torch.float64)
    default = DEQ(cell)
    default(x)
    tight = DEQ(cell, abstol=1e-10)
    tight(x)
    assert tight.forward_stats.successful and tight.forward_stats.max_resid <= 1e-10
    assert default.forward_stats.max_resid > 1e-10  # the default relative test stops far earlier


@pytest.mark.slow
def test_abstol_alone_binds_in_the_jax_adapter():
    import jax.numpy as jnp
    from steadysolve.adapters.jax import root

    z, st = root(lambda u, c: u - 0.5 * jnp.cos(u) + 0 * c, jnp.zeros(3), jnp.ones(3), solver="newton_krylov",
                 abstol=1e-14)
    assert st.successful and float(jnp.max(st.resid_norm)) <= 1e-14


def test_abstol_alone_binds_in_gmres_and_implicit():
    from steadysolve.adapters import Implicit
    from steadysolve.adapters._options import layer_options

    assert ss.GMRES(abstol=1e-12).reltol == 0.0 and ss.GMRES().reltol == 1e-5
    A = np.array([[4.0, 1.0], [1.0, 3.0]])
    sol = ss.linear_solve(lambda v: A @ v, np.array([1e3, 2e3]), ss.GMRES(abstol=1e-9))
    assert np.linalg.norm(A @ sol.x - [1e3, 2e3]) <= 1e-9
    opts = layer_options("t", solver="anderson", abstol=None, reltol=None, maxiters=None, norm="l2",
                         batch_axis=0, backward=Implicit(abstol=1e-12), defaults=(1e-8, 1e-3))
    assert (opts.backward.abstol, opts.backward.reltol) == (1e-12, 0.0)


def test_abstol_alone_binds_in_integrate():
    f = lambda u, p, t: -u
    exact = np.exp(-5.0)
    both = ss.integrate(f, np.ones(1) * 1e3, (0.0, 5.0), abstol=1e-8, reltol=1e-3, saveat=[5.0])
    alone = ss.integrate(f, np.ones(1) * 1e3, (0.0, 5.0), abstol=1e-8, saveat=[5.0])
    assert alone.stats.niter > both.stats.niter  # the default reltol no longer loosens abstol
    assert abs(alone.us[-1, 0] - 1e3 * exact) < 1e-6


# -- the no-root classes in both adapters --------------------------------------------------------

@pytest.mark.parametrize("solver", ["anderson", "broyden", "fixed_point", "dynamic_ss", "newton_krylov", "auto"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
def test_torch_deq_without_a_fixed_point_never_succeeds(solver, dtype):
    torch = pytest.importorskip("torch")
    from steadysolve.adapters.torch import DEQ

    # g(z) = z - exp(z) - 0.5: g(z) - z -> -0.5 as z -> -inf, and g(z) = z + 1: no fixed point at all.
    # The DEQ's relative test is against norm(z) capped at 100 x its start's scale (norm(g(z0)) = 1.5
    # sqrt(3) here): a floor above reltol times that cap is never within tolerance, however far z runs.
    dt = getattr(torch, dtype)
    for cell in (lambda z, x: z - torch.exp(z) - 0.5 + 0 * x, lambda z, x: z + 1.0 + 0 * x):
        deq = DEQ(cell, solver=solver, on_failure="ignore")
        z = deq(torch.zeros(4, 3, dtype=dt))
        assert not deq.forward_stats.successful, deq.forward_stats
        assert torch.isfinite(z.float()).all()


@pytest.mark.parametrize("solver", ["anderson", "broyden"] + [pytest.param(a, marks=pytest.mark.slow)
                                                           for a in ("newton_krylov", "auto")])
@pytest.mark.slow
def test_jax_adapter_floor_never_succeeds_under_jit(solver):
    import jax
    import jax.numpy as jnp
    from steadysolve.adapters.jax import fixed_point, root

    run = jax.jit(lambda c: root(lambda u, c: jnp.exp(u) + c, jnp.zeros(3), c, solver=solver, reltol=1e-2,
                                  on_failure="ignore"))
    u, st = run(jnp.full(3, 1e-4))
    assert not st.successful and np.all(np.isfinite(np.asarray(u)))
    run = jax.jit(lambda c: fixed_point(lambda z, c: z - jnp.exp(z) - c, jnp.zeros(3), c, solver=solver,
                                         on_failure="ignore"))
    z, st = run(jnp.full(3, 1e-4))
    assert not st.successful and np.all(np.isfinite(np.asarray(z)))


def test_ctrl_c_stops_an_eager_solve():
    # documented in docs/concepts.md: an eager solve raises KeyboardInterrupt at Ctrl-C (a jitted
    # lax.while_loop cannot be interrupted; maxiters bounds it)
    import _thread
    import signal
    import threading
    import time

    def slow(u, p):
        time.sleep(0.01)
        return (1.0 - 1e-9) * u + 1e-9  # converges to 1 at a rate of 1e-9 per iteration: never within the cap

    # Python's own SIGINT handler, as in an interactive session (an earlier test or library may have
    # left SIG_IGN / SIG_DFL, under which interrupt_main does nothing); maxiters bounds the test anyway
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            ss.solve(ss.FixedPointProblem(slow, np.zeros(2)), "fixed_point", maxiters=2000, abstol=1e-12)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert time.perf_counter() - t0 < 5.0
