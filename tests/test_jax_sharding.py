"""A jitted DEQ training step with the batch sharded over 2 (virtual CPU) devices gives the same
loss and gradients as the unsharded step. Runs in a subprocess: the device count is fixed when
JAX starts, so the flag cannot be set in the test process."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax")
pytest.importorskip("equinox")

SCRIPT = textwrap.dedent(
    r"""
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from steadysolve.adapters.jax import fixed_point

    assert len(jax.devices()) == 2, jax.devices()
    rng = np.random.default_rng(0)
    B, n = 8, 16
    W = rng.normal(size=(n, n)); W = jnp.asarray(0.7 * W / np.linalg.norm(W, 2))
    U = jnp.asarray(rng.normal(size=(n, n)) / 4)
    x = jnp.asarray(rng.normal(size=(B, n)) * np.linspace(0.2, 3, B)[:, None])
    y = jnp.asarray(rng.normal(size=(B, n)))

    def cell(z, W, U, x):
        return jnp.tanh(z @ W.T + x @ U.T)

    def loss(params, x, y):
        W, U = params
        z, st = fixed_point(cell, jnp.zeros_like(x), W, U, x, batch_axis=0, abstol=1e-12, reltol=0.0)
        return jnp.mean((z - y) ** 2), st

    step = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (l0, st0), g0 = step((W, U), x, y)

    mesh = Mesh(np.array(jax.devices()), ("batch",))
    shard = NamedSharding(mesh, P("batch"))
    repl = NamedSharding(mesh, P())
    xs, ys = jax.device_put(x, shard), jax.device_put(y, shard)
    params = jax.device_put((W, U), repl)
    assert len(xs.sharding.device_set) == 2
    (l1, st1), g1 = step(params, xs, ys)
    assert len(g1[0].sharding.device_set) == 2 or g1[0].sharding.is_fully_replicated
    np.testing.assert_allclose(l1, l0, rtol=1e-12)
    for a, b in zip(g1, g0):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(st1.niter_per_element), np.asarray(st0.niter_per_element))
    assert np.all(np.asarray(st1.retcode_array) == 0) and st1.successful
    # the vmap formulation sharded the same way
    def loss_v(params, x, y):
        W, U = params
        z, st = jax.vmap(lambda xi: fixed_point(cell, jnp.zeros_like(xi), W, U, xi, abstol=1e-12,
                                                reltol=0.0))(x)
        return jnp.mean((z - y) ** 2)
    lv, gv = jax.jit(jax.value_and_grad(loss_v))(params, xs, ys)
    np.testing.assert_allclose(lv, l0, rtol=1e-12)
    for a, b in zip(gv, g0):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    print("SHARDING-OK", float(l0))
    """
)


@pytest.mark.slow
def test_sharded_training_step_matches_unsharded():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "SHARDING-OK" in proc.stdout
