"""Sparse least squares: ``NonlinearLeastSquaresProblem(..., sparsity=)`` (an m x n pattern) and a sparse
``jac=`` (an m x n scipy.sparse matrix), solved by LevenbergMarquardt (normal equations, LSMR), GaussNewton
and TrustRegion on the sparse Jacobian: the dense solve's answer, SciPy's ``least_squares(trf)`` answer,
colouring costs, return codes and the errors."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import least_squares

import steadysolve as ss
from helpers import get_backend


def _smoothing(n, alpha=0.5):
    """A regularised 1-D fit: ``u + 0.1 u^3 ~ y`` and ``alpha (u_{j+1} - u_j) ~ 0``, plus ``alpha (u_0 - y_0) ~ 0``:
    ``m = 2n`` residuals, a nonzero residual at the minimum. Returns ``(f, jac, pattern, y)`` in NumPy."""
    t = np.linspace(0.0, 1.0, n)
    y = np.sin(2 * np.pi * t) + 0.1 * np.cos(17 * t)
    D = sp.diags([-np.ones(n - 1), np.ones(n - 1)], [0, 1], shape=(n - 1, n), format="csr")
    e0 = sp.csr_matrix(([1.0], ([0], [0])), shape=(1, n))

    def f(u, p):
        return np.concatenate([u + 0.1 * u ** 3 - y, alpha * (D @ u), alpha * (u[:1] - y[:1])])

    def jac(u, p):
        return sp.vstack([sp.diags(1.0 + 0.3 * u ** 2), alpha * D, alpha * e0]).tocsr()

    pattern = sp.vstack([sp.identity(n), D, e0]).tocsr() != 0
    return f, jac, pattern, y


ALGS = [ss.LevenbergMarquardt(), ss.LevenbergMarquardt(sparse_solver="lsmr"), ss.GaussNewton(),
        ss.GaussNewton(sparse_solver="lsmr"), ss.TrustRegion()]
IDS = ["lm-normal", "lm-lsmr", "gn-normal", "gn-lsmr", "trust-region"]


@pytest.mark.parametrize("alg", ALGS, ids=IDS)
@pytest.mark.parametrize("how", ["sparsity", "jac"])
def test_sparse_matches_dense(alg, how):
    n = 60
    f, jac, pattern, _ = _smoothing(n)
    u0 = np.zeros(n)
    dense = ss.solve(ss.NonlinearLeastSquaresProblem(f, u0, jac=lambda u, p: jac(u, p).toarray()), alg,
                     abstol=1e-13)
    kw = {"sparsity": pattern} if how == "sparsity" else {"jac": jac}
    sol = ss.solve(ss.NonlinearLeastSquaresProblem(f, u0, **kw), alg, abstol=1e-13)
    assert dense.retcode == ss.ReturnCode.LeastSquaresMinimum
    assert sol.retcode == ss.ReturnCode.LeastSquaresMinimum and sol.successful
    np.testing.assert_allclose(sol.u, dense.u, atol=1e-8, rtol=0)
    assert sol.stats.extra["objective"] == pytest.approx(dense.stats.extra["objective"], rel=1e-10)
    if how == "jac":
        assert sol.stats.njvp == 0  # the Jacobians are jac's


def test_colouring_costs_two_products_per_jacobian():
    n = 400
    f, _, pattern, _ = _smoothing(n)
    sol = ss.solve(ss.NonlinearLeastSquaresProblem(f, np.zeros(n), sparsity=pattern), ss.LevenbergMarquardt())
    assert sol.retcode == ss.ReturnCode.LeastSquaresMinimum
    njac = sol.stats.extra["njac"]
    # the difference rows couple neighbouring columns: 2 colours, so 2 products (F calls) per Jacobian
    assert sol.stats.njvp == 2 * njac
    assert sol.stats.nf == 1 + sol.stats.niter + sol.stats.njvp
    assert sol.stats.njvp < n // 20


def test_default_solve_is_sparse_levenberg_marquardt():
    n = 1500  # above the dense methods' max_size: only a sparse Jacobian solves it
    f, jac, pattern, _ = _smoothing(n)
    for kw in ({"sparsity": pattern}, {"jac": jac}):
        sol = ss.solve(ss.NonlinearLeastSquaresProblem(f, np.zeros(n), **kw))
        assert sol.retcode == ss.ReturnCode.LeastSquaresMinimum
        assert list(sol.stats.extra["attempts"]) == ["levenberg_marquardt"]
        assert sol.stats.extra["attempts"]["levenberg_marquardt"].nfact >= 1


@pytest.mark.parametrize("solver", ["normal", "lsmr"])
def test_matches_scipy_trf_at_n_1000(solver):
    n = 1000
    f, jac, pattern, _ = _smoothing(n)
    u0 = np.zeros(n)
    ref = least_squares(lambda u: f(u, None), u0, jac_sparsity=pattern, method="trf", ftol=1e-15, xtol=1e-15,
                        gtol=1e-15)
    sol = ss.solve(ss.NonlinearLeastSquaresProblem(f, u0, jac=jac), ss.LevenbergMarquardt(sparse_solver=solver),
                   abstol=1e-13)
    assert sol.retcode == ss.ReturnCode.LeastSquaresMinimum
    np.testing.assert_allclose(sol.u, ref.x, atol=1e-8, rtol=0)
    assert sol.stats.extra["objective"] == pytest.approx(ref.cost, rel=1e-10)


@pytest.mark.parametrize("how", ["sparsity", "jac"])
def test_consistent_linear_system_one_gauss_newton_step(how):
    n = 300
    rng = np.random.default_rng(0)
    A = (sp.random(2 * n, n, density=3.0 / n, random_state=1) + sp.vstack([sp.identity(n)] * 2)).tocsr()
    x = rng.standard_normal(n)
    b = A @ x
    # exact products: the colouring's (by the problem's jvp) or jac's; finite differences would not be exact
    kw = {"sparsity": A != 0, "jvp": lambda u, v, p: A @ v} if how == "sparsity" else {"jac": lambda u, p: A}
    sol = ss.solve(ss.NonlinearLeastSquaresProblem(lambda u, p: A @ u - b, np.zeros(n), **kw), ss.GaussNewton())
    assert sol.retcode == ss.ReturnCode.Success  # a zero residual is a root
    assert sol.stats.niter == 1 and sol.stats.extra["njac"] == 1
    np.testing.assert_allclose(sol.u, x, atol=1e-9)


def test_codes_zero_vs_nonzero_residual():
    n = 100
    f, jac, pattern, y = _smoothing(n, alpha=0.0)  # no smoothing: u + 0.1 u^3 = y is solvable exactly
    for alg in (ss.LevenbergMarquardt(), ss.GaussNewton(), ss.TrustRegion()):
        root = ss.solve(ss.NonlinearLeastSquaresProblem(f, np.zeros(n), sparsity=pattern), alg)
        assert root.retcode == ss.ReturnCode.Success
        np.testing.assert_allclose(root.u + 0.1 * root.u ** 3, y, atol=1e-9)
    f, jac, pattern, _ = _smoothing(n)
    fit = ss.solve(ss.NonlinearLeastSquaresProblem(f, np.zeros(n), sparsity=pattern))
    assert fit.retcode == ss.ReturnCode.LeastSquaresMinimum and fit.successful
    assert fit.stats.extra["objective"] > 1e-3


def test_errors():
    n = 20
    f, jac, pattern, _ = _smoothing(n)
    u0 = np.zeros(n)
    with pytest.raises(ValueError, match=r"sparsity has shape \(40, 21\) but u0 \(shape \(20,\)\) has 20 unknowns"):
        ss.NonlinearLeastSquaresProblem(f, u0, sparsity=sp.csr_matrix((40, 21), dtype=bool))
    with pytest.raises(ValueError, match="fewer rows \\(residuals\\) than columns"):
        ss.NonlinearLeastSquaresProblem(f, u0, sparsity=np.ones((10, 20), dtype=bool))
    with pytest.raises(TypeError, match="a dense sparsity must be a boolean array"):
        ss.NonlinearLeastSquaresProblem(f, u0, sparsity=np.ones((40, 20)))
    # the residual count is known at solve: a pattern with other rows is refused before iterating
    wrong = ss.NonlinearLeastSquaresProblem(f, u0, sparsity=sp.vstack([pattern, pattern]).tocsr())
    with pytest.raises(ValueError, match=r"sparsity has shape \(80, 20\) but one element has 40 residuals"):
        ss.solve(wrong)
    with pytest.raises(ValueError, match="jac returned a sparse matrix of shape \\(20, 20\\)"):
        ss.solve(ss.NonlinearLeastSquaresProblem(f, u0, jac=lambda u, p: sp.identity(n, format="csr")))
    with pytest.raises(ValueError, match="do not combine with sparsity="):
        ss.NonlinearLeastSquaresProblem(f, u0, sparsity=pattern, lb=-np.ones(n))
    with pytest.raises(ValueError, match="sparse_solver must be 'normal' or 'lsmr'"):
        ss.GaussNewton(sparse_solver="qr")


@pytest.mark.parametrize("name", ["array_api_strict", "torch", "jax"])
@pytest.mark.slow
def test_other_backends_small(name):
    """As square sparse problems: the colouring's products in the state's library, the factorisations on the
    host; the answer is NumPy's."""
    bk = get_backend(name)
    n = 30
    t = np.linspace(0.0, 1.0, n)
    y = np.sin(2 * np.pi * t)
    yb = bk.asarray(y)
    xp = bk.xp

    def f(u, p):
        return xp.concat([u + 0.1 * u ** 3 - yb, 0.5 * (u[1:] - u[:-1]), 0.5 * (u[:1] - yb[:1])])

    fn, _, pattern, _ = _smoothing(n)
    t_np = np.linspace(0.0, 1.0, n)
    assert np.allclose(t, t_np)
    ref = least_squares(lambda u: np.concatenate([u + 0.1 * u ** 3 - y, 0.5 * np.diff(u), 0.5 * (u[:1] - y[:1])]),
                        np.zeros(n), jac_sparsity=pattern, ftol=1e-15, xtol=1e-15, gtol=1e-15)
    for alg in (ss.LevenbergMarquardt(), ss.GaussNewton()):
        sol = ss.solve(ss.NonlinearLeastSquaresProblem(f, bk.asarray(np.zeros(n)), sparsity=pattern), alg,
                       abstol=1e-13)
        assert sol.retcode == ss.ReturnCode.LeastSquaresMinimum
        np.testing.assert_allclose(bk.to_numpy(sol.u), ref.x, atol=1e-7)
        assert sol.stats.njvp == 2 * sol.stats.extra["njac"]


