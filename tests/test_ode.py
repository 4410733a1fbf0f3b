"""Tsit5 tableau, the generic RK step, the PI controller and ss.integrate."""

import math

import numpy as np
import pytest
from helpers import xp_of
from scipy.integrate import solve_ivp

import steadysolve as ss
from steadysolve.ode import TSIT5_TABLEAU, ButcherTableau, PIController, Tsit5, dense_eval, rk_step
from steadysolve.ode._elements import elements
from steadysolve.ode.controller import attempt_step, initial_step


# -- the tableau checks itself ---------------------------------------------------------

def _tsit5_fields(**change):
    T = TSIT5_TABLEAU
    kw = dict(name="bad", c=T.c, a=T.a, b=T.b, b_err=T.b_err, order=5, error_order=4, dense=T.dense)
    kw.update(change)
    return kw


def test_tsit5_tableau_is_consistent():
    T = Tsit5().tableau
    assert T.stages == 7 and T.fsal and T.new_evaluations == 6
    for i, row in enumerate(T.a):
        assert math.fsum(row) == pytest.approx(T.c[i], abs=1e-14)
    assert math.fsum(T.b) == pytest.approx(1.0, abs=1e-15)
    assert math.fsum(T.b_err) == pytest.approx(0.0, abs=1e-15)
    # fifth-order conditions that a typo would break: sum b c^k = 1/(k+1), k <= 4
    for k in range(5):
        assert math.fsum(bi * ci ** k for bi, ci in zip(T.b, T.c)) == pytest.approx(1 / (k + 1), abs=1e-12)


@pytest.mark.parametrize("change, msg", [
    (dict(a=TSIT5_TABLEAU.a[:3] + ((2.9, -6.359448489975075, 4.3622954328695815),) + TSIT5_TABLEAU.a[4:]),
     "row a\\[3\\] sums"),
    (dict(b=(0.1,) + TSIT5_TABLEAU.b[1:]), "weights b sum"),
    (dict(b_err=(0.1,) + TSIT5_TABLEAU.b_err[1:]), "error weights b_err sum"),
    (dict(c=(0.1,) + TSIT5_TABLEAU.c[1:]), "c\\[0\\] must be 0"),
    (dict(a=((),) * 7), "row a\\[1\\] must have 1 entries"),
    (dict(order=4, error_order=4), "error_order < order"),
    (dict(dense=TSIT5_TABLEAU.dense[:6] + ((1.0,),)), "dense output b_6"),
])
def test_bad_tableau_is_rejected(change, msg):
    with pytest.raises(ValueError, match=msg):
        ButcherTableau(**_tsit5_fields(**change))


def test_rk_integrator_rejects_non_tableau():
    with pytest.raises(TypeError, match="tableau must be a ButcherTableau"):
        Tsit5(tableau="tsit5")


# -- one RK step: cost, FSAL and convergence order --------------------------------------

def test_step_costs_six_new_evaluations_and_fsal_is_exact(bk):
    calls = []

    def f(t, u):
        calls.append(1)
        return -u * u

    u = bk.asarray([[1.0, 2.0]])
    h = bk.asarray([[0.1]])
    r = rk_step(TSIT5_TABLEAU, f, bk.asarray([[0.0]]), u, h, f(None, u))
    assert len(calls) == 7 and r.nf == 6
    np.testing.assert_allclose(bk.to_numpy(r.f), -bk.to_numpy(r.u) ** 2, rtol=1e-15)
    u0 = np.array([1.0, 2.0])
    exact = u0 / (1 + 0.1 * u0)  # u' = -u^2
    np.testing.assert_allclose(bk.to_numpy(r.u)[0], exact, atol=1e-5)


def _fixed_step_error(bk, f, u0, T, N, exact):
    xp = xp_of(bk.asarray([0.0]))
    u = bk.asarray([[u0]])
    h = T / N
    hh = bk.asarray([[h]])
    fu = f(bk.asarray([[0.0]]), u)
    for i in range(N):
        r = rk_step(TSIT5_TABLEAU, f, bk.asarray([[i * h]]), u, hh, fu)
        u, fu = r.u, r.f
    assert xp is not None
    return abs(float(bk.to_numpy(u)[0, 0]) - exact)


@pytest.mark.parametrize("which", ["linear", "nonlinear"])
@pytest.mark.slow
def test_tsit5_global_error_slope_is_five(bk, which):
    if which == "linear":  # u' = -u
        f, u0, T, exact = (lambda t, u: -u), 1.0, 2.0, math.exp(-2.0)
    else:  # u' = 1 - u^2 + sin(t) u... use Riccati u' = 1 - u^2, u = tanh(t)
        f, u0, T, exact = (lambda t, u: 1.0 - u * u), 0.0, 2.0, math.tanh(2.0)
    Ns = [6, 12, 24, 48]
    errs = [_fixed_step_error(bk, f, u0, T, N, exact) for N in Ns]
    slope = -np.polyfit(np.log(Ns), np.log(errs), 1)[0]
    assert 4.5 <= slope <= 5.5, (slope, errs)


