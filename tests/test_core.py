"""Core behaviour: problems, solve(), return codes, batches, traces, bad input, JAX transformations."""

import numpy as np
import pytest
from helpers import assert_honest, get_backend, slow_on
from benchmarks.problems.honesty import (H_MAX, h_equation, h_matrix, h_reference, laplace, laplace_reference,
                                         linear_contraction, linear_reference, mlp_reference, tanh_mlp)

import steadysolve as ss

CORE_ALGS = ["anderson", "fixed_point"]


# ---------------------------------------------------------------------------
# Known answers
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("alg", CORE_ALGS)
@pytest.mark.slow
def test_h_equation_max_value(bk, alg):
    prob, kw = h_equation(bk.xp)
    sol = ss.solve(prob, alg, **kw)
    assert sol.retcode is ss.ReturnCode.Success
    assert abs(float(np.max(bk.to_numpy(sol.u))) - H_MAX) < 1e-9
    assert sol.stats.nf == sol.stats.niter + 1  # one evaluation per iteration plus u0


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict", "torch"])  # JAX: jitted below
@pytest.mark.slow
def test_anderson_memory10_solves_laplace_like_scipy(backend):
    bk = get_backend(backend)
    prob, kw = laplace(bk.xp)
    sol = ss.solve(prob, ss.Anderson(memory=10), maxiters=1500, **kw)
    assert sol.retcode is ss.ReturnCode.Success
    np.testing.assert_allclose(bk.to_numpy(sol.u), laplace_reference(), atol=1e-5)
    assert sol.stats.nf <= 700  # SciPy's anderson(M=10) needs 549 here


@pytest.mark.slow
def test_jax_jit_laplace():
    import jax

    bk = get_backend("jax")
    prob, kw = laplace(bk.xp)
    run = jax.jit(lambda u0: ss.solve(prob.remake(u0=u0), ss.Anderson(memory=10), maxiters=1500, **kw).u)
    np.testing.assert_allclose(np.asarray(run(prob.u0)), laplace_reference(), atol=1e-5)


@pytest.mark.slow
def test_linear_contraction_exact(bk):
    prob, kw = linear_contraction(bk.xp)
    for alg in CORE_ALGS:
        sol = ss.solve(prob, alg, **kw)
        np.testing.assert_allclose(bk.to_numpy(sol.u), linear_reference(), atol=1e-9)


def test_anderson_beats_picard_on_linear_system(bk):
    prob, kw = linear_contraction(bk.xp)
    a = ss.solve(prob, "anderson", **kw)
    f = ss.solve(prob, "fixed_point", **kw)
    assert a.successful and f.successful
    assert a.stats.nf < f.stats.nf


@pytest.mark.slow
def test_nonlinear_problem_auto_step_scale(bk):
    """On a NonlinearProblem, u <- u + alpha F(u) with SciPy's automatic alpha."""
    M = np.diag(np.linspace(1.0, 3.0, 8))
    p = bk.asarray(M)
    b = bk.asarray(np.ones(8))
    prob = ss.NonlinearProblem(lambda u, p: b - p @ u, bk.asarray(np.zeros(8)), p)
    for alg in CORE_ALGS:
        sol = ss.solve(prob, alg, abstol=1e-10, reltol=0.0)
        assert sol.retcode is ss.ReturnCode.Success
        np.testing.assert_allclose(bk.to_numpy(sol.u), 1.0 / np.diag(M), atol=1e-9)
    # a user-given step scale is honoured: alpha = 1/3 makes Picard iteration converge fast
    sol = ss.solve(prob, ss.FixedPointIteration(alpha=1 / 3), abstol=1e-10, reltol=0.0)
    assert sol.successful


@pytest.mark.slow
def test_steady_state_problem(bk):
    b = bk.asarray(np.array([1.0, 2.0]))
    prob = ss.SteadyStateProblem(lambda u, p, t: p - u, bk.asarray(np.zeros(2)), b)
    sol = ss.solve(prob, "anderson", abstol=1e-12, reltol=0.0)
    assert sol.successful
    np.testing.assert_allclose(bk.to_numpy(sol.u), [1.0, 2.0], atol=1e-12)


