"""Exact work counters. ``stats.nf`` is every call of the problem's function made for its value
(the check ``solve`` makes at ``u0`` included, finite-difference products included), ``stats.njvp``
every Jacobian-vector product however it is computed (finite differences, AD, the problem's
``jvp``), ``stats.nvjp`` every vector-Jacobian product, ``stats.njac`` every dense Jacobian (one
call of the problem's ``jac`` when it has one): see the ``Stats`` docstring. A counter around the
user's functions must agree with the Solution exactly, for every algorithm (Auto included), on the
MGH set, for the three problem kinds, batched and unbatched, eager and jitted, on every backend.
"""

import warnings

import numpy as np
import pytest

import steadysolve as ss
from benchmarks.problems import mgh

ALGS = ss.available()
#: an explicit Auto chain: a later attempt's setup (DynamicSS's f at t0, its first-step estimate) counts
CHAIN = pytest.param(ss.Auto(algs=("fixed_point", "dynamic_ss", "broyden", "newton")), id="auto_chain")
DENSE = ("newton", "trust_region", "levenberg_marquardt")
# The batched sweeps run the same counting code as the single system at twice the cost: the fast loop
# counts the single system.
ONE_AND_BATCH = [pytest.param(False, id="one"), pytest.param(True, id="batch", marks=pytest.mark.slow)]
MAXITERS = 200


class Counter:
    """Calls of a user function, sorted by what they were for: ``value`` (plain arrays: the
    function's value), ``jvp`` (a torch dual tensor or a JAX JVP tracer: one product), ``jac`` (a
    tensor tracked for reverse mode, or a batch of tangents: a whole Jacobian of ``n`` products)."""

    def __init__(self, fn):
        self.fn, self.value, self.jvp, self.jac = fn, 0, 0, 0

    def __call__(self, u, *rest):
        kind = _call_kind(u)
        setattr(self, kind, getattr(self, kind) + 1)
        return self.fn(u, *rest)


def _call_kind(u):
    mod = type(u).__module__
    if mod.startswith("torch"):
        import torch
        import torch.autograd.forward_ad as fwad

        if torch._C._functorch.is_functorch_wrapped_tensor(u) or u.requires_grad:
            return "jac"
        return "jvp" if fwad.unpack_dual(u).tangent is not None else "value"
    if mod.startswith("jax"):  # (under jax.jit a plain value is a tracer too: the JVP tracer is the mark)
        if type(u).__name__ == "JVPTracer":
            return "jac" if type(getattr(u, "tangent", None)).__name__ == "BatchTracer" else "jvp"
    return "value"


def _silent(fn):
    """``fn()`` with the numerical warnings of hard problems (overflow in a user's F) silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn()


# ---------------------------------------------------------------------------------------
# The MGH set (NumPy functions of 1-D arrays) as the three problem kinds, on NumPy / strict
# ---------------------------------------------------------------------------------------

def _rows(F, bk, batched):
    """``F`` on the backend's arrays: one 1-D system, or a (B, n) batch of them row by row."""
    if batched:
        return lambda u: bk.asarray(np.stack([F(r) for r in bk.to_numpy(u)]))
    return lambda u: bk.asarray(F(bk.to_numpy(u)))


def _mgh_problem(kind, F, u0, bk, batched, **kw):
    Fb = _rows(F, bk, batched)
    if kind == "nonlinear":
        fn = Counter(lambda u, p: Fb(u))
        return ss.NonlinearProblem(fn, u0, **kw), fn
    if kind == "steady_state":
        fn = Counter(lambda u, p, t: -Fb(u))
        return ss.SteadyStateProblem(fn, u0, **kw), fn
    fn = Counter(lambda u, p: u - Fb(u))
    return ss.FixedPointProblem(fn, u0, **kw), fn


def _starts(p, batched, scales):
    if batched:  # one problem from three starts: the batch narrows once stragglers remain
        return [(p, np.stack([mgh.start(p, s) for s in mgh.SCALES]))]
    return [(p, mgh.start(p, s)) for s in scales]


def _sweep(alg, kind, batched, bk, scales, problems=mgh.PROBLEMS):
    wrong = []
    for p in problems:
        for _, x0 in _starts(p, batched, scales):
            prob, fn = _mgh_problem(kind, p.F, bk.asarray(x0), bk, batched)
            sol = _silent(lambda: ss.solve(prob, alg, maxiters=MAXITERS, batch_axis=0 if batched else None))
            st = sol.stats
            if (fn.value, fn.jvp, fn.jac) != (st.nf, 0, 0) or st.nvjp != 0:
                wrong.append(f"{p.name} from {x0.ravel()[:2]}...: {fn.value} calls of f, stats nf={st.nf} "
                             f"njvp={st.njvp} nvjp={st.nvjp} ({sol.retcode.name})")
    return wrong


