"""``NewtonRaphson`` and ``NewtonKrylov`` on ONE NumPy system: the line search's decisions on Python floats.

The generic loop (:class:`~steadysolve.algorithms.newton_base.NewtonBase`) decides every phase
(Newton, watchdog probe, backtracking) per element with ``where``, and computes directions for the
whole batch whenever one element needs one. For one system the phase is a Python branch: a backtracking
iteration computes no direction, and the step length, the phase counters and ``||F||^2`` are Python
floats and ints. The decisions, constants and counts are those of the generic loop (see the notes of
``newton_base.py``); the direction is NewtonRaphson's dense solve or NewtonKrylov's GMRES
(the engine's one-system GMRES, :mod:`steadysolve._small.gmres`, with the generic algorithm's
inner-solve settings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import _backend as backend
from ..algorithms.base import no_progress
from ..algorithms.dense import refuse_large
from ..algorithms.newton_base import ARMIJO_C, WATCH_DECREASE, WATCH_GROWTH, NewtonBase
from ..algorithms.newton_krylov import USEFUL
from ..retcodes import ReturnCode
from .dense import finite, regularised
from .floats import FLOATS
from .gmres import gmres_one
from .twin import Twin

__all__ = ["SmallNewton", "SmallNewtonRaphson", "SmallNewtonKrylov", "SmallNewtonState"]

_LSF = ReturnCode.LinearSolveFailed.code
_STALLED = ReturnCode.Stalled.code


class SmallNewtonState(NamedTuple):
    u: Any  # (1, n)
    fu: Any  # (1, n)
    fn2: float  # ||F(u)||^2
    d: Any  # (1, n) Newton direction at u
    lam: float  # step length of the next backtracking trial
    nback: int  # rejected trials along d so far (0: Newton or probe phase)
    eta: float  # forcing term of the next linear solve (NewtonKrylov)
    flag: Any  # (1,) int32 failure code
    nf: int
    njvp: int
    nvjp: int
    nlinsolve: int
    nlinear: int  # Krylov steps (NewtonKrylov) or dense Jacobians (NewtonRaphson)
    nbacktrack: int
    aux: Any  # NewtonKrylov's recycled directions (1, k, n), or None
    p: Any  # (1, n) the last trial point (the probe point in the probe phase)
    fp: Any  # (1, n) F(p)
    fp2: float  # ||F(p)||^2
    probe: bool  # this iteration probes from p
    watch: bool  # a rejected full step may be probed
    nslow: int  # iterations since the last progress (``base.no_progress``)
    ref2: float  # ||F||^2 at the last progress
    eye: Any  # NewtonRaphson: the (n, n) identity of the regularised solve
    work: Any = None  # NewtonKrylov: GMRES's basis, allocated once per solve


def _flag(xp, code):
    return xp.full((1,), code, dtype=xp.int32)


@dataclass(frozen=True)
class SmallNewton(Twin):
    """The one-system twin of ``alg`` (a :class:`NewtonBase`); subclasses give the direction."""

    alg: NewtonBase

    def _direction(self, ctx, state, base):  # pragma: no cover - interface
        """``(d (1, n), unusable: bool, njvp, nlinear, aux)`` at ``base.u``."""
        raise NotImplementedError

    def _next_eta(self, ctx, state, f2, u_new):
        return state.eta

    def _eye(self, ctx):
        return None

    def _work(self, ctx):
        return None

    def init(self, prob, u0, ctx):
        alg, xp = self.alg, ctx.xp
        fu = ctx.fu0
        fn2 = float(xp.sum(fu * fu, axis=1)[0])
        return SmallNewtonState(
            u=u0, fu=fu, fn2=fn2, d=xp.zeros_like(u0), lam=1.0, nback=0, eta=float(alg._eta0(ctx)),
            flag=_flag(xp, 0), nf=1, njvp=0, nvjp=0, nlinsolve=0, nlinear=0, nbacktrack=0, aux=alg._aux0(ctx, u0),
            p=u0, fp=fu, fp2=fn2, probe=False, watch=alg.linesearch == "watchdog", nslow=0, ref2=fn2,
            eye=self._eye(ctx), work=self._work(ctx))

    def step(self, prob, state, ctx):
        alg, xp = self.alg, ctx.xp
        newton, probe = state.nback == 0, state.probe
        lam, nback, watch, aux = state.lam, state.nback, state.watch, state.aux
        dj = dl = 0
        if newton:
            base = state._replace(u=state.p, fu=state.fp, fn2=state.fp2) if probe else state
            d_new, bad, dj, dl, aux = self._direction(ctx, state, base)
            if bad and not probe:  # no direction at u: stop (the driver keeps u)
                return state._replace(flag=_flag(xp, _LSF), njvp=state.njvp + dj, nf=state.nf + ctx.f_calls(dj),
                                      nlinsolve=state.nlinsolve + 1, nlinear=state.nlinear + dl, aux=aux)
            trial, step, d = base.u + d_new, 1.0, (state.d if probe else d_new)
        else:
            bad, d, step = False, state.d, lam
            trial = state.u + lam * d
        ft = ctx.F(trial)
        t2, fn2 = float(xp.sum(ft * ft, axis=1)[0]), state.fn2
        flag, go = state.flag, False
        if alg.linesearch is None:
            accept, lam_next = True, 1.0
        else:
            ok = math.isfinite(t2)
            nback += 1
            give_up = nback > alg.max_backtracks
            shrink = WATCH_DECREASE if probe else 1.0 - ARMIJO_C * step
            accept = ok and not (probe and bad) and (t2 <= shrink * shrink * fn2 or give_up)
            if accept:
                lam_next = 1.0
            elif probe:  # failed probe: back to u, backtrack along d with the stored lam (and the old carry)
                lam_next, watch, aux = lam, False, state.aux
            elif not ok:
                lam_next = 0.25 * step
                if give_up:
                    flag = _flag(xp, _STALLED)
            else:  # the quadratic model of phi(l) = ||F(u + l d)||^2 with phi'(0) = -2 phi(0)
                den = t2 - fn2 + 2.0 * step * fn2
                lam_q = step * step * fn2 / den if den > 0 else 0.5 * step
                lam_next = min(max(lam_q, 0.1 * step), 0.5 * step)
                go = newton and watch and t2 <= WATCH_GROWTH ** 2 * fn2
            if accept:
                nback, watch = 0, watch or (newton and alg.linesearch == "watchdog")
            elif go:
                nback = 0
        if accept:
            eta = self._next_eta(ctx, state, t2, trial)
            u, fu, fn2 = trial, ft, t2
        else:
            eta, u, fu = state.eta, state.u, state.fu
        nslow, ref2 = no_progress(FLOATS, accept, t2, state.nslow, state.ref2)
        if nslow >= alg._slow_iters():
            flag = _flag(xp, _STALLED)
        return SmallNewtonState(u, fu, fn2, d, lam_next, nback, eta, flag,
                                state.nf + 1 + ctx.f_calls(dj), state.njvp + dj, state.nvjp,
                                state.nlinsolve + int(newton), state.nlinear + dl, state.nbacktrack + (not accept),
                                aux, trial, ft, t2, go, watch, nslow, ref2, state.eye, state.work)


@dataclass(frozen=True)
class SmallNewtonRaphson(SmallNewton):
    """NewtonRaphson's twin: the dense Newton direction, built only in a Newton phase."""

    def init(self, prob, u0, ctx):
        refuse_large("NewtonRaphson", ctx.n, self.alg.max_size)
        return super().init(prob, u0, ctx)

    def _eye(self, ctx):
        return ctx.xp.eye(ctx.n, dtype=ctx.dtype)

    def _direction(self, ctx, state, base):
        xp = ctx.xp
        J, nj = ctx.jacobian(base.u, base.fu)
        if not finite(xp, J):
            return xp.zeros_like(base.u), True, nj, 1, None
        d = backend.solve_small(xp, regularised(xp, J[0], state.eye), -base.fu[0])
        if not finite(xp, d):
            return xp.zeros_like(base.u), True, nj, 1, None
        return xp.reshape(d, (1, ctx.n)), False, nj, 1, None


