"""Honest answers under every input: the regression tests of the reliability issue.

Each test pins one behaviour a user relies on: no false Success on runaway iterates, half
precision, gradients through the core solve, pickling DEQs, 0-d and empty inputs, norm and
output checks, number types, DynamicSS divergence, capped traces under jit, exceptions from f.
"""

import copy
import io
import itertools
import pickle
import warnings

import numpy as np
import pytest
from helpers import get_backend, slow_on

import steadysolve as ss

RC = ss.ReturnCode
ALGS = ss.available()


# -- 1. runaway iterates are Diverged, genuine far roots still succeed ------------------

@slow_on("jax")
@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.slow
def test_no_root_runaway_is_not_success(bk, alg):
    xp = bk.xp
    prob = ss.NonlinearProblem(lambda u, p: xp.atan(u) + 2.0, bk.asarray(np.zeros(3)))
    sol = ss.solve(prob, alg)  # default tolerances: the relative test would pass at |u| ~ 1e13
    assert sol.retcode is not RC.Success, sol
    assert np.all(np.isfinite(bk.to_numpy(sol.u)))


@pytest.mark.parametrize("alg", ["anderson", "broyden", "newton", "newton_krylov"])
@pytest.mark.slow
def test_root_far_from_the_start_still_succeeds(bk, alg):
    prob = ss.NonlinearProblem(lambda u, p: u - 1e8, bk.asarray(np.zeros(2)))
    sol = ss.solve(prob, alg, maxiters=2000)
    assert sol.retcode is RC.Success, sol
    np.testing.assert_allclose(bk.to_numpy(sol.u), 1e8, rtol=1e-10)


@pytest.mark.parametrize("make, found, reltol", [
    (lambda: ss.FixedPointProblem(lambda u, p: 2.0 * u + 1.0, np.zeros(3)), False, 1e-8),  # repelling: runs away
    (lambda: ss.FixedPointProblem(lambda u, p: 0.5 * u + 5e7, np.zeros(3)), True, 1e-8),  # a far fixed point, 1e8
    (lambda: ss.NonlinearProblem(lambda u, p: -np.arctan(u) - 2.0, np.zeros(3)), False, 1e-8),  # no root
    # oscillating iterates: the sum of the steps (the bound) passes 100 norm(u0) long before the
    # iterate does, and there the relative test would pass too; only the exact norm says "no runaway"
    (lambda: ss.FixedPointProblem(lambda u, p: -0.99 * u + 1.0, np.full(3, 10.0)), True, 1e-2),
])
@pytest.mark.parametrize("damping", [1.0, 0.5])
def test_fixed_point_one_system_decides_like_the_batch(make, found, reltol, damping):
    # one NumPy system bounds norm(u) instead of computing it every iteration: the verdicts, counts
    # and iterates must be those of the same system inside a batch (which computes every norm)
    prob, alg = make(), ss.FixedPointIteration(damping=damping)
    one = ss.solve(prob, alg, reltol=reltol, maxiters=2000)
    both = ss.solve(prob.remake(u0=np.stack([prob.u0, prob.u0])), alg, reltol=reltol, maxiters=2000, batch_axis=0)
    assert one.retcode is both.retcodes[0] and one.stats.niter == both.stats.niter_per_element[0]
    np.testing.assert_array_equal(one.u, both.u[0])
    assert (one.retcode is RC.Success) == found, one
    assert np.all(np.isfinite(one.u))


def test_issue_reproducers_end_diverged():
    sol = ss.solve(ss.SteadyStateProblem(lambda u, p, t: np.ones_like(u), np.zeros(3)), "dynamic_ss")
    assert sol.retcode is RC.Diverged and np.all(np.isfinite(sol.u))
    sol = ss.solve(ss.FixedPointProblem(lambda u, p: u + 1.0, np.zeros(2)), "newton", reltol=0.0)
    assert sol.retcode is RC.Diverged and np.all(np.isfinite(sol.u))
    assert "ran away" in sol.retcode.value


@pytest.mark.slow
def test_runaway_under_jit():
    import jax
    import jax.numpy as jnp

    run = jax.jit(lambda u0: ss.solve(ss.NonlinearProblem(lambda u, p: jnp.arctan(u) + 2.0, u0), "anderson"))
    sol = run(jnp.zeros(3))
    assert sol.retcode is RC.Diverged and np.all(np.isfinite(np.asarray(sol.u)))


