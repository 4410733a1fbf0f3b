"""Restarted, matrix-free GMRES: the options, the two drivers of the kernel, and ``linear_solve``.

The arithmetic of a Krylov step (Gram-Schmidt, Givens rotations, the least-squares update) is
the kernel of ``_arnoldi.py``. Two drivers run it on the solver layout ``(batch, n)``; which one
is decided once, by :func:`_traced`:

* the eager driver (NumPy, array_api_strict, PyTorch, CuPy and concrete JAX arrays): a Python
  loop over Krylov steps that stops as soon as every element has converged. It syncs with the
  host once per step anyway, so that sync carries the new Hessenberg column, and the rotations
  run on the host in float64 NumPy; the device does only the products with the basis;
* the traced driver: the same kernel in ``lax.while_loop`` (inner: the Krylov steps of a cycle,
  outer: restarts) on fixed-size buffers, so that ``jax.jit`` and ``jax.vmap`` work.

One eager NumPy system (a batch of one) is cheaper still with its scalars as Python floats: that
is the small-system engine's GMRES (:mod:`steadysolve._small.gmres`), which :func:`linear_solve`
chooses at its boundary.

Every element may start with search directions of its own (``aug``: flexible GMRES with
augmentation, as LGMRES; Newton-Krylov recycles its previous directions): the basis the update
combines is then the directions ``Z``, not the Krylov basis ``V``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

from .. import _backend as backend
from .. import _small as small
from .._backend import combine_rows, fused, l2, put_block, take_block
from .._backend.layout import Layout
from .._checks import check_batch_axis, check_callable, check_int, check_tol
from .._small.gmres import gmres_one
from ..registry import register, resolve
from ..solution import LinearSolution, Stats, register_jax_pytrees
from ._arnoldi import (REORTH_KEEP, GMRESResult, Rotated, add_column, blocked, blocked_cgs2, gram_schmidt,
                       padded_rows, restarted, result_codes, rotated, search_direction, solve_rotated, start)

__all__ = ["GMRES", "linear_solve", "gmres_2d", "GMRESResult"]

np = backend.host_numpy()  # the eager driver's host arrays (float64), never a user array
HOST = backend.host_namespace()  # the namespace the kernel runs on for them


@register("gmres", kind="linear")
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
    precond
        A right preconditioner ``M``: a linear callable applied like ``matvec`` (to arrays shaped
        like ``b``); GMRES solves ``A M y = b`` and returns ``x = M y``, and the tolerance is on the
        true residual ``b - A x``. The better ``M`` approximates ``A^-1``, the fewer Krylov steps
        (the exact inverse: one). ``M`` returning NaN/Inf gives ``LinearSolveFailed``. For
        ``NewtonKrylov`` give it as ``NewtonKrylov(precond=...)`` (see ``steadysolve.linear.precond``).

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
    precond: Optional[Callable] = None

    def __post_init__(self):
        check_int("GMRES", "restart", self.restart, 1)
        if self.precond is not None and not _is_fixed(self.precond):
            raise TypeError("GMRES: a Preconditioner set up from a Jacobian belongs to NewtonKrylov(precond=...); "
                            "GMRES(precond=) takes a fixed callable M(v)")
        if self.precond is not None and not callable(self.precond):
            raise TypeError(f"GMRES: precond must be a callable M(v) or None, got {type(self.precond).__name__}")
        check_tol("GMRES", "reltol", self.reltol)
        check_tol("GMRES", "abstol", self.abstol)
        if self.reltol is None:  # the default relative test, unless an absolute one was asked for alone
            object.__setattr__(self, "reltol", 1e-5 if self.abstol is None else 0.0)
        if self.abstol is None:
            object.__setattr__(self, "abstol", 0.0)
        check_int("GMRES", "maxiters", self.maxiters, 1, allow_none=True)


def _is_fixed(precond) -> bool:
    from .precond import Preconditioner

    return not isinstance(precond, Preconditioner)


def _traced(xp, *arrays) -> bool:
    """Run the traced driver: some input is a tracer, or ``matvec`` closes over tracers."""
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
             maxiters: Optional[int] = None, active=None, aug=None, precond=None,
             max_restart: Optional[int] = None) -> GMRESResult:
    """GMRES on the solver layout: ``matvec`` maps ``(B, n) -> (B, n)``, row by row.

    ``reltol`` may be a float or a ``(B,)`` array (per-element forcing terms);
    ``active`` (``(B,)`` bool) excludes elements: they keep ``x0`` (or 0), do not
    count as work and report ``Success``. The eager driver makes one host sync per
    Krylov step and stops the moment every element has converged.
    ``aug`` (``(B, k, n)``, unit or zero rows): vectors tried first as search
    directions in the first cycle (flexible GMRES, LGMRES-style augmentation); the
    cycle length becomes ``restart + k``.
    ``precond`` (``(B, n) -> (B, n)``, row by row, linear): right preconditioning, ``A M y = b - A x0``
    with ``x = x0 + M y``; the residual tested is the true one.
    ``max_restart`` (traced driver only): the buffers hold a cycle of ``max_restart`` steps (plus the
    augmentation), and ``restart`` and ``maxiters`` may be traced 0-d integers up to it: the cycle length
    can change from one call to the next inside one compiled loop (Newton-Krylov's Krylov growth).
    """
    B, n = b.shape
    k = 0 if aug is None else aug.shape[1]
    m = restart + k
    maxiters = maxiters if maxiters is not None else max(10 * n, m)
    if _traced(xp, b, x0, reltol, active):
        m_buf = m if max_restart is None else max_restart + k
        driver = functools.partial(_traced_gmres, m_buf=m_buf)
    else:
        driver = _eager_gmres
    if x0 is None:
        x, r, nmv0 = xp.zeros_like(b), b, 0
    else:
        x, r, nmv0 = x0, b - matvec(x0), 1
    eps = float(xp.finfo(b.dtype).eps)
    return driver(xp, matvec, b, x, r, reltol, abstol, active, m, maxiters, nmv0, eps, aug, precond)


# ---------------------------------------------------------------------------------------------
# The eager driver
# ---------------------------------------------------------------------------------------------

def _update(xp, dy, precond):
    """The step of ``x`` from the combination ``dy`` of the Krylov basis: ``M dy`` when preconditioned
    (directions kept in ``Z`` are preconditioned already: ``precond`` is then None). A non-finite
    ``M dy`` is no step: GMRES has reported the failure, ``x`` stays finite."""
    if precond is None:
        return dy
    dx = precond(dy)
    return xp.where(xp.isfinite(dx), dx, xp.zeros_like(dx))

def _scale_rows(xp, w, scale, dtype, device):
    """``w[b] * scale[b]`` with ``scale`` a host array; a zero scale gives a zero row even where
    ``w`` holds NaN/Inf (a failed element must not leak into the basis products)."""
    if scale.shape[0] == 1:  # one element: a host scalar, no transfer
        c = float(scale[0])
        return w * c if c != 0 else xp.zeros_like(w)
    s = fused.from_host(xp, scale[:, None], dtype, device)
    if np.all(scale != 0):
        return w * s
    return xp.where(s != 0, w * s, xp.zeros_like(w))


def _eager_gmres(xp, matvec, b, x, r, reltol, abstol, active, m, maxiters, nmv0, eps, aug, precond=None):
    """The kernel in a Python loop; the products with the basis on the device, the least-squares
    problem and the per-element bookkeeping on the host (float64 NumPy, fed by one transfer per
    Krylov step). No NumPy call ever touches a user array."""
    B, n = b.shape
    dtype, device = b.dtype, backend.device_of(b)
    per_element = [x for x in (reltol, active) if backend.is_array(x)]
    rows = [l2(xp, b), l2(xp, r)] + [xp.astype(xp.broadcast_to(x, (B,)), dtype) for x in per_element]
    host = np.asarray(backend.to_numpy(xp, xp.stack(rows)), dtype=np.float64)
    rtol = host[2] if backend.is_array(reltol) else float(reltol)
    act0 = host[-1] != 0 if active is not None else np.ones((B,), dtype=bool)
    tol_h, resid, failed_h = start(HOST, host[0], host[1], rtol, abstol, act0)
    if failed_h.any():  # a non-finite residual at x0: those elements keep x = 0
        x = xp.where(fused.from_host(xp, failed_h[:, None], xp.bool, device), xp.zeros_like(x), x)
    running = act0 & ~failed_h & ~(resid <= tol_h)
    k, nmv, ncycle = 0, nmv0, 0
    resident = fused.host_resident(xp, b)  # reading a value back is a plain memory read
    # Workspaces for the whole solve, written in place (DESIGN section 3): the Krylov basis and,
    # with augmentation, the search directions; step j reads the leading j + 1 rows (a view), all
    # written before (so ``empty``: zeroing a basis of restart + 1 rows most solves never reach
    # costs more than the whole Arnoldi work of a short DEQ adjoint).
    V = xp.empty((B, m + 1, n), dtype=dtype, device=device)
    Z = xp.empty((B, m, n), dtype=dtype, device=device) if aug is not None else None
    while k < maxiters and running.any():
        ncycle += 1
        s = rotated(HOST, resid, running, failed_h, m, np.float64)
        scale = np.where(running, 1.0 / np.where(running, resid, 1.0), 0.0)
        V = backend.set_at(xp, V, (slice(None), 0, slice(None)), _scale_rows(xp, r, scale, dtype, device))
        ncols = 0
        aug_c = aug if ncycle == 1 else None
        p = xp.zeros((B,), dtype=xp.int32, device=device) if aug_c is not None else None
        for j in range(m):
            if k >= maxiters:
                break
            soft = None
            if aug_c is None:
                z = V[:, j, :] if precond is None else precond(V[:, j, :])
            else:
                a = aug_c[:, j, :] if j < aug_c.shape[1] else None
                z, soft, p = search_direction(xp, a, V[:, 0, :], V[:, j, :], p, Z[:, :j, :] if j else None, precond)
                Z = backend.set_at(xp, Z, (slice(None), j, slice(None)), z)
            w = matvec(z)
            k += 1
            nmv += 1
            Vs = V[:, :j + 1, :]
            h, w1 = gram_schmidt(xp, Vs, w)
            beta = l2(xp, w1)
            # On the host (NumPy, CPU tensors) the second pass is skipped when the first one kept enough
            # of the norm (REORTH_KEEP); on a device deciding that would cost a second sync per step.
            if not (resident and fused.all_true(xp, beta > REORTH_KEEP * l2(xp, w))):
                h2, w1 = gram_schmidt(xp, Vs, w1)
                h = h + h2
                beta = l2(xp, w1)
            parts = [h, beta[:, None]] + ([] if soft is None else [xp.astype(soft, beta.dtype)[:, None]])
            col = np.asarray(backend.to_numpy(xp, xp.concat(parts, axis=1)), dtype=np.float64)
            if soft is not None:
                soft, col = col[:, -1] != 0, col[:, :-1]
            with np.errstate(invalid="ignore", over="ignore"):
                s, ok = add_column(HOST, s, col, j, j + 2, eps, tol_h, soft)
            ncols = j + 1
            bj = col[:, j + 1]
            vscale = np.where(ok & (bj > 0), 1.0 / np.where(bj > 0, bj, 1.0), 0.0)
            V = backend.set_at(xp, V, (slice(None), j + 1, slice(None)), _scale_rows(xp, w1, vscale, dtype, device))
            if not s.active.any():
                break
        resid, failed_h = s.resid, s.failed
        if ncols:
            with np.errstate(all="ignore"):
                y = solve_rotated(HOST, s, ncols)
            basis = (Z if aug_c is not None else V)[:, :ncols, :]
            x = x + _update(xp, combine_rows(xp, fused.from_host(xp, y, dtype, device), basis),
                            None if aug_c is not None else precond)
        running = act0 & ~failed_h & ~(resid <= tol_h)
        if k < maxiters and running.any():
            r = b - matvec(x)
            nmv += 1
            rn = np.asarray(backend.to_numpy(xp, l2(xp, r)), dtype=np.float64)
            resid, failed_h = restarted(HOST, rn, resid, failed_h, running)
            running = act0 & ~failed_h & ~(resid <= tol_h)
    codes = fused.from_host(xp, result_codes(HOST, resid, tol_h, failed_h, act0), xp.int32, device)
    return GMRESResult(x, codes, fused.from_host(xp, resid, dtype, device), nmv, k, ncycle)


# ---------------------------------------------------------------------------------------------
# The traced driver
# ---------------------------------------------------------------------------------------------

class _Cycle(NamedTuple):
    s: Rotated  # the least-squares problem
    V: Any  # (B, rows, n) the Krylov basis; the rows not reached yet are zero
    v: Any  # (B, n) the newest basis vector
    v0: Any  # (B, n) the first one (a carry of its own: a read of V before the products copied all of V)
    Z: Any  # (B, m, n) the search directions (with augmentation), else None
    p: Any  # (B,) Krylov (non-augmentation) steps so far (with augmentation), else None
    j: Any  # the step within the cycle
    k: Any  # Krylov steps in all
    nmv: Any  # matvec calls


def _traced_gmres(xp, matvec, b, x, r, reltol, abstol, active, m, maxiters, nmv0, eps, aug, precond=None, *,
                  m_buf=None):
    """The kernel in ``lax.while_loop`` on fixed-size buffers (``xp`` is ``jax.numpy``) of ``m_buf`` steps;
    a cycle stops after ``m <= m_buf`` of them (``m`` may be traced: the steps beyond are invalid columns,
    which the triangular solve treats as identity columns, and basis rows that stay zero)."""
    import jax

    m_act, m = m, (m if m_buf is None else m_buf)

    B, n = b.shape
    dtype = b.dtype
    if active is None:
        active = xp.ones((B,), dtype=xp.bool)
    tol, rnorm, failed = start(xp, l2(xp, b), l2(xp, r), reltol, abstol, active)
    x = xp.where(xp.reshape(failed, (B, 1)), xp.zeros_like(x), x)
    i32 = xp.int32
    if blocked(m, B * n):  # a long basis of long vectors: Gram-Schmidt over the blocks in use only
        rows, project = padded_rows(m), blocked_cgs2(xp)
    else:
        rows = m + 1

        def project(V, w, j):  # CGS2 against the whole buffer (the rows not reached are zero)
            h1, w = gram_schmidt(xp, V, w)
            h2, w = gram_schmidt(xp, V, w)
            return h1 + h2, w, V

    kaug = 0 if aug is None else aug.shape[1]

    def step(c: _Cycle, aug_c) -> _Cycle:
        j, Z, p, soft = c.j, c.Z, c.p, None
        if aug_c is None:
            z = c.v if precond is None else precond(c.v)
        else:
            a = take_block(xp, aug_c, (0, xp.minimum(j, kaug - 1), 0), (B, 1, n))[:, 0, :]
            a = xp.where(j < kaug, a, 0.0)  # zero (skipped) past the last one
            # an augmentation vector (steps j < kaug) meets only directions 0 .. j - 1 < kaug: the rest of
            # Z is still zero, and orthogonalising against it would read the whole buffer at every step
            z, soft, p = search_direction(xp, a, c.v0, c.v, p, Z[:, :kaug, :], precond)
            Z = put_block(xp, Z, (0, j, 0), z[:, None, :])
        w = matvec(z)
        h, w, V = project(c.V, w, j)  # V threaded through: the write below is in place
        beta = l2(xp, w)
        hcol = put_block(xp, h[:, :m + 1], (0, j + 1), beta[:, None])
        s, ok = add_column(xp, c.s, hcol, j, m + 1, eps, tol, soft)
        # the next basis vector: zero for elements that stop here, so that no NaN enters x
        okb = xp.reshape(ok & (beta > 0), (B, 1))
        v = xp.where(okb, w / xp.reshape(xp.where(beta > 0, beta, xp.ones_like(beta)), (B, 1)), xp.zeros_like(w))
        V = put_block(xp, V, (0, j + 1, 0), v[:, None, :])
        return _Cycle(s, V, v, c.v0, Z, p, j + 1, c.k + 1, c.nmv + 1)

    def inner_cond(c):
        return (c.j < m_act) & xp.any(c.s.active) & (c.k < maxiters)

    def outer_cond(st):
        x, r, resid, failed, k, nmv, ncycle = st
        return xp.any(~failed & ~(resid <= tol)) & (k < maxiters)

    def outer_body(st):
        x, r, resid, failed, k, nmv, ncycle = st
        running = ~failed & ~(resid <= tol)
        aug_c = None if aug is None else xp.where(ncycle == 0, aug, 0.0)  # first cycle only
        v0 = r / xp.reshape(xp.where(resid > 0, resid, xp.ones_like(resid)), (B, 1))
        v0 = xp.where(xp.reshape(running, (B, 1)), v0, xp.zeros_like(v0))
        V = put_block(xp, xp.zeros((B, rows, n), dtype=dtype), (0, 0, 0), v0[:, None, :])
        Z = p = None
        if aug_c is not None:
            Z, p = xp.zeros((B, m, n), dtype=dtype), xp.zeros((B,), dtype=i32)
        c = _Cycle(rotated(xp, resid, running, failed, m, dtype), V, v0, v0, Z, p, xp.asarray(0, dtype=i32), k, nmv)
        c = jax.lax.while_loop(inner_cond, lambda c: step(c, aug_c), c)
        y = solve_rotated(xp, c.s, m)
        x = x + _update(xp, combine_rows(xp, y, c.V[:, :m, :] if c.Z is None else c.Z),
                        precond if c.Z is None else None)
        k, nmv, failed, resid = c.k, c.nmv, c.s.failed, c.s.resid
        running = ~failed & ~(resid <= tol)

        def restart(args):
            x, r, resid, failed, nmv = args
            r = b - matvec(x)
            resid, failed = restarted(xp, l2(xp, r), resid, failed, running)
            return x, r, resid, failed, nmv + 1

        need = xp.any(running) & (k < maxiters)
        x, r, resid, failed, nmv = jax.lax.cond(need, restart, lambda a: a, (x, r, resid, failed, nmv))
        return x, r, resid, failed, k, nmv, ncycle + 1

    z = xp.asarray(0, dtype=i32)
    st = (x, r, rnorm, failed, z, xp.asarray(nmv0, dtype=i32), z)
    x, r, resid, failed, k, nmv, ncycle = jax.lax.while_loop(outer_cond, outer_body, st)
    return GMRESResult(x, result_codes(xp, resid, tol, failed, active), resid, nmv, k, ncycle)


# ---------------------------------------------------------------------------------------------
# Public entry
# ---------------------------------------------------------------------------------------------

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
    solver = gmres_one if small.applies(xp, layout.batch) else gmres_2d
    pre = None
    if alg.precond is not None:
        def pre(v):
            return layout.to_rows(alg.precond(layout.from_rows(v)))
    res = solver(xp, mv, b2, x02, restart=restart, reltol=alg.reltol, abstol=alg.abstol, maxiters=maxiters,
                 precond=pre)
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
