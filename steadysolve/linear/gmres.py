"""Restarted, matrix-free GMRES on array-API arrays, and the public ``linear_solve``.

Inside, every array is 2-D ``(batch, n)``: each batch element is an independent
system with its own Krylov space, and all the per-element work is batched
(``matmul`` on ``(batch, restart + 1, n)`` bases, one ``(batch, m, m)``
triangular solve per cycle).

The Arnoldi process uses classical Gram-Schmidt applied twice (CGS2: as stable
as modified Gram-Schmidt, but two batched matrix products per pass instead of a
Python loop over the basis). The Hessenberg matrix is reduced to triangular
form on the fly with Givens rotations, kept as an accumulated ``(m+1, m+1)``
orthogonal factor so that applying them is one batched product, which gives the
residual norm after every Krylov step for free.

Loops: eagerly (NumPy, array_api_strict, PyTorch, CuPy; ``gmres_eager.py``) the Arnoldi
steps are a Python loop over a growing basis that stops as soon as every element has converged
(one host sync per step, so no ``matvec`` is wasted); that sync also carries the new
Hessenberg column, so the rotations run on the host in float64. Under JAX tracing the
fixed-buffer step above runs in ``lax.while_loop`` (inner: Krylov steps of one cycle,
outer: restarts), so ``jax.jit`` and ``jax.vmap`` work; concrete JAX arrays run that
same step op by op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

from .. import backend
from ..backend import combine_rows, rows_dot
from ..algorithms.base import check_int, check_positive
from ..registry import register, resolve
from ..solution import ReturnCode
from .solution import LinearSolution, LinearStats

__all__ = ["GMRES", "linear_solve", "gmres_2d", "GMRESResult"]

_SUCCESS = ReturnCode.Success.code
_MAXITERS = ReturnCode.MaxIters.code
_FAILED = ReturnCode.LinearSolveFailed.code


@register("gmres", kind="linear")
@dataclass(frozen=True)
class GMRES:
    """Restarted GMRES(``restart``), matrix-free.

    Converged (per element) when ``||b - A x||_2 <= max(atol, rtol * ||b||_2)``.

    Parameters
    ----------
    restart : Krylov dimension of one cycle (the basis is ``restart + 1`` vectors).
    rtol, atol : relative and absolute tolerances on the 2-norm of the residual.
    maxiters : cap on the total number of Krylov steps (``matvec`` calls, restarts
        excluded); ``None`` means ``max(10 * n, restart)``.

    Return codes: ``Success``; ``MaxIters`` when the cap is hit first;
    ``LinearSolveFailed`` when ``matvec`` returns NaN/Inf or the Krylov space
    breaks down without solving the system (a singular operator). Even then
    ``x`` is finite: it is the best combination of the valid Krylov vectors.
    """

    restart: int = 30
    rtol: float = 1e-5
    atol: float = 0.0
    maxiters: Optional[int] = None

    def __post_init__(self):
        check_int("GMRES", "restart", self.restart, 1)
        check_positive("GMRES", "rtol", self.rtol, allow_zero=True)
        check_positive("GMRES", "atol", self.atol, allow_zero=True)
        if self.maxiters is not None:
            check_int("GMRES", "maxiters", self.maxiters, 1)

    def max_steps(self, n: int) -> int:
        return self.maxiters if self.maxiters is not None else max(10 * n, self.restart)


class GMRESResult(NamedTuple):
    x: Any  # (B, n)
    codes: Any  # (B,) int32
    resid: Any  # (B,) residual 2-norm
    nmatvec: Any  # int (eager) or 0-d int32 array (JAX)
    niter: Any  # Krylov steps
    ncycle: Any  # restart cycles


class _Cycle(NamedTuple):
    V: Any  # (B, m+1, n) Krylov basis, unused slots zero
    v: Any  # (B, n) current basis vector
    R: Any  # (B, m+1, m) rotated Hessenberg (upper triangular)
    Qt: Any  # (B, m+1, m+1) accumulated Givens rotations
    g: Any  # (B, m+1) rotated right-hand side beta * Qt e1
    valid: Any  # (B, m) column j holds a valid Krylov step
    active: Any  # (B,) still iterating in this cycle
    failed: Any  # (B,) broke down / non-finite
    resid: Any  # (B,) residual norm estimate
    j: Any  # step within the cycle
    k: Any  # total Krylov steps
    nmv: Any  # matvec calls
    Z: Any  # (B, m, n) search directions (flexible GMRES with augmentation) or None
    p: Any  # (B,) Krylov (non-augmentation) steps taken so far (augmented runs) or None


def _l2(xp, x):
    return xp.sqrt(xp.sum(x * x, axis=-1))


def _start_cycle(xp, r, rnorm, active, failed, k, nmv, m, dtype, device, aug=None):
    B, n = r.shape
    one = xp.ones_like(rnorm)
    v0 = r / xp.reshape(xp.where(rnorm > 0, rnorm, one), (B, 1))
    v0 = xp.where(xp.reshape(active, (B, 1)), v0, xp.zeros_like(v0))
    slot0 = xp.reshape(xp.arange(m + 1, device=device) == 0, (1, m + 1, 1))
    V = xp.where(slot0, xp.reshape(v0, (B, 1, n)), xp.zeros((B, m + 1, n), dtype=dtype, device=device))
    e0 = xp.astype(xp.arange(m + 1, device=device) == 0, dtype)
    g = xp.reshape(rnorm, (B, 1)) * xp.reshape(e0, (1, m + 1))
    g = xp.where(xp.reshape(active, (B, 1)), g, xp.zeros_like(g))
    Qt = xp.broadcast_to(xp.eye(m + 1, dtype=dtype, device=device), (B, m + 1, m + 1))
    R = xp.zeros((B, m + 1, m), dtype=dtype, device=device)
    valid = xp.zeros((B, m), dtype=xp.bool, device=device)
    Z = p = None
    if aug is not None:
        Z = xp.zeros((B, m, n), dtype=dtype, device=device)
        p = xp.zeros((B,), dtype=xp.int32, device=device)
    return _Cycle(V, v0, R, Qt, g, valid, active, failed, rnorm, 0, k, nmv, Z, p)


def _search_direction(xp, aug, j, v0, v, p, Zs):
    """Flexible GMRES with augmentation: the search direction of step ``j``, per element.

    The first ``k = aug.shape[1]`` steps try the augmentation vectors (a zero row, or one
    nearly dependent on the directions ``Zs`` already used in this cycle, is skipped);
    otherwise the Krylov sequence of ``r0`` continues: ``v0 = r0 / ||r0||`` first, then
    the newest basis vector ``v``. Returns ``(z, used_aug, p)`` with ``p`` the number of
    Krylov (non-augmentation) steps taken so far.
    """
    B = v.shape[0]
    device = backend.device_of(v)
    kaug = aug.shape[1]
    vp = xp.where(xp.reshape(p == 0, (B, 1)), v0, v)
    if isinstance(j, int):
        if j < kaug:
            a_j = aug[:, j, :]
            use_a = _l2(xp, a_j) > 0
        else:
            a_j, use_a = vp, xp.zeros((B,), dtype=xp.bool, device=device)
    else:
        jj = xp.minimum(j, kaug - 1)
        sel = xp.reshape(xp.arange(kaug, device=device) == jj, (1, kaug, 1))
        a_j = xp.sum(xp.where(sel, aug, xp.zeros_like(aug)), axis=1)
        use_a = (j < kaug) & (_l2(xp, a_j) > 0)
    if Zs is not None:  # orthogonalise against this cycle's directions before spending a matvec
        a_o = a_j - combine_rows(xp, rows_dot(xp, Zs, a_j), Zs)
        an, ao = _l2(xp, a_j), _l2(xp, a_o)
        use_a = use_a & (ao > 0.1 * an)
        a_j = a_o / xp.reshape(xp.where(ao > 0, ao, xp.ones_like(ao)), (B, 1))
    z = xp.where(xp.reshape(use_a, (B, 1)), a_j, vp)
    return z, use_a, p + xp.astype(~use_a, p.dtype)


def _arnoldi_step(xp, matvec, c: _Cycle, tol, m, eps, aug=None):
    """One Krylov step for every element (inactive ones are carried along unchanged in effect).

    Without ``aug`` this is plain Arnoldi (the search direction is the newest basis
    vector). With ``aug`` (``(B, k, n)``, unit or zero rows) it is flexible GMRES: the
    first ``k`` search directions are the augmentation vectors (a zero row is
    skipped), then the Krylov sequence of ``r0`` (``r0`` itself, then each newest
    basis vector, which is ``A`` times the previous one orthogonalised).
    """
    B, n = c.v.shape
    dtype = c.v.dtype
    device = backend.device_of(c.v)
    j = c.j
    idx = xp.arange(m + 1, device=device)
    ej = idx == j
    ej1 = idx == j + 1
    Z, p = c.Z, c.p
    soft = None
    if aug is None:
        z = c.v
    else:
        z, soft, p = _search_direction(xp, aug, j, c.V[:, 0, :], c.v, p, Z)
        zslot = xp.reshape(xp.arange(m, device=device) == j, (1, m, 1))
        Z = xp.where(zslot, xp.reshape(z, (B, 1, n)), Z)
    w = matvec(z)
    # CGS2 against the current basis (unused buffer slots are zero and contribute nothing).
    V = c.V
    h1 = rows_dot(xp, V, w)
    w = w - combine_rows(xp, h1, V)
    h2 = rows_dot(xp, V, w)
    w = w - combine_rows(xp, h2, V)
    beta = _l2(xp, w)
    h = h1 + h2
    hcol = h + xp.reshape(beta, (B, 1)) * xp.astype(ej1, dtype)
    t = rows_dot(xp, c.Qt, hcol)
    fj, fj1 = xp.astype(ej, dtype), xp.astype(ej1, dtype)
    a = xp.sum(t * fj, axis=1)
    b = xp.sum(t * fj1, axis=1)
    r = xp.sqrt(a * a + b * b)
    one = xp.ones_like(r)
    rsafe = xp.where(r > 0, r, one)
    cs = xp.where(r > 0, a / rsafe, one)
    sn = xp.where(r > 0, b / rsafe, xp.zeros_like(r))
    finite = xp.isfinite(r) & xp.isfinite(beta) & xp.isfinite(_l2(xp, t))
    hn = _l2(xp, hcol)
    breakdown = r <= (100.0 * eps) * hn
    ok = c.active & finite & ~breakdown
    # Rotated column j of R and updated right-hand side.
    col = xp.where(ej, xp.reshape(r, (B, 1)), xp.where(ej1, xp.zeros_like(t), t))
    colmask = xp.reshape(xp.arange(m, device=device) == j, (1, 1, m))
    R = xp.where(colmask, xp.reshape(col, (B, m + 1, 1)), c.R)
    gj = xp.sum(c.g * fj, axis=1)
    csb, snb = xp.reshape(cs, (B, 1)), xp.reshape(sn, (B, 1))
    gjb = xp.reshape(gj, (B, 1))
    g = xp.where(ej, csb * gjb, xp.where(ej1, -snb * gjb, c.g))
    # Accumulate the rotation into Qt (rows j and j+1).
    ejr, ej1r = xp.reshape(ej, (1, m + 1, 1)), xp.reshape(ej1, (1, m + 1, 1))
    row_j = xp.sum(c.Qt * xp.reshape(fj, (1, m + 1, 1)), axis=1)
    row_j1 = xp.sum(c.Qt * xp.reshape(fj1, (1, m + 1, 1)), axis=1)
    new_j = csb * row_j + snb * row_j1
    new_j1 = csb * row_j1 - snb * row_j
    Qt = xp.where(ejr, xp.reshape(new_j, (B, 1, m + 1)), xp.where(ej1r, xp.reshape(new_j1, (B, 1, m + 1)), c.Qt))
    # Next basis vector (zero for elements that stop here, so that no NaN enters x).
    bsafe = xp.where(beta > 0, beta, one)
    okb = xp.reshape(ok & (beta > 0), (B, 1))
    v = xp.where(okb, w / xp.reshape(bsafe, (B, 1)), xp.zeros_like(w))
    V = xp.where(ej1r, xp.reshape(v, (B, 1, n)), V)
    resid_new = xp.abs(sn * gj)
    resid = xp.where(ok, resid_new, c.resid)
    valid = xp.where(xp.reshape(colmask, (1, m)), xp.reshape(ok, (B, 1)), c.valid)
    if soft is None:
        failed = c.failed | (c.active & ~ok)
    else:
        # A dependent augmentation vector is no failure: this cycle stops for that
        # element and the next one (plain Krylov) continues from the true residual.
        failed = c.failed | (c.active & ~ok & ~(soft & finite))
    active = ok & ~(resid_new <= tol)
    return _Cycle(V, v, R, Qt, g, valid, active, failed, resid, j + 1, c.k + 1, c.nmv + 1, Z, p)


def _finish_cycle(xp, x, c: _Cycle, m, dtype, device):
    B = x.shape[0]
    eye = xp.eye(m, dtype=dtype, device=device)
    Rm = c.R[:, :m, :]
    R_eff = xp.where(xp.reshape(c.valid, (B, 1, m)), Rm, xp.reshape(eye, (1, m, m)))
    rhs = xp.where(c.valid, c.g[:, :m], xp.zeros_like(c.g[:, :m]))
    y = xp.reshape(xp.linalg.solve(R_eff, xp.reshape(rhs, (B, m, 1))), (B, m))
    basis = c.V[:, :m, :] if c.Z is None else c.Z
    dx = xp.reshape(xp.matmul(xp.reshape(y, (B, 1, y.shape[1])), basis), x.shape)
    return x + dx


def _use_jax(xp, *arrays) -> bool:
    if not backend.is_jax(xp):
        return False
    if any(backend.is_traced(a) for a in arrays if a is not None):
        return True
    try:  # a matvec closing over tracers with concrete b (jit of a closure)
        from jax._src import core as _core

        return not _core.trace_state_clean()
    except Exception:  # pragma: no cover - private API moved
        return False


def gmres_2d(xp, matvec: Callable, b, x0=None, *, restart: int = 30, rtol=1e-5, atol: float = 0.0,
             maxiters: Optional[int] = None, active=None, use_jax: Optional[bool] = None,
             aug=None) -> GMRESResult:
    """GMRES on the solver layout: ``matvec`` maps ``(B, n) -> (B, n)``, row by row.

    ``rtol`` may be a float or a ``(B,)`` array (per-element forcing terms);
    ``active`` (``(B,)`` bool) excludes elements: they keep ``x0`` (or 0), do not
    count as work and report ``Success``. The eager path makes one host sync per
    Krylov step and stops the moment every element has converged.
    ``aug`` (``(B, k, n)``, unit or zero rows): vectors tried first as search
    directions in the first cycle (flexible GMRES, LGMRES-style augmentation); the
    cycle length becomes ``restart + k``.
    """
    B, n = b.shape
    dtype, device = b.dtype, backend.device_of(b)
    m = restart if aug is None else restart + aug.shape[1]
    maxiters = maxiters if maxiters is not None else max(10 * n, m)
    if use_jax is None:
        use_jax = _use_jax(xp, b, x0, rtol, active)
    eps = float(xp.finfo(dtype).eps)
    bnorm = _l2(xp, b)
    tol = xp.maximum(rtol * bnorm, xp.full_like(bnorm, atol))
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
    rnorm = _l2(xp, r)
    rnorm = xp.where(active, rnorm, xp.zeros_like(rnorm))
    failed = active & ~xp.isfinite(rnorm)
    conv = ~active | (rnorm <= tol)
    rnorm = xp.where(failed, xp.full_like(rnorm, float("inf")), rnorm)
    x = xp.where(xp.reshape(failed, (B, 1)), xp.zeros_like(x), x)
    if use_jax:
        return _gmres_jax(xp, matvec, b, x, rnorm, r, active, failed, tol, m, maxiters, nmv0, eps, aug)
    if not backend.is_jax(xp):
        from .gmres_eager import gmres_eager  # the eager driver (host-side NumPy bookkeeping)

        return gmres_eager(xp, matvec, b, x, r, rnorm, active, failed, tol, m, maxiters, nmv0, eps, aug)

    k = nmv = 0
    nmv = nmv0
    ncycle = 0
    resid = rnorm
    running = ~conv & ~failed
    # Concrete JAX arrays: the traced step on fixed-shape buffers, run op by op (its eager ops
    # are compiled per shape, so growing shapes would recompile every step). Host syncs: one
    # per Krylov step and one per restart.
    while k < maxiters and backend.host_bool(xp.any(running)):
        aug_c = aug if ncycle == 0 else None
        c = _start_cycle(xp, r, resid, running, failed, k, nmv, m, dtype, device, aug_c)
        ncycle += 1
        for jj in range(m):
            if c.k >= maxiters:
                break
            c = c._replace(j=jj)
            c = _arnoldi_step(xp, matvec, c, tol, m, eps, aug_c)
            if not backend.host_bool(xp.any(c.active)):
                break
        x = _finish_cycle(xp, x, c, m, dtype, device)
        k, nmv, failed, resid = c.k, c.nmv, c.failed, c.resid
        running = ~failed & ~(resid <= tol)
        if k < maxiters and backend.host_bool(xp.any(running)):
            r = b - matvec(x)
            nmv += 1
            rn = _l2(xp, r)
            bad = running & ~xp.isfinite(rn)
            failed = failed | bad
            resid = xp.where(running & ~bad, rn, resid)
            running = ~failed & ~(resid <= tol)
    codes = _codes(xp, resid, tol, failed, active)
    return GMRESResult(x, codes, resid, nmv, k, ncycle)


def _codes(xp, resid, tol, failed, active):
    codes = xp.full(resid.shape, _MAXITERS, dtype=xp.int32, device=backend.device_of(resid))
    codes = xp.where(resid <= tol, xp.zeros_like(codes), codes)
    codes = xp.where(failed, xp.full_like(codes, _FAILED), codes)
    return xp.where(active, codes, xp.zeros_like(codes))


def _gmres_jax(xp, matvec, b, x, rnorm, r, active, failed, tol, m, maxiters, nmv0, eps, aug=None):
    import jax
    import jax.numpy as jnp

    B, n = b.shape
    dtype = b.dtype
    i32 = jnp.int32

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
        c = _start_cycle(xp, r, resid, running, failed, k, nmv, m, dtype, None, aug_c)
        c = c._replace(j=jnp.asarray(0, i32))
        c = jax.lax.while_loop(inner_cond, lambda c: _arnoldi_step(xp, matvec, c, tol, m, eps, aug_c), c)
        x = _finish_cycle(xp, x, c, m, dtype, None)
        k, nmv, failed, resid = c.k, c.nmv, c.failed, c.resid
        running = ~failed & ~(resid <= tol)
        need = jnp.any(running) & (k < maxiters)

        def restart(args):
            x, r, resid, failed, nmv = args
            r = b - matvec(x)
            rn = _l2(xp, r)
            bad = running & ~jnp.isfinite(rn)
            return x, r, jnp.where(running & ~bad, rn, resid), failed | bad, nmv + 1

        x, r, resid, failed, nmv = jax.lax.cond(need, restart, lambda a: a, (x, r, resid, failed, nmv))
        return x, r, resid, failed, k, nmv, ncycle + 1

    z = jnp.asarray(0, i32)
    s = (x, r, rnorm, failed, z, jnp.asarray(nmv0, i32), z)
    x, r, resid, failed, k, nmv, ncycle = jax.lax.while_loop(outer_cond, outer_body, s)
    codes = _codes(xp, resid, tol, failed, active)
    return GMRESResult(x, codes, resid, nmv, k, ncycle)


# ---------------------------------------------------------------------------
# Public entry
# ---------------------------------------------------------------------------

def linear_solve(matvec: Callable, b, alg: Any = "gmres", *, x0=None, batch_axis: Optional[int] = None
                 ) -> LinearSolution:
    """Solve ``A x = b`` given only ``matvec(v) = A v``.

    Parameters
    ----------
    matvec : maps an array shaped like ``b`` to one shaped like ``b`` (same dtype).
        With ``batch_axis`` set it must act on each element along that axis
        independently (a batched operator).
    b : right-hand side (any shape; flattened internally).
    alg : ``"gmres"`` or a :class:`GMRES` instance.
    x0 : initial guess (shape of ``b``); ``None`` starts from zero (saves one matvec).
    batch_axis : axis of ``b`` indexing independent systems, each with its own
        Krylov space, tolerance and return code.

    Returns
    -------
    :class:`LinearSolution` with ``x``, ``retcode`` (``retcode_array`` under jit),
    ``retcodes`` (batched) and ``stats`` (``nmatvec``, ``niter``, ``nrestart``,
    ``resid_norm``). Runs eagerly on any array-API library and inside
    ``jax.jit`` / ``jax.vmap``.
    """
    from ..solve import _Layout

    alg = resolve(alg, kind="linear")
    if not callable(matvec):
        raise TypeError(f"linear_solve: matvec must be callable, got {type(matvec).__name__}")
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
    ndim = len(shape)
    if batch_axis is not None:
        if isinstance(batch_axis, bool) or not isinstance(batch_axis, int):
            raise TypeError(f"linear_solve: batch_axis must be an int or None, got {type(batch_axis).__name__}")
        if not -ndim <= batch_axis < ndim:
            raise ValueError(f"linear_solve: batch_axis={batch_axis} is out of range for b with shape {shape}")
        batch_axis %= ndim
    layout = _Layout(xp, shape, batch_axis)
    if layout.n == 0 or layout.batch == 0:
        raise ValueError(f"linear_solve: b has no entries (shape {shape})")
    checked = []

    def mv(v):
        out = matvec(layout.to_user(v))
        if not checked:  # validate the first application only (no cost afterwards)
            if not backend.is_array(out) or tuple(out.shape) != shape:
                got = tuple(out.shape) if backend.is_array(out) else type(out).__name__
                raise ValueError(f"linear_solve: matvec returned {got} for an input of shape {shape}; "
                                 "it must return an array shaped like b")
            if out.dtype != b.dtype:
                raise TypeError(f"linear_solve: matvec returned dtype {out.dtype} but b has dtype {b.dtype}")
            checked.append(True)
        return layout.to_solver(out)

    b2 = layout.to_solver(b)
    x02 = None if x0 is None else layout.to_solver(x0)
    res = gmres_2d(xp, mv, b2, x02, restart=min(alg.restart, layout.n),
                   rtol=alg.rtol, atol=alg.atol, maxiters=alg.max_steps(layout.n))
    batched = batch_axis is not None
    resid = res.resid
    if not batched:
        resid = xp.reshape(resid, ())
        if not backend.is_traced(resid):
            resid = float(resid)
    stats = LinearStats(nmatvec=_num(res.nmatvec), niter=_num(res.niter), nrestart=_num(res.ncycle),
                        resid_norm=resid)
    return LinearSolution(layout.to_user(res.x), res.codes, stats, alg, batched)


def _num(v):
    if isinstance(v, int) or backend.is_traced(v):
        return v
    return int(v)