def test_dense_output_is_fourth_order_accurate():
    f = lambda t, u: -u  # noqa: E731
    u = np.array([[1.0]])
    errs = []
    for h in (0.4, 0.2, 0.1):
        r = rk_step(TSIT5_TABLEAU, f, np.zeros((1, 1)), u, np.full((1, 1), h), f(0, u))
        mid = dense_eval(TSIT5_TABLEAU, u, r.ks, 0.5)
        errs.append(abs(mid[0, 0] - math.exp(-h / 2)))
        # theta = 1 reproduces the step
        np.testing.assert_allclose(dense_eval(TSIT5_TABLEAU, u, r.ks, 1.0), r.u, rtol=1e-14)
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(rates > 4.5), rates  # local error O(h^5)


# -- the controller -------------------------------------------------------------------

def test_controller_accept_reject_logic(bk):
    xp = xp_of(bk.asarray([0.0]))
    c = PIController()
    h = bk.asarray([1.0, 1.0, 1.0, 1.0])
    e = bk.asarray([1e-3, 2.0, 0.0, float("inf")])
    prev = bk.asarray([1e-4] * 4)
    rej = bk.asarray([0.0, 0.0, 0.0, 0.0]) != 0
    fin = bk.asarray([1.0, 1.0, 1.0, 0.0]) != 0
    a = attempt_step(c, elements(xp), 5, 4, h, e, prev, rej, fin)
    acc = bk.to_numpy(a.accept)
    hn = bk.to_numpy(a.h_next)
    assert acc.tolist() == [True, False, True, False]
    # the PI rule with Hairer's DOPRI5 exponents for order 5: 0.17 and 0.04
    assert hn[0] == pytest.approx(0.9 * 1e-3 ** -0.17 * 1e-4 ** 0.04) and hn[0] > 1.0
    assert hn[1] == pytest.approx(0.9 * 2.0 ** -0.2) and hn[1] < 1.0
    assert hn[2] == pytest.approx(10.0) and hn[3] == pytest.approx(0.2)
    assert 0.2 <= hn[1] < 1.0 and hn[2] == pytest.approx(10.0) and hn[3] == pytest.approx(0.2)
    # right after a rejection an accepted step may not grow
    a2 = attempt_step(c, elements(xp), 5, 4, h, bk.asarray([1e-6] * 4), prev, rej | True, fin | True)
    np.testing.assert_allclose(bk.to_numpy(a2.h_next), 1.0)


def test_initial_step_is_sensible(bk):
    xp = xp_of(bk.asarray([0.0]))
    lam = 50.0
    u0 = bk.asarray([[1.0, 1.0]])
    h = initial_step(elements(xp), lambda t, u: -lam * u, bk.asarray([0.0]), u0, -lam * u0, 5, 1e-6, 1e-9)
    h = float(bk.to_numpy(h)[0])
    assert 1e-5 / lam < h < 1.0 / lam


@pytest.mark.parametrize("kw, err, msg", [
    (dict(safety=1.5), ValueError, "safety must be in"),
    (dict(factormin=1.5), ValueError, "factormin must be < 1"),
    (dict(factormax=0.5), ValueError, "factormax must be > 1"),
    (dict(reltol=-1.0), ValueError, "reltol must be >= 0"),
    (dict(reltol=0.0, abstol=0.0), ValueError, "cannot both be 0"),
    (dict(abstol="1e-6"), TypeError, "abstol must be a real number"),
    (dict(rtol=1e-3), TypeError, "unexpected keyword argument 'rtol'"),
    (dict(atol=1e-3), TypeError, "unexpected keyword argument 'atol'"),
])
def test_controller_validation(kw, err, msg):
    with pytest.raises(err, match=msg):
        PIController(**kw)


# -- ss.integrate ---------------------------------------------------------------------

LV = (1.5, 1.0, 3.0, 1.0)


def lotka_volterra(u, p, t):
    xp = xp_of(u)
    a, b, c, d = p
    return xp.stack([a * u[0] - b * u[0] * u[1], -c * u[1] + d * u[0] * u[1]])


@pytest.fixture(scope="module")
def lv_reference():
    ts = np.linspace(0.0, 10.0, 21)
    ref = solve_ivp(lambda t, u: lotka_volterra(u, LV, t), (0.0, 10.0), [1.0, 1.0], method="DOP853",
                    rtol=1e-12, atol=1e-14, t_eval=ts)
    return ts, ref.y.T


