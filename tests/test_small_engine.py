"""The small-system engine (``steadysolve._small``) against the generic algorithms it stands in for.

``solve()`` runs one NumPy system through the engine's twin of an algorithm where it has one. Each
twin must be the same algorithm: on the same problems the same return codes and the same counts
(iterations, evaluations, accepted and rejected steps), and the same states up to rounding. The
generic algorithm is run on NumPy by switching the engine off (``small_twin`` -> identity).
"""

import importlib

import numpy as np
import pytest

import steadysolve as ss
from benchmarks.problems import mgh
from steadysolve._small.dynamic_ss import SmallDynamicSS
from steadysolve._small.newton import SmallNewton

RC = ss.ReturnCode
_solve_module = importlib.import_module("steadysolve.solve")

# An explicit pair that is not FSAL (Heun-Euler 2(1)): the new field is checked on its own.
HEUN_EULER = ss.ode.ExplicitRK(ss.ode.ButcherTableau(
    name="heun_euler", c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5), b_err=(-0.5, 0.5), order=2, error_order=1))


def _calls(f, counter):
    def g(*a):
        counter[0] += 1
        return f(*a)
    return g


def _nan_above_5(u, p, t):
    with np.errstate(invalid="ignore"):
        return 0.3 * (1.0 - 0.0 * np.sqrt(5.0 - u))  # drifts up until f is NaN at u > 5


CASES = {
    "linear": (lambda: ss.SteadyStateProblem(lambda u, p, t: p @ u + 1.0, np.zeros(4),
                                             -np.eye(4) - 0.1 * np.ones((4, 4))), ss.DynamicSS(),
               dict(abstol=1e-10, reltol=0.0), RC.Success),
    "rejections": (lambda: ss.SteadyStateProblem(lambda u, p, t: -(u ** 3) + 1.0, np.full(2, 3.0)),
                   ss.DynamicSS(dt0=5.0), dict(abstol=1e-10, reltol=0.0), RC.Success),
    "time_limit": (lambda: ss.NonlinearProblem(lambda u, p: -0.05 * u, np.array([1.0, 2.0])),
                   ss.DynamicSS(tmax=10.0), dict(abstol=1e-10, reltol=0.0), RC.TimeLimit),
    "time_dependent": (lambda: ss.SteadyStateProblem(lambda u, p, t: -(u - np.cos(t) * np.exp(-t)), np.full(2, 3.0)),
                       ss.DynamicSS(), dict(abstol=1e-9, reltol=0.0), RC.Success),
    "relative_only": (lambda: ss.NonlinearProblem(lambda u, p: -(u - np.array([0.0, 2.0, -3.0])), np.ones(3)),
                      ss.DynamicSS(controller=ss.PIController(reltol=1e-8)), dict(reltol=1e-7), RC.Success),
    "fixed_point": (lambda: ss.FixedPointProblem(lambda z, p: np.tanh(p @ z + 1.0), np.zeros(3),
                                                 0.5 * np.eye(3)[::-1]), ss.DynamicSS(),
                    dict(abstol=1e-10), RC.Success),
    "nan_drift": (lambda: ss.SteadyStateProblem(_nan_above_5, np.zeros(2)), ss.DynamicSS(),
                  dict(abstol=1e-9, maxiters=400), None),
    "blow_up": (lambda: ss.SteadyStateProblem(lambda u, p, t: u * u, np.ones(2)), ss.DynamicSS(),
                dict(abstol=1e-9, maxiters=400), None),
    "dtmax": (lambda: ss.NonlinearProblem(lambda u, p: -(u - 1.0), np.zeros(2)),
              ss.DynamicSS(controller=ss.PIController(dtmax=0.5)), dict(abstol=1e-10), RC.Success),
    "not_fsal": (lambda: ss.NonlinearProblem(lambda u, p: -(u - 1.0) - 0.1 * u ** 3, np.zeros(2)),
                 ss.DynamicSS(HEUN_EULER, controller=ss.PIController(abstol=1e-5)), dict(abstol=1e-4, maxiters=3000),
                 RC.Success),
}


