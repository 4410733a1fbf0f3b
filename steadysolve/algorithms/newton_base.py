"""The Newton loop shared by :class:`NewtonRaphson` and :class:`NewtonKrylov`: a line search with a
watchdog, as phases of the driver loop (no data-dependent control flow, one ``F`` per iteration).

Every driver iteration evaluates ``F`` exactly once, at a trial point. Per element, an
iteration is in one of three phases:

* **Newton** (``nback == 0``): compute a direction ``d`` at the accepted iterate ``u``
  and try the full step ``u + d``;
* **probe** (the watchdog, ``linesearch="watchdog"``, the default): the full step was not
  accepted but ``F(u + d)`` is finite and ``||F(u + d)|| <= 100 ||F(u)||``. Instead of
  backtracking at once, compute the Newton direction ``d'`` at ``p = u + d`` and try
  ``p + d'``. Newton's method often climbs out of a curved valley in two full steps
  whose first one raises ``||F||`` (Rosenbrock from (-1.2, 1): 3 iterations instead of
  26 with a monotone search). The probe succeeds, and ``p + d'`` becomes the iterate,
  when ``||F(p + d')|| <= 0.5 ||F(u)||`` (two Newton steps must at least halve the
  residual, so a probe cannot trade a steady descent for a shallow basin elsewhere);
  otherwise the element returns to ``u`` and backtracks along ``d`` exactly as the
  monotone search would have, one evaluation and one direction later (a failed probe
  leaves no trace: the algorithm's carry, e.g. NewtonKrylov's recycled directions, is
  restored). A failed probe disables probing until a full step is accepted again, so
  the watchdog costs at most one wasted trial per run of backtracking;
* **backtracking** (``nback > 0``): keep ``d`` and try ``u + lam d`` with ``lam`` from
  safeguarded quadratic interpolation of the last rejection (within ``[0.1, 0.5] lam``;
  ``0.25 lam`` after a NaN/Inf trial).

*Slow progress*: an element that has gone ``max(PROGRESS_ITERS, 2 (max_backtracks + 2))`` iterations
without an accepted step that took ``||F||`` ``PROGRESS_DROP`` (0.1 %) below its value at the last
such step (``base.no_progress``, after MINPACK's test)
stops with ``Stalled``: Newton has reached a point where ``||F||`` has a local minimum or a floor that
is not a root, and would otherwise spend every remaining iteration there (and, in a batch under
``jit``, keep the whole batch running). A full run of backtracking fits twice in that window.

Newton and backtracking trials are accepted by the Armijo test
``||F(trial)|| <= (1 - 1e-4 lam) ||F(u)||`` (2-norms) against the accepted iterate. The
probe point ``p`` is never an iterate: the iterate the driver judges and reports moves
only to points of smaller residual (but for the forced step below), so the watchdog
cannot turn a solve into a false success or a false ``Diverged``. After
``max_backtracks`` rejections the last finite trial is taken anyway (as SciPy does); a
non-finite one then stops the element with ``Stalled``. A direction that cannot be
computed at ``u`` stops the element with ``LinearSolveFailed`` (at a probe point it
only fails the probe). ``linesearch="armijo"`` is the monotone search without probes,
``None`` takes full steps. Probe and backtracking iterations count as driver iterations
(``maxiters``); rejected trials count in ``stats.nbacktrack``.

Every element decides with ``where``; one eager NumPy system runs the twin of the small-system
engine (``steadysolve._small.newton``), which decides on Python floats and skips the direction in
backtracking iterations.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .._checks import check_int
from ..retcodes import ReturnCode
from .base import PROGRESS_ITERS, Algorithm, no_progress

__all__ = ["NewtonBase", "NewtonState", "ARMIJO_C", "WATCH_GROWTH", "WATCH_DECREASE"]

_LSF = ReturnCode.LinearSolveFailed.code
_STALLED = ReturnCode.Stalled.code
ARMIJO_C = 1e-4
#: a rejected full step may be probed when its residual is at most this factor above ``||F(u)||``
WATCH_GROWTH = 1e2
#: a probe succeeds when its trial's residual is at most this fraction of ``||F(u)||``
WATCH_DECREASE = 0.5
_LINESEARCHES = ("watchdog", "armijo", None)


class NewtonState(NamedTuple):
    u: Any
    fu: Any
    fn2: Any  # (B,) ||F(u)||_2^2
    d: Any  # (B, n) Newton direction at u
    lam: Any  # (B,) step length of the next backtracking trial
    nback: Any  # (B,) int32: rejected trials along d so far (0 = Newton or probe phase)
    eta: Any  # (B,) forcing term for the next linear solve
    flag: Any  # (B,) int32 failure code
    nf: Any
    njvp: Any
    nvjp: Any
    nlinsolve: Any  # 0-d: linear solves (Newton directions computed)
    nlinear: Any  # 0-d: Krylov steps (or dense Jacobians for NewtonRaphson)
    nbacktrack: Any  # 0-d: rejected trial points
    aux: Any = None  # algorithm-specific carry (NewtonKrylov: recycled directions (B, k, n))
    p: Any = None  # (B, n) the last trial point (the probe point in the probe phase)
    fp: Any = None  # (B, n) F(p)
    fp2: Any = None  # (B,) ||F(p)||_2^2
    probe: Any = None  # (B,) bool: this iteration probes from p
    watch: Any = None  # (B,) bool: a rejected full step may be probed
    nslow: Any = 0  # (B,) int32: iterations since the last progress (``base.no_progress``)
    ref2: Any = None  # (B,) ||F||^2 at the last progress
    nfact: Any = 0  # 0-d: factorisations (NewtonRaphson: dense LUs, or sparse ones per element)


def _restored(xp, failed, old, new):
    """The carry ``new`` with ``old``'s per-element arrays where ``failed`` (``(B,)``); 0-d counters and
    host objects are kept from ``new``."""
    if hasattr(new, "_fields"):
        return type(new)(*(_restored(xp, failed, o, w) for o, w in zip(old, new)))
    if new is None or old is None or not hasattr(new, "ndim") or new.ndim == 0:
        return new
    return xp.where(xp.reshape(failed, (failed.shape[0],) + (1,) * (new.ndim - 1)), old, new)


class NewtonBase(Algorithm):
    """Shared Newton loop: subclasses provide ``_direction`` and the option fields
    ``linesearch``, ``max_backtracks``."""

    stall_patience = None  # backtracking iterations do not improve the residual by design

    def _check_linesearch(self, owner):
        if self.linesearch not in _LINESEARCHES:
            raise ValueError(f"{owner}: linesearch must be 'watchdog', 'armijo' or None, got {self.linesearch!r}")
        check_int(owner, "max_backtracks", self.max_backtracks, 1)

    def _slow_iters(self) -> int:
        return max(PROGRESS_ITERS, 2 * (self.max_backtracks + 2))

    def _eta0(self, ctx):
        return 0.0

    def _aux0(self, ctx, u0):
        return None

    def init(self, prob, u0, ctx):
        xp, B = ctx.xp, ctx.batch
        fu = ctx.fu0
        fn2 = xp.sum(fu * fu, axis=1)
        zi = xp.zeros((B,), dtype=xp.int32, device=ctx.device)
        ones = xp.ones((B,), dtype=ctx.dtype, device=ctx.device)
        probe = xp.zeros((B,), dtype=xp.bool, device=ctx.device)
        watch = xp.full((B,), self.linesearch == "watchdog", dtype=xp.bool, device=ctx.device)
        return NewtonState(
            u=u0, fu=fu, fn2=fn2, d=xp.zeros_like(u0), lam=ones, nback=zi,
            eta=self._eta0(ctx) * ones, flag=zi,
            nf=ctx.counter(1), njvp=ctx.counter(0), nvjp=ctx.counter(0),
            nlinsolve=ctx.counter(0), nlinear=ctx.counter(0), nbacktrack=ctx.counter(0),
            aux=self._aux0(ctx, u0), p=u0, fp=fu, fp2=fn2, probe=probe, watch=watch, nslow=zi, ref2=fn2,
            nfact=ctx.counter(0),
        )

    def _direction(self, prob, state, ctx, newton):  # pragma: no cover - interface
        """-> (d (B, n), unusable (B,) bool, njvp increment, nlinear increment, new aux[, factorisations]),
        at ``state.u`` (``state.fu = F(u)``, ``state.fn2 = ||F(u)||^2``) where ``newton``."""
        raise NotImplementedError

    def _next_eta(self, state, ctx, fn2_new, u_new, fu_new):
        return state.eta

    def step(self, prob, state, ctx):
        xp, B = ctx.xp, ctx.batch
        watchdog = self.linesearch == "watchdog"
        newton = state.nback == 0
        base = state
        if watchdog:  # a probing element computes its direction at the probe point
            pc = xp.reshape(state.probe, (B, 1))
            base = state._replace(u=xp.where(pc, state.p, state.u), fu=xp.where(pc, state.fp, state.fu),
                                  fn2=xp.where(state.probe, state.fp2, state.fn2))
        out = self._direction(prob, base, ctx, newton)
        d_new, unusable, dj, dl, aux = out[:5]
        dfact = out[5] if len(out) > 5 else 0
        nb = xp.reshape(newton, (B, 1))
        one = xp.ones_like(state.lam)
        lam = xp.where(newton, one, state.lam)
        trial = base.u + xp.reshape(lam, (B, 1)) * xp.where(nb, d_new, state.d)
        ft = ctx.F(trial)
        ftn2 = xp.sum(ft * ft, axis=1)
        fresh = (newton & ~state.probe) if watchdog else newton  # a Newton phase at u
        bad_dir = fresh & unusable
        flag = xp.where(bad_dir, xp.full_like(state.flag, _LSF), state.flag)
        probe, watch = state.probe, state.watch
        if self.linesearch is None:
            accept, nback, lam_next = ~bad_dir, state.nback, one
        else:
            fn2 = state.fn2
            finite = xp.isfinite(ftn2)
            shrink = 1.0 - ARMIJO_C * lam
            if watchdog:
                shrink = xp.where(state.probe, xp.full_like(shrink, WATCH_DECREASE), shrink)
            nback = state.nback + 1
            give_up = nback > self.max_backtracks  # only in a backtracking phase (nback >= 1 there)
            accept = ~(newton & unusable) & finite & ((ftn2 <= shrink * shrink * fn2) | give_up)
            # Quadratic model of phi(l) = ||F(u + l d)||^2 with phi'(0) = -2 phi(0).
            den = ftn2 - fn2 + 2.0 * lam * fn2
            pos = den > 0
            lam_q = xp.where(pos, lam * lam * fn2 / xp.where(pos, den, one), 0.5 * lam)
            lam_q = xp.where(finite, xp.clip(lam_q, 0.1 * lam, 0.5 * lam), 0.25 * lam)
            flag = xp.where(give_up & ~finite, xp.full_like(flag, _STALLED), flag)
            restart = accept
            if watchdog:
                rej = ~accept
                go = fresh & rej & watch & ~unusable & (ftn2 <= WATCH_GROWTH ** 2 * fn2)
                failed = state.probe & rej  # back to u: backtrack along d with the stored lam
                lam_q = xp.where(failed, state.lam, lam_q)
                restart = accept | go
                watch = (watch & ~failed) | (accept & newton)
                probe = go
                if aux is not None and state.aux is not None:  # a failed probe leaves no trace in the carry
                    aux = _restored(xp, failed, state.aux, aux)
            nback = xp.where(restart, xp.zeros_like(nback), nback)
            lam_next = xp.where(accept, one, lam_q)
        ab = xp.reshape(accept, (B, 1))
        u = xp.where(ab, trial, state.u)
        fu = xp.where(ab, ft, state.fu)
        fn2_new = xp.where(accept, ftn2, state.fn2)
        eta = xp.where(accept, self._next_eta(state, ctx, ftn2, trial, ft), state.eta)
        d = xp.where(xp.reshape(fresh, (B, 1)), d_new, state.d)
        nrej = xp.astype(xp.sum(xp.astype(~accept ^ bad_dir, xp.int32)), xp.int32)  # (bad_dir is never accepted)
        nnewton = xp.astype(xp.any(newton), xp.int32)
        nslow, ref2 = no_progress(xp, accept, ftn2, state.nslow, state.ref2)
        flag = xp.where(nslow >= self._slow_iters(), xp.full_like(flag, _STALLED), flag)
        return NewtonState(u, fu, fn2_new, d, lam_next, nback, eta, flag,
                           state.nf + 1 + ctx.f_calls(dj), state.njvp + dj, state.nvjp, state.nlinsolve + nnewton,
                           state.nlinear + dl, state.nbacktrack + nrej, aux, trial, ft, ftn2, probe, watch,
                           nslow, ref2, state.nfact + dfact)

    def extra_stats(self, state) -> dict:
        return {"nlinsolve": state.nlinsolve, "nlinear": state.nlinear, "nbacktrack": state.nbacktrack}
