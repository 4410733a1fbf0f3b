"""The one-system twin of a Rosenbrock DynamicSS (``steadysolve._small.dynamic_ss.SmallStiffDynamicSS``):
the same steps, counts, codes and answer as the generic algorithm, on Python floats."""

import importlib

import numpy as np
import pytest
from helpers import Backend, assert_honest

import steadysolve as ss
from steadysolve._small.dynamic_ss import SmallStiffDynamicSS

from benchmarks.problems import stiff as stiff_set

RC = ss.ReturnCode
_solve_module = importlib.import_module("steadysolve.solve")


def _problem_set(name):
    P = stiff_set.by_name(name)
    return ss.SteadyStateProblem(P.f(np), P.u0.copy(), P.p, jac=P.jac(np))


def _bruss_sparse():
    P = stiff_set.brusselator(15)
    return ss.SteadyStateProblem(P.f(np), P.u0.copy(), P.p, sparsity=stiff_set.brusselator_pattern(15))


CASES = {
    # the analytic dense jac, a conservation law (HIRES) / eigenvalues over six decades
    "hires": (lambda: _problem_set("hires"), ss.DynamicSS(ss.Rodas5P(autonomous=True)),
              dict(abstol=1e-9, reltol=0.0), RC.Success),
    "stiff_linear": (lambda: _problem_set("stiff_linear"), ss.DynamicSS(ss.Rodas4(autonomous=True)),
                     dict(abstol=1e-9, reltol=0.0), RC.Success),
    # non-autonomous: the Jacobian of f(., p, t) at the state's time by finite differences, df/dt
    "forced": (lambda: ss.SteadyStateProblem(lambda u, p, t: -p * (u - 1.0) + np.exp(-t), np.zeros(2),
                                             np.array([1.0, 1e4])),
               ss.DynamicSS(ss.Rosenbrock23()), dict(abstol=1e-8, reltol=0.0), RC.Success),
    # a first step far too long: rejected, the retry reuses the Jacobian
    "rejected": (lambda: ss.SteadyStateProblem(lambda u, p, t: -(u - 1.0) + 0.1 * np.sin(u), np.zeros(3)),
                 ss.DynamicSS(ss.Rodas5P(autonomous=True), dt0=50.0), dict(abstol=1e-10), RC.Success),
    # the sparse W-solver from a pattern (colouring by finite differences)
    "sparse": (_bruss_sparse, ss.DynamicSS(ss.Rodas5P(autonomous=True)), dict(abstol=1e-9, reltol=0.0), RC.Success),
    # no stable steady state: the stability guard (or the watch) ends it, never Success
    "orego": (lambda: _problem_set("orego"), ss.DynamicSS(ss.Rodas5P(autonomous=True)), dict(maxiters=400), None),
    "time_limit": (lambda: _problem_set("stiff_linear"), ss.DynamicSS(ss.Rodas5P(autonomous=True), tmax=0.5),
                   dict(abstol=1e-9, reltol=0.0), RC.TimeLimit),
}


def _run(case, generic, monkeypatch):
    make, alg, kw, _ = CASES[case]
    prob = make()
    ran = []
    with monkeypatch.context() as m:
        step = SmallStiffDynamicSS.step
        m.setattr(SmallStiffDynamicSS, "step", lambda self, *a: ran.append(1) or step(self, *a))
        if generic:
            m.setattr(_solve_module, "small_twin", lambda a, ctx: a)
        sol = ss.solve(prob, alg, **kw)
    assert bool(ran) is not generic
    return prob, sol


@pytest.mark.parametrize("case", sorted(CASES))
def test_stiff_twin_equals_the_generic_algorithm(case, monkeypatch):
    (prob, twin), (_, generic) = (_run(case, generic, monkeypatch) for generic in (False, True))
    expected = CASES[case][3]
    assert twin.retcode is (expected or twin.retcode) and twin.retcode is generic.retcode, (twin, generic)
    assert expected is not None or twin.retcode is not RC.Success
    for key in ("niter", "nf", "njvp"):
        assert getattr(twin.stats, key) == getattr(generic.stats, key), key
    for key in ("naccept", "nreject", "njac", "nfact", "nsolve"):
        assert int(twin.stats[key]) == int(generic.stats[key]), key
    assert float(twin.stats.t) == pytest.approx(float(generic.stats.t), rel=1e-6)
    # the controller's powers round differently on floats and arrays (an ulp of the step size): a state
    # mid-transient (TimeLimit) agrees to the local error tolerance, a steady state to rounding
    settled = twin.retcode is RC.Success
    np.testing.assert_allclose(twin.u, generic.u, rtol=1e-9 if settled else 1e-6, atol=1e-12 if settled else 1e-9)
    if twin.retcode is RC.Success:
        assert_honest(Backend("numpy"), prob, twin, CASES[case][2].get("abstol", 3e-13), CASES[case][2].get("reltol", 0.0))