def test_torch_deq_runaway_warns_not_success():
    torch = pytest.importorskip("torch")
    from steadysolve.adapters.torch import DEQ

    deq = DEQ(lambda z, x: z + 1.0 + 0.5 * torch.cos(z) + 0 * x)
    with pytest.warns(RuntimeWarning, match="Diverged"):
        deq(torch.zeros(2, 4))
    assert deq.forward_stats.retcode is RC.Diverged


@pytest.mark.slow
def test_jax_adapter_runaway_under_jit():
    import jax
    import jax.numpy as jnp
    from steadysolve.adapters.jax import fixed_point

    z, st = jax.jit(lambda x: fixed_point(lambda z, x: z + 1.0 + 0.5 * jnp.cos(z) + 0 * x, jnp.zeros(4), x,
                                          abstol=1e-6, reltol=1e-4, on_failure="ignore"))(jnp.zeros(4))
    assert st.retcode is RC.Diverged and not st.successful and np.all(np.isfinite(np.asarray(z)))


# -- 2. tensors that require grad in the core solve -------------------------------------

def test_core_solve_with_requires_grad_warns_and_detaches():
    torch = pytest.importorskip("torch")
    p = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    prob = ss.NonlinearProblem(lambda u, p: u - p * torch.cos(u), torch.zeros(3, dtype=torch.float64), p)
    with pytest.warns(UserWarning, match="adapters.torch"):
        sol = ss.solve(prob, "newton_krylov", abstol=1e-12)
    assert sol.successful and not sol.u.requires_grad
    with pytest.raises(RuntimeError):  # never a silent NaN gradient: torch refuses, loudly
        sol.u.sum().backward()
    assert p.grad is None
    # the differentiable path gives the implicit gradient: u* = p cos(u*) -> du/dp = cos u / (1 + p sin u)
    from steadysolve.adapters.torch import fixed_point

    u, _ = fixed_point(lambda u, p: p * torch.cos(u), torch.zeros(3, dtype=torch.float64), p, abstol=1e-12, reltol=0.0)
    u.sum().backward()
    ud = u.detach()
    torch.testing.assert_close(p.grad, torch.cos(ud) / (1 + p.detach() * torch.sin(ud)))


# -- 3. half precision ------------------------------------------------------------------

# JAX's half-precision cases compile every algorithm's ops for two more dtypes: the fast loop leaves them out
HALF = [("numpy", "float16"), ("torch", "float16"), ("torch", "bfloat16"),
        pytest.param("jax", "float16", marks=pytest.mark.slow), pytest.param("jax", "bfloat16", marks=pytest.mark.slow)]


def _half(lib, name):
    if lib == "numpy":
        return np.zeros(4, dtype=np.float16), np.cos
    if lib == "torch":
        import torch

        return torch.zeros(4, dtype=getattr(torch, name)), torch.cos
    import jax.numpy as jnp

    return jnp.zeros(4, dtype=getattr(jnp, name)), jnp.cos


@pytest.mark.parametrize("lib, dtype", HALF)
@pytest.mark.parametrize("alg", ALGS)
def test_half_precision_solves_in_the_users_dtype(lib, dtype, alg):
    u0, cos = _half(lib, dtype)
    sol = ss.solve(ss.FixedPointProblem(lambda u, p: 0.5 * cos(u) + 0.2, u0), alg, abstol=1e-2, reltol=1e-2)
    assert sol.retcode is RC.Success, sol
    assert sol.u.dtype == u0.dtype
    u = np.asarray(get_backend(lib).to_numpy(sol.u), dtype=np.float64)
    np.testing.assert_allclose(u, 0.5 * np.cos(u) + 0.2, atol=3e-2)


def test_half_precision_torch_deq_trains():
    torch = pytest.importorskip("torch")
    from steadysolve.adapters.torch import DEQ

    for dt in (torch.float16, torch.bfloat16):
        torch.manual_seed(0)
        lin = torch.nn.Linear(4, 4).to(dt)
        deq = DEQ(lambda z, x: torch.tanh(0.5 * lin(z) + x), abstol=1e-2, reltol=1e-2)
        z = deq(torch.randn(3, 4).to(dt))
        z.float().sum().backward()
        assert z.dtype == dt and deq.forward_stats.successful and deq.backward_stats.successful
        assert torch.isfinite(lin.weight.grad.float()).all()