@pytest.mark.slow
def test_integrate_matches_dop853(bk, lv_reference):
    ts, ref = lv_reference
    rtol, atol = 1e-7, 1e-9
    sol = ss.integrate(lotka_volterra, bk.asarray([1.0, 1.0]), (0.0, 10.0), ss.Tsit5(), p=LV, saveat=ts,
                       reltol=rtol, abstol=atol)
    assert sol.retcode is ss.ReturnCode.Success and sol.successful
    us = bk.to_numpy(sol.us)
    assert us.shape == (21, 2)
    np.testing.assert_allclose(bk.to_numpy(sol.ts), ts)
    # global error within the requested tolerance (times a modest error-growth factor)
    assert np.all(np.abs(us - ref) <= 10 * (atol + rtol * np.abs(ref))), np.max(np.abs(us - ref))
    assert sol.stats["naccept"] + sol.stats["nreject"] == sol.stats["niter"]
    assert sol.stats["nf"] == 2 + 6 * sol.stats["niter"]
    assert sol.t == 10.0


def test_integrate_every_step_and_tolerance_tradeoff():
    u0 = np.array([1.0, 1.0])
    loose = ss.integrate(lotka_volterra, u0, (0.0, 5.0), p=LV, reltol=1e-4, abstol=1e-6)
    tight = ss.integrate(lotka_volterra, u0, (0.0, 5.0), p=LV, reltol=1e-9, abstol=1e-11)
    for s in (loose, tight):
        assert s.ts[0] == 0.0 and s.ts[-1] == 5.0 and np.all(np.diff(s.ts) > 0)
        assert s.us.shape == (s.stats["naccept"] + 1, 2)
    assert tight.stats["naccept"] > 3 * loose.stats["naccept"]
    ref = solve_ivp(lambda t, u: lotka_volterra(u, LV, t), (0, 5), u0, method="DOP853", rtol=1e-12, atol=1e-14)
    assert np.max(np.abs(tight.us[-1] - ref.y[:, -1])) < np.max(np.abs(loose.us[-1] - ref.y[:, -1]))


def test_integrate_jit_equals_eager():
    import jax
    import jax.numpy as jnp

    ts = np.linspace(0.0, 4.0, 9)
    eager = ss.integrate(lotka_volterra, jnp.asarray([1.0, 1.0]), (0.0, 4.0), p=LV, saveat=ts)
    jitted = jax.jit(lambda u0: ss.integrate(lotka_volterra, u0, (0.0, 4.0), p=LV, saveat=ts))(
        jnp.asarray([1.0, 1.0]))
    np.testing.assert_allclose(np.asarray(jitted.us), np.asarray(eager.us), rtol=1e-12, atol=1e-14)
    assert int(jitted.retcode_array) == 0 and jitted.retcode is ss.ReturnCode.Success
    assert int(jitted.stats["nf"]) == eager.stats["nf"]
    with pytest.raises(ValueError, match="pass saveat"):
        jax.jit(lambda u0: ss.integrate(lotka_volterra, u0, (0.0, 4.0), p=LV).us)(jnp.asarray([1.0, 1.0]))


def test_integrate_maxiters_is_reported():
    sol = ss.integrate(lotka_volterra, np.array([1.0, 1.0]), (0.0, 10.0), p=LV, saveat=[0.0, 5.0, 10.0],
                       maxiters=3)
    assert sol.retcode is ss.ReturnCode.MaxIters
    np.testing.assert_allclose(sol.us[0], [1.0, 1.0])
    assert np.all(np.isnan(sol.us[1:]))


@pytest.mark.parametrize("args, kw, err, msg", [
    ((np.ones(2), (1.0, 0.0)), {}, ValueError, "t1 > t0"),
    ((np.ones(2), (0.0, float("inf"))), {}, ValueError, "tspan\\[1\\] must be a finite"),
    ((np.ones(2), 1.0), {}, ValueError, "tspan must be a pair"),
    ((np.ones(2), (0.0, 1.0)), dict(saveat=[0.5, 2.0]), ValueError, "lie in \\[t0, t1\\]"),
    ((np.ones(2), (0.0, 1.0)), dict(saveat=[0.5, 0.2]), ValueError, "non-decreasing"),
    ((np.ones(2), (0.0, 1.0)), dict(maxiters=0), ValueError, "maxiters must be >= 1"),
    ((np.ones(2), (0.0, 1.0)), dict(reltol=-1.0), ValueError, "reltol must be a finite number >= 0"),
    ((np.ones(2), (0.0, 1.0)), dict(rtol=1e-3), TypeError, "did you mean 'reltol'"),
    ((np.ones(2), (0.0, 1.0)), dict(solver="tsit5"), TypeError, "explicit Runge-Kutta"),
    ((np.ones(2, dtype=int), (0.0, 1.0)), {}, TypeError, "real floating-point"),
])
def test_integrate_bad_input(args, kw, err, msg):
    with pytest.raises(err, match=msg):
        ss.integrate(lambda u, p, t: -u, *args, **kw)


def test_integrate_checks_f_output():
    with pytest.raises(ValueError, match="returned shape"):
        ss.integrate(lambda u, p, t: u[:1], np.ones(2), (0.0, 1.0))
    with pytest.raises(TypeError, match="f must be callable"):
        ss.integrate(None, np.ones(2), (0.0, 1.0))