# ---------------------------------------------------------------------------
# Return codes and the best iterate
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("alg", CORE_ALGS)
def test_maxiters_returns_best_iterate(bk, alg):
    prob, kw = h_equation(bk.xp)
    sol = ss.solve(prob, alg, maxiters=3, **kw)
    assert sol.retcode is ss.ReturnCode.MaxIters
    assert not sol.successful
    assert sol.stats.niter == 3
    assert_honest(bk, prob, sol, kw["abstol"], kw["reltol"])
    # the best iterate is better than the start
    r0 = np.max(np.abs(bk.to_numpy(prob.residual(prob.u0, prob.p))))
    assert np.max(np.abs(bk.to_numpy(sol.resid))) < r0


@pytest.mark.parametrize("alg", CORE_ALGS)
@pytest.mark.slow
def test_nan_after_a_few_iterations_gives_nonfinite(bk, alg):
    xp = bk.xp
    calls = []

    def g(u, p):
        calls.append(1)
        out = 0.5 * u + 1.0
        if len(calls) > 4:
            out = out * xp.asarray(float("nan"), dtype=u.dtype)
        return out

    prob = ss.FixedPointProblem(g, bk.asarray(np.zeros(3)))
    sol = ss.solve(prob, alg, abstol=1e-14, reltol=0.0)
    assert sol.retcode is ss.ReturnCode.NonFinite
    u = bk.to_numpy(sol.u)
    assert np.all(np.isfinite(u))
    assert np.all(np.isfinite(bk.to_numpy(sol.resid)))


def test_diverged(bk):
    prob = ss.NonlinearProblem(lambda u, p: u, bk.asarray(np.ones(4)))
    sol = ss.solve(prob, ss.FixedPointIteration(alpha=1.0), maxiters=200)
    assert sol.retcode is ss.ReturnCode.Diverged
    assert sol.stats.niter < 60
    np.testing.assert_allclose(bk.to_numpy(sol.u), np.ones(4))  # best iterate = the start


def test_stalled(bk):
    prob = ss.FixedPointProblem(lambda u, p: u + 1.0, bk.asarray(np.zeros(2)))  # no fixed point
    sol = ss.solve(prob, "fixed_point", maxiters=1000)
    assert sol.retcode is ss.ReturnCode.Stalled
    assert sol.stats.niter == ss.FixedPointIteration.stall_patience


def test_throw_raises_with_solution(bk):
    prob, kw = h_equation(bk.xp)
    with pytest.raises(ss.ConvergenceError, match="MaxIters") as err:
        ss.solve(prob, "fixed_point", maxiters=2, throw=True, **kw)
    assert err.value.solution.retcode is ss.ReturnCode.MaxIters
    ss.solve(prob, "anderson", throw=True, **kw)  # success does not raise


def test_already_converged_start(bk):
    prob, kw = h_equation(bk.xp)
    u = bk.asarray(h_reference())
    sol = ss.solve(prob.remake(u0=u), "anderson", **kw)
    assert sol.successful and sol.stats.niter == 0 and sol.stats.nf == 1


def test_success_uses_reltol(bk):
    prob, _ = h_equation(bk.xp)
    sol = ss.solve(prob, "fixed_point", abstol=0.0, reltol=1e-6, norm="l2")
    assert sol.successful
    assert_honest(bk, prob, sol, 0.0, 1e-6, norm="l2")


# ---------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("alg", CORE_ALGS)
@slow_on("jax")
def test_batched_per_element_counts(bk, alg):
    prob, kw = tanh_mlp(bk.xp)
    sol = ss.solve(prob, alg, **kw)
    assert sol.retcode is ss.ReturnCode.Success
    assert len(sol.retcodes) == 16 and all(rc is ss.ReturnCode.Success for rc in sol.retcodes)
    counts = np.asarray(sol.stats.niter_per_element)
    assert counts.shape == (16,)
    assert counts.min() < counts.max()  # small inputs converge sooner
    assert counts.max() == sol.stats.niter
    np.testing.assert_allclose(bk.to_numpy(sol.u), mlp_reference(), atol=1e-8)
    assert_honest(bk, prob, sol, kw["abstol"], kw["reltol"], batch_axis=0)


