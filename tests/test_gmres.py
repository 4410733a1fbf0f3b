"""GMRES and linear_solve: dense references, exactness, failures, batching, jit/vmap."""

import numpy as np
import pytest
from helpers import slow_on

import steadysolve as ss


def _system(n=12, seed=0):
    rng = np.random.default_rng(seed)
    A = np.eye(n) * 3 + rng.normal(size=(n, n)) / np.sqrt(n)
    b = rng.normal(size=n)
    return A, b


@slow_on("jax")
def test_against_dense_solve(bk):
    A, b = _system(20)
    Ab, bb = bk.asarray(A), bk.asarray(b)
    sol = ss.linear_solve(lambda v: Ab @ v, bb, ss.GMRES(reltol=1e-12))
    assert sol.retcode is ss.ReturnCode.Success and sol.successful
    np.testing.assert_allclose(bk.to_numpy(sol.x), np.linalg.solve(A, b), rtol=0, atol=1e-10)
    assert sol.stats.nmatvec == sol.stats.niter <= 20
    assert sol.stats.resid_norm <= 1e-12 * np.linalg.norm(b)
    assert abs(sol.stats.resid_norm - np.linalg.norm(A @ bk.to_numpy(sol.x) - b)) < 1e-10


@slow_on("jax")
def test_restarted_and_x0(bk):
    A, b = _system(30, seed=3)
    Ab, bb = bk.asarray(A), bk.asarray(b)
    x0 = bk.asarray(np.ones(30))
    sol = ss.linear_solve(lambda v: Ab @ v, bb, ss.GMRES(restart=4, reltol=1e-11), x0=x0)
    assert sol.successful and sol.stats.nrestart > 1
    np.testing.assert_allclose(bk.to_numpy(sol.x), np.linalg.solve(A, b), atol=1e-9)
    # by name, default options
    sol = ss.linear_solve(lambda v: Ab @ v, bb, "gmres")
    assert sol.successful
    assert np.linalg.norm(A @ bk.to_numpy(sol.x) - b) <= 1e-5 * np.linalg.norm(b) * (1 + 1e-8)


def test_exact_in_n_steps_without_restart():
    # A non-normal matrix with spread spectrum: GMRES needs the full Krylov space.
    n = 15
    rng = np.random.default_rng(5)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    A = Q @ np.diag(np.logspace(0, 3, n)) @ Q.T + np.triu(rng.normal(size=(n, n)), 1) * 0.1
    b = rng.normal(size=n)
    sol = ss.linear_solve(lambda v: A @ v, b, ss.GMRES(restart=n, reltol=1e-13, maxiters=n))
    assert sol.successful, sol
    assert sol.stats.niter <= n and sol.stats.nrestart == 1
    np.testing.assert_allclose(sol.x, np.linalg.solve(A, b), rtol=1e-8)


def test_singular_and_nan_operators_fail_cleanly(bk):
    _, b = _system(10)
    bb = bk.asarray(b)
    sol = ss.linear_solve(lambda v: 0.0 * v, bb)
    assert sol.retcode is ss.ReturnCode.LinearSolveFailed
    assert np.all(np.isfinite(bk.to_numpy(sol.x)))
    sol = ss.linear_solve(lambda v: v * float("nan"), bb)
    assert sol.retcode is ss.ReturnCode.LinearSolveFailed
    assert np.all(np.isfinite(bk.to_numpy(sol.x)))
    # rank-deficient: b has a component outside the range -> no success, finite x
    P = np.diag([1.0] * 9 + [0.0])
    Pb = bk.asarray(P)
    sol = ss.linear_solve(lambda v: Pb @ v, bb, ss.GMRES(reltol=1e-10, maxiters=50))
    assert sol.retcode in (ss.ReturnCode.LinearSolveFailed, ss.ReturnCode.MaxIters)
    assert np.all(np.isfinite(bk.to_numpy(sol.x)))


def test_maxiters_code(bk):
    A, b = _system(40, seed=2)
    Ab, bb = bk.asarray(A), bk.asarray(b)
    sol = ss.linear_solve(lambda v: Ab @ v, bb, ss.GMRES(restart=3, reltol=1e-14, maxiters=4))
    assert sol.retcode is ss.ReturnCode.MaxIters
    assert sol.stats.niter == 4


