"""Right preconditioning of GMRES and NewtonKrylov: the protocol, the schedule and the built-ins
(steadysolve/linear/precond.py), on every backend."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

import steadysolve as ss
from benchmarks.problems import bruss
from steadysolve.linear.precond import AMG, ILU, BlockJacobi, Jacobi, Preconditioner

from helpers import get_backend, slow_on

N = 12
_RNG = np.random.default_rng(3)
_A = _RNG.standard_normal((N, N)) + 4.0 * np.eye(N)
_AINV = np.linalg.inv(_A)
_DIAG = np.linspace(1.0, 5.0, N)  # a diagonal that differs per unknown: Jacobi is the exact inverse


def _tridiag_rc(n):
    r = np.concatenate([np.arange(n), np.arange(1, n), np.arange(n - 1)])
    c = np.concatenate([np.arange(n), np.arange(n - 1), np.arange(1, n)])
    return r, c


def _diag_problem(bk, batch=None, diag=_DIAG):
    """F(u) = d * u + u^3 / 10 - 1 (per unknown), with its (diagonal) pattern; Jacobi is exact."""
    xp = bk.xp
    d = bk.asarray(diag)

    def f(u, p):
        return d * u + 0.1 * u ** 3 - 1.0

    shape = (N,) if batch is None else (batch, N)
    u0 = bk.asarray(np.zeros(shape))
    assert xp is not None
    return ss.NonlinearProblem(f, u0, sparsity=(np.arange(N), np.arange(N)))


def _tridiag_problem(bk, batch=None):
    """A discrete -u'' + u^3/10 = 1 (tridiagonal Jacobian: an ILU without fill is its LU)."""
    xp = bk.xp

    def f(u, p):
        left = xp.concat([xp.zeros_like(u[..., :1]), u[..., :-1]], axis=-1)
        right = xp.concat([u[..., 1:], xp.zeros_like(u[..., :1])], axis=-1)
        return 3.0 * u - left - right + 0.1 * u ** 3 - 1.0

    shape = (N,) if batch is None else (batch, N)
    return ss.NonlinearProblem(f, bk.asarray(np.zeros(shape)), sparsity=_tridiag_rc(N))


# --- GMRES(precond=) ------------------------------------------------------------------------------


@pytest.mark.slow
def test_gmres_exact_inverse_converges_in_one_step(bk):
    A, Ai = bk.asarray(_A), bk.asarray(_AINV)
    b = np.arange(1.0, N + 1.0)
    sol = ss.linear_solve(lambda v: A @ v, bk.asarray(b), ss.GMRES(reltol=1e-12, precond=lambda v: Ai @ v))
    assert sol.retcode == ss.ReturnCode.Success
    assert sol.stats.nmatvec == 1
    np.testing.assert_allclose(bk.to_numpy(sol.x), np.linalg.solve(_A, b), rtol=1e-10)


@pytest.mark.slow
def test_gmres_batched_exact_inverse_and_restarts(bk):
    xp = bk.xp
    A, Ai = bk.asarray(_A), bk.asarray(_AINV)
    b = np.stack([np.arange(1.0, N + 1.0), np.ones(N), -np.arange(N, dtype=float)])
    sol = ss.linear_solve(lambda v: v @ xp.permute_dims(A, (1, 0)), bk.asarray(b),
                          ss.GMRES(reltol=1e-12, precond=lambda v: v @ xp.permute_dims(Ai, (1, 0))), batch_axis=0)
    assert sol.stats.nmatvec == 1
    np.testing.assert_allclose(bk.to_numpy(sol.x), np.linalg.solve(_A, b.T).T, rtol=1e-10)
    # an approximate M (a scaled inverse + noise) with restarts: the answer is A^-1 b to the tolerance
    P = bk.asarray(_AINV + 0.02 * np.random.default_rng(5).standard_normal((N, N)))
    sol = ss.linear_solve(lambda v: v @ xp.permute_dims(A, (1, 0)), bk.asarray(b),
                          ss.GMRES(restart=4, reltol=1e-11, precond=lambda v: v @ xp.permute_dims(P, (1, 0))),
                          batch_axis=0)
    assert sol.successful
    np.testing.assert_allclose(bk.to_numpy(sol.x), np.linalg.solve(_A, b.T).T, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("bad", ["nan", "singular"])
@pytest.mark.slow
def test_gmres_bad_preconditioner_fails_honestly(bk, bad):
    xp = bk.xp
    A = bk.asarray(_A)
    mask = bk.asarray(np.r_[np.ones(N - 2), np.zeros(2)])
    M = (lambda v: v * float("nan")) if bad == "nan" else (lambda v: v * mask)  # rank N - 2
    b = bk.asarray(np.ones(N))
    sol = ss.linear_solve(lambda v: A @ v, b, ss.GMRES(reltol=1e-12, precond=M))
    assert sol.retcode == ss.ReturnCode.LinearSolveFailed
    x = bk.to_numpy(sol.x)
    assert np.all(np.isfinite(x))
    assert sol.stats.extra["resid_norm"] > 1e-6  # no claim of a solution
    del xp


@pytest.mark.slow
def test_gmres_precond_under_jit():
    import jax
    import jax.numpy as jnp

    A, Ai = jnp.asarray(_A), jnp.asarray(_AINV)
    b = jnp.asarray(np.ones((3, N)))

    @jax.jit
    def run(b):
        s = ss.linear_solve(lambda v: v @ A.T, b, ss.GMRES(reltol=1e-12, precond=lambda v: v @ Ai.T), batch_axis=0)
        return s.x, s.stats.nmatvec, s.retcode_array

    x, nmv, codes = run(b)
    assert int(nmv) == 1 and np.all(np.asarray(codes) == 0)
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(_A, np.ones((3, N)).T).T, rtol=1e-10)


def test_gmres_precond_options_are_checked():
    with pytest.raises(TypeError, match="precond must be a callable"):
        ss.GMRES(precond=3)
    with pytest.raises(TypeError, match="NewtonKrylov"):
        ss.GMRES(precond=ILU())
    with pytest.raises(ValueError, match=r"NewtonKrylov\(precond=...\)"):
        ss.NewtonKrylov(linsolve=ss.GMRES(precond=lambda v: v))
    with pytest.raises(TypeError, match="precond must be"):
        ss.NewtonKrylov(precond="ilu")
    with pytest.raises(ValueError, match="refresh"):
        ILU(refresh=0)
    with pytest.raises(ValueError, match="refresh"):
        Jacobi(refresh="sometimes")
    with pytest.raises(ValueError, match="cycle"):
        AMG(cycle="X")
    with pytest.raises(ValueError, match="refresh must be a positive int, 'krylov' or 'growth'"):
        AMG(refresh="never")
    with pytest.raises(ValueError, match="sweep must be 'single' or 'symmetric'"):
        AMG(sweep="forward")


# --- NewtonKrylov(precond=) -----------------------------------------------------------------------


def test_newton_krylov_fixed_exact_inverse(bk):
    """A linear residual with M = A^-1: every inner solve is one Krylov step."""
    xp = bk.xp
    A, Ai = bk.asarray(_A), bk.asarray(_AINV)
    b = np.arange(1.0, N + 1.0)
    bb = bk.asarray(b)
    prob = ss.NonlinearProblem(lambda u, p: A @ u - bb, bk.asarray(np.zeros(N)))
    alg = ss.NewtonKrylov(precond=lambda v: v @ xp.permute_dims(Ai, (1, 0)), recycle=0)
    sol = ss.solve(prob, alg, abstol=1e-10)
    assert sol.retcode == ss.ReturnCode.Success
    assert sol.stats["nlinear"] == sol.stats["nlinsolve"]
    np.testing.assert_allclose(bk.to_numpy(sol.u), np.linalg.solve(_A, b), rtol=1e-8)


@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.slow
def test_jacobi_is_exact_on_a_diagonal_jacobian(bk, batch):
    """Per-element Jacobi on a diagonal Jacobian: one Krylov step per Newton direction, every element
    (the diagonals differ between elements in the batch)."""
    diag = _DIAG if batch is None else np.stack([_DIAG * (k + 1) for k in range(batch)])
    prob = _diag_problem(bk, batch, diag)
    sol = ss.solve(prob, ss.NewtonKrylov(precond=Jacobi(), recycle=0), abstol=1e-10,
                   batch_axis=None if batch is None else 0)
    assert sol.successful
    assert sol.stats["nlinear"] == sol.stats["nlinsolve"]
    u = bk.to_numpy(sol.u)
    np.testing.assert_allclose(diag * u + 0.1 * u ** 3, 1.0, atol=1e-9)


@pytest.mark.slow
def test_block_jacobi_is_exact_on_a_block_diagonal_jacobian(bk):
    xp = bk.xp
    Bk = np.kron(np.eye(N // 2), np.array([[3.0, 1.0], [-1.0, 2.0]]))
    Bx = bk.asarray(Bk)
    prob = ss.NonlinearProblem(lambda u, p: Bx @ u + 0.1 * u ** 3 - 1.0, bk.asarray(np.zeros(N)),
                               sparsity=np.nonzero(Bk))
    sol = ss.solve(prob, ss.NewtonKrylov(precond=BlockJacobi(2), recycle=0), abstol=1e-10)
    assert sol.retcode == ss.ReturnCode.Success
    assert sol.stats["nlinear"] == sol.stats["nlinsolve"]
    u = bk.to_numpy(sol.u)
    np.testing.assert_allclose(Bk @ u + 0.1 * u ** 3, 1.0, atol=1e-9)
    with pytest.raises(ValueError, match="multiple of block_size"):
        ss.solve(prob, ss.NewtonKrylov(precond=BlockJacobi(5)))
    del xp


def test_singular_preconditioner_stops_with_linear_solve_failed(bk):
    """A zero on the Jacobian's diagonal makes Jacobi NaN: LinearSolveFailed at u0, never a step."""
    diag = _DIAG.copy()
    diag[4] = 0.0  # J = diag at u = 0
    prob = _diag_problem(bk, None, diag)
    sol = ss.solve(prob, ss.NewtonKrylov(precond=Jacobi(), recycle=0), abstol=1e-10)
    assert sol.retcode == ss.ReturnCode.LinearSolveFailed
    np.testing.assert_array_equal(bk.to_numpy(sol.u), 0.0)


