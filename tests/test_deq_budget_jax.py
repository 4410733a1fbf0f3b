"""Every DEQ budget honoured in the JAX adapter: evaluations of f counted by a host callback inside f
(eager and under ``jax.jit``), for every solver name, with ``max_nfe`` and with ``maxiters``."""

import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import steadysolve as ss  # noqa: E402
from steadysolve.adapters.jax import fixed_point  # noqa: E402
from steadysolve.registry import resolve  # noqa: E402

SOLVERS = ss.available()
N = 6
_W = 0.9 * jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(3), (N, N), dtype=jnp.float64))[0]
MAPS = {  # a contraction held at its cap by an unreachable tolerance; a runaway map on which anderson
    # stops early (NonFinite) with budget left, so that "auto" goes on to its fallback
    "contraction": (lambda z, x: jnp.tanh(z @ _W.T + x), dict(abstol=1e-300, reltol=0.0)),
    "runaway": (lambda z, x: jnp.exp(z) + x, {}),
}


def counted(fn):
    calls = [0]

    def bump():
        calls[0] += 1

    def f(z, x):
        jax.debug.callback(bump)  # runs once per evaluation, inside the solver's while_loop too
        return fn(z, x)

    return f, calls


def _bound(solver, budget):
    if "max_nfe" in budget:
        return budget["max_nfe"]
    if solver == "auto":  # the DEQ chain (anderson, then broyden): one evaluation per iteration
        return 1 + budget["maxiters"]
    return (2 if solver == "dynamic_ss" else 1) + budget["maxiters"] * resolve(solver).cost(N)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("budget", [dict(max_nfe=40), dict(maxiters=20)], ids=["max_nfe", "maxiters"])
@pytest.mark.parametrize("problem", sorted(MAPS))
@pytest.mark.slow
def test_forward_evaluations_counted_within_budget(solver, budget, problem):
    fn, tol = MAPS[problem]
    f, calls = counted(fn)
    x = jax.random.normal(jax.random.PRNGKey(0), (1, N), dtype=jnp.float64)
    z, st = fixed_point(f, jnp.zeros_like(x), x, solver=solver, batch_axis=0, on_failure="ignore", **tol,
                      **budget)
    jax.block_until_ready(z)
    bound = _bound(solver, budget)
    assert int(st.nf) + int(st.njvp) <= bound, (solver, int(st.nf), int(st.njvp), bound)
    assert int(st.nf) <= calls[0] <= bound, (solver, calls[0], bound)


@pytest.mark.parametrize("budget", [dict(max_nfe=40), dict(maxiters=39)], ids=["max_nfe", "maxiters"])
@pytest.mark.slow
def test_auto_under_jit_falls_back_within_the_budget(budget):
    """Under jit the chain is traced (every attempt compiled, the budget left a traced count): anderson
    stops early on the runaway map, broyden spends the rest, never more than the budget."""
    fn, _ = MAPS["runaway"]
    x = jax.random.normal(jax.random.PRNGKey(0), (1, N), dtype=jnp.float64)
    spent = {}
    for solver in ("anderson", "auto"):
        f, calls = counted(fn)
        z, st = jax.jit(lambda x: fixed_point(f, jnp.zeros_like(x), x, solver=solver, batch_axis=0,
                                                   on_failure="ignore", **budget))(x)
        jax.block_until_ready(z)
        spent[solver] = calls[0]
        assert int(st.nf) + int(st.njvp) == calls[0]
    assert spent["anderson"] < 40 and spent["auto"] == 40