@pytest.mark.parametrize("batched", ONE_AND_BATCH)
@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.slow
def test_nf_is_every_call_of_f_on_the_mgh_set(alg, batched):
    """All 69 MGH starts (23 batches of three starts): finite-difference products included."""
    from helpers import get_backend

    wrong = _sweep(alg, "nonlinear", batched, get_backend("numpy"), mgh.SCALES)
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("kind", ["nonlinear", "steady_state", "fixed_point"])
@pytest.mark.parametrize("batched", ONE_AND_BATCH)
@pytest.mark.parametrize("alg", [CHAIN])
@pytest.mark.slow
def test_nf_of_an_explicit_auto_chain(alg, kind, batched):
    from helpers import get_backend

    wrong = _sweep(alg, kind, batched, get_backend("numpy"), (1.0, 100.0))
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("kind", ["steady_state", "fixed_point"])
@pytest.mark.parametrize("batched", ONE_AND_BATCH)
@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.slow
def test_nf_for_every_problem_kind(alg, kind, batched):
    from helpers import get_backend

    wrong = _sweep(alg, kind, batched, get_backend("numpy"), (1.0,))
    assert not wrong, "\n".join(wrong)


# array_api_strict runs the MGH sweep slowly (seconds per algorithm): the fast loop counts two algorithms
@pytest.mark.parametrize("alg", [a if a in ("anderson", "newton") else pytest.param(a, marks=pytest.mark.slow)
                                 for a in ALGS])
@pytest.mark.slow
def test_nf_on_array_api_strict(alg):
    from helpers import get_backend

    probs = [mgh.by_name(n) for n in ("rosenbrock", "powell_singular", "freudenstein_roth", "trigonometric")]
    bk = get_backend("array_api_strict")
    wrong = []
    for kind in ("nonlinear", "steady_state", "fixed_point"):
        for batched in (False, True):
            wrong += _sweep(alg, kind, batched, bk, (1.0, 100.0), probs)
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("kind", ["nonlinear", "steady_state"])
@pytest.mark.parametrize("batched", ONE_AND_BATCH)
@pytest.mark.parametrize("integrator", ["Rosenbrock23", "Rodas5P"])
@pytest.mark.slow
def test_nf_of_stiff_dynamic_ss(integrator, kind, batched):
    """DynamicSS with a Rosenbrock method: its Jacobians by finite differences are calls of ``f``."""
    from helpers import get_backend

    wrong = _sweep(ss.DynamicSS(getattr(ss, integrator)()), kind, batched, get_backend("numpy"), (1.0,))
    assert not wrong, "\n".join(wrong)


def _user_derivatives(p, batched, jvp=True, jac=False):
    """The problem's own ``jvp`` / ``vjp`` / ``jac`` (central differences of ``F`` itself, so they never
    call the counted ``f``), each behind its own counter."""
    F, n = p.F, p.n

    def J(x):
        h = 1e-7 * np.maximum(np.abs(x), 1.0)
        return np.stack([(F(x + h[j] * e) - F(x - h[j] * e)) / (2 * h[j]) for j, e in enumerate(np.eye(n))], axis=1)

    def each(u, fn):
        return np.stack([fn(r, i) for i, r in enumerate(u)]) if batched else fn(u, None)

    out = {}
    if jvp:
        out["jvp"] = Counter(lambda u, v, _p: each(u, lambda r, i: J(r) @ (v[i] if batched else v)))
        out["vjp"] = Counter(lambda u, w, _p: each(u, lambda r, i: (w[i] if batched else w) @ J(r)))
    if jac:
        out["jac"] = Counter(lambda u, _p: np.stack([J(r) for r in u]) if batched else J(u))
    return out


def _njac(st):
    """Dense Jacobians of a solve: ``njac``, summed over Auto's attempts."""
    if "attempts" in st.keys():
        return sum(s.extra.get("njac", 0) for s in st.attempts.values())
    return st.extra.get("njac", 0)


# The user-JVP and user-Jacobian sweeps cost seconds per algorithm (central differences of F): the fast loop
# counts from the MGH starts (x0), the whole suite also from 100 x0, where the far start's failures and
# line-search backtracks spend products on other branches (a batch starts from every scale at once).
NEAR_FAR_BATCH = [pytest.param(False, (1.0,), id="one-x0"),
                  pytest.param(False, (100.0,), id="one-100x0", marks=pytest.mark.slow),
                  pytest.param(True, mgh.SCALES, id="batch", marks=pytest.mark.slow)]


