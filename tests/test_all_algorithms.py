"""Every registered algorithm on every shared problem on every backend: the honesty matrix.

Under JAX the solve runs inside ``jax.jit`` (the ``lax.while_loop`` driver); the
other backends use the eager driver.
"""

import numpy as np
import pytest
from helpers import BACKENDS, assert_honest, get_backend

from benchmarks.problems.honesty import PROBLEMS

import steadysolve as ss

ALGORITHMS = ss.available()
# Under JAX every (algorithm, problem) pair is a fresh jit compilation of the whole solve (about a second
# each): the fast loop (-m "not slow") compiles each algorithm on one problem with a root and one without.
JAX_FAST = ("linear_contraction", "exp_floor")
CASES = [pytest.param(name, tp, id=f"{name}-{tp.name}",
                      marks=pytest.mark.slow if name == "jax" and tp.name not in JAX_FAST else ())
         for tp in PROBLEMS for name in tp.libraries or BACKENDS]


def _solve(bk, prob, alg, maxiters, kw):
    if bk.name != "jax":
        return ss.solve(prob, alg, maxiters=maxiters, **kw)
    import jax

    @jax.jit
    def run(u0):
        return ss.solve(prob.remake(u0=u0), alg, maxiters=maxiters, **kw)

    return run(prob.u0)


def _tolerances(bk, prob, kw):
    """The tolerances the solve used: a tolerance given binds, the other is then 0 (see concepts)."""
    if "abstol" not in kw and "reltol" not in kw:
        default = float(bk.xp.finfo(prob.u0.dtype).eps) ** 0.8
        return default, default
    return kw.get("abstol", 0.0), kw.get("reltol", 0.0)


# The no-root problems run the iterate away: the problem's own exp overflows there, as a user's would
# (the solver's arithmetic must stay quiet: test_audit_crashes).
@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning:benchmarks.problems.honesty",
                            "ignore:overflow encountered in exp:RuntimeWarning:array_api_strict")
@pytest.mark.parametrize("backend, tp", CASES)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_algorithm_on_problem(backend, tp, alg):
    bk = get_backend(backend)
    prob, kw = tp.make(bk.xp)
    if alg in tp.refused_by:  # e.g. dense Newton on a large system: a clear error before iterating
        with pytest.raises(ValueError, match="max_size"):
            ss.solve(prob, alg, maxiters=tp.maxiters, **kw)
        return
    sol = _solve(bk, prob, alg, tp.maxiters, kw)
    assert_honest(bk, prob, sol, *_tolerances(bk, prob, kw), batch_axis=kw.get("batch_axis"))
    if tp.no_root:  # nothing to find: a failure code, a finite best iterate, never Success
        codes = sol.retcodes if kw.get("batch_axis") is not None else [sol.retcode]
        assert all(rc is not ss.ReturnCode.Success for rc in codes), f"{alg} on {tp.name}: {sol!r} with u = {sol.u}"
        assert np.all(np.isfinite(bk.to_numpy(sol.u)))
    elif alg in tp.must_solve:
        assert sol.retcode is ss.ReturnCode.Success, f"{alg} on {tp.name}: {sol!r}"
        np.testing.assert_allclose(bk.to_numpy(sol.u), tp.reference(), atol=tp.atol, rtol=0)
    else:
        # Honest failure: a code from the documented set and a finite best iterate.
        assert isinstance(sol.retcode, ss.ReturnCode)
