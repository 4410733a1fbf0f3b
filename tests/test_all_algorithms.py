"""Every registered algorithm on every shared problem on every backend: the honesty matrix.

Under JAX the solve runs inside ``jax.jit`` (the ``lax.while_loop`` driver); the
other backends use the eager driver.
"""

import numpy as np
import pytest
from helpers import PROBLEMS, assert_honest

import steadysolve as ss

ALGORITHMS = ss.available()


def _solve(bk, prob, alg, maxiters, kw):
    if bk.name != "jax":
        return ss.solve(prob, alg, maxiters=maxiters, **kw)
    import jax

    @jax.jit
    def run(u0):
        return ss.solve(prob.remake(u0=u0), alg, maxiters=maxiters, **kw)

    return run(prob.u0)


@pytest.mark.parametrize("tp", PROBLEMS, ids=repr)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_algorithm_on_problem(bk, tp, alg):
    prob, kw = tp.make(bk)
    if alg in tp.refused_by:  # e.g. dense Newton on a large system: a clear error before iterating
        with pytest.raises(ValueError, match="max_size"):
            ss.solve(prob, alg, maxiters=tp.maxiters, **kw)
        return
    sol = _solve(bk, prob, alg, tp.maxiters, kw)
    assert_honest(bk, prob, sol, kw["abstol"], kw["reltol"], batch_axis=kw.get("batch_axis"))
    if tp.no_root:  # nothing to find: a failure code, a finite best iterate, never Success
        assert sol.retcode is not ss.ReturnCode.Success, f"{alg} on {tp.name}: {sol!r} with u = {sol.u}"
        assert np.all(np.isfinite(bk.to_numpy(sol.u)))
    elif alg in tp.must_solve:
        assert sol.retcode is ss.ReturnCode.Success, f"{alg} on {tp.name}: {sol!r}"
        np.testing.assert_allclose(bk.to_numpy(sol.u), tp.reference(), atol=tp.atol, rtol=0)
    else:
        # Honest failure: a code from the documented set and a finite best iterate.
        assert isinstance(sol.retcode, ss.ReturnCode)