@pytest.mark.parametrize("batched, scales", NEAR_FAR_BATCH)
@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.slow
def test_njvp_is_every_call_of_the_problems_jvp(alg, batched, scales):
    wrong = []
    for p in mgh.PROBLEMS:
        for _, x0 in _starts(p, batched, scales):
            fn = Counter(lambda u, _p, F=p.F: np.stack([F(r) for r in u]) if batched else F(u))
            d = _user_derivatives(p, batched)
            prob = ss.NonlinearProblem(fn, x0, **d)
            sol = _silent(lambda: ss.solve(prob, alg, maxiters=MAXITERS, batch_axis=0 if batched else None))
            st = sol.stats
            got = (fn.value, d["jvp"].value, d["vjp"].value)
            if got != (st.nf, st.njvp, st.nvjp):
                wrong.append(f"{p.name}: calls (f, jvp, vjp) {got}, stats {(st.nf, st.njvp, st.nvjp)}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("batched, scales", NEAR_FAR_BATCH)
@pytest.mark.parametrize("alg", DENSE + ("auto", pytest.param(ss.DynamicSS(ss.Rodas5P()), id="dynamic_ss_rodas5p")))
@pytest.mark.slow
def test_njac_is_every_call_of_the_problems_jac(alg, batched, scales):
    wrong = []
    for p in mgh.PROBLEMS:
        for _, x0 in _starts(p, batched, scales):
            fn = Counter(lambda u, _p, F=p.F: np.stack([F(r) for r in u]) if batched else F(u))
            d = _user_derivatives(p, batched, jvp=False, jac=True)
            prob = ss.NonlinearProblem(fn, x0, **d)
            sol = _silent(lambda: ss.solve(prob, alg, maxiters=MAXITERS, batch_axis=0 if batched else None))
            st = sol.stats
            # (JVPs may still be spent: Auto's Newton-Krylov attempts, the verdict's measurements)
            if fn.value != st.nf or d["jac"].value != _njac(st):
                wrong.append(f"{p.name}: calls of f {fn.value}, of jac {d['jac'].value}; stats nf={st.nf} "
                             f"njac={_njac(st)} njvp={st.njvp}")
    assert not wrong, "\n".join(wrong)


def test_finite_difference_products_count_in_nf_and_njvp():
    """Newton-Krylov without a ``jvp``: every Krylov step is one call of ``f`` and one product; with the
    problem's ``jvp`` the same solve calls ``f`` once per iteration."""
    p = mgh.by_name("broyden_tridiagonal")
    fn = Counter(lambda u, _p: p.F(u))
    sol = ss.solve(ss.NonlinearProblem(fn, p.x0), "newton_krylov", abstol=1e-10)
    st = sol.stats
    assert sol.successful and st.njvp == st.nlinear > 0
    assert fn.value == st.nf == st.niter + 1 + st.njvp
    d = _user_derivatives(p, False)
    fn2 = Counter(lambda u, _p: p.F(u))
    st2 = ss.solve(ss.NonlinearProblem(fn2, p.x0, **d), "newton_krylov", abstol=1e-10).stats
    assert fn2.value == st2.nf == st2.niter + 1 and d["jvp"].value == st2.njvp == st2.nlinear


def test_a_closure_over_the_batch_counts_the_narrowing_probe():
    """``f`` capturing per-element data cannot take a smaller batch: the driver's one try counts."""
    target = np.linspace(1.0, 3.0, 6)[:, None]
    fn = Counter(lambda u, _p: u ** 3 - target)
    starts = np.array([[1.2, 1.3], [1.3, 1.2], [1.25, 1.25], [1.1, 1.4], [1.4, 1.1], [30.0, 25.0]])
    for alg in ALGS:
        fn.value = 0
        sol = _silent(lambda: ss.solve(ss.NonlinearProblem(fn, starts), alg, batch_axis=0, maxiters=MAXITERS))
        assert fn.value == sol.stats.nf, alg


# ---------------------------------------------------------------------------------------
# PyTorch and JAX: AD products count in njvp, not nf
# ---------------------------------------------------------------------------------------

def _rosenbrock(u, p):
    return _stack_last([10.0 * (u[..., 1] - u[..., 0] ** 2), 1.0 - u[..., 0]], u)


def _freudenstein_roth(u, p):  # from (0.5, -2) the Newton family stalls at a non-root minimum
    x, y = u[..., 0], u[..., 1]
    return _stack_last([-13.0 + x + ((5.0 - y) * y - 2.0) * y, -29.0 + x + ((y + 1.0) * y - 14.0) * y], u)


def _stack_last(cols, u):
    import array_api_compat

    return array_api_compat.array_namespace(u).stack(cols, axis=-1)


AD_CASES = [(_rosenbrock, [-1.2, 1.0]), (_freudenstein_roth, [0.5, -2.0])]


def _ad_njvp(fn, n):
    """The products AD computed through ``fn``: one per JVP pass, ``n`` per whole Jacobian."""
    return fn.jvp + n * fn.jac


@pytest.mark.parametrize("lib", ["torch", pytest.param("jax", marks=pytest.mark.slow)])
@pytest.mark.parametrize("alg", ["newton", "newton_krylov", "trust_region", "levenberg_marquardt", "auto", "broyden"])
@pytest.mark.slow
def test_ad_products_count_in_njvp(lib, alg):
    from helpers import get_backend

    bk = get_backend(lib)
    for F, x0 in AD_CASES:
        for batched in (False, True):
            u0 = bk.asarray(np.array([x0, [1.5, 0.5], [30.0, -20.0]]) if batched else np.array(x0))
            fn = Counter(F)
            sol = _silent(lambda: ss.solve(ss.NonlinearProblem(fn, u0), alg, maxiters=MAXITERS,
                                           batch_axis=0 if batched else None))
            st = sol.stats
            if lib == "torch" and alg in ("newton_krylov", "auto"):
                # Krylov products by reverse over reverse: one tracked call of f per linear solve (the
                # linearisation), then backward passes that do not call f, one product each (at most
                # n = 2 per linear solve here); a tracked call for a dense Jacobian is n products
                assert fn.value == st.nf and st.nvjp == 0, (F.__name__, batched)
                assert fn.jvp + fn.jac <= st.njvp <= _ad_njvp(fn, 2), (F.__name__, batched)
                continue
            assert (fn.value, _ad_njvp(fn, 2), 0) == (st.nf, st.njvp, st.nvjp), (F.__name__, batched)


@pytest.mark.parametrize("alg", ["anderson", "newton"] + [pytest.param(a, marks=pytest.mark.slow) for a in
                                                         ("broyden", "fixed_point", "dynamic_ss", "newton_krylov", "auto")])
@pytest.mark.slow
def test_counts_under_jax_jit(alg):
    """Under ``jax.jit`` the counters are traced: a host callback inside ``f`` (and the problem's ``jvp``)
    counts the evaluations that actually run (``f``'s passes under AD, products, apart)."""
    import jax
    import jax.numpy as jnp

    calls = {"value": 0, "jvp": 0, "jac": 0, "user_jvp": 0}

    def tick(key):
        def bump():
            calls[key] += 1
        jax.debug.callback(bump)

    def f(u, p):
        tick(_call_kind(u))
        return _rosenbrock(u, p) if alg not in ("anderson", "fixed_point", "dynamic_ss") else -(u - jnp.cos(u))

    def jvp(u, v, p):
        tick("user_jvp")
        return jax.jvp(lambda x: _rosenbrock(x, p), (u,), (v,))[1]

    for batched in (False, True):
        u0 = jnp.asarray([[-1.2, 1.0], [1.5, 0.5], [3.0, -2.0]] if batched else [-1.2, 1.0])
        kw = {} if alg in ("anderson", "fixed_point", "dynamic_ss", "broyden") else {"jvp": jvp}

        @jax.jit
        def run(u0):
            sol = ss.solve(ss.NonlinearProblem(f, u0, **kw), alg, maxiters=MAXITERS,
                           batch_axis=0 if batched else None)
            return sol.stats.nf, sol.stats.njvp

        calls.update(value=0, jvp=0, jac=0, user_jvp=0)
        nf, njvp = run(u0)
        jax.effects_barrier()
        assert calls["value"] == int(nf), batched
        if kw:
            assert calls["user_jvp"] == int(njvp) and calls["jvp"] == calls["jac"] == 0, batched


@pytest.mark.slow
@pytest.mark.parametrize("alg", ["broyden", "newton_krylov"])
def test_counts_under_jax_jit_with_compaction(alg):
    """A jitted batch of 1,024 compacts its stragglers (``loop_compact``): the check that ``f`` takes
    the smaller batch is one call of ``f``, counted."""
    import jax
    import jax.numpy as jnp

    calls = [0]

    def f(u, p):
        def bump():
            calls[0] += 1
        if _call_kind(u) == "value":  # (not the passes of AD products)
            jax.debug.callback(bump)
        return u * u * u - p

    B = 1024
    p = jnp.asarray([2.0, 3.0])  # shared by the rows: f is row-wise, checked once
    u0 = jnp.ones((B, 2)).at[:8].set(40.0)  # a few stragglers far away

    @jax.jit
    def run(u0):
        sol = ss.solve(ss.NonlinearProblem(f, u0, p), alg, batch_axis=0, maxiters=MAXITERS)
        return sol.stats.nf, sol.retcode_array

    nf, codes = run(u0)
    jax.effects_barrier()
    assert int((codes == 0).sum()) >= B - 8 and calls[0] == int(nf)
