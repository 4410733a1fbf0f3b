"""Newton-Krylov: quadratic convergence, Laplace (both variants), H-equation, line search, counters."""

import numpy as np
import pytest
from helpers import get_backend
from benchmarks.problems.honesty import H_MAX, h_equation_nonlinear, h_reference, laplace, laplace_reference

import steadysolve as ss


def _smooth(bk):
    # F(u) = u^3 + 2u - c, componentwise, with its exact JVP.
    c = bk.asarray(np.linspace(-2.0, 3.0, 8))
    f = lambda u, p: u ** 3 + 2 * u - p  # noqa: E731
    jvp = lambda u, v, p: (3 * u ** 2 + 2) * v  # noqa: E731
    return ss.NonlinearProblem(f, bk.asarray(np.ones(8)), c, jvp=jvp)


@pytest.mark.slow
def test_quadratic_convergence(bk):
    prob = _smooth(bk)
    alg = ss.NewtonKrylov(forcing=1e-12, linsolve=ss.GMRES(restart=8), recycle=0)
    sol = ss.solve(prob, alg, abstol=1e-13, reltol=0.0, store_trace=True)
    assert sol.retcode is ss.ReturnCode.Success
    tr = sol.trace if isinstance(sol.trace, np.ndarray) else bk.to_numpy(sol.trace)
    tr = tr[tr > 1e-11]
    assert len(tr) >= 4
    ratios = tr[1:] / tr[:-1] ** 2
    # quadratic: r_{k+1} <= C r_k^2 with a moderate constant over the last steps
    assert np.all(ratios[-3:] < 5.0), ratios
    assert sol.stats.njvp > 0 and sol.stats.nvjp == 0
    c = np.linspace(-2.0, 3.0, 8)
    u = bk.to_numpy(sol.u)
    np.testing.assert_allclose(u ** 3 + 2 * u - c, 0, atol=1e-12)


@pytest.mark.parametrize("coef", [5.0, -10.0])
def test_laplace_both_variants(coef):
    prob, _ = laplace(np, coef=coef)
    sol = ss.solve(prob, "newton_krylov", abstol=6e-6, reltol=0.0)  # SciPy's default f_tol
    assert sol.retcode is ss.ReturnCode.Success
    np.testing.assert_allclose(sol.u, laplace_reference(coef=coef), atol=2e-5)
    # Work: SciPy's newton_krylov needs 277-316 evaluations here; finite-difference
    # JVPs are evaluations of F too (counted in nf and in njvp).
    assert sol.stats.nf <= 316
    assert sol.stats.nf - sol.stats.njvp < 20 and sol.stats.nlinsolve == sol.stats.nf - sol.stats.njvp - 1


@pytest.mark.parametrize("n", [100, 1000])
def test_h_equation(n):
    prob, kw = h_equation_nonlinear(np, n=n)
    sol = ss.solve(prob, ss.NewtonKrylov(), **kw)
    assert sol.retcode is ss.ReturnCode.Success
    np.testing.assert_allclose(sol.u, h_reference(n), atol=1e-8)
    assert sol.u.max() == pytest.approx(H_MAX, abs=3e-3)
    assert sol.stats.nf <= 20


def test_line_search_rescues_overshoot(bk):
    # Newton on arctan diverges from |u0| > 1.39 (full steps overshoot); Armijo backtracking converges.
    prob = ss.NonlinearProblem(lambda u, p: bk.xp.atan(u), bk.asarray([3.0, -2.0]))
    bad = ss.solve(prob, ss.NewtonKrylov(linesearch=None), abstol=1e-10, reltol=0.0, maxiters=30)
    assert not bad.successful
    sol = ss.solve(prob, ss.NewtonKrylov(), abstol=1e-10, reltol=0.0, maxiters=60)
    assert sol.retcode is ss.ReturnCode.Success
    np.testing.assert_allclose(bk.to_numpy(sol.u), 0.0, atol=1e-10)
    assert sol.stats.nbacktrack > 0


def test_nonfinite_trial_is_rejected():
    # F is NaN for |u| > 5; the first full Newton step from 3 lands at -9.5.
    def f(u, p):
        return np.where(np.abs(u) > 5, np.nan, np.arctan(u))

    prob = ss.NonlinearProblem(f, np.array([3.0]), jvp=lambda u, v, p: v / (1 + u * u))
    sol = ss.solve(prob, ss.NewtonKrylov(), abstol=1e-12, reltol=0.0, maxiters=80)
    assert sol.retcode is ss.ReturnCode.Success
    np.testing.assert_allclose(sol.u, 0.0, atol=1e-12)
    assert sol.stats.nbacktrack > 0


def test_counts_fd_vs_user_jvp():
    prob = _smooth(get_backend("numpy"))
    fd = ss.NonlinearProblem(prob.f, prob.u0, prob.p)
    s_user = ss.solve(prob, ss.NewtonKrylov(), abstol=1e-12, reltol=0.0)
    s_fd = ss.solve(fd, ss.NewtonKrylov(), abstol=1e-12, reltol=0.0)
    s_step = ss.solve(fd, ss.NewtonKrylov(jvp_step=1e-7), abstol=1e-12, reltol=0.0)
    for s in (s_user, s_fd, s_step):
        assert s.successful
        # one F per driver iteration (+ the initial one), and one per finite-difference JVP
        assert s.stats.nf == s.stats.niter + 1 + (0 if s is s_user else s.stats.njvp)
        assert s.stats.njvp == s.stats.nlinear
    # count the true number of F evaluations with a wrapper
    calls = []

    def f(u, p):
        calls.append(1)
        return prob.f(u, p)

    s = ss.solve(ss.NonlinearProblem(f, prob.u0, prob.p), ss.NewtonKrylov(), abstol=1e-12, reltol=0.0)
    assert len(calls) == s.stats.nf


