"""The default polyalgorithm: pick a chain of algorithms by problem kind and size, run them in turn.

``solve(prob)`` and ``solve(prob, "auto")`` use ``Auto``. Each attempt is a complete
solve by one algorithm through the ordinary driver, started from the best iterate of the
attempts before it; an element that an attempt solved starts the next one converged, so
the driver stops it at once (it is never re-solved). The chain is fixed by the problem's
kind and ``n`` alone (static), so the same code runs under ``jax.jit`` / ``vmap``: a later
attempt whose elements have all converged runs zero iterations of its ``lax.while_loop``.
Eager solves stop the chain as soon as every element has succeeded.

The driver itself is passed in (``run_chain(..., run=...)``): this module sits in the
algorithm layer and does not import the engine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from .. import _backend as backend
from .._checks import check_int, check_positive
from ..registry import register, resolve
from ..retcodes import ReturnCode
from ..solution import Stats
from .anderson import Anderson
from .base import Algorithm
from .broyden import Broyden
from .dynamic_ss import DynamicSS
from .levenberg_marquardt import LevenbergMarquardt
from .newton import NewtonRaphson
from .newton_krylov import NewtonKrylov
from .trust_region import TrustRegion

__all__ = ["Auto", "ChainResult"]

_SUCCESS = ReturnCode.Success.code


class ChainResult(NamedTuple):
    attempts: tuple  # ((algorithm, DriverResult), ...) in the order they ran
    result: Any  # the DriverResult of the last attempt: best iterate, residual and codes of the chain
    producer: Any  # (B,) int: index of the attempt that produced each element's answer (None: 0)


@register("auto")
@dataclass(frozen=True)
class Auto(Algorithm):
    """The default polyalgorithm (``solve(prob)``, ``"auto"``): a chain of algorithms with fallbacks.

    The chain, by problem kind and unknowns per element ``n``:

    * ``FixedPointProblem``: ``Anderson`` first, then the chain below for ``n``;
    * ``n <= tiny_max`` (default 3): ``NewtonRaphson`` -> ``TrustRegion`` ->
      ``NewtonKrylov`` -> ``LevenbergMarquardt``, then trust region,
      Levenberg-Marquardt and Newton-Krylov again from ``u0`` (a dense Jacobian costs at most
      ``n`` evaluations here, less than the overhead of a Krylov solve);
    * ``n <= dense_max`` (default 100): ``NewtonKrylov`` -> ``TrustRegion`` ->
      ``NewtonRaphson`` -> ``LevenbergMarquardt``, then trust region,
      Levenberg-Marquardt and Newton again from ``u0``;
    * larger: ``NewtonKrylov`` -> ``Broyden``, then Broyden from ``u0`` (matrix-free only).

    An attempt that fails (any return code but ``Success``) hands its best iterate to the
    next one (the attempts "from ``u0``" restart the unsolved elements there: a best
    iterate can sit at a minimum of ``||F||`` that is not a root); elements solved by an
    attempt are frozen. Every attempt but the last stops after
    ``max(min(maxiters, 100), share * maxiters)`` iterations (a slow attempt hands over to
    the next instead of spending the whole budget); the last may use ``maxiters``. The Solution's ``alg`` is the algorithm that produced ``u`` (the one that
    succeeded, or the one with the smallest residual); for a batch whose elements were
    solved by different algorithms, and under ``jax.jit``, it is the ``Auto`` with its
    resolved chain, and ``stats.alg_index`` gives each element's attempt. ``stats``
    holds the totals and ``stats.attempts``, a dict ``name -> Stats`` of every attempt run.
    Levenberg-Marquardt comes last because it converges to minima of ``||F||`` that are
    not roots (it then reports ``Stalled``, never ``Success``).

    Parameters
    ----------
    algs
        An explicit chain (instances or names) instead of the automatic choice.
    tiny_max
        The size thresholds above.
    dense_max
        The size thresholds above.
    share
        The fraction of ``maxiters`` an attempt other than the last may use (default 0.4).

    Raises
    ------
    ValueError
        An invalid option (``share`` outside ``(0, 1]``, a negative threshold, an unknown
        name or a nested ``Auto`` in ``algs``), at construction.
    TypeError
        ``algs`` that is not a tuple or list of algorithms or names.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> prob = ss.NonlinearProblem(lambda u, p: np.array([u[0]**2 - p, u[0] * u[1] - 1.0]),
    ...                            np.array([1.0, 1.0]), 4.0)
    >>> sol = ss.solve(prob)                      # the same as ss.solve(prob, ss.Auto())
    >>> sol.retcode.name, np.round(sol.u, 6), type(sol.alg).__name__
    ('Success', array([2. , 0.5]), 'NewtonRaphson')
    """

    algs: tuple = ()
    tiny_max: int = 3
    dense_max: int = 100
    share: float = 0.4

    def __post_init__(self):
        check_positive("Auto", "share", self.share)
        if self.share > 1:
            raise ValueError(f"Auto: share must be <= 1, got {self.share!r}")
        check_int("Auto", "tiny_max", self.tiny_max, 0)
        check_int("Auto", "dense_max", self.dense_max, 0)
        if isinstance(self.algs, (str, Algorithm)) or not isinstance(self.algs, (tuple, list)):
            raise TypeError(f"Auto: algs must be a tuple of algorithms or names, got {type(self.algs).__name__}")
        chain = tuple(resolve(a) for a in self.algs)
        if any(isinstance(a, Auto) for a in chain):
            raise ValueError("Auto: algs may not contain another Auto")
        object.__setattr__(self, "algs", chain)

    def chain(self, kind: str, n: int) -> tuple:
        """``((algorithm, from_start), ...)``: the attempts, in order, for a problem of this kind with ``n``
        unknowns per element (``from_start``: restart the unsolved elements from ``u0``, not from the
        best iterate)."""
        if self.algs:
            return tuple((a, False) for a in self.algs)
        if kind == "steady_state":
            return self._steady_chain(n)
        if n <= self.tiny_max:
            first, fallbacks = NewtonRaphson(), (TrustRegion(), NewtonKrylov())
        elif n <= self.dense_max:
            first, fallbacks = NewtonKrylov(), (TrustRegion(), NewtonRaphson())
        else:
            first, fallbacks = NewtonKrylov(), (Broyden(),)
        lm = (LevenbergMarquardt(),) if n <= self.dense_max else ()
        again = fallbacks[:1] + lm + fallbacks[1:]  # from u0: the best iterate may sit at a non-root minimum
        steps = ((first, False),) + tuple((a, False) for a in fallbacks + lm) + tuple((a, True) for a in again)
        return (((Anderson(), False),) + steps) if kind == "fixed_point" else steps

    def _steady_chain(self, n: int) -> tuple:
        """A ``SteadyStateProblem`` asks for the steady state the flow reaches from ``u0``: only methods
        that follow the flow. Tsit5 first (cheap steps, no Jacobian); where it is held at its stability
        limit (a stiff problem: ``DynamicSS``'s watch stops it within ``HELD_STEPS`` steps) or does not
        settle in its share, pseudo-transient continuation goes on from its best iterate (implicit Euler
        steps growing into Newton's); the last resort is the stiff integrator from ``u0`` (dense LU:
        up to ``dense_max`` unknowns). Root finders may land on another equilibrium with the same
        residual (a conservation law's line of equilibria, an unstable one): never in this chain."""
        from ..ode.rosenbrock import Rodas5P
        from .pseudo_transient import PseudoTransient

        chain = ((DynamicSS(), False), (PseudoTransient(), False))
        if n <= self.dense_max:
            chain += ((DynamicSS(Rodas5P()), True),)
        return chain

    def init(self, prob, u0, ctx):
        raise TypeError("Auto is a polyalgorithm: it runs through steadysolve.solve(prob, 'auto'), not as a "
                        "single init/step algorithm")

    step = init

    def attempt_cap(self, maxiters: int, last: bool) -> int:
        """The iterations one attempt may use at most: all of ``maxiters`` for the last, else
        ``max(min(maxiters, 100), share * maxiters)`` (a slow attempt hands over to the next; what it
        leaves unused stays in the budget). Every attempt is also bounded by what is left."""
        return maxiters if last else max(min(maxiters, 100), int(self.share * maxiters))

    def run_chain(self, prob, ctx, u0, run: Callable, *, traced: bool, maxiters: int) -> ChainResult:
        """Run the chain under one budget of ``maxiters`` iterations in total; ``run(alg, ctx, u0, cap=,
        left=, scales=)`` is one driver solve returning a ``DriverResult`` with at most ``cap`` iterations
        (a Python int) and at most ``left`` (the budget left: an int, or a traced one under JAX), judged
        against the original start's ``scales``."""
        xp = ctx.xp
        attempts = []
        fu0 = ctx.fu0
        best_u = best_fu = codes = best_n = producer = scales = None
        chain = self.chain(ctx.kind, ctx.n)
        left = maxiters
        for k, (alg, restart) in enumerate(chain):
            if k == 0:
                start, fstart = u0, fu0
            else:  # solved elements start at their answer (frozen); the others at the best iterate or u0
                keep = xp.reshape(solved, (ctx.batch, 1)) if restart else None
                start = best_u if keep is None else xp.where(keep, best_u, u0)
                fstart = best_fu if keep is None else xp.where(keep, best_fu, fu0)
                ctx = dataclasses.replace(ctx, fu0=fstart)
            cap = min(self.attempt_cap(maxiters, k == len(chain) - 1), maxiters)
            res = run(alg, ctx, start, cap=cap if traced else min(cap, left), left=left, scales=scales)
            attempts.append((alg, res))
            left = left - res.niter
            if k == 0:
                scales = res.scales
                if not traced and all(c == _SUCCESS for c in res.codes):
                    return ChainResult(tuple(attempts), res, None)  # the common case costs nothing more
            rc = res.codes if traced else xp.asarray(res.codes, dtype=xp.int32, device=ctx.device)
            cur = ctx.norm(res.fu)
            if k == 0:
                best_u, best_fu, codes, best_n = res.u, res.fu, rc, cur
                producer = xp.zeros((ctx.batch,), dtype=xp.int32, device=ctx.device)
            else:  # the best answer per element: a success, else the smallest residual
                new_ok = rc == _SUCCESS
                take = (new_ok & ~solved) | (~solved & ~new_ok & (cur < best_n))
                t2 = xp.reshape(take, (ctx.batch, 1))
                best_u, best_fu = xp.where(t2, res.u, best_u), xp.where(t2, res.fu, best_fu)
                codes, best_n = xp.where(take, rc, codes), xp.where(take, cur, best_n)
                producer = xp.where(take, xp.full_like(producer, k), producer)
            solved = codes == _SUCCESS
            if not traced and (left <= 0 or backend.host_bool(xp.all(solved))):
                break
        if len(attempts) == 1:
            return ChainResult(tuple(attempts), res, None)
        if not traced:
            codes = [int(c) for c in backend.to_numpy(xp, codes).reshape(-1)]
        return ChainResult(tuple(attempts), res._replace(u=best_u, fu=best_fu, codes=codes), producer)

    def summary(self, chain: ChainResult, stats_of: Callable, *, batched: bool, traced: bool, xp):
        """``(stats, alg, trace)`` of a chain: totals over the attempts plus ``attempts`` (name -> Stats)
        and ``alg_index`` (per element, batched or traced solves); ``alg`` the producing algorithm."""
        per, names = {}, []
        for k, (alg, res) in enumerate(chain.attempts):
            name, i = alg.name or type(alg).__name__, 2
            while name in per:
                name, i = f"{alg.name}#{i}", i + 1
            s = stats_of(alg, res)
            if k:  # F at the restart point is known (the init's count of F(u0) is not a new evaluation)
                s.nf = s.nf - 1
            per[name] = s
            names.append(name)
        st = list(per.values())
        total = {k: sum((getattr(s, k) for s in st[1:]), getattr(st[0], k)) for k in ("nf", "njvp", "nvjp", "niter")}
        niter_el = None
        if batched:
            niter_el = sum((s.niter_per_element for s in st[1:]), st[0].niter_per_element)
        producer, B = chain.producer, chain.result.u.shape[0]
        if producer is None and traced:
            producer = xp.zeros((B,), dtype=xp.int32)
        extra = {"attempts": per}
        algs = [a for a, _ in chain.attempts]
        if traced:
            alg, extra["alg_index"] = Auto(algs=tuple(algs)), producer if batched else xp.reshape(producer, ())
        else:
            idx = [0] * B if producer is None else [int(i) for i in backend.to_numpy(xp, producer).reshape(-1)]
            if batched:
                extra["alg_index"] = idx
            alg = algs[idx[0]] if len(set(idx)) == 1 else Auto(algs=tuple(algs))
        trace = None
        traces = [r.trace for _, r in chain.attempts]
        if traces[0] is not None:
            if traced:
                trace = xp.concat(traces, axis=0)
            else:
                trace = backend.host_numpy().concatenate([traces[0]] + [t[1:] for t in traces[1:]], axis=0)
        return Stats(niter_per_element=niter_el, extra=extra, **total), alg, trace
