"""Bounds ``lb <= u <= ub`` on NonlinearProblem and NonlinearLeastSquaresProblem: TrustRegion,
LevenbergMarquardt and the default keep every iterate (every evaluation of ``f``) inside the box, find a
root inside it as the unbounded solve does, and report a root outside it honestly (BoundConstrained);
least squares with bounds against SciPy's ``least_squares(method="trf")``; batches with per-element
bounds; jax.jit; the boundary errors."""

import numpy as np
import pytest
from helpers import get_backend

import steadysolve as ss

BOUNDED = ("trust_region", "levenberg_marquardt", None)
BOUND = ss.ReturnCode.BoundConstrained
MIN = ss.ReturnCode.LeastSquaresMinimum


def two_roots(xp):
    """``u0^2 = 4``, ``u0 u1 = 2``: roots (2, 1) and (-2, -1)."""
    def f(u, p):
        return xp.stack([u[..., 0] ** 2 - 4.0, u[..., 0] * u[..., 1] - 2.0], axis=-1)
    return f


def rosenbrock(xp):
    def f(u, p):
        return xp.stack([10.0 * (u[..., 1] - u[..., 0] ** 2), 1.0 - u[..., 0]], axis=-1)
    return f


class Recorder:
    """``f`` wrapped to keep (as NumPy) every point it is evaluated at, AD's dual / traced points by their
    primal values."""

    def __init__(self, bk, f):
        self.bk, self.f, self.points = bk, f, []

    def __call__(self, u, p):
        self.points.append(self._values(u))
        return self.f(u, p)

    def _values(self, u):
        if self.bk.name == "torch":
            import torch.autograd.forward_ad as fwAD

            return fwAD.unpack_dual(u).primal.detach().cpu().numpy().copy()
        if self.bk.name == "jax":
            import jax

            if isinstance(u, jax.core.Tracer):  # jax.jvp / jacfwd: the primal is the point
                while hasattr(u, "primal"):
                    u = u.primal
                if isinstance(u, jax.core.Tracer):
                    return None
        return np.array(self.bk.to_numpy(u), copy=True)

    def inside(self, lb, ub) -> bool:
        pts = [x for x in self.points if x is not None]
        assert len(pts) >= 3
        return all(bool(np.all(x >= lb) and np.all(x <= ub)) for x in pts)


@pytest.mark.parametrize("alg", BOUNDED)
@pytest.mark.slow
def test_root_inside_the_box_is_the_unbounded_root(bk, alg):
    f = two_roots(bk.xp)
    free = ss.solve(ss.NonlinearProblem(f, bk.asarray([1.0, 0.5])), "trust_region", abstol=1e-12)
    rec = Recorder(bk, f)
    prob = ss.NonlinearProblem(rec, bk.asarray([1.0, 0.5]), lb=0.0, ub=bk.asarray([3.0, 3.0]))
    sol = ss.solve(prob, alg, abstol=1e-12)
    assert sol.retcode is ss.ReturnCode.Success and sol.successful
    np.testing.assert_allclose(bk.to_numpy(sol.u), [2.0, 1.0], atol=1e-10)
    np.testing.assert_allclose(bk.to_numpy(sol.u), bk.to_numpy(free.u), atol=1e-10)
    assert rec.inside(np.zeros(2), np.full(2, 3.0))


@pytest.mark.parametrize("alg", BOUNDED)
@pytest.mark.slow
def test_root_outside_the_box_is_reported_on_the_bound(bk, alg):
    rec = Recorder(bk, two_roots(bk.xp))
    lb, ub = np.array([0.0, 0.0]), np.array([1.5, 3.0])
    prob = ss.NonlinearProblem(rec, bk.asarray([1.0, 0.5]), lb=bk.asarray(lb), ub=bk.asarray(ub))
    sol = ss.solve(prob, alg)
    assert sol.retcode is BOUND and not sol.successful and not BOUND.successful
    u = bk.to_numpy(sol.u)
    assert u[0] == 1.5  # exactly on the bound
    np.testing.assert_allclose(u[1], 2.0 / 1.5, rtol=1e-6)  # the minimum of ||F|| on the face u0 = 1.5
    assert "outside the bounds" in sol.message
    assert rec.inside(lb, ub)
    with pytest.raises(ss.ConvergenceError, match="BoundConstrained"):
        ss.solve(prob, alg, throw=True)