# -- 4. pickling a DEQ at any time ------------------------------------------------------

def test_torch_deq_pickles_after_forward_and_backward():
    torch = pytest.importorskip("torch")
    from steadysolve.adapters.torch import DEQ

    class Cell(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3)

        def forward(self, z, x):
            return torch.tanh(0.5 * self.lin(z) + x)

    globals()["Cell"] = Cell  # picklable by reference, as a user's module-level class is
    Cell.__qualname__ = "Cell"
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), DEQ(Cell(), jacobian_reg=0.1), torch.nn.Linear(3, 1))
    x = torch.randn(4, 2)
    out = model(x)
    (out.sum() + model[1].aux_loss).backward()
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    clone = copy.deepcopy(model)
    pickle.loads(pickle.dumps(model))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
        torch.testing.assert_close(clone(x), model(x))
    assert loaded[1].stats is not None  # the loaded copy ran a forward pass of its own


# -- 5 / 6. 0-d and empty inputs ------------------------------------------------------------

def test_zero_d_numpy_u0_with_scalar_returning_f():
    sol = ss.solve(ss.NonlinearProblem(lambda u, p: np.cos(u) - u, np.asarray(0.5)), "newton", abstol=1e-12)
    assert sol.successful and sol.u.shape == () and abs(float(sol.u) - 0.7390851332151607) < 1e-10
    sol = ss.solve(ss.FixedPointProblem(lambda u, p: np.cos(u), np.asarray(0.5)), "anderson", abstol=1e-12)
    assert sol.successful and abs(float(sol.u) - 0.7390851332151607) < 1e-10


def test_empty_u0_is_refused(bk):
    with pytest.raises(ValueError, match="u0 is empty"):
        ss.solve(ss.NonlinearProblem(lambda u, p: u, bk.asarray(np.zeros(0))))
    with pytest.raises(ValueError, match="empty"):
        ss.solve(ss.NonlinearProblem(lambda u, p: u, bk.asarray(np.zeros((3, 0)))), batch_axis=0)


# -- 7 / 8. norm callables and the output of f on every call ----------------------------------

