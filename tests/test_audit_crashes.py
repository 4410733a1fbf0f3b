"""Crashes the reliability audit found (issue 25 item 6), each on every backend it concerns: half
precision under ``jax.jit``, singular small systems (a bfloat16 DEQ's Anderson Gram matrix, a batched
Newton step), an exception of the user's function inside a derivative on PyTorch, NumPy overflow
warnings leaking from the solver's own arithmetic."""

import warnings

import numpy as np
import pytest

import steadysolve as ss
from steadysolve import _backend as backend
from benchmarks.problems import mgh

# ---------------------------------------------------------------------------------------
# (a) half precision under jax.jit: the while_loop carry keeps its dtypes
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["newton_krylov", pytest.param("auto", marks=pytest.mark.slow)])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("batched", [False, True], ids=["one", "batch"])
@pytest.mark.slow
def test_half_precision_under_jit(alg, dtype, batched):
    import jax
    import jax.numpy as jnp

    dt = getattr(jnp, dtype)
    u0 = jnp.ones((2, 3) if batched else (3,), dtype=dt)
    kw = {"batch_axis": 0} if batched else {}

    @jax.jit
    def run(u0):
        sol = ss.solve(ss.NonlinearProblem(lambda u, p: u * u * u - 2.0, u0), alg, **kw)
        return sol.u, sol.retcode_array

    u, codes = run(u0)
    assert u.dtype == dt and u.shape == u0.shape
    assert np.all(np.asarray(codes) == 0)
    np.testing.assert_allclose(np.asarray(u, dtype=np.float32), 2.0 ** (1 / 3), rtol=2e-2)


# ---------------------------------------------------------------------------------------
# (b) singular small systems give honest codes, never an exception
# ---------------------------------------------------------------------------------------

def test_solve_small_never_raises_for_a_singular_matrix(bk):
    A = bk.asarray(np.array([[[2.0, 0.0], [0.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]], [[1.0, 2.0], [3.0, 4.0]]]))
    b = bk.asarray(np.array([[[2.0], [4.0]], [[1.0], [1.0]], [[5.0], [11.0]]]))
    x = bk.to_numpy(backend.solve_small(bk.xp, A, b))[:, :, 0]
    np.testing.assert_allclose(x[0], [1.0, 1.0])
    np.testing.assert_allclose(x[2], [1.0, 2.0])
    assert not np.all(np.isfinite(x[1]))  # NaN where the library reports a singular matrix (Inf/NaN on JAX)
    one = bk.to_numpy(backend.solve_small(bk.xp, A[1:2, ...], b[1:2, ...], singular=lambda A, b: b * 0.0))
    assert np.all(one == 0.0) or not np.all(np.isfinite(one))  # the caller's fallback (JAX reports nothing)


