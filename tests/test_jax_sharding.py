"""A jitted DEQ training step with the batch sharded over 2 (virtual CPU) devices gives the same
loss and gradients as the unsharded step; a 2-D grid state split over 8 devices is solved with
the unsharded iterates and stays split. Runs in a subprocess: the device count is fixed when
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


def run_on_cpu_devices(script: str, devices: int, timeout: float) -> str:
    """Run ``script`` in a fresh interpreter whose JAX sees ``devices`` CPU devices; its stdout."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


@pytest.mark.slow
def test_sharded_training_step_matches_unsharded():
    assert "SHARDING-OK" in run_on_cpu_devices(SCRIPT, 2, timeout=240)


GRID_SCRIPT = textwrap.dedent(
    r"""
    import math, re
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import steadysolve as ss
    from steadysolve.adapters.jax import root

    assert len(jax.devices()) == 8, jax.devices()
    N = 64
    h = 1.0 / (N + 1)

    def neighbours(u):  # the 5-point stencil's four neighbours, zero outside the grid
        w = jnp.pad(u, 1)
        return w[:-2, 1:-1] + w[2:, 1:-1] + w[1:-1, :-2] + w[1:-1, 2:]

    def bratu(u, lam):  # lap u + lam exp(u) = 0, u = 0 on the boundary
        return (neighbours(u) - 4 * u) / h ** 2 + lam * jnp.exp(u)

    def smoother(u, b):  # a contraction coupling each point to its neighbours
        return 0.5 * jnp.tanh(0.25 * neighbours(u)) + b

    def newton_krylov(u0, lam):
        s = ss.solve(ss.NonlinearProblem(bratu, u0, lam), ss.NewtonKrylov(linsolve=ss.GMRES()),
                     abstol=1e-9, reltol=0.0, store_trace=True)
        return s.u, s.retcode_array, s.trace, s.stats.niter

    def anderson(u0, b):
        s = ss.solve(ss.FixedPointProblem(smoother, u0, b), ss.Anderson(), abstol=1e-10, reltol=0.0,
                     store_trace=True)
        return s.u, s.retcode_array, s.trace, s.stats.niter

    def adapter_root(u0, lam):
        u, st = root(bratu, u0, lam, abstol=1e-9, reltol=0.0)
        return u, st.retcode_array, jnp.zeros(1), st.niter

    mesh = Mesh(np.array(jax.devices()), ("rows",))
    rows = NamedSharding(mesh, P("rows", None))
    u0 = jnp.zeros((N, N))
    us = jax.device_put(u0, rows)
    lam = jnp.asarray(1.0)  # on one device, uncommitted: JAX places it with the sharded state
    b = jax.device_put(jnp.asarray(np.sin(np.arange(N * N).reshape(N, N) / 50.0)), rows)
    shard_size = N * N // 8
    COLLECTIVE = re.compile(r"= (\S+|\([^)]*\)) (all-gather|all-to-all|all-reduce|reduce-scatter|collective-permute)"
                            r"(-start)?\(")

    def collectives(hlo):  # the kinds of collective in compiled HLO, the largest result of each
        kinds, biggest = set(), {"all-reduce": 0, "collective-permute": 0}
        for m in COLLECTIVE.finditer(hlo):
            kinds.add(m.group(2))
            size = sum(math.prod(int(d) for d in dims.split(",") if d)
                       for dims in re.findall(r"\w+\[([\d,]*)\]", m.group(1)))
            biggest[m.group(2)] = max(biggest.get(m.group(2), 0), size)
        return kinds, biggest

    # the reader sees a gather when there is one: the state replicated on every device
    gather = jax.jit(lambda u: jax.lax.with_sharding_constraint(2 * u, NamedSharding(mesh, P())))
    assert "all-gather" in collectives(gather.lower(us).compile().as_text())[0]

    def check(name, fn, p, abstol):
        run = jax.jit(fn)
        ref = run(u0, p)
        out = run(us, p)
        assert out[0].sharding.is_equivalent_to(us.sharding, 2), (name, out[0].sharding)
        assert int(out[1]) == 0 and int(ref[1]) == 0, (name, out[1], ref[1])
        assert int(out[3]) == int(ref[3]), (name, out[3], ref[3])
        # every iterate's residual norm, to rounding (the last ones are rounding-sized themselves)
        np.testing.assert_allclose(np.asarray(out[2]), np.asarray(ref[2]), rtol=1e-9, atol=1e-3 * abstol)
        np.testing.assert_allclose(np.asarray(out[0]), np.asarray(ref[0]), rtol=0, atol=1e-12)
        kinds, biggest = collectives(run.lower(us, p).compile().as_text())
        # no state gathered onto one device: reductions of a few numbers (norms, Gram products)
        # and the residual's own halo rows, each smaller than one device's shard
        assert not kinds & {"all-gather", "all-to-all", "reduce-scatter"}, (name, kinds)
        assert biggest["all-reduce"] <= N, (name, biggest)
        assert biggest["collective-permute"] < shard_size, (name, biggest)
        print(name, int(out[3]), sorted(kinds), biggest)

    check("newton_krylov", newton_krylov, lam, 1e-9)
    check("anderson", anderson, b, 1e-10)
    check("root", adapter_root, lam, 1e-9)
    # eagerly too: the solver's work arrays follow the sharded state
    s = ss.solve(ss.NonlinearProblem(bratu, us, lam), "newton_krylov", abstol=1e-9, reltol=0.0)
    r = ss.solve(ss.NonlinearProblem(bratu, u0, lam), "newton_krylov", abstol=1e-9, reltol=0.0)
    assert s.retcode is ss.ReturnCode.Success and s.stats.niter == r.stats.niter
    assert s.u.sharding.is_equivalent_to(us.sharding, 2), s.u.sharding
    np.testing.assert_allclose(np.asarray(s.u), np.asarray(r.u), rtol=0, atol=1e-12)
    print("GRID-SHARDING-OK")
    """
)


@pytest.mark.slow
def test_sharded_grid_state_stays_sharded_and_matches_unsharded():
    """Newton-Krylov (GMRES), Anderson and ``adapters.jax.root`` on a 64 x 64 grid whose state is split by rows over 8
    devices: the same iterates as on one device, the answer sharded as the start was, and the
    compiled program moves only reductions and halo rows between devices."""
    assert "GRID-SHARDING-OK" in run_on_cpu_devices(GRID_SCRIPT, 8, timeout=480)