@pytest.mark.slow
def test_norm_callable_must_return_per_row_norms(bk):
    xp = bk.xp
    prob = ss.NonlinearProblem(lambda u, p: 1.0 - u, bk.asarray(np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"per-row norms of shape \(1,\)"):
        ss.solve(prob, norm=lambda x: xp.max(xp.abs(x)))
    with pytest.raises(ValueError, match=r"per-row norms of shape \(2,\)"):
        ss.solve(prob, norm=lambda x: xp.max(xp.abs(x)), batch_axis=0)
    sol = ss.solve(prob, norm=lambda x: xp.max(xp.abs(x), axis=1), batch_axis=0)
    assert sol.successful


def test_shape_change_on_a_later_call_is_reported(bk):
    calls = []

    def f(u, p):
        calls.append(1)
        return (1.0 - u)[:2] if len(calls) > 3 else 1.0 - u

    with pytest.raises(ValueError, match=r"f\(u, p\) returned shape \(2,\) during the solve but u0 has shape \(3,\)"):
        ss.solve(ss.NonlinearProblem(f, bk.asarray(np.zeros(3))), "anderson", abstol=1e-14, reltol=0.0)


def test_exception_inside_f_propagates_with_context():
    calls = []

    def f(u, p):
        calls.append(1)
        if len(calls) == 4:
            raise KeyError("boom")
        return 0.9 * np.cos(u) - u

    with pytest.raises(KeyError, match="boom") as ei:
        ss.solve(ss.NonlinearProblem(f, np.zeros(3)), "newton_krylov", abstol=1e-14, reltol=0.0)
    notes = getattr(ei.value, "__notes__", [])
    assert any("iteration" in n and "NewtonKrylov" in n for n in notes), notes


# -- 9. number types ---------------------------------------------------------------------

def test_numpy_scalars_accepted_and_bools_refused():
    prob = ss.NonlinearProblem(lambda u, p: 1.0 - u, np.zeros(3))
    sol = ss.solve(prob, "newton", abstol=np.float32(1e-6), reltol=np.float64(0.0), maxiters=np.int64(10))
    assert sol.successful
    assert ss.Anderson(memory=np.int32(3)).memory == 3
    with pytest.raises(TypeError, match="throw must be True or False"):
        ss.solve(prob, throw="no")
    with pytest.raises(TypeError, match="maxiters must be an int"):
        ss.solve(prob, maxiters=True)
    with pytest.raises(TypeError, match="abstol"):
        ss.solve(prob, abstol=True)


# -- 10. DynamicSS ---------------------------------------------------------------------------

@pytest.mark.slow
def test_dynamic_ss_exponential_growth_is_diverged_quickly(bk):
    sol = ss.solve(ss.SteadyStateProblem(lambda u, p, t: u, bk.asarray(np.ones(2))), "dynamic_ss")
    assert sol.retcode is RC.Diverged and sol.stats.niter < 1000 and sol.stats.t < 10


def test_dynamic_ss_zero_abstol_no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sol = ss.solve(ss.NonlinearProblem(lambda u, p: 1.0 - u, np.zeros(3)), "dynamic_ss", abstol=0.0,
                       reltol=1e-8)
    assert sol.successful


# -- 11. a DEQ whose z and x differ in shape -------------------------------------------------

def test_deq_needs_z0_when_shapes_differ():
    torch = pytest.importorskip("torch")
    from steadysolve.adapters.torch import DEQ

    W, U = torch.nn.Linear(4, 4), torch.nn.Linear(3, 4)
    deq = DEQ(lambda z, x: torch.tanh(W(z) + U(x)))
    with pytest.raises(RuntimeError, match="pass z0="):
        deq(torch.randn(5, 3))
    assert deq(torch.randn(5, 3), z0=torch.zeros(5, 4)).shape == (5, 4)


@pytest.mark.slow
def test_jax_deq_needs_latent_shape_when_shapes_differ():
    import jax
    import jax.numpy as jnp
    from steadysolve.adapters.jax import DEQ

    W, U = jnp.ones((4, 4)) * 0.1, jnp.ones((4, 3)) * 0.1
    deq = DEQ(lambda z, x: jnp.tanh(W @ z + U @ x))
    with pytest.raises(TypeError, match="latent_shape="):
        deq(jnp.ones(3))
    assert DEQ(lambda z, x: jnp.tanh(W @ z + U @ x), latent_shape=(4,))(jnp.ones(3)).shape == (4,)
    assert jax.jit(lambda x: DEQ(lambda z, x: jnp.tanh(W @ z + U @ x), latent_shape=(4,))(x))(jnp.ones(3)).shape


# -- 12. traces under jit scale with the cap, not with maxiters ------------------------------

def test_trace_under_jit_is_capped():
    import jax
    import jax.numpy as jnp

    def run(u0, cap):
        return ss.solve(ss.FixedPointProblem(lambda u, p: 0.5 * u + 1.0, u0), "fixed_point", maxiters=10 ** 8,
                        store_trace=cap, abstol=1e-12, reltol=0.0)

    sol = jax.jit(lambda u0: run(u0, True))(jnp.zeros(2))
    tr = np.asarray(sol.trace)
    assert sol.successful and tr.shape[0] == 1024
    n = int(sol.stats.niter)
    np.testing.assert_allclose(tr[n], np.max(np.abs(np.asarray(sol.resid))), rtol=1e-12)
    assert np.all(np.isnan(tr[n + 1:]))
    sol = jax.jit(lambda u0: run(u0, 8))(jnp.zeros(2))
    tr = np.asarray(sol.trace)
    assert tr.shape[0] == 8 and tr[-1] <= 1e-12  # later iterations overwrite the last row
    eager = run(np.zeros(2), 8)
    assert eager.trace.shape == (8,) and eager.trace[-1] <= 1e-12


# -- also: the failure message says why a fixed-point-type method failed -----------------------

@pytest.mark.parametrize("alg", ["fixed_point", "anderson", "dynamic_ss"])
def test_sign_convention_hint(alg):
    prob = ss.NonlinearProblem(lambda u, p: u - p * np.cos(u), np.zeros(3), np.array([0.5, 1.0, 2.0]))
    sol = ss.solve(prob, alg, maxiters=300)
    if sol.successful:
        return
    assert "point towards the root" in sol.message and "newton" in sol.message
    with pytest.raises(ss.ConvergenceError, match="point towards the root"):
        ss.solve(prob, alg, maxiters=300, throw=True)
    ok = ss.solve(prob, "newton_krylov", abstol=1e-10)
    assert ok.successful and ok.hint is None


@pytest.mark.parametrize("fixed_point", [False, True])
@pytest.mark.slow
def test_one_verdict_on_floats_numpy_and_jax(fixed_point):
    # the verdict is written once against a namespace: the one-system driver runs it on Python floats,
    # the eager batch on NumPy, the jitted loop in jax.numpy; on every mix of plain and rare elements
    # (NaN, runaway iterates, diverged residuals, stalled and stopped elements, flags, measured terms)
    # the three agree element by element
    import jax.numpy as jnp

    from steadysolve._engine import verdict as T

    rng = np.random.default_rng(0)
    nss = {"numpy": (T.array_namespace(np), np.asarray), "jax": (T.array_namespace(jnp), jnp.asarray)}
    for trial in range(60):
        B = 6
        fn0, un0, gn0 = rng.uniform(0.5, 2.0, B), rng.uniform(0.5, 2.0, B), rng.uniform(0.5, 2.0, B)
        fn = fn0 * 10.0 ** rng.uniform(-12, 1, B)
        un = un0 * 10.0 ** rng.uniform(-1, 3, B)
        terms = un * 10.0 ** rng.uniform(-8, 1, B)
        since = rng.integers(0, 12, B).astype(np.int32)
        if trial % 2:  # rare cases: NaN, a runaway iterate, a diverged residual
            k = rng.integers(0, 4)
            fn[0], un[1], fn[2] = [np.nan, fn[0]][k % 2], un[1] * [1e3, 1.0][k // 2], fn[2] * [1.0, 1e11][k % 2]
        stopped = np.arange(B) == 3  # an element that stopped earlier keeps its code
        for patience, flag in itertools.product((None, 10), (None, np.where(np.arange(B) == trial % B, 7, 0))):
            tol = T.Tolerances(1e-8, 1e-4, patience, 1e300, 2.2e-16, fixed_point)
            out = {}
            for name, (ns, conv) in nss.items():
                book = T.start(ns, conv(fn0), conv(un0), tol, gn=conv(gn0) if fixed_point else None)
                book = book._replace(since_best=conv(since),
                                     codes=ns.as_codes(ns.where(conv(stopped), 4, book.codes)))
                want = T.wants_terms(ns, conv(fn), conv(un), book, tol)
                t = 0.0 if want is None else ns.where(want, conv(terms), 0.0)
                f = None if flag is None else conv(flag.astype(np.int32))
                b, v = T.judge(ns, conv(fn), conv(un), f, book, tol, t)
                out[name] = [np.asarray(x) for x in b + v]
            for x, y in zip(out["numpy"], out["jax"]):
                np.testing.assert_array_equal(x, y)
            for i in range(B):
                ns = T.SCALARS
                book = T.start(ns, float(fn0[i]), float(un0[i]), tol, gn=float(gn0[i]) if fixed_point else None)
                book = book._replace(since_best=int(since[i]), codes=4 if stopped[i] else book.codes)
                want = T.wants_terms(ns, float(fn[i]), float(un[i]), book, tol)
                b, v = T.judge(ns, float(fn[i]), float(un[i]), None if flag is None else int(flag[i]), book, tol,
                               float(terms[i]) if want else 0.0)
                np.testing.assert_array_equal([float(x) for x in b + v], [float(x[i]) for x in out["numpy"]])


@pytest.mark.slow
def test_jitted_batch_with_a_per_element_user_norm():
    # a user's norm may weight each batch element (an array of the batch's size): the jitted driver
    # must call it on (batch, n) rows, never on a stack of residuals and iterates
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    w = jnp.asarray([1.0, 2.0, 0.5])

    @jax.jit
    def run(u0):
        sol = ss.solve(ss.NonlinearProblem(lambda u, p: u - 1.0, u0), "anderson", batch_axis=0,
                       norm=lambda x: jnp.max(jnp.abs(x), axis=1) * w, abstol=1e-8)
        return sol.u, sol.retcode_array

    u, rc = run(jnp.zeros((3, 2)))
    assert [int(c) for c in rc] == [0, 0, 0]
    np.testing.assert_allclose(np.asarray(u), 1.0, atol=1e-7)