@pytest.mark.parametrize("alg, c", [
    ("newton_krylov", np.linspace(-2.0, 3.0, 6).reshape(3, 2)),
    ("newton", np.array([[1.0, -2.0], [0.5, 3.0]])),
])
@pytest.mark.slow
def test_batched_jit(alg, c):
    import jax
    import jax.numpy as jnp

    c = jnp.asarray(c)

    @jax.jit
    def run(u0):
        s = ss.solve(ss.NonlinearProblem(lambda u, p: u ** 3 + 2 * u - p, u0, c), alg,
                     batch_axis=0, abstol=1e-12, reltol=0.0)
        return s.u, s.retcode_array

    u, codes = run(jnp.zeros(c.shape))
    u = np.asarray(u)
    assert np.all(np.asarray(codes) == 0)
    np.testing.assert_allclose(u ** 3 + 2 * u - np.asarray(c), 0, atol=1e-12)


@pytest.mark.slow
def test_jit_long_rows_match_eager():
    # rows of 5,000 numbers: under jit the inner GMRES (restart 30 + 10 recycled directions) takes its
    # Gram-Schmidt products over the basis blocks in use (blocked_cgs2); the solve equals the eager one
    import jax
    import jax.numpy as jnp

    n = 5000
    c = np.linspace(0.5, 3.0, n)

    def F(u, p, xp):
        zero = u[:1] * 0
        lap = 2 * u - xp.concat([u[1:], zero]) - xp.concat([zero, u[:-1]])
        return 50.0 * lap + p * u + 0.1 * xp.tanh(u) - 1.0

    eager = ss.solve(ss.NonlinearProblem(lambda u, p: F(u, p, np), np.zeros(n), c), "newton_krylov", abstol=1e-9)
    cj = jnp.asarray(c)
    jit = jax.jit(lambda u0: ss.solve(ss.NonlinearProblem(lambda u, p: F(u, p, jnp), u0, cj), "newton_krylov",
                                      abstol=1e-9))(jnp.zeros(n))
    assert eager.retcode is ss.ReturnCode.Success and int(jit.retcode_array) == 0
    # (NumPy's finite-difference JVPs are calls of F, counted in nf too; JAX's are AD products)
    assert (int(jit.stats.nf), int(jit.stats.njvp)) == (eager.stats.nf - eager.stats.njvp, eager.stats.njvp)
    np.testing.assert_allclose(np.asarray(jit.u), eager.u, rtol=0, atol=1e-12)
    assert np.max(np.abs(F(eager.u, c, np))) <= 1e-9


def test_bad_options():
    with pytest.raises(ValueError, match="forcing"):
        ss.NewtonKrylov(forcing="constant")
    with pytest.raises(ValueError, match="< 1"):
        ss.NewtonKrylov(forcing=1.5)
    with pytest.raises(ValueError, match="linesearch"):
        ss.NewtonKrylov(linesearch="wolfe")
    with pytest.raises(TypeError, match="GMRES"):
        ss.NewtonKrylov(linsolve="gmres")
    with pytest.raises(ValueError, match="recycle"):
        ss.NewtonKrylov(recycle=-1)


def test_torch_linearize_reverse_over_reverse_matches_forward_mode():
    # PyTorch's Krylov products by reverse over reverse: exact, as forward mode, and switched back to
    # forward mode for good when an operation of f has no double-backward formula
    torch = pytest.importorskip("torch")
    from steadysolve._backend.derivatives import Products
    from steadysolve._backend.torch_ops import torch_jvp

    g = torch.Generator().manual_seed(0)
    W = torch.randn(6, 6, generator=g, dtype=torch.float64)
    u = torch.randn(3, 6, generator=g, dtype=torch.float64)
    v = torch.randn(3, 6, generator=g, dtype=torch.float64)

    def F(z):
        return torch.tanh(z @ W.T) - 0.5 * z

    exact = torch_jvp(F)(u, v, None)
    prods = Products(torch, F)
    assert torch.allclose(prods.linearize(u, F(u))(v), exact, rtol=1e-12, atol=1e-12)
    assert prods._reverse

    class Once(torch.autograd.Function):  # tanh whose backward cannot be differentiated again
        @staticmethod
        def forward(x):
            return torch.tanh(x)

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, gy):
            (y,) = ctx.saved_tensors
            return gy * (1 - y * y)

        @staticmethod
        def jvp(ctx, gx):
            return gx * (1 - torch.tanh(ctx.x) ** 2)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.x = inputs[0]
            ctx.save_for_backward(output)

    def F2(z):
        return Once.apply(z @ W.T) - 0.5 * z

    prods = Products(torch, F2)
    jv = prods.linearize(u, F2(u))(v)
    assert torch.allclose(jv, exact, rtol=1e-12, atol=1e-12)
    assert not prods._reverse  # forward mode from then on


def test_torch_newton_krylov_counts_unchanged_by_reverse_linearize():
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(1)
    W = 0.5 * torch.randn(20, 20, generator=g, dtype=torch.float64) / 20 ** 0.5
    prob = ss.FixedPointProblem(lambda z, p: torch.tanh(z @ W.T + p), torch.zeros(4, 20, dtype=torch.float64),
                                torch.linspace(-1, 1, 20, dtype=torch.float64))
    sol = ss.solve(prob, "newton_krylov", abstol=1e-12, batch_axis=0)
    assert sol.retcode is ss.ReturnCode.Success
    z = sol.u
    assert float((torch.tanh(z @ W.T + prob.p) - z).abs().max()) < 1e-11
    assert int(sol.stats.njvp) > 0 and int(sol.stats.nvjp) == 0