def test_preconditioner_without_a_sparse_jacobian_is_a_clear_error(bk):
    prob = ss.NonlinearProblem(lambda u, p: u - 1.0, bk.asarray(np.zeros(N)))
    with pytest.raises(ValueError, match="sparsity="):
        ss.solve(prob, ss.NewtonKrylov(precond=Jacobi(), recycle=0))


@dataclass(frozen=True)
class Counting(Preconditioner):
    """Jacobi through the protocol, recording where it was set up."""

    refresh: object = 1
    at: list = field(default_factory=list, compare=False, hash=False)

    def setup(self, jac):
        self.at.append(1)
        return Jacobi().setup(jac)

    def apply(self, data, v):
        return data * v


@pytest.mark.parametrize("refresh", [1, 3, "krylov", "growth"])
@pytest.mark.slow
def test_refresh_schedule(bk, refresh):
    pc = Counting(refresh=refresh)
    prob = _tridiag_problem(bk)
    sol = ss.solve(prob, ss.NewtonKrylov(precond=pc, recycle=0), abstol=1e-12)
    assert sol.retcode == ss.ReturnCode.Success
    nd = sol.stats["nlinsolve"]
    assert sol.stats["nprecond"] == len(pc.at)
    if refresh == 1:
        assert len(pc.at) == nd  # at the start, then before every later direction
    elif refresh == 3:
        assert len(pc.at) == -(-nd // 3)
    else:  # only when an inner solve took more than twice the Krylov steps of the first one after a setup
        # ("krylov" also after a truncated inner solve)
        every = Counting(refresh=1)
        ss.solve(prob, ss.NewtonKrylov(precond=every, recycle=0), abstol=1e-12)
        assert 1 <= len(pc.at) < len(every.at)


def test_growth_refresh_ignores_a_truncated_solve():
    """``"growth"`` (AMG's default) sets up again only when the Krylov steps more than doubled since the
    first solve after the last setup; ``"krylov"`` also after an inner solve that stopped short."""
    from steadysolve.linear.precond import due

    assert AMG().refresh == "growth"
    for refresh, expect in (("growth", (False, True, False)), ("krylov", (True, True, False))):
        pc = AMG(refresh=refresh)
        got = (bool(due(pc, 1, 10, 10, True)),  # truncated, as many steps as the first solve
               bool(due(pc, 1, 10, 21, False)),  # more than twice the steps
               bool(due(pc, 0, 10, 30, True)))  # just set up
        assert got == expect, refresh


@slow_on("jax")
def test_ilu_on_a_tridiagonal_jacobian_is_exact(bk):
    """ILU (host SciPy; any eager library) of a tridiagonal J has no fill: one Krylov step per direction."""
    if bk.name == "jax":  # eager JAX arrays factor on the host as well
        pass
    prob = _tridiag_problem(bk, batch=2)
    sol = ss.solve(prob, ss.NewtonKrylov(precond=ILU(refresh=1), recycle=0), abstol=1e-11, batch_axis=0)
    assert sol.successful
    assert sol.stats["nlinear"] == sol.stats["nlinsolve"]


def test_amg_preconditioned_newton_krylov():
    pytest.importorskip("pyamg")

    F, u0, p = bruss.problem(16)
    plain = ss.solve(ss.NonlinearProblem(F, u0, p), ss.NewtonKrylov(), abstol=1e-8)
    prob = ss.NonlinearProblem(F, u0, p, sparsity=bruss.sparsity(16))
    for pc in (AMG(), AMG(sweep="symmetric"), ILU()):
        sol = ss.solve(prob, ss.NewtonKrylov(precond=pc), abstol=1e-8)
        assert sol.retcode == ss.ReturnCode.Success
        assert np.abs(F(sol.u, p)).max() <= 1e-8
        assert sol.stats["nlinear"] < plain.stats["nlinear"] / 2


def test_host_preconditioner_under_jit_is_refused():
    import jax
    import jax.numpy as jnp

    prob = ss.NonlinearProblem(lambda u, p: u + 0.1 * u ** 3 - 1.0, jnp.zeros(N), sparsity=(np.arange(N), np.arange(N)))
    with pytest.raises(TypeError, match="jax.jit"):
        jax.jit(lambda u0: ss.solve(prob.remake(u0=u0) if hasattr(prob, "remake") else prob,
                                    ss.NewtonKrylov(precond=ILU(), recycle=0)).u)(jnp.zeros(N))


@pytest.mark.slow
def test_jacobi_under_jit_matches_eager():
    import jax
    import jax.numpy as jnp

    from helpers import get_backend

    bk = get_backend("jax")
    prob = _diag_problem(bk, 2, np.stack([_DIAG, 2 * _DIAG]))
    alg = ss.NewtonKrylov(precond=Jacobi(), recycle=0)
    eager = ss.solve(prob, alg, abstol=1e-10, batch_axis=0)
    jitted = jax.jit(lambda: ss.solve(prob, alg, abstol=1e-10, batch_axis=0))()
    np.testing.assert_allclose(np.asarray(jitted.u), np.asarray(eager.u), rtol=1e-12)
    assert int(jitted.stats["nprecond"]) == int(eager.stats["nprecond"])
    assert int(jitted.stats["nlinear"]) == int(jitted.stats["nlinsolve"])
    del jnp


# --- the Krylov budget grows when truncated inner solves make Newton crawl ------------------------


def test_krylov_budget_grows_when_newton_crawls():
    """Brusselator N = 16 with GMRES(8): with a fixed budget every inner solve is truncated and Newton
    stalls after hundreds of iterations; growing the restart length (up to 4x) solves it."""
    F, u0, p = bruss.problem(16)
    prob = ss.NonlinearProblem(F, u0, p)
    kw = dict(linsolve=ss.GMRES(restart=8), recycle=0)
    fixed = ss.solve(prob, ss.NewtonKrylov(krylov_growth=1, **kw), abstol=1e-8, maxiters=200)
    grown = ss.solve(prob, ss.NewtonKrylov(**kw), abstol=1e-8)
    assert not fixed.successful
    assert grown.successful and grown.stats["niter"] < 100
    assert np.abs(F(grown.u, p)).max() <= 1e-8
    # an explicit inner cap is the user's: no growth
    capped = ss.solve(prob, ss.NewtonKrylov(linsolve=ss.GMRES(restart=8, maxiters=8), recycle=0), abstol=1e-8,
                      maxiters=200)
    assert not capped.successful
    with pytest.raises(ValueError, match="krylov_growth"):
        ss.NewtonKrylov(krylov_growth=0)


def test_krylov_budget_grows_in_a_batch():
    """The generic (batched) engine grows the budget as the one-system engine does."""
    F, u0, p = bruss.problem(16)
    prob = ss.NonlinearProblem(F, np.stack([u0, 1.01 * u0]), p)
    kw = dict(linsolve=ss.GMRES(restart=8), recycle=0)
    fixed = ss.solve(prob, ss.NewtonKrylov(krylov_growth=1, **kw), abstol=1e-8, batch_axis=0, maxiters=100)
    grown = ss.solve(prob, ss.NewtonKrylov(**kw), abstol=1e-8, batch_axis=0, maxiters=100)
    assert not fixed.successful
    assert grown.successful
    assert np.abs(F(grown.u, p)).max() <= 1e-8


def _bruss_batch(bk, N=8):
    """Two Brusselator states (the start and a perturbed one) on ``bk``: the generic (batched) engine."""
    F, u0, _ = bruss.problem(N)
    like = bk.asarray(np.zeros(1))
    return F, ss.NonlinearProblem(F, bk.asarray(np.stack([u0, 1.01 * u0])), bruss.params(N, like=like))


_GROW = dict(linsolve=ss.GMRES(restart=4), recycle=0)


@pytest.mark.slow
def test_krylov_budget_grows_on_every_backend(bk):
    """Brusselator N = 8 with GMRES(4): the budget grows (inner solves of more than 4 Krylov steps) and the
    batch converges. (The counts differ between backends by rounding alone: this Newton-Krylov run is
    sensitive to the last bits of the reductions.)"""
    F, prob = _bruss_batch(bk)
    sol = ss.solve(prob, ss.NewtonKrylov(**_GROW), abstol=1e-8, batch_axis=0, maxiters=100)
    assert sol.successful
    assert sol.stats["nlinear"] > 4 * sol.stats["nlinsolve"]  # some inner solve ran past the configured cycle
    assert np.abs(F(bk.to_numpy(sol.u), bruss.params(8))).max() <= 1e-8


@pytest.mark.slow
def test_krylov_budget_grows_under_jit():
    """Under ``jax.jit`` the budget grows as in the eager solve (GMRES's buffers hold the largest cycle, the
    active length is traced): the same Newton steps, Krylov steps and iterates; without growth the same
    problem does not converge in 100 iterations."""
    import jax

    F, prob = _bruss_batch(get_backend("jax"))
    kw = dict(abstol=1e-8, batch_axis=0, maxiters=100)
    eager = ss.solve(prob, ss.NewtonKrylov(**_GROW), **kw)
    jitted = jax.jit(lambda: ss.solve(prob, ss.NewtonKrylov(**_GROW), **kw))()
    assert eager.successful and bool(jitted.successful)
    for key in ("niter", "nlinear", "nlinsolve", "njvp"):
        assert int(jitted.stats[key]) == int(eager.stats[key]), key
    assert int(jitted.stats["nlinear"]) > 4 * int(jitted.stats["nlinsolve"])
    np.testing.assert_allclose(np.asarray(jitted.u), np.asarray(eager.u), rtol=1e-9, atol=1e-12)
    fixed = ss.solve(prob, ss.NewtonKrylov(krylov_growth=1, **_GROW), **kw)
    assert not fixed.successful


# --- the adjoint of a differentiable root: Implicit(solver=GMRES(precond=M)) -------------------------


@pytest.mark.slow
def test_implicit_adjoint_with_a_preconditioned_gmres():
    """The root adjoint solves ``J^T w = g``; ``M = (J^T)^-1`` makes it one Krylov step, and the
    gradient is the analytic one (d/da of A^-1 a is A^-T applied to the cotangent)."""
    import jax
    import jax.numpy as jnp

    from steadysolve.adapters.backward import Implicit
    from steadysolve.adapters.jax import root

    A, AinvT = jnp.asarray(_A), jnp.asarray(_AINV.T)
    counts = []

    def M(v):
        counts.append(1)
        return AinvT @ v

    def loss(a, backward):
        u, _ = root(lambda u, a: A @ u - a, jnp.zeros(N), a, abstol=1e-12, backward=backward)
        return jnp.sum(u * jnp.arange(N))

    a = jnp.asarray(np.linspace(0.5, 1.5, N))
    g = jax.grad(loss)(a, Implicit(solver=ss.GMRES(precond=M), reltol=1e-12))
    np.testing.assert_allclose(np.asarray(g), _AINV.T @ np.arange(N), rtol=1e-9)
    assert counts  # the adjoint applied M
    plain = jax.grad(loss)(a, Implicit(reltol=1e-12))
    np.testing.assert_allclose(np.asarray(g), np.asarray(plain), rtol=1e-9)
