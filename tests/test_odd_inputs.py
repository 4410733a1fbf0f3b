"""Odd inputs, as a demanding SciPy / PyTorch / JAX user tries them: bad input is refused with a specific
message before any work (no evaluation of ``f``), and trouble during a solve ends with an honest return
code, never a traceback from inside the library. Each case runs on the four array namespaces where it
concerns them."""

import numpy as np
import pytest

import steadysolve as ss
from helpers import get_backend, slow_on

ROOT_FINDERS = [a for a in ss.available() if a != "gauss_newton"]  # gauss_newton: least squares only


class Counted:
    """``f`` with a count of its calls (an input error must come before the first)."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, *args):
        self.calls += 1
        return self.f(*args)


# ---------------------------------------------------------------------------------------
# refused before any evaluation of f
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, err, match", [
    ({"maxiters": 0}, ValueError, "maxiters must be >= 1"),
    ({"maxiters": -3}, ValueError, "maxiters must be >= 1"),
    ({"maxiters": 5.0}, TypeError, "maxiters must be an int"),
    ({"abstol": -1.0}, ValueError, "abstol must be a finite number >= 0"),
    ({"abstol": float("nan")}, ValueError, "abstol must be a finite number >= 0"),
    ({"reltol": float("inf")}, ValueError, "reltol must be a finite number >= 0"),
    ({"alg": "newton_krylof"}, ValueError, "Did you mean 'newton_krylov'"),
], ids=["maxiters0", "maxiters<0", "maxiters-float", "abstol<0", "abstol-nan", "reltol-inf", "alg-typo"])
def test_bad_options_are_refused_before_f_is_called(bk, kw, err, match):
    f = Counted(lambda u, p: u * u - 2.0)
    prob = ss.NonlinearProblem(f, bk.asarray([1.0, 1.0]))
    kw = dict(kw)
    with pytest.raises(err, match=match):
        ss.solve(prob, kw.pop("alg", None), **kw)
    assert f.calls == 0


@pytest.mark.parametrize("make, err, match", [
    (lambda bk: [1.0, 2.0], TypeError, "u0 must be an array"),
    (lambda bk: 1.0, TypeError, "u0 must be an array"),
    (lambda bk: bk.asarray([1, 2], dtype=np.int64), TypeError, "real floating-point dtype"),
    (lambda bk: bk.asarray([1, 2], dtype=np.complex128), TypeError, "real floating-point dtype"),
    (lambda bk: bk.asarray(np.zeros(0)), ValueError, "u0 is empty"),
    (lambda bk: bk.asarray([1.0, np.nan]), ValueError, "NaN or Inf"),
    (lambda bk: bk.asarray([np.inf, 1.0]), ValueError, "NaN or Inf"),
], ids=["list", "float", "int", "complex", "empty", "nan", "inf"])
def test_bad_u0_is_refused_at_construction(bk, make, err, match):
    f = Counted(lambda u, p: u)
    with pytest.raises(err, match=match):
        ss.NonlinearProblem(f, make(bk))
    assert f.calls == 0


@pytest.mark.parametrize("out, err, match", [
    (lambda xp, u: 1.0, TypeError, "must return an array like u0, got float"),
    (lambda xp, u: (u, u), TypeError, "got tuple"),
    (lambda xp, u: None, TypeError, "got NoneType"),
    (lambda xp, u: xp.concat([u, u]), ValueError, r"returned shape \(4,\) but u0 has shape \(2,\)"),
    (lambda xp, u: xp.astype(u, xp.float32), TypeError, "returned dtype .*float32"),
], ids=["float", "tuple", "none", "shape", "dtype"])
def test_a_wrong_output_of_f_is_named_after_one_call(bk, out, err, match):
    xp = bk.xp
    f = Counted(lambda u, p: out(xp, u))
    with pytest.raises(err, match=match):
        ss.solve(ss.NonlinearProblem(f, bk.asarray([1.0, 1.0])))
    assert f.calls == 1


def test_an_exception_of_f_is_the_users_own(bk):
    def f(u, p):
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        ss.solve(ss.NonlinearProblem(f, bk.asarray([1.0, 1.0])))


# ---------------------------------------------------------------------------------------
# a wrong jvp / vjp is named (was a reshape error from inside the solver)
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["newton_krylov", "newton", "trust_region"])
def test_a_jvp_of_the_wrong_shape_is_named(bk, alg):
    xp = bk.xp
    prob = ss.NonlinearProblem(lambda u, p: u * u - 2.0, bk.asarray([1.0, 1.0]),
                               jvp=lambda u, v, p: xp.concat([v, v]))
    with pytest.raises(ValueError, match=r"jvp\(u, v, p\) returned shape \(4,\) during the solve but it must "
                                         r"return u0's shape \(2,\)"):
        ss.solve(prob, alg)


def test_a_jvp_of_the_wrong_dtype_is_named(bk):
    xp = bk.xp
    prob = ss.NonlinearProblem(lambda u, p: u * u - 2.0, bk.asarray([1.0, 1.0]),
                               jvp=lambda u, v, p: xp.astype(2.0 * u * v, xp.float32))
    with pytest.raises(TypeError, match=r"jvp\(u, v, p\) returned dtype .*float32"):
        ss.solve(prob, "newton_krylov")


@pytest.mark.slow  # two compilations
def test_jvp_checks_under_jax_jit():
    import jax
    import jax.numpy as jnp

    def run(jvp):
        return jax.jit(lambda p: ss.solve(ss.NonlinearProblem(lambda u, p: u * u - p, jnp.ones(3), p, jvp=jvp),
                                          "newton_krylov").u)(jnp.array([2.0, 3.0, 4.0]))

    np.testing.assert_allclose(np.asarray(run(lambda u, v, p: 2.0 * u * v)), np.sqrt([2.0, 3.0, 4.0]), rtol=1e-12)
    with pytest.raises(ValueError, match=r"jvp\(u, v, p\) returned shape \(6,\)"):
        run(lambda u, v, p: jnp.concatenate([v, v]))


def test_a_correct_jvp_and_vjp_still_solve():
    prob = ss.NonlinearProblem(lambda u, p: u * u - 2.0, np.ones(3), jvp=lambda u, v, p: 2.0 * u * v)
    sol = ss.solve(prob, "newton_krylov")
    assert sol.retcode == ss.ReturnCode.Success
    np.testing.assert_allclose(sol.u, np.sqrt(2.0), rtol=1e-12)
    # a least-squares jvp is residual-shaped, its vjp u-shaped
    r = np.sqrt(2.0)
    lsq = ss.NonlinearLeastSquaresProblem(lambda u, p: np.concatenate([u * u - 2.0, u - r]), np.ones(2),
                                          jvp=lambda u, v, p: np.concatenate([2.0 * u * v, v]),
                                          vjp=lambda u, w, p: 2.0 * u * w[:2] + w[2:])
    sol = ss.solve(lsq, "gauss_newton")
    assert sol.retcode == ss.ReturnCode.Success
    np.testing.assert_allclose(sol.u, r, rtol=1e-10)
    bad = ss.NonlinearLeastSquaresProblem(lsq.f, np.ones(2), jvp=lambda u, v, p: v)
    with pytest.raises(ValueError, match=r"jvp\(u, v, p\) returned shape \(2,\) .* the residual's shape \(4,\)"):
        ss.solve(bad, "gauss_newton")


# ---------------------------------------------------------------------------------------
# honest return codes on every algorithm
# ---------------------------------------------------------------------------------------

@slow_on("jax")  # a compilation per algorithm and problem kind
@pytest.mark.parametrize("alg", ROOT_FINDERS)
def test_a_root_at_u0_is_success_in_zero_iterations(bk, alg):
    for prob in (ss.NonlinearProblem(lambda u, p: u - 1.0, bk.asarray([1.0, 1.0])),
                 ss.SteadyStateProblem(lambda u, p, t: 1.0 - u, bk.asarray([1.0, 1.0])),
                 ss.FixedPointProblem(lambda u, p: 0.5 * u + 0.5, bk.asarray([1.0, 1.0]))):
        sol = ss.solve(prob, alg)
        assert sol.retcode == ss.ReturnCode.Success and sol.stats.niter == 0, (type(prob).__name__, sol)
        np.testing.assert_array_equal(bk.to_numpy(sol.u), [1.0, 1.0])


@pytest.mark.parametrize("alg", ROOT_FINDERS)
def test_a_constant_nonzero_residual_is_never_success(alg):
    for bk in map(get_backend, ("numpy", "torch")):
        sol = ss.solve(ss.NonlinearProblem(lambda u, p: 0.0 * u + 1.0, bk.asarray([1.0, 1.0])), alg, maxiters=50)
        assert not sol.successful, sol
        np.testing.assert_array_equal(bk.to_numpy(sol.resid), [1.0, 1.0])


@pytest.mark.parametrize("alg", ROOT_FINDERS)
def test_a_huge_abstol_accepts_u0(alg):
    sol = ss.solve(ss.NonlinearProblem(lambda u, p: u * u * u - 2.0, np.ones(2)), alg, abstol=1e30)
    assert sol.retcode == ss.ReturnCode.Success and sol.stats.niter == 0


@slow_on("jax")
def test_dynamic_ss_on_a_field_too_large_for_a_first_step(bk):
    """``f(u0)`` ~ -1e300 against ``u0`` ~ 1: the starting step underflows to 0 (one NumPy system raised
    ZeroDivisionError); every namespace, batched or not, ends with Stalled at u0."""
    xp = bk.xp
    for kw, shape in (({}, (2,)), ({"batch_axis": 0}, (1, 2))):
        prob = ss.NonlinearProblem(lambda u, p: xp.exp(u * 100.0) - 1e300, bk.asarray(np.ones(shape)))
        sol = ss.solve(prob, "dynamic_ss", maxiters=20, **kw)
        assert sol.retcodes == [ss.ReturnCode.Stalled], sol
        np.testing.assert_array_equal(bk.to_numpy(sol.u), np.ones(shape))


@slow_on("jax", "array_api_strict")  # a compilation (or a slow wrapper) per algorithm and shape
@pytest.mark.parametrize("alg", ROOT_FINDERS)
def test_scalar_and_one_element_states_keep_their_shape(bk, alg):
    f = lambda u, p: p - u  # noqa: E731 - a stable flow, a root for every method
    for u0 in (bk.asarray(0.0), bk.asarray([0.0]), bk.asarray([[0.0, 0.0]])):
        sol = ss.solve(ss.NonlinearProblem(f, u0, 2.0), alg, batch_axis=0 if u0.ndim == 2 else None, abstol=1e-10)
        assert sol.successful and tuple(sol.u.shape) == tuple(u0.shape) and sol.u.dtype == u0.dtype, sol
        np.testing.assert_allclose(bk.to_numpy(sol.u), 2.0, rtol=1e-8)


def test_odd_numpy_layouts_are_solved_and_left_alone():
    """Non-contiguous, read-only and Fortran-ordered u0 are solved; u0 itself is not modified."""
    base = np.ones((3, 4))
    ro = np.ones(3)
    ro.flags.writeable = False
    target = np.arange(1.0, 7.0).reshape(2, 3)
    cases = [(base[:, ::2], 2.0, None), (ro, 2.0, None), (ro.reshape(3, 1), 2.0, 0),
             (np.asfortranarray(np.ones((2, 3))), target, None)]
    for alg in ("auto", "newton_krylov", "newton", "anderson"):
        for u0, p, axis in cases:
            before = u0.copy()
            sol = ss.solve(ss.NonlinearProblem(lambda u, p: u * u - p, u0, p), alg, batch_axis=axis)
            assert sol.successful, (alg, sol)
            np.testing.assert_allclose(sol.u, np.sqrt(p) * np.ones(u0.shape), rtol=1e-10)
            np.testing.assert_array_equal(u0, before)


# ---------------------------------------------------------------------------------------
# adapters
# ---------------------------------------------------------------------------------------

def test_torch_fixed_point_refuses_an_integer_state_by_name():
    """Was ``torch.finfo() requires a floating point input type`` from the default tolerances."""
    torch = pytest.importorskip("torch")
    from steadysolve.adapters.torch import fixed_point

    f = Counted(lambda z, x: 0.5 * z + x)
    for z0 in (torch.zeros(2, dtype=torch.int64), (torch.zeros(2, dtype=torch.int64),),
               torch.zeros(2, dtype=torch.complex128)):
        with pytest.raises(TypeError, match="fixed_point: z0 must have a real floating-point dtype"):
            fixed_point(f, z0, torch.ones(2))
    assert f.calls == 0
    z, stats = fixed_point(f, torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64))
    np.testing.assert_allclose(z.detach().numpy(), 2.0)


def test_jax_fixed_point_refuses_an_integer_state_by_name():
    import jax.numpy as jnp
    from steadysolve.adapters.jax import fixed_point

    with pytest.raises(TypeError, match="real floating dtype"):
        fixed_point(lambda z, x: 0.5 * z + x, jnp.zeros(2, dtype=jnp.int32), jnp.ones(2))


def test_a_masked_u0_is_refused_by_name():
    """A NumPy masked array failed deep inside the finite-difference code (``abs()`` of None)."""
    with pytest.raises(TypeError, match="masked array"):
        ss.NonlinearProblem(lambda u, p: u * u - 2.0, np.ma.array(np.ones(2), mask=[False, True]))
    with pytest.raises(TypeError, match="u0 must be an array"):  # np.matrix is no array-API array either
        ss.NonlinearProblem(lambda u, p: u, np.ones((1, 2)).view(np.matrix))
