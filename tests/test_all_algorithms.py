"""Every registered algorithm on every shared problem on every backend: the honesty matrix."""

import numpy as np
import pytest
from helpers import PROBLEMS, assert_honest

import steadysolve as ss

ALGORITHMS = ss.available()


@pytest.mark.parametrize("tp", PROBLEMS, ids=repr)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_algorithm_on_problem(bk, tp, alg):
    prob, kw = tp.make(bk)
    sol = ss.solve(prob, alg, maxiters=tp.maxiters, **kw)
    assert_honest(bk, prob, sol, kw["abstol"], kw["reltol"], batch_axis=kw.get("batch_axis"))
    if alg in tp.must_solve:
        assert sol.retcode is ss.ReturnCode.Success, f"{alg} on {tp.name}: {sol!r}"
        np.testing.assert_allclose(bk.to_numpy(sol.u), tp.reference(), atol=tp.atol, rtol=0)
    else:
        # Honest failure: a code from the documented set and a finite best iterate.
        assert isinstance(sol.retcode, ss.ReturnCode)