@dataclass(frozen=True)
class SmallNewtonKrylov(SmallNewton):
    """NewtonKrylov's twin: the one-system GMRES, and the forcing terms on floats."""

    def _work(self, ctx):
        # the basis of every inner solve: the longest cycle plus the recycled directions
        # (zeros: pages are mapped on first use, so a solve that needs a short cycle pays for no more)
        alg = self.alg
        rows = alg.max_restart(ctx) + min(alg.recycle, ctx.n) + 1
        return ctx.xp.zeros((rows, ctx.n), dtype=ctx.dtype)

    def _direction(self, ctx, state, base):
        xp, alg = ctx.xp, self.alg
        aug, carry = alg._split(base.aux)
        carry = alg.grown(ctx, carry, base.fn2, None)
        restart, eta, maxiters = alg.inner_solve(ctx, base.eta, aug, 1 if carry is None or carry.scale is None else carry.scale)
        M, carry, dpc = alg.preconditioner(ctx, base.u, base.fu, None, carry)
        jvp_u = ctx.products.linearize(base.u, base.fu, alg.jvp_step)
        res = gmres_one(xp, jvp_u, -base.fu, None, restart=restart, reltol=eta, abstol=alg.linsolve.abstol,
                        maxiters=maxiters, aug=aug, precond=M, work=state.work)
        carry = alg.after_solve(ctx, carry, res.niter, res.codes[0], None)
        x, resid = res.x, float(res.resid[0])
        unusable = (int(res.codes[0]) == _LSF and not resid * resid < USEFUL * base.fn2) or not finite(xp, x)
        d = xp.zeros_like(x) if unusable else x
        if aug is not None and not unusable:
            dn = float(xp.vecdot(d[0, :], d[0, :])) ** 0.5
            if dn > 0:  # push the unit direction into the recycled set (newest first)
                aug = xp.concat([xp.reshape(d / dn, (1, 1, ctx.n)), aug[:, :-1, :]], axis=1)
        aux = aug if carry is None else carry._replace(aug=aug)
        return d, unusable, res.nmatvec + dpc, res.niter, aux

    def _next_eta(self, ctx, state, f2, u_new):
        alg = self.alg
        if not isinstance(alg.forcing, str):
            return state.eta
        rt = ctx.reltol
        tol = max(ctx.abstol, rt * float(ctx.norm(u_new)[0])) if rt > 0 else ctx.abstol
        return alg.forcing_term(FLOATS, f2, state.fn2, state.eta, tol)

