"""The JAX column of the honesty matrix (tests/test_all_algorithms.py): every registered algorithm on the
shared problems, the solve inside ``jax.jit`` (the ``lax.while_loop`` driver, traced control flow).

Each (algorithm, problem) pair is a fresh compilation of the whole solve (about a second of CPU; Auto's
chain compiles every member, several seconds), so the column keeps the cases that reach a branch of the
jitted code that no other kept case reaches, and leaves out pairs that differ from a kept one only in a
constant:

- the two tolerance-value twins (``exp_floor_reltol_1e-6`` beside ``..._1e-2``, ``atan_floor_reltol_1e-3``
  beside ``..._1e-2``) trace the same program with another number in it: the looser one, where a false
  ``Success`` would come first, stays; the eager backends run both values through the same ``init``/``step``
  and verdict code (PyTorch runs the generic algorithms, not the NumPy small-system engine);
- ``exp_floor_float32`` traces ``exp_floor``'s program in float32, which ``shift_float32`` (a float32 residual
  that rounds to zero) and the float16 / bfloat16 floors already trace at lower precision;
- Auto runs its chain under jit on every problem with a root (it must solve them), on the NaN region, the
  batch and the bfloat16 floor (the chain's per-element and low-precision bookkeeping), and on ``exp_floor``;
  on the other no-root problems its chain is made of the members checked one by one in this column, and
  a chain of honest failures is judged by the same traced ``run_chain`` as on those four.

The whole column is ``slow`` (its fast-loop cases took 124 s of a loaded run, 20 compilations): the fast
loop runs the same matrix eagerly (tests/test_all_algorithms.py), and Auto's chain under jit and vmap in
tests/test_auto.py.
"""

import pytest
from helpers import check_on_problem, get_backend

from benchmarks.problems.honesty import PROBLEMS

import steadysolve as ss

ALGORITHMS = ss.available()
FAST = ("linear_contraction", "exp_floor")
TWINS = ("exp_floor_reltol_1e-6", "atan_floor_reltol_1e-3", "exp_floor_float32")
AUTO_NO_ROOT = ("exp_floor", "nan_region", "exp_floor_batch", "exp_floor_bfloat16")


def _kept(alg, tp):
    if tp.name in TWINS:
        return False
    return alg != "auto" or not tp.no_root or tp.name in AUTO_NO_ROOT


CASES = [pytest.param(alg, tp, id=f"{alg}-jax-{tp.name}",
                      marks=() if tp.name in FAST and alg != "auto" else pytest.mark.slow)
         for alg in ALGORITHMS for tp in PROBLEMS if "jax" in (tp.libraries or ("jax",)) and _kept(alg, tp)]


def _solve(prob, alg, maxiters, kw):
    import jax

    @jax.jit
    def run(u0):
        return ss.solve(prob.remake(u0=u0), alg, maxiters=maxiters, **kw)

    return run(prob.u0)


@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning:benchmarks.problems.honesty")
@pytest.mark.parametrize("alg, tp", CASES)
@pytest.mark.slow
def test_algorithm_on_problem_under_jit(alg, tp):
    check_on_problem(get_backend("jax"), tp, alg, _solve)