@pytest.mark.parametrize("alg", BOUNDED)
@pytest.mark.parametrize("case", ["inside", "outside", "on_bound_start"])
@pytest.mark.slow
def test_no_evaluation_ever_leaves_the_box(bk, alg, case):
    # Rosenbrock's root (1, 1): the unbounded path from (-1.2, 1) swings far out; here the box cuts it
    lb, ub, u0 = {
        "inside": ([-1.5, 0.0], [1.2, 1.2], [-1.2, 1.0]),
        "outside": ([-1.5, -0.5], [0.9, 2.0], [-1.2, 1.0]),
        "on_bound_start": ([0.5, 0.5], [2.0, 2.0], [2.0, 0.5]),
    }[case]
    rec = Recorder(bk, rosenbrock(bk.xp))
    prob = ss.NonlinearProblem(rec, bk.asarray(u0), lb=bk.asarray(lb), ub=bk.asarray(ub))
    sol = ss.solve(prob, alg, abstol=1e-10, maxiters=500)
    assert rec.inside(np.array(lb), np.array(ub))
    u = bk.to_numpy(sol.u)
    assert np.all(u >= lb) and np.all(u <= ub)
    if case == "outside":
        assert sol.retcode is BOUND
        assert u[0] == 0.9  # the minimum of ||F|| on the box: u0 on its bound, u1 = u0^2
        np.testing.assert_allclose(u[1], 0.81, rtol=1e-6)
    else:
        assert sol.retcode is ss.ReturnCode.Success
        np.testing.assert_allclose(u, [1.0, 1.0], atol=1e-8)


def test_one_sided_and_infinite_bounds():
    f = two_roots(np)
    sol = ss.solve(ss.NonlinearProblem(f, np.array([-1.0, -3.0]), ub=np.inf), abstol=1e-12)
    np.testing.assert_allclose(sol.u, [-2.0, -1.0], atol=1e-10)  # no bound at all in effect
    sol = ss.solve(ss.NonlinearProblem(f, np.array([-3.0, -3.0]), ub=np.array([-2.5, np.inf])))
    assert sol.retcode is BOUND and sol.u[0] == -2.5
    sol = ss.solve(ss.NonlinearProblem(f, np.array([1.0, 3.0]), lb=np.array([0.0, -np.inf])), abstol=1e-12)
    assert sol.retcode is ss.ReturnCode.Success  # from the positive side: the root (2, 1)
    np.testing.assert_allclose(sol.u, [2.0, 1.0], atol=1e-10)


def test_scalar_root_on_a_bound_is_success():
    # the root u = 1 is on ub: a root in the box (closed)
    sol = ss.solve(ss.NonlinearProblem(lambda u, p: u ** 3 - 1.0, np.array([0.2]), lb=0.0, ub=1.0), abstol=1e-12)
    assert sol.retcode is ss.ReturnCode.Success
    np.testing.assert_allclose(sol.u, [1.0], atol=1e-10)


def scipy_trf(fun, x0, lb, ub):
    from scipy.optimize import least_squares

    return least_squares(fun, x0, bounds=(lb, ub), method="trf", xtol=1e-15, ftol=1e-15, gtol=1e-15).x


@pytest.mark.parametrize("alg", ("levenberg_marquardt", "trust_region", None))
@pytest.mark.slow
def test_rosenbrock_least_squares_with_bounds_matches_scipy_trf(bk, alg):
    # SciPy's documented example: Rosenbrock with x1 >= 1.5 (the minimiser (1.22437, 1.5) on the bound)
    lb, ub = np.array([-np.inf, 1.5]), np.array([np.inf, np.inf])
    ref = scipy_trf(lambda x: rosenbrock(np)(x, None), np.array([2.0, 2.0]), lb, ub)
    rec = Recorder(bk, rosenbrock(bk.xp))
    prob = ss.NonlinearLeastSquaresProblem(rec, bk.asarray([2.0, 2.0]), lb=bk.asarray(lb), ub=bk.asarray(ub))
    sol = ss.solve(prob, alg, maxiters=300)
    assert sol.retcode is MIN and sol.successful  # the bounded least-squares solution
    np.testing.assert_allclose(bk.to_numpy(sol.u), ref, atol=1e-6)
    assert bk.to_numpy(sol.u)[1] == 1.5
    assert rec.inside(lb, ub)