@slow_on("jax")
def test_batched_equals_one_by_one(bk):
    prob, kw = tanh_mlp(bk.xp, batch=4, width=8)
    sol = ss.solve(prob, "anderson", **kw)
    W, U, x = prob.p
    kw1 = dict(kw)
    kw1.pop("batch_axis")
    for i in range(4):
        p_i = (W, U, x[i:i + 1, :])
        one = ss.solve(ss.FixedPointProblem(prob.f, prob.u0[i:i + 1, :], p_i), "anderson", **kw1)
        assert one.stats.niter == int(np.asarray(sol.stats.niter_per_element)[i])
        np.testing.assert_allclose(bk.to_numpy(one.u)[0], bk.to_numpy(sol.u)[i], atol=1e-12)


@pytest.mark.slow
def test_batch_axis_last(bk):
    prob, kw = tanh_mlp(bk.xp, batch=4, width=8)
    xp = bk.xp
    W, U, x = prob.p

    def g_t(z, p):  # batch along axis 1
        return xp.permute_dims(prob.f(xp.permute_dims(z, (1, 0)), p), (1, 0))

    pt = ss.FixedPointProblem(g_t, xp.permute_dims(prob.u0, (1, 0)), prob.p)
    kw_t = dict(kw, batch_axis=-1)
    st = ss.solve(pt, "anderson", **kw_t)
    s0 = ss.solve(prob, "anderson", **kw)
    np.testing.assert_allclose(bk.to_numpy(st.u).T, bk.to_numpy(s0.u), atol=1e-12)
    assert list(np.asarray(st.stats.niter_per_element)) == list(np.asarray(s0.stats.niter_per_element))


@pytest.mark.slow
def test_batched_nan_in_one_element_only(bk):
    xp = bk.xp

    bad = bk.asarray(np.array([[0.0], [1.0], [0.0]])) > 0.5  # element 1 turns NaN
    nan_inputs = []

    def g(u, p):
        # a batch-mixing f (batch norm, attention) would be poisoned by a NaN row: none may come back
        nan_inputs.append(bool(xp.any(xp.isnan(u))))
        nan = xp.asarray(float("nan"), dtype=u.dtype)
        return xp.where(bad & (u > 1.5), nan, 0.5 * u + 1.0)

    prob = ss.FixedPointProblem(g, bk.asarray(np.zeros((3, 2))))
    sol = ss.solve(prob, "fixed_point", abstol=1e-12, reltol=0.0, batch_axis=0)
    rcs = sol.retcodes
    assert rcs[0] is ss.ReturnCode.Success and rcs[2] is ss.ReturnCode.Success
    assert rcs[1] is ss.ReturnCode.NonFinite
    assert sol.retcode is ss.ReturnCode.NonFinite
    u = bk.to_numpy(sol.u)
    assert np.all(np.isfinite(u))
    np.testing.assert_allclose(u[[0, 2]], 2.0, atol=1e-11)
    assert not any(nan_inputs)


# ---------------------------------------------------------------------------
# Trace and callback
# ---------------------------------------------------------------------------

def test_trace_and_callback(bk):
    prob, kw = h_equation(bk.xp)
    seen = []
    sol = ss.solve(prob, "anderson", store_trace=True, callback=lambda it, u, r: seen.append((it, r)), **kw)
    tr = np.asarray(sol.trace)
    assert tr.shape == (sol.stats.niter + 1,)
    assert tr[-1] <= kw["abstol"] and tr[0] > tr[-1]
    assert [s[0] for s in seen] == list(range(1, sol.stats.niter + 1))
    assert ss.solve(prob, "anderson", **kw).trace is None


def test_callback_batched_shows_frozen_converged_elements(bk):
    prob, kw = tanh_mlp(bk.xp, batch=4, width=8)
    seen = []
    sol = ss.solve(prob, "anderson", callback=lambda it, u, r: seen.append((bk.to_numpy(u), np.array(r))), **kw)
    per = np.asarray(sol.stats.niter_per_element)
    assert per.min() < per.max()  # elements converge at different iterations
    u_final = bk.to_numpy(sol.u)
    for e in range(4):
        k = int(per[e])  # callback index k - 1 is iteration k, where element e converged
        for u, r in seen[k - 1:]:
            np.testing.assert_array_equal(u[e], u_final[e])  # frozen from then on
            assert r[e] == seen[k - 1][1][e] <= kw["abstol"]


