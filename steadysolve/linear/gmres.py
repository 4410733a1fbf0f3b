"""Restarted, matrix-free GMRES: the options object, the drivers and the public ``linear_solve``.

The numerics of one Arnoldi step live in ``krylov.py``. Two drivers run them:

* eagerly (NumPy, array_api_strict, PyTorch, CuPy and concrete JAX arrays;
  ``gmres_eager.py``) a Python loop over Krylov steps that stops as soon as every element
  has converged (one host sync per step, so no ``matvec`` is wasted); that sync also
  carries the new Hessenberg column, so the rotations run on the host in float64; a single
  system (``gmres_one.py``) keeps every scalar of the process as a Python float;
* under JAX tracing the fixed-buffer step runs in ``lax.while_loop`` (inner: Krylov steps
  of one cycle, outer: restarts), so ``jax.jit`` and ``jax.vmap`` work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from .. import _backend as backend
from .._checks import check_batch_axis, check_callable, check_int, check_tol, renamed_options
from .._backend.layout import Layout
from ..registry import register, resolve
from ..solution import LinearSolution, Stats, register_jax_pytrees
from .gmres_eager import gmres_eager
from .gmres_one import gmres_one
from .chunked import blocked, chunked_cgs2, padded_rows
from .krylov import GMRESResult, arnoldi_step, finish_cycle, l2, result_codes, start_cycle

__all__ = ["GMRES", "linear_solve", "gmres_2d", "GMRESResult"]


@register("gmres", kind="linear")
@renamed_options(rtol="reltol", atol="abstol")
@dataclass(frozen=True)
class GMRES:
    """Restarted GMRES(``restart``), matrix-free.

    Converged (per element) when ``||b - A x||_2 <= max(abstol, reltol * ||b||_2)``.

    Parameters
    ----------
    restart
        Krylov dimension of one cycle (the basis is ``restart + 1`` vectors).
    reltol
        Relative tolerance on the 2-norm of the residual; by default ``reltol=1e-5, abstol=0``;
        when only ``abstol`` is given, ``reltol`` is 0 (a tolerance you set binds).
    abstol
        Absolute tolerance on the 2-norm of the residual (see ``reltol``).
    maxiters
        Cap on the total number of Krylov steps (``matvec`` calls, restarts
        excluded); ``None`` means ``max(10 * n, restart)``.

    Notes
    -----
    Return codes: ``Success``; ``MaxIters`` when the cap is hit first;
    ``LinearSolveFailed`` when ``matvec`` returns NaN/Inf or the Krylov space
    breaks down without solving the system (a singular operator). Even then
    ``x`` is finite: it is the best combination of the valid Krylov vectors.

    Raises
    ------
    ValueError
        An invalid option (``restart < 1``, ...), at construction.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> A = np.array([[4.0, 1.0], [1.0, 3.0]])
    >>> sol = ss.linear_solve(lambda v: A @ v, np.array([1.0, 2.0]), ss.GMRES(reltol=1e-12))
    >>> np.allclose(A @ sol.x, [1.0, 2.0]), sol.retcode
    (True, <ReturnCode.Success: ...>)
    """

    restart: int = 30
    reltol: Optional[float] = None
    abstol: Optional[float] = None
    maxiters: Optional[int] = None

    def __post_init__(self):
        check_int("GMRES", "restart", self.restart, 1)
        check_tol("GMRES", "reltol", self.reltol)
        check_tol("GMRES", "abstol", self.abstol)
        if self.reltol is None:  # the default relative test, unless an absolute one was asked for alone
            object.__setattr__(self, "reltol", 1e-5 if self.abstol is None else 0.0)
        if self.abstol is None:
            object.__setattr__(self, "abstol", 0.0)
        check_int("GMRES", "maxiters", self.maxiters, 1, allow_none=True)


def _traced(xp, *arrays) -> bool:
    """Run the JAX driver: some input is a tracer, or ``matvec`` closes over tracers."""
    if not backend.is_jax(xp):
        return False
    if any(backend.is_traced(a) for a in arrays if a is not None):
        return True
    try:  # a matvec closing over tracers with concrete b (jit of a closure)
        from jax._src import core as _core

        return not _core.trace_state_clean()
    except Exception:  # pragma: no cover - private API moved
        return False


def gmres_2d(xp, matvec: Callable, b, x0=None, *, restart: int = 30, reltol=1e-5, abstol: float = 0.0,
             maxiters: Optional[int] = None, active=None, use_jax: Optional[bool] = None,
             aug=None) -> GMRESResult:
    """GMRES on the solver layout: ``matvec`` maps ``(B, n) -> (B, n)``, row by row.

    ``reltol`` may be a float or a ``(B,)`` array (per-element forcing terms);
    ``active`` (``(B,)`` bool) excludes elements: they keep ``x0`` (or 0), do not
    count as work and report ``Success``. The eager path makes one host sync per
    Krylov step and stops the moment every element has converged.
    ``aug`` (``(B, k, n)``, unit or zero rows): vectors tried first as search
    directions in the first cycle (flexible GMRES, LGMRES-style augmentation); the
    cycle length becomes ``restart + k``.
    """
    B, n = b.shape
    m = restart if aug is None else restart + aug.shape[1]
    maxiters = maxiters if maxiters is not None else max(10 * n, m)
    if use_jax is None:
        use_jax = _traced(xp, b, x0, reltol, active)
    eps = float(xp.finfo(b.dtype).eps)
    if B == 1 and not use_jax:  # one system: the scalar work on host floats
        return gmres_one(xp, matvec, b, x0, m=m, reltol=reltol, abstol=abstol, maxiters=maxiters, active=active,
                         eps=eps, aug=aug)
    device = backend.device_of(b)
    bnorm = l2(xp, b)
    tol = xp.maximum(reltol * bnorm, xp.full_like(bnorm, abstol))
    if active is None:
        active = xp.ones((B,), dtype=xp.bool, device=device)
    if x0 is None:
        x = xp.zeros_like(b)
        r = b
        nmv0 = 0
    else:
        x = x0
        r = b - matvec(x0)
        nmv0 = 1
    rnorm = l2(xp, r)
    rnorm = xp.where(active, rnorm, xp.zeros_like(rnorm))
    failed = active & ~xp.isfinite(rnorm)
    rnorm = xp.where(failed, xp.full_like(rnorm, float("inf")), rnorm)
    x = xp.where(xp.reshape(failed, (B, 1)), xp.zeros_like(x), x)
    if use_jax:
        return _gmres_jax(xp, matvec, b, x, rnorm, r, active, failed, tol, m, maxiters, nmv0, eps, aug)
    return gmres_eager(xp, matvec, b, x, r, rnorm, active, failed, tol, m, maxiters, nmv0, eps, aug)


def _gmres_jax(xp, matvec, b, x, rnorm, r, active, failed, tol, m, maxiters, nmv0, eps, aug=None):
    import jax
    import jax.numpy as jnp

    B, n = b.shape
    dtype = b.dtype
    i32 = jnp.int32
    # a long basis of long vectors: Gram-Schmidt over the blocks in use only (``chunked``)
    rows, project = (padded_rows(m), chunked_cgs2(xp)) if blocked(m, B * n) else (None, None)

    def inner_cond(c):
        return (c.j < m) & jnp.any(c.active) & (c.k < maxiters)

    def outer_cond(s):
        x, r, resid, failed, k, nmv, ncycle = s
        running = ~failed & ~(resid <= tol)
        return jnp.any(running) & (k < maxiters)

    def outer_body(s):
        x, r, resid, failed, k, nmv, ncycle = s
        running = ~failed & ~(resid <= tol)
        aug_c = None if aug is None else jnp.where(ncycle == 0, aug, jnp.zeros_like(aug))  # first cycle only
        c = start_cycle(xp, r, resid, running, failed, k, nmv, m, dtype, None, aug_c, rows)
        c = c._replace(j=jnp.asarray(0, i32))
        c = jax.lax.while_loop(inner_cond, lambda c: arnoldi_step(xp, matvec, c, tol, m, eps, aug_c, project), c)
        x = finish_cycle(xp, x, c, m, dtype, None)
        k, nmv, failed, resid = c.k, c.nmv, c.failed, c.resid
        running = ~failed & ~(resid <= tol)
        need = jnp.any(running) & (k < maxiters)

        def restart(args):
            x, r, resid, failed, nmv = args
            r = b - matvec(x)
            rn = l2(xp, r)
            bad = running & ~jnp.isfinite(rn)
            return x, r, jnp.where(running & ~bad, rn, resid), failed | bad, nmv + 1

        x, r, resid, failed, nmv = jax.lax.cond(need, restart, lambda a: a, (x, r, resid, failed, nmv))
        return x, r, resid, failed, k, nmv, ncycle + 1

    z = jnp.asarray(0, i32)
    s = (x, r, rnorm, failed, z, jnp.asarray(nmv0, i32), z)
    x, r, resid, failed, k, nmv, ncycle = jax.lax.while_loop(outer_cond, outer_body, s)
    codes = result_codes(xp, resid, tol, failed, active)
    return GMRESResult(x, codes, resid, nmv, k, ncycle)


# ---------------------------------------------------------------------------
# Public entry
# ---------------------------------------------------------------------------

def linear_solve(matvec: Callable, b, alg: Any = "gmres", *, x0=None, batch_axis: Optional[int] = None
                 ) -> LinearSolution:
    """Solve ``A x = b`` given only ``matvec(v) = A v``.

    Parameters
    ----------
    matvec
        Maps an array shaped like ``b`` to one shaped like ``b`` (same dtype).
        With ``batch_axis`` set it must act on each element along that axis
        independently (a batched operator).
    b
        Right-hand side (any shape; flattened internally).
    alg
        ``"gmres"`` or a ``GMRES`` instance.
    x0
        Initial guess (shape of ``b``); ``None`` starts from zero (saves one matvec).
    batch_axis
        Axis of ``b`` indexing independent systems, each with its own
        Krylov space, tolerance and return code.

    Returns
    -------
    LinearSolution
        ``x``, the return codes and ``stats`` (``nmatvec``, ``niter``, ``nrestart``,
        ``resid_norm``). Runs eagerly on any array-API library and inside
        ``jax.jit`` / ``jax.vmap``.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> sol = ss.linear_solve(lambda v: 2.0 * v, np.ones(3))
    >>> sol.x, sol.stats.nmatvec
    (array([0.5, 0.5, 0.5]), 1)
    """
    alg = resolve(alg, kind="linear")
    check_callable("linear_solve", "matvec", matvec)
    if not backend.is_array(b):
        raise TypeError(f"linear_solve: b must be an array, got {type(b).__name__}")
    xp = backend.namespace(("b", b), ("x0", x0))
    if not backend.is_floating(xp, b.dtype):
        raise TypeError(f"linear_solve: b must have a real floating-point dtype, got {b.dtype}")
    shape = tuple(b.shape)
    if x0 is not None:
        if not backend.is_array(x0):
            raise TypeError(f"linear_solve: x0 must be an array or None, got {type(x0).__name__}")
        if tuple(x0.shape) != shape:
            raise ValueError(f"linear_solve: x0 has shape {tuple(x0.shape)} but b has shape {shape}")
        if x0.dtype != b.dtype:
            raise TypeError(f"linear_solve: x0 has dtype {x0.dtype} but b has dtype {b.dtype}")
    batch_axis = check_batch_axis("linear_solve", batch_axis, shape, "b")
    layout = Layout(xp, shape, batch_axis)
    if layout.n == 0 or layout.batch == 0:
        raise ValueError(f"linear_solve: b has no entries (shape {shape})")
    if backend.is_jax(xp):
        register_jax_pytrees()
    checked = []

    def mv(v):
        out = matvec(layout.from_rows(v))
        if not checked:  # validate the first application only (no cost afterwards)
            if not backend.is_array(out) or tuple(out.shape) != shape:
                got = tuple(out.shape) if backend.is_array(out) else type(out).__name__
                raise ValueError(f"linear_solve: matvec returned {got} for an input of shape {shape}; "
                                 "it must return an array shaped like b")
            if out.dtype != b.dtype:
                raise TypeError(f"linear_solve: matvec returned dtype {out.dtype} but b has dtype {b.dtype}")
            checked.append(True)
        return layout.to_rows(out)

    b2 = layout.to_rows(b)
    x02 = None if x0 is None else layout.to_rows(x0)
    restart = min(alg.restart, layout.n)
    maxiters = alg.maxiters if alg.maxiters is not None else max(10 * layout.n, restart)
    res = gmres_2d(xp, mv, b2, x02, restart=restart, reltol=alg.reltol, abstol=alg.abstol, maxiters=maxiters)
    batched = batch_axis is not None
    resid = res.resid
    codes = res.codes
    if not batched:
        resid = xp.reshape(resid, ())
        codes = xp.reshape(codes, ())
        if not backend.is_traced(resid):
            resid = float(resid)
    stats = Stats(niter=_num(res.niter), extra=dict(nmatvec=_num(res.nmatvec), nrestart=_num(res.ncycle),
                                                    resid_norm=resid))
    return LinearSolution(layout.from_rows(res.x), codes, stats, alg, batched)


def _num(v):
    if isinstance(v, int) or backend.is_traced(v):
        return v
    return int(v)