def _run(case, generic, monkeypatch):
    make, alg, kw, _ = CASES[case]
    prob = make()
    counter = [0]
    prob.f = _calls(prob.f, counter)
    with monkeypatch.context() as m:
        if generic:
            m.setattr(_solve_module, "small_twin", lambda a, ctx: a)
        sol = ss.solve(prob, alg, **kw)
    return sol, counter[0]


# the problems' own arithmetic: u ** 3 overflows at a rejected step, cos(t) is NaN at the shape check's t = inf
@pytest.mark.filterwarnings("ignore:overflow encountered in power:RuntimeWarning:test_small_engine",
                            "ignore:invalid value encountered in cos:RuntimeWarning:test_small_engine")
@pytest.mark.parametrize("case", sorted(CASES))
def test_dynamic_ss_twin_equals_the_generic_algorithm(case, monkeypatch):
    twin, calls_twin = _run(case, False, monkeypatch)
    generic, calls_generic = _run(case, True, monkeypatch)
    expected = CASES[case][3]
    if expected is not None:
        assert twin.retcode is expected, twin
    assert twin.retcode is generic.retcode
    for key in ("niter", "nf", "njvp"):
        assert getattr(twin.stats, key) == getattr(generic.stats, key), key
    for key in ("naccept", "nreject"):
        assert int(twin.stats[key]) == int(generic.stats[key]), key
    assert calls_twin == calls_generic
    if twin.retcode in (RC.Success, RC.MaxIters):  # nf counts every call of f (solve()'s check of f(u0) too)
        assert calls_twin == twin.stats.nf
    # The controller's powers round differently on floats and arrays (an ulp of the step size), and
    # the local error estimate is a cancellation that magnifies such differences: times and step
    # sizes agree to about 1e-5 after tens of steps, states to rounding.
    assert float(twin.stats.t) == pytest.approx(float(generic.stats.t), rel=1e-4)
    np.testing.assert_allclose(twin.u, generic.u, rtol=1e-9, atol=1e-11)
    assert twin.u.dtype == generic.u.dtype and isinstance(twin.alg, ss.DynamicSS)


def test_the_engine_runs_one_numpy_system_only(monkeypatch):
    """The predicate: one float64 NumPy system with an explicit method."""
    ran = []
    step = SmallDynamicSS.step
    monkeypatch.setattr(SmallDynamicSS, "step", lambda self, *a: ran.append(1) or step(self, *a))
    prob = ss.NonlinearProblem(lambda u, p: -(u - 1.0), np.zeros(3))
    ss.solve(prob, ss.DynamicSS(), abstol=1e-8)
    assert ran
    for other in (dict(prob=ss.NonlinearProblem(lambda u, p: -(u - 1.0), np.zeros((2, 3))), batch_axis=0),
                  dict(prob=ss.NonlinearProblem(lambda u, p: -(u - 1.0), np.zeros(3, dtype=np.float32))),
                  dict(prob=prob, alg=ss.DynamicSS(ss.Rodas5P()))):
        ran.clear()
        p, alg = other.pop("prob"), other.pop("alg", ss.DynamicSS())
        assert ss.solve(p, alg, abstol=1e-5 if p.u0.dtype == np.float32 else 1e-8, **other).successful
        assert not ran


# --- the Newton family on the Moré-Garbow-Hillstrom set --------------------------------------------

NEWTON_FAMILY = {
    "newton": ss.NewtonRaphson(),
    "newton_armijo": ss.NewtonRaphson(linesearch="armijo"),
    "newton_full_steps": ss.NewtonRaphson(linesearch=None),
    "newton_krylov": ss.NewtonKrylov(),
    "trust_region": ss.TrustRegion(),
    "levenberg_marquardt": ss.LevenbergMarquardt(),
    "broyden": ss.Broyden(),
}
#: twins whose arithmetic is the generic one operation for operation: states equal bit for bit
#: (Broyden's outcomes on hard starts turn on the last bit of an inner product)
BITWISE = {"newton", "newton_armijo", "newton_full_steps", "broyden"}
#: long runs (hundreds of iterations) whose path turns on the last bit of a step: the twin's products
#: (``f @ J`` for ``sum(J * f)``, the one-system GMRES) round differently, so the counts differ there;
#: the return codes still agree
PATH_TURNS_ON_ROUNDING = {
    "trust_region": {("chebyquad", 10.0), ("chebyquad", 100.0), ("trigonometric", 100.0)},
    "levenberg_marquardt": {("chebyquad", 10.0), ("chebyquad", 100.0), ("trigonometric", 1.0),
                            ("trigonometric", 10.0), ("freudenstein_roth", 10.0)},
    "newton_krylov": {("chebyquad", 10.0), ("chebyquad", 100.0), ("trigonometric", 10.0), ("trigonometric", 100.0)},
}