def test_trace_batched_shape(bk):
    prob, kw = tanh_mlp(bk.xp, batch=3, width=5)
    sol = ss.solve(prob, "fixed_point", store_trace=True, **kw)
    assert np.asarray(sol.trace).shape == (sol.stats.niter + 1, 3)


# ---------------------------------------------------------------------------
# Bad input: specific errors before any iteration
# ---------------------------------------------------------------------------

def test_wrong_shape(bk):
    prob = ss.NonlinearProblem(lambda u, p: u[:2], bk.asarray(np.zeros(3)))
    with pytest.raises(ValueError, match=r"returned shape \(2,\) but u0 has shape \(3,\)"):
        ss.solve(prob, "anderson")


def test_wrong_shape_fixed_point_broadcast(bk):
    xp = bk.xp
    prob = ss.FixedPointProblem(lambda u, p: xp.reshape(u, (3, 1)), bk.asarray(np.zeros(3)))
    with pytest.raises(ValueError, match=r"returned shape \(3, 1\)"):
        ss.solve(prob, "anderson")


def test_wrong_dtype(bk):
    xp = bk.xp
    prob = ss.NonlinearProblem(lambda u, p: xp.astype(u, xp.float32), bk.asarray(np.zeros(3)))
    with pytest.raises(TypeError, match="returned dtype .*float32.* but u0 has dtype .*float64"):
        ss.solve(prob, "anderson")


def test_integer_u0(bk):
    u0 = bk.asarray(np.zeros(3), dtype=np.int64)
    with pytest.raises(TypeError, match="u0 must have a real floating-point dtype"):
        ss.NonlinearProblem(lambda u, p: u, u0)


def test_nonfinite_u0(bk):
    with pytest.raises(ValueError, match="u0 contains NaN or Inf"):
        ss.FixedPointProblem(lambda u, p: u, bk.asarray(np.array([0.0, np.nan])))


def test_mixed_libraries(bk):
    if bk.name == "numpy":
        other = get_backend("torch").asarray(np.ones(2))
        name = "torch"
    else:
        other = np.ones(2)
        name = "numpy"
    with pytest.raises(TypeError, match=f"mixed array libraries: u0 is a .* array but p is a {name} array"):
        ss.NonlinearProblem(lambda u, p: u, bk.asarray(np.zeros(2)), other)


def test_f_returns_other_library(bk):
    other = get_backend("torch" if bk.name == "numpy" else "numpy")
    prob = ss.NonlinearProblem(lambda u, p: other.asarray(np.zeros(2)), bk.asarray(np.zeros(2)))
    with pytest.raises(TypeError, match=f"returned a {'torch' if bk.name == 'numpy' else 'numpy'} array"):
        ss.solve(prob, "anderson")


def test_u0_not_an_array():
    with pytest.raises(TypeError, match="u0 must be an array"):
        ss.NonlinearProblem(lambda u, p: u, [1.0, 2.0])


def test_f_not_callable():
    with pytest.raises(TypeError, match="f must be callable"):
        ss.NonlinearProblem(3.0, np.zeros(2))


def test_unknown_algorithm_name():
    with pytest.raises(ValueError, match=r"unknown algorithm 'andersen'\. Did you mean 'anderson'\? Valid names: .*fixed_point"):
        ss.solve(ss.NonlinearProblem(lambda u, p: -u, np.ones(2)), "andersen")


def test_unknown_keyword():
    prob = ss.NonlinearProblem(lambda u, p: -u, np.ones(2))
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'abstool' \(did you mean 'abstol'\?\)"):
        ss.solve(prob, "anderson", abstool=1e-3)
    with pytest.raises(TypeError, match=r"'maxiter' \(did you mean 'maxiters'\?\)"):  # SciPy's spelling
        ss.solve(prob, "anderson", maxiter=10)
    with pytest.raises(TypeError, match=r"'tol' \(did you mean 'abstol' or 'reltol'\?\)"):
        ss.solve(prob, "anderson", tol=1e-6)
    with pytest.raises(TypeError, match="unexpected keyword argument 'memroy'"):
        ss.Anderson(memroy=3)  # noqa  (dataclass: unknown option)