@pytest.mark.parametrize("alg", ("levenberg_marquardt", "trust_region"))
@pytest.mark.parametrize("box", [([0.0, 0.0], [1.5, 5.0]), ([0.0, 1.5], [10.0, 5.0]), ([-1.0, 0.0], [10.0, 5.0])])
@pytest.mark.slow
def test_exponential_fit_with_bounds_matches_scipy_trf(bk, alg, box):
    t = np.linspace(0.0, 3.0, 20)
    y = 2.0 * np.exp(-1.3 * t) + 0.05 * np.sin(7.0 * t)
    T, Y, xp = bk.asarray(t), bk.asarray(y), bk.xp

    def model(u, p):
        return u[0] * xp.exp(-u[1] * T) - Y

    lb, ub = np.array(box[0]), np.array(box[1])
    ref = scipy_trf(lambda x: x[0] * np.exp(-x[1] * t) - y, np.array([1.0, 2.0]), lb, ub)
    prob = ss.NonlinearLeastSquaresProblem(model, bk.asarray([1.0, 2.0]), lb=bk.asarray(lb), ub=bk.asarray(ub))
    sol = ss.solve(prob, alg, maxiters=300)
    assert sol.retcode is MIN
    np.testing.assert_allclose(bk.to_numpy(sol.u), ref, atol=1e-6)


@pytest.mark.slow
def test_batched_per_element_bounds(bk):
    f = two_roots(bk.xp)
    U0 = np.array([[1.0, 0.5], [1.0, 0.5], [0.5, 2.0], [-1.0, -0.5]])
    LB = np.array([[0.0, 0.0], [0.0, 0.0], [-3.0, -3.0], [-3.0, -0.8]])
    UB = np.array([[3.0, 3.0], [1.5, 3.0], [3.0, 3.0], [0.0, 0.0]])
    rec = Recorder(bk, f)
    prob = ss.NonlinearProblem(rec, bk.asarray(U0), lb=bk.asarray(LB), ub=bk.asarray(UB))
    sol = ss.solve(prob, batch_axis=0, abstol=1e-12)
    assert sol.retcodes == [ss.ReturnCode.Success, BOUND, ss.ReturnCode.Success, BOUND]
    u = bk.to_numpy(sol.u)
    np.testing.assert_allclose(u[0], [2.0, 1.0], atol=1e-10)
    np.testing.assert_allclose(u[2], [2.0, 1.0], atol=1e-10)
    assert u[1, 0] == 1.5 and u[3, 1] == -0.8
    pts = [x for x in rec.points if x is not None and x.shape == U0.shape]
    assert pts and all(np.all(x >= LB) and np.all(x <= UB) for x in pts)


def test_batch_axis_one_bounds_follow_the_layout():
    f = two_roots(np)

    def g(u, p):  # the batch on axis 1: u (2, B)
        return np.moveaxis(f(np.moveaxis(u, 1, 0), p), 0, 1)

    U0 = np.array([[1.0, 1.0], [0.5, 0.5]])
    UB = np.array([[3.0, 1.5], [3.0, 3.0]])  # element 1's u0 <= 1.5
    sol = ss.solve(ss.NonlinearProblem(g, U0, lb=0.0, ub=UB), batch_axis=1, abstol=1e-12)
    assert sol.retcodes == [ss.ReturnCode.Success, BOUND]
    np.testing.assert_allclose(sol.u[:, 0], [2.0, 1.0], atol=1e-10)
    assert sol.u[0, 1] == 1.5


@pytest.mark.parametrize("alg", BOUNDED)
@pytest.mark.slow
def test_jit(alg):
    import jax
    import jax.numpy as jnp

    f = two_roots(jnp)

    @jax.jit
    def run(u0, ub):
        sol = ss.solve(ss.NonlinearProblem(f, u0, lb=0.0, ub=ub), alg, abstol=1e-12)
        return sol.u, sol.retcode_array

    u, code = run(jnp.asarray([1.0, 0.5]), jnp.asarray([3.0, 3.0]))
    assert int(code) == ss.ReturnCode.Success.code
    np.testing.assert_allclose(np.asarray(u), [2.0, 1.0], atol=1e-10)
    u, code = run(jnp.asarray([1.0, 0.5]), jnp.asarray([1.5, 3.0]))
    assert int(code) == BOUND.code
    eager = ss.solve(ss.NonlinearProblem(f, jnp.asarray([1.0, 0.5]), lb=0.0, ub=jnp.asarray([1.5, 3.0])), alg)
    np.testing.assert_allclose(np.asarray(u), np.asarray(eager.u), atol=1e-8)
    assert float(u[0]) == 1.5


