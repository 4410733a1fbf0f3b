"""The unrolled LDL^T solve of tiny SPD systems (Anderson's Gram system under jax.jit)."""

import numpy as np
import pytest

import steadysolve as ss
from steadysolve import _backend as backend
from steadysolve.linear.small import spd_solve_unrolled


def _spd(rng, B, m):
    X = rng.normal(size=(B, m, m + 3))
    return X @ np.swapaxes(X, 1, 2) + 1e-3 * np.eye(m), rng.normal(size=(B, m))


@pytest.mark.parametrize("m", [1, 2, 5, 8])
def test_matches_linalg_solve_numpy(m):
    rng = np.random.default_rng(m)
    A, b = _spd(rng, 4, m)
    xp = backend.namespace(("A", A))
    x = np.asarray(spd_solve_unrolled(xp, A, b))
    np.testing.assert_allclose(x, np.linalg.solve(A, b[..., None])[..., 0], rtol=1e-9, atol=1e-12)


def test_reads_only_the_lower_triangle():
    rng = np.random.default_rng(0)
    A, b = _spd(rng, 3, 4)
    junk = A + np.triu(rng.normal(size=(4, 4)), 1)  # upper triangle garbage
    xp = backend.namespace(("A", A))
    np.testing.assert_allclose(np.asarray(spd_solve_unrolled(xp, junk, b)), np.asarray(spd_solve_unrolled(xp, A, b)))


def test_undetermined_direction_is_dropped_not_spread():
    # a zero pivot (exactly dependent history) and a NaN pivot: that component is 0, the rest exact
    A = np.array([[[1.0, 0, 0], [0, 0, 0], [0, 0, 2.0]], [[np.nan, 0, 0], [0, 4.0, 0], [0, 0, 1.0]]])
    b = np.array([[1.0, 3.0, 4.0], [1.0, 8.0, 3.0]])
    xp = backend.namespace(("A", A))
    x = np.asarray(spd_solve_unrolled(xp, A, b))
    np.testing.assert_array_equal(x, [[1.0, 0.0, 2.0], [0.0, 2.0, 3.0]])


def test_jax_jit_float32_and_half():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng = np.random.default_rng(1)
    A, b = _spd(rng, 5, 5)
    xp = backend.namespace(("A", jnp.asarray(A, jnp.float32)))
    ref = np.linalg.solve(A, b[..., None])[..., 0]
    x = jax.jit(lambda A, b: spd_solve_unrolled(xp, A, b))(jnp.asarray(A, jnp.float32), jnp.asarray(b, jnp.float32))
    assert x.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(x), ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max())
    A2 = np.eye(3)[None] * np.array([2.0, 4.0, 8.0])
    xh = spd_solve_unrolled(xp, jnp.asarray(A2, jnp.float16), jnp.ones((1, 3), jnp.float16))
    assert xh.dtype == jnp.float16
    np.testing.assert_allclose(np.asarray(xh, np.float32), [[0.5, 0.25, 0.125]])


@pytest.mark.parametrize("memory", [3, 12])
def test_jitted_anderson_on_both_sides_of_the_unroll_limit(memory):
    # the unrolled LDL^T traces O(m^3) operations: beyond UNROLL_MAX the traced step uses the library
    # solve (an unrolled memory of 30 took minutes to compile); both converge to the same fixed point
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    from steadysolve.algorithms.anderson import UNROLL_MAX

    assert (memory <= UNROLL_MAX) == (memory == 3)

    @jax.jit
    def run(u0):
        sol = ss.solve(ss.FixedPointProblem(lambda u, p: jnp.cos(u), u0), ss.Anderson(memory=memory), abstol=1e-6)
        return sol.u, sol.retcode_array

    u, rc = run(jnp.zeros(20, dtype=jnp.float32))
    assert int(rc) == ss.ReturnCode.Success.code
    np.testing.assert_allclose(np.asarray(u), 0.7390851332151607, atol=1e-5)
