"""Every registered algorithm on every shared problem on NumPy, array_api_strict and PyTorch: the honesty
matrix (``benchmarks.problems.honesty``), run by the eager driver. Its JAX column, where the solve runs
inside ``jax.jit`` (the ``lax.while_loop`` driver), is tests/test_all_algorithms_jax.py: a file of its own
so that ``--dist loadfile`` gives the two halves to different workers.
"""

import pytest
from helpers import BACKENDS, check_on_problem, get_backend

from benchmarks.problems.honesty import PROBLEMS

import steadysolve as ss

ALGORITHMS = ss.available()
# The 75 x 75 Laplace problem (5,625 unknowns, hundreds of Krylov iterations) takes seconds per algorithm
# on array_api_strict and PyTorch (the generic algorithms): the fast loop (-m "not slow") runs it on NumPy
# (the small-system engine's twins, the refusals of the dense methods), the whole suite on all three.
SLOW = {("array_api_strict", "laplace_75"), ("torch", "laplace_75")}
CASES = [pytest.param(name, tp, id=f"{name}-{tp.name}", marks=pytest.mark.slow if (name, tp.name) in SLOW else ())
         for tp in PROBLEMS for name in tp.libraries or BACKENDS if name != "jax"]


def _solve(prob, alg, maxiters, kw):
    return ss.solve(prob, alg, maxiters=maxiters, **kw)


# The no-root problems run the iterate away: the problem's own exp overflows there, as a user's would
# (the solver's arithmetic must stay quiet: test_audit_crashes).
@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning:benchmarks.problems.honesty",
                            "ignore:overflow encountered in exp:RuntimeWarning:array_api_strict")
@pytest.mark.parametrize("backend, tp", CASES)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_algorithm_on_problem(backend, tp, alg):
    check_on_problem(get_backend(backend), tp, alg, _solve)