@pytest.mark.slow
def test_jit_least_squares_batched():
    import jax
    import jax.numpy as jnp

    lb = jnp.asarray([[-jnp.inf, 1.5], [-jnp.inf, -jnp.inf]])

    @jax.jit
    def run(u0):
        prob = ss.NonlinearLeastSquaresProblem(rosenbrock(jnp), u0, lb=lb)
        sol = ss.solve(prob, batch_axis=0, abstol=1e-12)
        return sol.u, sol.retcode_array

    u, codes = run(jnp.asarray([[2.0, 2.0], [-1.2, 1.0]]))
    assert [int(c) for c in codes] == [MIN.code, ss.ReturnCode.Success.code]
    ref = scipy_trf(lambda x: rosenbrock(np)(x, None), np.array([2.0, 2.0]), np.asarray(lb[0]), np.full(2, np.inf))
    np.testing.assert_allclose(np.asarray(u[0]), ref, atol=1e-6)
    np.testing.assert_allclose(np.asarray(u[1]), [1.0, 1.0], atol=1e-8)


def test_bad_bounds_are_clear_errors():
    f = two_roots(np)
    with pytest.raises(ValueError, match=r"u0 outside the bounds at 2 entries \(first at index \(0, 1\)\)"):
        ss.NonlinearProblem(f, np.array([[1.0, 5.0], [1.0, 4.0]]), lb=0.0, ub=3.0)
    with pytest.raises(ValueError, match=r"lb > ub at 1 entry \(first at index \(1,\)\); the box is empty"):
        ss.NonlinearProblem(f, np.array([1.0, 1.0]), lb=np.array([0.0, 2.0]), ub=np.array([3.0, 1.5]))
    with pytest.raises(ValueError, match=r"lb has shape \(3,\), which does not broadcast to u0's shape \(2,\)"):
        ss.NonlinearProblem(f, np.ones(2), lb=np.zeros(3))
    with pytest.raises(ValueError, match="ub contains NaN"):
        ss.NonlinearLeastSquaresProblem(f, np.ones(2), ub=np.array([np.nan, 1.0]))
    with pytest.raises(ValueError, match=r"u0 outside the bounds at 1 entry"):
        ss.NonlinearLeastSquaresProblem(f, np.ones(2), lb=np.array([0.0, 2.0]))
    with pytest.raises(TypeError, match="lb is a torch array but u0 is a numpy array"):
        import torch

        ss.NonlinearProblem(f, np.ones(2), lb=torch.zeros(2, dtype=torch.float64))
    with pytest.raises(TypeError, match="lb must be a number or an array"):
        ss.NonlinearProblem(f, np.ones(2), lb="0")
    with pytest.raises(ValueError, match="do not combine with sparsity="):
        ss.NonlinearProblem(f, np.ones(2), lb=0.0, sparsity=np.eye(2, dtype=bool))
    with pytest.raises(TypeError):
        ss.FixedPointProblem(lambda u, p: u, np.ones(2), lb=0.0)  # bounds only where a root is sought


@pytest.mark.parametrize("alg", ["newton", "newton_krylov", "anderson", "broyden", "dynamic_ss", "gauss_newton",
                                 ss.Auto(algs=("trust_region", "newton"))])
def test_methods_that_cannot_honour_bounds_refuse(alg):
    calls = []

    def f(u, p):
        calls.append(1)
        return u - 2.0

    prob = ss.NonlinearProblem(f, np.ones(2), lb=0.0, ub=3.0)
    with pytest.raises(ValueError, match=r"bounds \(lb=, ub=\), which \w+ cannot honour; use TrustRegion, "
                                         r"LevenbergMarquardt or the default \(Auto\)"):
        ss.solve(prob, alg)
    assert not calls  # refused before any work


def test_remake_keeps_the_bounds_and_checks_the_new_start():
    prob = ss.NonlinearProblem(two_roots(np), np.array([1.0, 0.5]), lb=0.0, ub=np.array([1.5, 3.0]))
    again = prob.remake(u0=np.array([0.5, 0.5]))
    assert again.bounded and np.array_equal(again.ub, prob.ub)
    assert ss.solve(again).retcode is BOUND
    with pytest.raises(ValueError, match="u0 outside the bounds"):
        prob.remake(u0=np.array([2.0, 0.5]))
    assert "bounded" in repr(prob)