@slow_on("jax")
def test_batched_equals_per_element(bk):
    rng = np.random.default_rng(11)
    n, B = 16, 4
    As = np.stack([np.eye(n) * (2 + i) + rng.normal(size=(n, n)) / np.sqrt(n) for i in range(B)])
    bs = rng.normal(size=(n, B))  # batch along the LAST axis
    Ab = bk.asarray(As)
    xp = bk.xp

    def mv(V):  # V: (n, B)
        return xp.permute_dims(xp.squeeze(Ab @ xp.permute_dims(V, (1, 0))[:, :, None], axis=2), (1, 0))

    alg = ss.GMRES(restart=5, reltol=1e-10)
    sol = ss.linear_solve(mv, bk.asarray(bs), alg, batch_axis=-1)
    assert sol.retcodes == [ss.ReturnCode.Success] * B
    assert sol.stats.resid_norm.shape == (B,)
    for i in range(B):
        Ai = bk.asarray(As[i])
        one = ss.linear_solve(lambda v: Ai @ v, bk.asarray(bs[:, i]), alg)
        np.testing.assert_allclose(bk.to_numpy(sol.x)[:, i], bk.to_numpy(one.x), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(bk.to_numpy(sol.x)[:, i], np.linalg.solve(As[i], bs[:, i]), atol=1e-8)


def test_batched_failure_is_per_element():
    n = 8
    A, b = _system(n)
    bs = np.stack([b, b])

    def mv(V):
        out = V @ A.T
        return np.stack([out[0], np.nan * out[1]])

    sol = ss.linear_solve(mv, bs, ss.GMRES(reltol=1e-10), batch_axis=0)
    assert sol.retcodes == [ss.ReturnCode.Success, ss.ReturnCode.LinearSolveFailed]
    np.testing.assert_allclose(sol.x[0], np.linalg.solve(A, b), atol=1e-8)
    assert np.all(np.isfinite(sol.x))


@pytest.mark.slow
def test_jit_and_vmap():
    import jax
    import jax.numpy as jnp

    A, b = _system(12)
    Aj, bj = jnp.asarray(A), jnp.asarray(b)

    @jax.jit
    def run(b, scale):  # the LinearSolution itself crosses the jit boundary (a pytree)
        return ss.linear_solve(lambda v: scale * (Aj @ v), b, ss.GMRES(restart=4, reltol=1e-11))

    sol = run(bj, 2.0)
    np.testing.assert_allclose(np.asarray(sol.x), np.linalg.solve(2 * A, b), atol=1e-9)
    assert int(sol.retcode_array) == 0 and sol.retcode is ss.ReturnCode.Success and int(sol.stats.nmatvec) > 4
    xs = jax.vmap(lambda bi: ss.linear_solve(lambda v: Aj @ v, bi, ss.GMRES(reltol=1e-11)).x)(jnp.stack([bj, -bj]))
    np.testing.assert_allclose(np.asarray(xs[1]), -np.linalg.solve(A, b), atol=1e-9)
    # a matvec closing over a traced value with a concrete b
    x = jax.jit(lambda s: ss.linear_solve(lambda v: s * (Aj @ v), bj, ss.GMRES(reltol=1e-11)).x)(4.0)
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(4 * A, b), atol=1e-9)
    with pytest.raises(TypeError, match="retcode_array"):
        jax.jit(lambda b: ss.linear_solve(lambda v: Aj @ v, b).retcode)(bj)


@pytest.mark.slow
def test_jit_blocked_basis_matches_eager():
    # under jit the Gram-Schmidt products read only the basis blocks in use (blocked_cgs2): a cycle
    # that fills several blocks, and a restart, give the eager solver's iterates and counts
    import jax
    import jax.numpy as jnp

    from steadysolve.linear._arnoldi import MIN_SIZE

    n = MIN_SIZE + 4  # long enough rows for the blocked products
    rng = np.random.default_rng(7)
    d, u, w = np.linspace(1.0, 40.0, n), rng.normal(size=n), rng.normal(size=n) / n
    b = rng.normal(size=n)
    for restart in (30, 21):
        alg = ss.GMRES(restart=restart, reltol=1e-12)
        eager = ss.linear_solve(lambda v: d * v + u * (w @ v), b, alg)
        dj, uj, wj = jnp.asarray(d), jnp.asarray(u), jnp.asarray(w)
        jit = jax.jit(lambda b: ss.linear_solve(lambda v: dj * v + uj * (wj @ v), b, alg))(jnp.asarray(b))
        assert eager.successful and int(jit.retcode_array) == 0
        assert eager.stats.niter > restart and eager.stats.nrestart >= 2  # blocks 0..3 filled, then a restart
        assert (int(jit.stats.niter), int(jit.stats.nrestart)) == (eager.stats.niter, eager.stats.nrestart)
        x = np.asarray(jit.x)
        np.testing.assert_allclose(d * x + u * (w @ x), b, rtol=0, atol=1e-9)
        np.testing.assert_allclose(np.asarray(jit.x), eager.x, rtol=0, atol=1e-11)


def test_zero_rhs_and_registry():
    sol = ss.linear_solve(lambda v: 2 * v, np.zeros(5))
    assert sol.successful and sol.stats.nmatvec == 0 and np.all(sol.x == 0)
    assert "gmres" in ss.available("linear")


def test_bad_input():
    b = np.ones(4)
    with pytest.raises(ValueError, match="restart must be >= 1"):
        ss.GMRES(restart=0)
    with pytest.raises(ValueError, match="reltol"):
        ss.GMRES(reltol=-1.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'rtol'"):
        ss.GMRES(rtol=1e-6)
    with pytest.raises(ValueError, match="unknown linear solver 'gmress'"):
        ss.linear_solve(lambda v: v, b, "gmress")
    with pytest.raises(TypeError, match="matvec must be callable"):
        ss.linear_solve(3, b)
    with pytest.raises(ValueError, match="shaped like b"):
        ss.linear_solve(lambda v: v[:2], b)
    with pytest.raises(TypeError, match="dtype"):
        ss.linear_solve(lambda v: v.astype(np.float32), b)
    with pytest.raises(ValueError, match="x0 has shape"):
        ss.linear_solve(lambda v: v, b, x0=np.ones(3))
    with pytest.raises(TypeError, match="floating"):
        ss.linear_solve(lambda v: v, np.ones(4, dtype=np.int64))
    with pytest.raises(ValueError, match="batch_axis=2 is out of range"):
        ss.linear_solve(lambda v: v, b, batch_axis=2)