@pytest.mark.parametrize("kw, exc, msg", [
    (dict(abstol=-1.0), ValueError, "abstol must be a finite number >= 0"),
    (dict(reltol=float("nan")), ValueError, "reltol must be a finite number >= 0"),
    (dict(maxiters=0), ValueError, "maxiters must be >= 1"),
    (dict(maxiters=2.5), TypeError, "maxiters must be an int"),
    (dict(norm="l3"), ValueError, "unknown norm 'l3'"),
    (dict(batch_axis=3), ValueError, "batch_axis=3 is out of range"),
    (dict(callback=5), TypeError, "callback must be callable"),
])
def test_invalid_solve_options(kw, exc, msg):
    prob = ss.NonlinearProblem(lambda u, p: -u, np.ones(2))
    with pytest.raises(exc, match=msg):
        ss.solve(prob, "anderson", **kw)


@pytest.mark.parametrize("make, exc, msg", [
    (lambda: ss.Anderson(memory=0), ValueError, "memory must be >= 1"),
    (lambda: ss.Anderson(memory=2.0), TypeError, "memory must be an int"),
    (lambda: ss.Anderson(mixing=0.0), ValueError, "mixing must be > 0"),
    (lambda: ss.Anderson(regularization=-1e-3), ValueError, "regularization must be >= 0"),
    (lambda: ss.FixedPointIteration(damping=-0.5), ValueError, "damping must be > 0"),
])
def test_invalid_algorithm_options(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


def test_not_a_problem():
    with pytest.raises(TypeError, match="prob must be a NonlinearProblem"):
        ss.solve(lambda u: u, "anderson")


def test_algorithms_hashable_and_by_class():
    assert hash(ss.Anderson(memory=3)) == hash(ss.Anderson(memory=3))
    prob = ss.NonlinearProblem(lambda u, p: 1.0 - u, np.zeros(2))
    assert ss.solve(prob, ss.Anderson).successful


# ---------------------------------------------------------------------------
# JAX: jit equals eager, vmap equals a loop
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("alg", CORE_ALGS)
@pytest.mark.slow
def test_jax_jit_equals_eager(alg):
    import jax

    bk = get_backend("jax")
    prob, kw = h_equation(bk.xp, n=30)
    eager = ss.solve(prob, alg, **kw)

    @jax.jit
    def run(u0, M):  # a jitted function returns the Solution itself (a pytree)
        return ss.solve(ss.FixedPointProblem(prob.f, u0, M), alg, **kw)

    sol = run(prob.u0, prob.p)
    assert isinstance(sol, ss.Solution) and isinstance(sol.stats, ss.Stats)
    np.testing.assert_allclose(np.asarray(sol.u), np.asarray(eager.u), atol=1e-13)
    np.testing.assert_allclose(np.asarray(sol.resid), np.asarray(eager.resid), atol=1e-13)
    assert int(sol.stats.niter) == eager.stats.niter and int(sol.stats.nf) == eager.stats.nf
    assert sol.retcode is eager.retcode and sol.retcodes == eager.retcodes and sol.successful
    assert np.asarray(sol.retcode_array).shape == () and sol.alg == eager.alg


def test_jax_jit_nonlinear_problem_with_params():
    import jax
    import jax.numpy as jnp

    A = jnp.asarray(np.diag(np.linspace(1.0, 2.0, 5)))
    f = jax.jit(lambda u0, p: ss.solve(ss.NonlinearProblem(lambda u, p: 1.0 - p @ u, u0, p), ss.Anderson(),
                                       abstol=1e-12, reltol=0.0).u)
    np.testing.assert_allclose(np.asarray(f(jnp.zeros(5), A)), 1.0 / np.linspace(1.0, 2.0, 5), atol=1e-11)


@pytest.mark.slow
def test_jax_vmap_equals_loop():
    import jax
    import jax.numpy as jnp

    bk = get_backend("jax")
    prob, kw = h_equation(bk.xp, n=20)
    cs = jnp.asarray([0.5, 0.7, 0.9])

    Ms = jnp.stack([jnp.asarray(h_matrix(20, float(c))) for c in cs])
    run = jax.jit(jax.vmap(lambda M: ss.solve(ss.FixedPointProblem(prob.f, prob.u0, M), "anderson", **kw).u))
    batch = np.asarray(run(Ms))
    for i in range(3):
        one = ss.solve(ss.FixedPointProblem(prob.f, prob.u0, Ms[i]), "anderson", **kw)
        np.testing.assert_allclose(batch[i], np.asarray(one.u), atol=1e-12)


def test_jax_jit_nonfinite_and_maxiters_codes():
    import jax
    import jax.numpy as jnp

    def g(u, p):
        return jnp.where(u > 1.5, jnp.nan, 0.5 * u + 1.0)

    res = jax.jit(lambda u0: ss.solve(ss.FixedPointProblem(g, u0), "fixed_point",
                                      abstol=1e-14, reltol=0.0).retcode_array)(jnp.zeros(2))
    assert ss.ReturnCode.from_code(int(res)) is ss.ReturnCode.NonFinite
    res = jax.jit(lambda u0: ss.solve(ss.FixedPointProblem(lambda u, p: 0.5 * u + 1, u0), "fixed_point",
                                      maxiters=3).retcode_array)(jnp.zeros(2))
    assert ss.ReturnCode.from_code(int(res)) is ss.ReturnCode.MaxIters


def test_jax_throw_under_jit():
    import jax
    import jax.numpy as jnp

    run = jax.jit(lambda u0: ss.solve(ss.FixedPointProblem(lambda u, p: 0.5 * u + 1, u0), "fixed_point",
                                      maxiters=2, throw=True).u)
    with pytest.raises(Exception, match="did not converge"):
        jax.block_until_ready(run(jnp.zeros(2)))


def test_jax_traced_retcode_message():
    import jax
    import jax.numpy as jnp

    def bad(u0):
        return ss.solve(ss.FixedPointProblem(lambda u, p: 0.5 * u, u0), "anderson").retcode

    with pytest.raises(TypeError, match="retcode_array"):
        jax.jit(bad)(jnp.ones(2))


@slow_on("jax")
def test_float32_default_tolerance(bk):
    u0 = bk.asarray(np.zeros(4), dtype=np.float32)
    xp = bk.xp
    prob = ss.FixedPointProblem(lambda u, p: 0.5 * xp.cos(u), u0)
    sol = ss.solve(prob, "anderson")
    assert sol.successful
    assert sol.u.dtype == u0.dtype
    assert float(np.max(np.abs(bk.to_numpy(sol.resid)))) <= 3e-6


@pytest.mark.parametrize("alg", ["fixed_point", "anderson"])
@slow_on("jax")
def test_batched_converged_element_never_feeds_nan_back(bk, alg):
    # Element 0 (affine) converges first; from then on its map returns NaN (as a map evaluated
    # past its valid range might) while element 1 (nonlinear) keeps iterating. The converged
    # element must keep its answer, and no NaN row may ever reach g.
    xp = bk.xp
    first = bk.asarray(np.array([[1.0], [0.0]])) > 0.5
    done0 = [False]
    nan_calls = [0]
    nan_inputs = []

    def g(u, p):
        nan_inputs.append(bool(xp.any(xp.isnan(u))))
        a = xp.where(first, 0.5 * u + 1.0, 0.95 * xp.cos(u))
        if done0[0]:
            nan_calls[0] += 1
            return xp.where(first, xp.asarray(float("nan"), dtype=u.dtype), a)
        if float(xp.max(xp.abs(a - u)[0, :])) < 1e-9:
            done0[0] = True
        return a

    prob = ss.FixedPointProblem(g, bk.asarray(np.zeros((2, 3))))
    sol = ss.solve(prob, alg, abstol=1e-8, reltol=0.0, batch_axis=0, maxiters=5000)
    assert sol.retcodes == [ss.ReturnCode.Success, ss.ReturnCode.Success]
    u = bk.to_numpy(sol.u)
    np.testing.assert_allclose(u[0], 2.0, atol=1e-8)
    np.testing.assert_allclose(u[1], 0.95 * np.cos(u[1]), atol=1e-8)
    assert nan_calls[0] >= 1 and not any(nan_inputs)
