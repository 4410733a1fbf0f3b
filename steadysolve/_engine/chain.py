"""Running a polyalgorithm's chain (``Auto``): each attempt a complete solve by one algorithm through the
ordinary driver, started from the best iterate of the attempts before it, all under one budget of
iterations and judged against the original start; then the totals and the producing algorithm.

The chain is fixed by the problem's kind and ``n`` alone (static), so the same code runs under
``jax.jit`` / ``vmap``: a later attempt whose elements have all converged runs zero iterations of
its ``lax.while_loop``. Eager solves stop the chain as soon as every element has succeeded.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

from .. import _backend as backend
from ..retcodes import ReturnCode
from ..solution import Stats

__all__ = ["ChainResult", "run_chain", "summary"]

_SUCCESS = ReturnCode.Success.code


class ChainResult(NamedTuple):
    attempts: tuple  # ((algorithm, DriverResult), ...) in the order they ran
    result: Any  # the DriverResult of the last attempt: best iterate, residual and codes of the chain
    producer: Any  # (B,) int: index of the attempt that produced each element's answer (None: 0)
    auto: Any = None  # the polyalgorithm that ran


def run_chain(auto, ctx, u0, run: Callable, *, traced: bool, maxiters: int) -> ChainResult:
    """Run the chain under one budget of ``maxiters`` iterations in total; ``run(alg, ctx, u0, cap=,
    left=, scales=)`` is one driver solve returning a ``DriverResult`` with at most ``cap`` iterations
    (a Python int) and at most ``left`` (the budget left: an int, or a traced one under JAX), judged
    against the original start's ``scales``."""
    xp = ctx.xp
    attempts = []
    fu0 = ctx.fu0
    best_u = best_fu = codes = best_n = producer = scales = None
    sparse = _sparse_chain(auto, ctx, u0, traced)
    kw = {"sparse": True} if sparse else {}
    if ctx.lb is not None:  # a bounded problem: only the methods that honour bounds
        kw["bounded"] = True
    chain = auto.chain(ctx.kind, ctx.n, **kw)
    left = maxiters
    for k, (alg, restart) in enumerate(chain):
        if k == 0:
            start, fstart = u0, fu0
        else:  # solved elements start at their answer (frozen); the others at the best iterate or u0
            keep = xp.reshape(solved, (ctx.batch, 1)) if restart else None
            start = best_u if keep is None else xp.where(keep, best_u, u0)
            fstart = best_fu if keep is None else xp.where(keep, best_fu, fu0)
            ctx = dataclasses.replace(ctx, fu0=fstart)
        cap = min(auto.attempt_cap(maxiters, k == len(chain) - 1), maxiters)
        res = run(alg, ctx, start, cap=cap if traced else min(cap, left), left=left, scales=scales)
        attempts.append((alg, res))
        left = left - res.niter
        if k == 0:
            scales = res.scales
            if not traced and all(c == _SUCCESS for c in res.codes):
                return ChainResult(tuple(attempts), res, None, auto)  # the common case costs nothing more
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
        return ChainResult(tuple(attempts), res, None, auto)
    if not traced:
        codes = [int(c) for c in backend.to_numpy(xp, codes).reshape(-1)]
    return ChainResult(tuple(attempts), res._replace(u=best_u, fu=best_fu, codes=codes), producer, auto)

def _sparse_chain(auto, ctx, u0, traced: bool) -> bool:
    """Whether the chain is the sparse one: a stated pattern, or (above ``dense_max``, where the dense
    chain would not use ``jac``) a ``jac`` that returns sparse matrices, called once at ``u0`` to see
    (its value serves the first Jacobian). Not under ``jax.jit``: a sparse Jacobian is factorised on
    the host, and the traced chain stays matrix-free."""
    source = ctx.sparse_source
    if traced or source is None or getattr(auto, "algs", ()):
        return False
    if not (source.given or source.decided or ctx.n > getattr(auto, "dense_max", 0)):
        return False
    return ctx.sparse_jacobians(u0) is not None


def summary(chain: ChainResult, stats_of: Callable, *, batched: bool, traced: bool, xp):
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
        alg, extra["alg_index"] = type(chain.auto)(algs=tuple(algs)), producer if batched else xp.reshape(producer, ())
    else:
        idx = [0] * B if producer is None else [int(i) for i in backend.to_numpy(xp, producer).reshape(-1)]
        if batched:
            extra["alg_index"] = idx
        alg = algs[idx[0]] if len(set(idx)) == 1 else type(chain.auto)(algs=tuple(algs))
    trace = None
    traces = [r.trace for _, r in chain.attempts]
    if traces[0] is not None:
        if traced:
            trace = xp.concat(traces, axis=0)
        else:
            trace = backend.host_numpy().concatenate([traces[0]] + [t[1:] for t in traces[1:]], axis=0)
    return Stats(niter_per_element=niter_el, extra=extra, **total), alg, trace
