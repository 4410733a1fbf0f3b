"""The default polyalgorithm ``Auto``: chain choice, fallbacks, per-element freezing, stats, jit/vmap."""

import numpy as np
import pytest
from helpers import get_backend, slow_on

import steadysolve as ss


def _cosine(bk, n=3):
    xp = bk.xp
    p = bk.asarray(np.linspace(0.5, 2.0, n))
    return ss.NonlinearProblem(lambda u, p: u - p * xp.cos(u), bk.asarray(np.zeros(n)), p)


def _ref(n=3):
    from scipy.optimize import brentq
    return np.array([brentq(lambda u: u - c * np.cos(u), 0.0, 2.0) for c in np.linspace(0.5, 2.0, n)])


def test_default_is_auto_and_registered():
    assert "auto" in ss.available()
    prob = _cosine(get_backend("numpy"))
    a, b, c = ss.solve(prob), ss.solve(prob, "auto"), ss.solve(prob, ss.Auto())
    for sol in (a, b, c):
        assert sol.retcode is ss.ReturnCode.Success
        assert isinstance(sol.alg, ss.NewtonRaphson)  # n = 3: dense Newton first
        np.testing.assert_allclose(sol.u, _ref(), atol=1e-10)
        assert list(sol.stats.attempts) == ["newton"] and sol.stats.nf == sol.stats.attempts["newton"].nf


@pytest.mark.parametrize("kind,n,first", [("nonlinear", 2, "newton"), ("nonlinear", 50, "newton_krylov"),
                                          ("fixed_point", 2, "anderson"),
                                          ("fixed_point", 500, "anderson")])
def test_chain_by_kind_and_size(kind, n, first):
    chain = ss.Auto().chain(kind, n)
    names = [a.name for a, _ in chain]
    assert names[0] == first
    dense = {"newton", "trust_region", "levenberg_marquardt"}
    assert (n > 100) == (not dense & set(names))  # large: matrix-free only
    assert names.index("levenberg_marquardt" if n <= 100 else "broyden") > 0
    assert any(from_start for _, from_start in chain)  # the last fallbacks restart from u0


@pytest.mark.parametrize("n", [2, 500])
def test_a_steady_state_chain_only_follows_the_flow(n):
    """A SteadyStateProblem asks for the state the flow reaches: time stepping only (Tsit5, then
    pseudo-transient continuation from its best iterate, then a stiff integrator from u0 where a dense
    Jacobian fits), never a root finder that may land on another equilibrium."""
    chain = ss.Auto().chain("steady_state", n)
    kinds = [(type(a).__name__, getattr(getattr(a, "integrator", None), "name", None), s) for a, s in chain]
    assert [k[0] for k in kinds[:2]] == ["DynamicSS", "PseudoTransient"] and not kinds[0][2] and not kinds[1][2]
    if n <= ss.Auto().dense_max:
        assert kinds[2][0] == "DynamicSS" and isinstance(chain[2][0].integrator, ss.Rodas5P) and kinds[2][2]
    else:
        assert len(chain) == 2


def test_fallback_restarts_from_the_best_iterate_and_names_the_producer():
    # u - 2 cos(u) = 0 (root 1.0299): plain iteration u <- u + a F(u) has the wrong sign and fails
    prob = ss.NonlinearProblem(lambda u, p: u - 2.0 * np.cos(u), np.array([1.0]))
    auto = ss.Auto(algs=("fixed_point", "newton"))
    sol = ss.solve(prob, auto, abstol=1e-12, reltol=0.0, maxiters=200)
    assert sol.retcode is ss.ReturnCode.Success and isinstance(sol.alg, ss.NewtonRaphson)
    at = sol.stats.attempts
    assert list(at) == ["fixed_point", "newton"]
    assert sol.stats.nf == at["fixed_point"].nf + at["newton"].nf
    assert sol.stats.niter == at["fixed_point"].niter + at["newton"].niter
    assert sol.stats.njvp == at["newton"].njvp > 0
    np.testing.assert_allclose(sol.u, [1.0298665293222586], atol=1e-12)


def test_failure_is_honest_and_keeps_the_best_iterate():
    prob = ss.NonlinearProblem(lambda u, p: u * u + 1.0, np.array([0.3]))  # no real root
    sol = ss.solve(prob, maxiters=100)
    assert not sol.successful
    assert np.isfinite(sol.u).all() and abs(sol.resid[0] - (sol.u[0] ** 2 + 1.0)) < 1e-12
    assert len(sol.stats.attempts) > 1  # every fallback was tried
    with pytest.raises(ss.ConvergenceError):
        ss.solve(prob, maxiters=50, throw=True)