def test_rectangular_pattern_colouring():
    from steadysolve.sparse import ColumnGroups, as_pattern, is_valid_colouring

    n = 50
    f, jac, P, _ = _smoothing(n)
    pattern = as_pattern(P, "test", rectangular=True)
    assert pattern.shape == (2 * n, n) and pattern.nnz == P.nnz
    assert is_valid_colouring(pattern, pattern.colouring) and int(pattern.colouring.max()) + 1 == 2
    # the values from one product per colour are the Jacobian's entries (an exact linear map's here)
    J = jac(np.linspace(-1.0, 1.0, n), None)
    groups = ColumnGroups(np, pattern, np.float64)
    values = groups.from_jvp(lambda u, v, fu: (J @ v.T).T, np.zeros((1, n)), None)
    np.testing.assert_array_equal(pattern.to_scipy(values[0]).toarray(), J.toarray())


def test_torch_sparse_jac():
    import torch

    n = 30
    f, jac, _, _ = _smoothing(n)

    def ft(u, p):
        return torch.as_tensor(f(u.numpy(), p))

    def jt(u, p):
        return torch.as_tensor(jac(u.numpy(), p).toarray()).to_sparse_coo()

    ref = ss.solve(ss.NonlinearLeastSquaresProblem(f, np.zeros(n), jac=jac), ss.LevenbergMarquardt())
    sol = ss.solve(ss.NonlinearLeastSquaresProblem(ft, torch.zeros(n, dtype=torch.float64), jac=jt),
                   ss.LevenbergMarquardt())
    assert sol.retcode == ss.ReturnCode.LeastSquaresMinimum and sol.stats.njvp == 0
    np.testing.assert_allclose(sol.u.numpy(), ref.u, atol=1e-12)