def test_bound_code_is_appended_and_decodes():
    assert BOUND.code == 9 and ss.ReturnCode.from_code(9) is BOUND
    assert not BOUND.successful and "outside the bounds" in BOUND.value


@pytest.mark.slow
def test_float32_bounds(bk):
    f = two_roots(bk.xp)
    prob = ss.NonlinearProblem(f, bk.asarray([1.0, 0.5], dtype="float32"), lb=0.0, ub=1.5)
    sol = ss.solve(prob, "levenberg_marquardt")
    assert sol.retcode is BOUND and sol.u.dtype == prob.u0.dtype
    assert float(bk.to_numpy(sol.u)[0]) == 1.5 and np.all(bk.to_numpy(sol.u) <= 1.5)


@pytest.mark.slow
def test_jax_root_adapter_with_bounds_under_jit_and_grad():
    import jax
    import jax.numpy as jnp

    from steadysolve.adapters.jax import root

    def f(u, a):
        return u ** 2 - a

    # two roots +-sqrt(a): the bounds pick one; the implicit gradient is the picked root's
    grad = jax.jit(jax.grad(lambda a: root(f, jnp.ones(1), a, lb=0.0, ub=10.0)[0][0]))(4.0)
    np.testing.assert_allclose(float(grad), 0.25, rtol=1e-10)
    u, stats = jax.jit(lambda a, ub: root(f, -jnp.ones(1), a, lb=-10.0, ub=ub))(4.0, jnp.zeros(1))
    np.testing.assert_allclose(np.asarray(u), [-2.0], rtol=1e-10)
    assert int(stats.retcode_array) == ss.ReturnCode.Success.code
    with pytest.raises(ValueError, match="NewtonKrylov cannot honour"):
        root(f, jnp.ones(1), 4.0, lb=0.0, solver="newton_krylov")


@pytest.mark.parametrize("lib", ["torch", "jax"])
@pytest.mark.slow
def test_least_squares_adapters_differentiate_a_bounded_minimiser(lib):
    # a line fit with the slope held at its bound 0.5: the intercept is mean(y - 0.5 t), d/dy = 1/m each,
    # and the held slope does not move (the unconstrained gradient would be wrong for both)
    t, y = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0, 4.0])
    ub = np.array([np.inf, 0.5])
    if lib == "torch":
        import torch

        from steadysolve.adapters.torch import least_squares

        tt = torch.as_tensor(t)
        yt = torch.tensor(y, requires_grad=True)
        u, sol = least_squares(lambda u, y: u[0] + u[1] * tt - y, torch.zeros(2, dtype=torch.float64), yt,
                               ub=torch.as_tensor(ub))
        (u[0] + 10.0 * u[1]).backward()
        grad, u = yt.grad.numpy(), u.detach().numpy()
    else:
        import jax
        import jax.numpy as jnp

        from steadysolve.adapters.jax import least_squares

        def fit(yv):
            return least_squares(lambda u, y: u[0] + u[1] * jnp.asarray(t) - y, jnp.zeros(2), yv, ub=ub)[0]

        grad = np.asarray(jax.jit(jax.grad(lambda yv: fit(yv)[0] + 10.0 * fit(yv)[1]))(jnp.asarray(y)))
        u = np.asarray(fit(jnp.asarray(y)))
    np.testing.assert_allclose(u, [1.75, 0.5], atol=1e-10)
    np.testing.assert_allclose(grad, [0.25] * 4, atol=1e-10)


@pytest.mark.parametrize("alg", BOUNDED)
def test_a_variable_fixed_by_equal_bounds_never_moves(alg):
    points = []

    def f(u, p):
        points.append(u.copy())
        return np.array([u[0] ** 2 - 4.0, u[0] * u[1] - 2.0])

    # u[1] fixed at 0.5: the root (2, 1) is out of reach; the best on the line is a bound-constrained minimum
    prob = ss.NonlinearProblem(f, np.array([1.0, 0.5]), lb=np.array([0.0, 0.5]), ub=np.array([3.0, 0.5]))
    sol = ss.solve(prob, alg)
    assert sol.retcode is BOUND and sol.u[1] == 0.5
    assert all(x[1] == 0.5 for x in points)
    # the minimum of (u0^2 - 4)^2 + (u0 / 2 - 2)^2: its derivative 4 u0 (u0^2 - 4) + (u0 / 2 - 2) vanishes
    u0 = sol.u[0]
    assert abs(4.0 * u0 * (u0 ** 2 - 4.0) + (0.5 * u0 - 2.0)) < 1e-6