@slow_on("jax")
def test_batch_elements_solved_by_one_attempt_are_not_resolved(bk):
    # element 0: x^2 = 4 (Newton solves it); element 1: x^2 = -1 (no root, every attempt runs)
    xp = bk.xp
    p = bk.asarray(np.array([[4.0], [-1.0]]))
    prob = ss.NonlinearProblem(lambda u, p: u * u - p, bk.asarray(np.ones((2, 2))), p)
    sol = ss.solve(prob, batch_axis=0, maxiters=60)
    codes = sol.retcodes
    assert codes[0] is ss.ReturnCode.Success and codes[1] is not ss.ReturnCode.Success
    np.testing.assert_allclose(bk.to_numpy(sol.u)[0], [2.0, 2.0], atol=1e-10)
    at = sol.stats.attempts
    assert len(at) > 1
    for name, st in list(at.items())[1:]:
        assert st.niter_per_element[0] == 0, name  # frozen: never stepped again
    assert sol.stats.alg_index[0] == 0
    # one algorithm produced every element's answer, or several (then sol.alg is the Auto)
    assert isinstance(sol.alg, ss.Auto) == (len(set(sol.stats.alg_index)) > 1)
    assert list(sol.stats.niter_per_element) == [sum(s.niter_per_element[i] for s in at.values()) for i in (0, 1)]
    del xp


def test_trace_and_callback_continue_over_attempts():
    prob = ss.NonlinearProblem(lambda u, p: u - 2.0 * np.cos(u), np.array([1.0]))
    seen = []
    sol = ss.solve(prob, ss.Auto(algs=("fixed_point", "newton")), abstol=1e-12, reltol=0.0, maxiters=30,
                   store_trace=True, callback=lambda it, u, fn: seen.append(it))
    assert sol.trace.shape == (sol.stats.niter + 1,)
    assert seen == list(range(1, sol.stats.niter + 1))
    assert sol.trace[-1] <= 1e-12


@pytest.mark.slow
def test_jit_and_vmap_match_eager():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    def f(u, p):
        return u ** 3 - p

    p = jnp.asarray([8.0, 27.0, 2.0], dtype=jnp.float64) if jax.config.jax_enable_x64 else None
    if p is None:
        pytest.skip("needs jax x64")
    eager = ss.solve(ss.NonlinearProblem(f, jnp.ones(3), p))

    @jax.jit
    def run(p):
        sol = ss.solve(ss.NonlinearProblem(f, jnp.ones(3), p))
        return sol.u, sol.retcode_array, sol.stats.alg_index, sol.stats.nf

    u, code, idx, nf = run(p)
    np.testing.assert_allclose(np.asarray(u), np.asarray(eager.u), atol=1e-12)
    assert int(code) == 0 and int(idx) == 0 and int(nf) == eager.stats.nf
    U, codes, _, _ = jax.vmap(run)(jnp.stack([p, p + 1.0]))
    np.testing.assert_allclose(np.asarray(U) ** 3, np.stack([np.asarray(p), np.asarray(p) + 1]), atol=1e-9)
    assert np.all(np.asarray(codes) == 0)


@slow_on("jax")
def test_fixed_point_problem_uses_anderson_first(bk):
    xp = bk.xp
    prob = ss.FixedPointProblem(lambda z, p: xp.cos(z), bk.asarray(np.zeros(4)))
    sol = ss.solve(prob, abstol=1e-10)
    assert sol.retcode is ss.ReturnCode.Success and isinstance(sol.alg, ss.Anderson)
    np.testing.assert_allclose(bk.to_numpy(sol.u), np.full(4, 0.7390851332151607), atol=1e-9)


def test_runaway_restart_is_never_success():
    # arctan has no root; a fallback restarting far out must not pass the relative test there
    prob = ss.NonlinearProblem(lambda u, p: np.arctan(u) + 2.0, np.zeros(3))
    sol = ss.solve(prob, abstol=1e-10, reltol=1e-6, maxiters=300)
    assert sol.retcode is not ss.ReturnCode.Success


def test_bad_options():
    with pytest.raises(TypeError, match="tuple of algorithms"):
        ss.Auto(algs="newton")
    with pytest.raises(ValueError, match="another Auto"):
        ss.Auto(algs=(ss.Auto(),))
    with pytest.raises(ValueError, match="unknown algorithm 'newtn'"):
        ss.Auto(algs=("newtn",))
    with pytest.raises(ValueError, match="dense_max must be"):
        ss.Auto(dense_max=-1)
    # a polyalgorithm: the engine runs its chain; it is no init / step algorithm
    assert isinstance(ss.Auto(), ss.Polyalgorithm) and not isinstance(ss.Auto(), ss.Algorithm)
    assert not hasattr(ss.Auto(), "init") and not hasattr(ss.Auto(), "step")
    assert [type(a).__name__ for a, _ in ss.Auto().chain("nonlinear", 2)][:2] == ["NewtonRaphson", "TrustRegion"]
    assert ss.Auto(algs=["newton", ss.TrustRegion()]).algs == (ss.NewtonRaphson(), ss.TrustRegion())


def test_attempts_but_the_last_use_a_share_of_maxiters():
    # fixed-point iteration on u - 2 cos(u) (wrong sign) never succeeds: every attempt runs to its cap
    prob = ss.NonlinearProblem(lambda u, p: np.arctan(u) + 2.0, np.zeros(1))  # no root
    sol = ss.solve(prob, ss.Auto(algs=("broyden", "broyden"), share=0.5), maxiters=400, abstol=1e-12, reltol=0.0)
    first, last = sol.stats.attempts.values()
    assert first.niter <= 200 and first.niter + last.niter <= 400  # one budget for the chain
    with pytest.raises(ValueError, match="share must be <= 1"):
        ss.Auto(share=1.5)