def test_bfloat16_torch_deq_with_anderson_on_a_batch_of_128():
    torch = pytest.importorskip("torch")
    from steadysolve.adapters.torch import DEQ

    torch.manual_seed(0)

    class Cell(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(64, 64).to(torch.bfloat16)

        def forward(self, z, x):
            return torch.tanh(self.lin(z) + x)

    deq = DEQ(Cell(), solver="anderson", batch_axis=0, on_failure="ignore")
    x = torch.randn(128, 64, dtype=torch.bfloat16)
    z = deq(x)  # raised torch.linalg.LinAlgError (a singular Gram matrix in bfloat16)
    assert z.dtype == torch.bfloat16 and z.shape == x.shape and bool(torch.isfinite(z).all())
    codes = deq.forward_stats.retcode_array
    assert codes.shape == (128,)  # a code per sample (bfloat16 may not meet the tolerance: an honest failure)
    with torch.no_grad():
        resid = (deq.f(z, x) - z).float().norm(dim=1)
    assert float(resid.max()) < 0.1


def test_batched_newton_step_with_a_singular_jacobian():
    """The MGH variably-dimensioned problem as a steady state from three starts: NumPy's batched solve
    found one regularised Jacobian exactly singular and raised ``LinAlgError``."""
    p = mgh.by_name("variably_dimensioned")
    x0 = np.stack([mgh.start(p, s) for s in mgh.SCALES])
    prob = ss.SteadyStateProblem(lambda u, _p, t: -np.stack([p.F(r) for r in u]), x0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (the user's F overflows far out)
        sol = ss.solve(prob, "newton", maxiters=200, batch_axis=0)
    assert len(sol.retcodes) == 3 and np.all(np.isfinite(sol.u))
    for rc, u, r in zip(sol.retcodes, sol.u, sol.resid):
        assert rc.name != "Success" or np.max(np.abs(r)) <= 1e-10


# ---------------------------------------------------------------------------------------
# (c) PyTorch: an exception of f inside a derivative propagates; only AD's refusals fall back
# ---------------------------------------------------------------------------------------

class SimulatorError(RuntimeError):
    pass


def _failing_on_call(k, torch):
    calls = [0]

    def f(u, p):
        calls[0] += 1
        if calls[0] == k:
            raise RuntimeError("simulator crashed")
        return u * u * u - 2.0

    return f, calls


@pytest.mark.parametrize("alg", ["newton", "newton_krylov", "auto", "trust_region", "levenberg_marquardt"])
@pytest.mark.parametrize("n", [2, 20])
def test_a_users_runtime_error_inside_a_derivative_propagates(alg, n):
    torch = pytest.importorskip("torch")
    f, calls = _failing_on_call(2, torch)  # call 1: solve()'s check at u0; call 2: the first derivative
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no "finite differences instead" warning either
        with pytest.raises(RuntimeError, match="simulator crashed"):
            ss.solve(ss.NonlinearProblem(f, torch.ones(n, dtype=torch.float64)), alg)
    assert calls[0] == 2


def test_a_users_error_class_inside_a_jvp_propagates_unchanged():
    torch = pytest.importorskip("torch")

    def f(u, p):
        import torch.autograd.forward_ad as fwad

        if u.requires_grad or fwad.unpack_dual(u).tangent is not None:  # forward or reverse products
            raise SimulatorError("no tangents here")
        return u - 1.0

    with pytest.raises(SimulatorError, match="no tangents here"):
        ss.solve(ss.NonlinearProblem(f, torch.zeros(30, dtype=torch.float64)), "newton_krylov")


def test_an_operation_without_forward_ad_falls_back_once():
    torch = pytest.importorskip("torch")
    ref = torch.tensor([[0.0, 0.0]], dtype=torch.float64)

    def f(u, p):  # cdist has no forward-mode derivative in PyTorch
        return torch.cdist(u.reshape(1, 1, 2), ref.reshape(1, 1, 2)).reshape(1).expand(2) * u - 1.0

    with pytest.warns(RuntimeWarning, match="cannot differentiate") as rec:
        sol = ss.solve(ss.NonlinearProblem(f, torch.full((2,), 0.5, dtype=torch.float64)), "newton_krylov",
                       abstol=1e-10)
    assert sol.successful and len([w for w in rec if "cannot differentiate" in str(w.message)]) == 1
    u = sol.u.numpy()
    np.testing.assert_allclose(np.linalg.norm(u) * u, 1.0, atol=1e-8)
    assert sol.stats.nf == sol.stats.niter + 1 + sol.stats.njvp  # finite differences from then on


@pytest.mark.parametrize("alg", ["newton_krylov", "newton"])
def test_a_numpy_round_trip_is_not_a_zero_jacobian(alg):
    """``f`` through NumPy: autograd loses ``u`` without an error (no tangent, no ``grad_fn``). That used
    to be a zero Jacobian and a LinearSolveFailed; it is finite differences, with the warning."""
    torch = pytest.importorskip("torch")

    def f(u, p):
        return torch.from_numpy(np.sinh(u.detach().numpy())) - 1.0

    with pytest.warns(RuntimeWarning, match="does not depend on u through autograd"):
        sol = ss.solve(ss.NonlinearProblem(f, torch.zeros(3, dtype=torch.float64)), alg, abstol=1e-10)
    assert sol.successful
    np.testing.assert_allclose(sol.u.numpy(), np.arcsinh(1.0), rtol=1e-9)


@pytest.mark.parametrize("alg", ["newton", "newton_krylov", "trust_region"])
def test_a_residual_that_is_constant_in_u_gives_no_fallback_warning(alg):
    """Autograd sees no dependence on ``u`` for a residual that has none: finite differences agree (a
    zero Jacobian), so there is nothing to warn about; the solve fails honestly (no root)."""
    torch = pytest.importorskip("torch")
    prob = ss.SteadyStateProblem(lambda u, p, t: torch.ones_like(u), torch.zeros(3, dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        sol = ss.solve(prob, alg, maxiters=50)
    assert not sol.successful and bool(torch.isfinite(sol.u).all())


# ---------------------------------------------------------------------------------------
# (d) NumPy warnings: none from the solver's arithmetic, the user's own ones kept
# ---------------------------------------------------------------------------------------

def _quiet(F):
    """The user's F with its own overflow silenced (the test is about the solver's warnings)."""
    return np.errstate(all="ignore")(F)


RUNAWAY = [  # no root: the iterates run away, norms and dense steps overflow
    ("exp_floor", lambda u: np.exp(u) + 1e-4, np.zeros(2)),
    ("quadratic", lambda u: u * u + 1.0, np.ones(3)),
    ("cubic_far", lambda u: u ** 3 + 1e300, np.full(2, 1e100)),
    ("linear_huge", lambda u: 1e200 * u + 1e305, np.ones(2)),
]


@pytest.mark.parametrize("alg", ["trust_region", "levenberg_marquardt", "newton", "newton_krylov", "broyden",
                                 "anderson", "auto"])
@pytest.mark.parametrize("lib", ["numpy", pytest.param("array_api_strict", marks=pytest.mark.slow)])
@pytest.mark.slow
def test_no_numpy_warning_leaks_from_the_solver(alg, lib):
    from helpers import get_backend

    bk = get_backend(lib)
    cases = [(p.name, p.F, mgh.start(p, s)) for p, s in ((p, s) for p in mgh.PROBLEMS for s in (1.0, 100.0))]
    cases += RUNAWAY
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, F, x0 in cases:
            Fq = _quiet(F)
            for batched in (False, True):
                u0 = np.stack([x0, 2.0 * x0 + 1.0]) if batched else x0
                f = (lambda u, p, Fq=Fq: bk.asarray(np.stack([Fq(r) for r in bk.to_numpy(u)]))) if batched else \
                    (lambda u, p, Fq=Fq: bk.asarray(Fq(bk.to_numpy(u))))
                sol = ss.solve(ss.NonlinearProblem(f, bk.asarray(u0)), alg, maxiters=100,
                               batch_axis=0 if batched else None)
                assert np.all(np.isfinite(bk.to_numpy(sol.u))), name


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_no_numpy_warning_leaks_in_low_precision(dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for alg in ss.available():
            for F, x0 in ((lambda u, p: u * u * u - 2.0, np.ones(3)), (lambda u, p: u * u + 1.0, np.ones(3)),
                          (lambda u, p: np.atan(u) + 2.0, np.ones(3))):
                for u0, kw in ((x0, {}), (np.stack([x0, 3 * x0]), {"batch_axis": 0})):
                    ss.solve(ss.NonlinearProblem(_quiet(F), u0.astype(dtype)), alg, maxiters=100, **kw)


def test_the_users_own_numpy_warnings_still_reach_the_user():
    def f(u, p):  # Newton's first trial from -20 is near 5e8, where the user's exp overflows
        return np.exp(u) - 1.0

    with pytest.warns(RuntimeWarning, match="overflow encountered in exp"):
        sol = ss.solve(ss.NonlinearProblem(f, np.full(2, -20.0)), "newton", maxiters=100)
    assert np.all(np.isfinite(sol.u))  # (the line search backtracks from the overflow)
    with np.errstate(over="raise"):  # the caller's settings hold inside f
        with pytest.raises(FloatingPointError):
            ss.solve(ss.NonlinearProblem(f, np.full(2, -20.0)), "newton", maxiters=100)
