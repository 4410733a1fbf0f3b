"""The result objects read well and cannot be misread: a short repr (with a batch's summary) and no
truth value (``if sol:`` raises, naming ``sol.successful``), on every backend and under ``jax.jit``."""

import numpy as np
import pytest
from helpers import slow_on

import steadysolve as ss


def _batch(bk):
    """u^2 + c = 0 per row: c = -1 and -4 have roots, c = +1 has none."""
    c = bk.asarray([[-1.0], [1.0], [-4.0]])
    return ss.NonlinearProblem(lambda u, p: u * u + p, bk.asarray(np.full((3, 2), 1.5)), c)


@slow_on("jax")
def test_a_batch_repr_summarises_the_return_codes(bk):
    sol = ss.solve(_batch(bk), "newton", batch_axis=0, maxiters=30)
    text = repr(sol)
    assert text.startswith("Solution(Success for 2 of 3 elements; worst: ")
    assert sol.retcodes[1].name in text and "u.shape=(3, 2)" in text and "alg=newton" in text
    assert len(text) < 150
    prob = ss.NonlinearProblem(lambda u, p: u * u + p, bk.asarray(np.full((2, 1), 1.5)), bk.asarray([[-1.0], [-9.0]]))
    ok = ss.solve(prob, "newton", batch_axis=0)
    assert repr(ok).startswith("Solution(Success for all 2 elements, u.shape=(2, 1)")


def test_an_unbatched_repr_names_the_code_and_the_algorithm(bk):
    sol = ss.solve(ss.NonlinearProblem(lambda u, p: u * u - 2.0, bk.asarray(np.ones(2))), "anderson", maxiters=5)
    assert repr(sol).startswith(f"Solution(retcode={sol.retcode.name}, u.shape=(2,), niter=")
    assert "alg=anderson)" in repr(sol)


@pytest.mark.parametrize("make", ["solve", "linear_solve", "integrate"])
def test_results_have_no_truth_value(make):
    if make == "solve":
        res = ss.solve(ss.NonlinearProblem(lambda u, p: u * u + 1.0, np.ones(1)), "newton", maxiters=5)  # fails
    elif make == "linear_solve":
        res = ss.linear_solve(lambda v: 4.0 * v, np.ones(2))
    else:
        res = ss.integrate(lambda u, p, t: -u, np.ones(1), (0.0, 1.0))
    with pytest.raises(TypeError, match=r"truth value of a \w+ is ambiguous: test \.successful"):
        bool(res)
    with pytest.raises(TypeError):
        if res:  # noqa: SIM108 - the point of the test
            pass
    assert res.successful in (True, False)


def test_repr_and_truth_under_jit():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    @jax.jit
    def run(c):
        sol = ss.solve(ss.NonlinearProblem(lambda u, p: u * u + p, jnp.full((2, 1), 1.5), c), "newton", batch_axis=0)
        assert repr(sol).startswith("Solution(retcode=<traced>")
        return sol

    sol = run(jnp.asarray([[-1.0], [1.0]]))  # back on the host: the codes are concrete again
    assert repr(sol).startswith("Solution(Success for 1 of 2 elements; worst: ")