def _mgh_solve(alg, prob, x0, generic, monkeypatch):
    """The solve by the twin (``generic=False``: it must run) or by the generic algorithm."""
    real, ran = _solve_module.small_twin, []
    with monkeypatch.context() as m:
        m.setattr(_solve_module, "small_twin", (lambda a, ctx: a) if generic else (
            lambda a, ctx: ran.append(real(a, ctx)) or ran[-1]))
        with np.errstate(all="ignore"):
            sol = ss.solve(ss.NonlinearProblem(lambda u, p: prob.F(u), x0.copy()), alg, abstol=1e-8, maxiters=1000)
    assert generic or (ran and all(getattr(t, "alg", None) is alg for t in ran))
    return sol


@pytest.mark.parametrize("name", sorted(NEWTON_FAMILY))
@pytest.mark.slow
def test_newton_family_twins_equal_the_generic_algorithms_on_mgh(name, monkeypatch):
    alg, turns = NEWTON_FAMILY[name], PATH_TURNS_ON_ROUNDING.get(name, set())
    solved = 0
    for prob, scale, x0 in mgh.pairs(mgh.SCALES):
        twin, generic = (_mgh_solve(alg, prob, x0, g, monkeypatch) for g in (False, True))
        where = f"{name} on {prob.name} x {scale:g}"
        assert twin.retcode is generic.retcode, where
        assert type(twin.alg) is type(alg), where
        if (prob.name, scale) in turns:
            continue
        for key in ("niter", "nf", "njvp"):
            assert getattr(twin.stats, key) == getattr(generic.stats, key), (where, key)
        assert twin.stats.extra.keys() == generic.stats.extra.keys(), where
        for key in twin.stats.extra:
            assert int(twin.stats[key]) == int(generic.stats[key]), (where, key)
        if name in BITWISE:
            assert np.array_equal(twin.u, generic.u), where
        elif twin.retcode is RC.Success:  # (a failure's best iterate may sit anywhere on a plateau of ||F||)
            np.testing.assert_allclose(twin.u, generic.u, rtol=1e-5, atol=1e-8, err_msg=where)
        solved += twin.retcode is RC.Success
    assert solved >= 37  # the robustness benchmark's floor (Broyden: 37 of the 69 pairs)


def test_newton_family_twins_run_one_float64_numpy_system_only(monkeypatch):
    ran = []
    step = SmallNewton.step
    monkeypatch.setattr(SmallNewton, "step", lambda self, *a: ran.append(1) or step(self, *a))
    f = lambda u, p: u ** 3 - 8.0  # noqa: E731
    for alg in (ss.NewtonRaphson(), ss.NewtonKrylov()):
        ran.clear()
        assert ss.solve(ss.NonlinearProblem(f, np.ones(2)), alg, abstol=1e-10).successful and ran
        for prob, kw in ((ss.NonlinearProblem(f, np.ones((2, 2))), dict(batch_axis=0)),
                         (ss.NonlinearProblem(f, np.ones(2, dtype=np.float32)), dict(abstol=1e-4))):
            ran.clear()
            assert ss.solve(prob, alg, **kw).successful
            assert not ran


# --- least squares on the NIST StRD regression problems -----------------------------------------------

from benchmarks.problems import nist  # noqa: E402
from steadysolve._small.gauss_newton import SmallGaussNewton  # noqa: E402
from steadysolve._small.levenberg_marquardt import SmallLevenbergMarquardt  # noqa: E402

LEAST_SQUARES_TWINS = {"levenberg_marquardt": (ss.LevenbergMarquardt(), SmallLevenbergMarquardt),
                       "gauss_newton": (ss.GaussNewton(), SmallGaussNewton),
                       "default": (None, SmallLevenbergMarquardt)}
#: the twins whose arithmetic is the generic one operation for operation on an m x n Jacobian
LEAST_SQUARES_BITWISE = {"gauss_newton"}


def _nist_solve(alg, prob, b0, generic, monkeypatch):
    real, ran = _solve_module.small_twin, []
    with monkeypatch.context() as m:
        m.setattr(_solve_module, "small_twin", (lambda a, ctx: a) if generic else (
            lambda a, ctx: ran.append(real(a, ctx)) or ran[-1]))
        with np.errstate(all="ignore"):
            sol = ss.solve(ss.NonlinearLeastSquaresProblem(lambda u, p: prob.residual(u), b0.copy()), alg,
                           maxiters=200)
    return sol, ran


@pytest.mark.parametrize("name", sorted(LEAST_SQUARES_TWINS))
@pytest.mark.slow
def test_least_squares_twins_equal_the_generic_algorithms_on_nist(name, monkeypatch):
    """Same return codes on the 54 NIST fits (capped at 200 iterations, where no run ends near the cap);
    GaussNewton's twin runs the generic arithmetic, so its counts and iterates are equal bit for bit;
    LevenbergMarquardt's forms its products on one (m, n) matrix (rounding differs in the last bits: long
    runs may take other paths)."""
    alg, twin_type = LEAST_SQUARES_TWINS[name]
    solved = 0
    for prob, k, b0 in nist.cases():
        (twin, ran), (generic, _) = (_nist_solve(alg, prob, b0, g, monkeypatch) for g in (False, True))
        where = f"{name} on {prob.name}/{k}"
        assert ran and all(type(t) is twin_type for t in ran), where
        assert twin.retcode is generic.retcode, where
        assert twin.stats.extra.keys() == generic.stats.extra.keys(), where
        if name in LEAST_SQUARES_BITWISE:
            for key in ("niter", "nf", "njvp"):
                assert getattr(twin.stats, key) == getattr(generic.stats, key), (where, key)
            assert np.array_equal(twin.u, generic.u), where
        elif twin.successful:
            np.testing.assert_allclose(twin.u, generic.u, rtol=1e-4, err_msg=where)
        solved += nist.digits(twin.u, prob.certified) >= nist.SOLVED_DIGITS
    assert solved >= {"gauss_newton": 40}.get(name, 45), solved


def test_least_squares_twins_decline_bounds_and_other_methods(monkeypatch):
    """The least-squares twins run one float64 NumPy system without bounds; TrustRegion has none."""
    prob = nist.load("Misra1a")
    P = ss.NonlinearLeastSquaresProblem(lambda u, p: prob.residual(u), prob.starts[1])
    _, ran = _nist_solve(ss.TrustRegion(), prob, prob.starts[1], False, monkeypatch)
    assert ran and all(type(t) is ss.TrustRegion for t in ran)
    bounded = ss.NonlinearLeastSquaresProblem(lambda u, p: prob.residual(u), prob.starts[1], lb=np.zeros(2))
    stepped = []
    step = SmallLevenbergMarquardt.step
    monkeypatch.setattr(SmallLevenbergMarquardt, "step", lambda self, *a: stepped.append(1) or step(self, *a))
    assert nist.digits(ss.solve(P, ss.LevenbergMarquardt()).u, prob.certified) >= 4 and stepped
    stepped.clear()
    sol = ss.solve(bounded, ss.LevenbergMarquardt())
    assert not stepped and nist.digits(sol.u, prob.certified) >= 4
    batch = ss.NonlinearLeastSquaresProblem(lambda u, p: np.stack([prob.residual(r) for r in u]),
                                            np.stack([prob.starts[1]] * 2))
    assert ss.solve(batch, ss.LevenbergMarquardt(), batch_axis=0).successful
    assert not stepped
