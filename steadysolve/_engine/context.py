"""The :class:`~steadysolve.algorithms.base.Context` of a solve: the user's functions on the solvers'
``(batch, n)`` rows (each call checked against ``u0``'s shape and dtype), the norm and tolerances,
and, for batched eager solves of row-wise problems, the context of a subset of the rows."""

from __future__ import annotations

from .. import _backend as backend
from .. import sparse
from ..algorithms.base import Context
from .._backend.derivatives import Products
from .._backend.fused import row_squares
from .._backend.layout import Layout
from ..problems import checked, checked_jac
from ..termination import HOST_NORMS, l2_norm, max_norm, rms_norm

__all__ = ["build_context", "narrower", "fname_of", "residual_layout"]

FUSED_NORMS = {l2_norm: "l2", max_norm: "max"}
_NP = backend.host_numpy()
_ROW_SQUARES = {l2_norm: row_squares, rms_norm: row_squares}


def build_context(prob, u0, layout: Layout, xp, fu0_user, abstol, reltol, norm, traced=False) -> Context:
    """The :class:`Context` of one solve: the problem's functions on ``(batch, n)`` rows (each call
    of the user's function checked against ``u0``'s shape and dtype; a least-squares problem's
    residuals against ``fu0_user``'s, as ``(batch, m)`` rows)."""
    p = prob.p
    prob, original = object.__new__(type(prob)), prob  # a shallow copy (cheaper than copy.copy)
    prob.__dict__.update(original.__dict__)
    lsq = residual_layout(prob, xp, fu0_user, layout)
    prob.f = checked(prob.f, fname_of(prob), u0, None if lsq is None else fu0_user.shape)
    if prob.jac is not None:
        prob.jac = checked_jac(prob.jac, u0, layout.axis, None if lsq is None else lsq.n)
    # jvp / vjp are first called inside an algorithm: a wrong shape must name them, not fail in a reshape
    if prob.jvp is not None:
        out = tuple(u0.shape) if lsq is None else tuple(fu0_user.shape)
        prob.jvp = checked(prob.jvp, "jvp(u, v, p)", u0, out, ref="it must return " + (
            "u0's shape" if lsq is None else "the residual's shape"))
    if prob.vjp is not None:
        prob.vjp = checked(prob.vjp, "vjp(u, w, p)", u0, ref="it must return u0's shape")
    to_s, to_u = layout.to_rows, layout.from_rows
    host = backend.is_numpy(xp)
    if lsq is not None:
        ctx = _least_squares_context(prob, u0, layout, lsq, xp, fu0_user, abstol, reltol, norm, traced)
        return _with_bounds(ctx, prob, to_s)
    G = None  # the fixed-point map in solver layout (FixedPointProblem only)
    if host and layout.axis in (None, 0):  # NumPy, batch first (or none): the layout is two reshapes, as methods
        shape, rows, residual, f = layout.shape, (layout.batch, layout.n), prob.residual, prob.f
        if prob.kind == "fixed_point":
            def F(u):
                u = u.reshape(shape)
                return (f(u, p) - u).reshape(rows)

            def G(u):
                return f(u.reshape(shape), p).reshape(rows)
        else:
            def F(u):
                return residual(u.reshape(shape), p).reshape(rows)

        if prob.kind == "steady_state":  # f itself (its vector_field method is one call layer more)
            def vector_field(u, t):
                return f(u.reshape(shape), p, t).reshape(rows)
        else:
            def vector_field(u, t):
                return F(u)
    else:
        def F(u):
            return to_s(prob.residual(to_u(u), p))

        def vector_field(u, t):
            return to_s(prob.vector_field(to_u(u), p, t))

        if prob.kind == "fixed_point":
            def G(u):
                return to_s(prob.f(to_u(u), p))

    jvp = vjp = jac = raw_jac = None
    probed = []  # (rows, J): a dense jac called to see whether it is sparse, for the first dense Jacobian
    if prob.jvp is not None:
        def jvp(u, v, fu):
            return to_s(prob.residual_jvp(to_u(u), to_u(v), p))
    if prob.vjp is not None:
        def vjp(u, w):
            return to_s(prob.residual_vjp(to_u(u), to_u(w), p))
    if prob.jac is not None:
        def raw_jac(u):  # what the problem's jac returns (sparse matrices stay sparse), on rows
            J = prob.residual_jac(to_u(u), p)
            return J if sparse.is_sparse_jacobian(J) else xp.reshape(J, (layout.batch, layout.n, layout.n))

        def jac(u):
            if probed:  # the probe of jac's kind at these rows serves (each call of jac counts as a Jacobian)
                (u1, J1), = probed
                probed.clear()
                J = J1 if sparse.same_rows(xp, u1, u) else prob.residual_jac(to_u(u), p)
            else:
                J = prob.residual_jac(to_u(u), p)
            if sparse.is_sparse_jacobian(J):  # checked, then dense for the dense methods (n <= their max_size)
                J = sparse.dense_jacobian(J, u, n=layout.n, batch=layout.batch, where=fname_of(prob) + " jac",
                                          pattern=lambda: prob.residual_sparsity(layout.n))
            return xp.reshape(J, (layout.batch, layout.n, layout.n))

    half = backend.is_half(xp, u0.dtype)
    if half:  # norms of half-precision arrays in float32 (no overflow)
        def norm_fn(x):
            return norm(xp, xp.astype(x, xp.float32))
    elif host and layout.batch > 1 and norm in _ROW_SQUARES:  # NumPy rows: one vecdot, not x * x and a mean
        squares, mean, sqrt = _ROW_SQUARES[norm], norm is rms_norm, _NP.sqrt

        def norm_fn(x):
            return sqrt(squares(x) / x.shape[1]) if mean else sqrt(squares(x))
    else:
        def norm_fn(x):
            return norm(xp, x)

        norm_fn.kind = FUSED_NORMS.get(norm)  # the driver's fused host norms know these (``fused``)

    ctx = Context(
        xp=xp, dtype=u0.dtype, device=backend.device_of(u0), batch=layout.batch, n=layout.n,
        F=F, G=G, products=Products(xp, F, jvp=jvp, vjp=vjp, jac=jac, box=_box(prob, to_s)), vector_field=vector_field,
        norm=norm_fn, abstol=abstol, reltol=reltol, fu0=to_s(fu0_user), p=p, kind=prob.kind, traced=traced,
        host_arrays=host, host_norm=HOST_NORMS.get(norm) if host and layout.batch == 1 and not half else None,
    )
    if prob.sparsity is not None or raw_jac is not None:
        made, first = [], []

        def probe_jac(u):  # raw_jac, remembering its first call (the probe of jac's kind)
            J = raw_jac(u)
            if not first:
                first.append((u, J))
            return J

        def source(u):  # decided once per context (a chain's attempts share it, and its colouring)
            if not made:
                made.append(sparse.sparse_jacobians(ctx, prob.residual_sparsity(layout.n),
                                                    probe_jac if raw_jac is not None else None, u,
                                                    fname_of(prob) + " jac"))
                if first and not sparse.is_sparse_jacobian(first[0][1]):
                    probed[:] = first
            return made[0]

        source.given = prob.sparsity is not None  # a stated pattern: sparse without calling jac
        source.decided = made

        ctx.sparse_source = source
    return _with_bounds(ctx, prob, to_s)


def _box(prob, to_rows):
    """The problem's bounds ``(lb, ub)`` on rows, or None."""
    return None if getattr(prob, "lb", None) is None else (to_rows(prob.lb), to_rows(prob.ub))


def _with_bounds(ctx, prob, to_rows):
    """``ctx`` with the problem's bounds on rows (``lb``, ``ub`` of shape ``(batch, n)``), if it has any."""
    if getattr(prob, "lb", None) is not None:
        ctx.lb, ctx.ub = to_rows(prob.lb), to_rows(prob.ub)
    return ctx


def residual_layout(prob, xp, fu0_user, layout):
    """The row layout of a least-squares problem's residuals (``(batch, m)``), else None."""
    if prob.kind != "least_squares":
        return None
    return Layout(xp, fu0_user.shape, layout.axis)


def _least_squares_context(prob, u0, layout, lsq, xp, fu0_user, abstol, reltol, norm, traced):
    """The context of a least-squares problem: ``F`` maps ``(batch, n)`` rows to ``(batch, m)`` rows; its
    Jacobian is ``(batch, m, n)`` (dense: the least-squares methods are dense methods). Finite-difference
    Jacobians take steps relative to each parameter (MINPACK's rule): regression parameters span many
    orders of magnitude (NIST's Hahn1: 1 to 1e-7), where a step of ``sqrt(eps)`` would swamp the small ones."""
    p, to_s, to_u, to_r, res_rows = prob.p, layout.to_rows, layout.from_rows, lsq.to_rows, lsq.from_rows

    def F(u):
        return to_r(prob.residual(to_u(u), p))

    jvp = vjp = jac = raw_jac = None
    probed = []  # (rows, J): a dense jac called to see whether it is sparse
    B, m, n, where = layout.batch, lsq.n, layout.n, fname_of(prob) + " jac"
    if prob.jvp is not None:
        def jvp(u, v, fu):
            return to_r(prob.residual_jvp(to_u(u), to_u(v), p))
    if prob.vjp is not None:
        def vjp(u, w):
            return to_s(prob.residual_vjp(to_u(u), res_rows(w), p))
    if prob.jac is not None:
        def raw_jac(u):  # what the problem's jac returns (a sparse (m, n) matrix stays sparse), on rows
            J = prob.residual_jac(to_u(u), p)
            if not sparse.is_sparse_jacobian(J):  # a dense jac probed: its value serves the first Jacobian
                probed[:] = [(u, J)]
            return J

        def jac(u):
            if probed:
                (u1, J1), = probed
                probed.clear()
                J = J1 if sparse.same_rows(xp, u1, u) else prob.residual_jac(to_u(u), p)
            else:
                J = prob.residual_jac(to_u(u), p)
            if sparse.is_sparse_jacobian(J):  # checked, then dense for the dense methods (small n)
                J = sparse.dense_jacobian(J, u, n=n, batch=B, where=where, m=m,
                                          pattern=lambda: prob.residual_sparsity(n, m))
            return xp.reshape(J, (B, m, n))

    def norm_fn(x):
        return norm(xp, x)

    ctx = Context(
        xp=xp, dtype=u0.dtype, device=backend.device_of(u0), batch=layout.batch, n=layout.n,
        F=F, G=None, products=Products(xp, F, jvp=jvp, vjp=vjp, jac=jac, box=_box(prob, to_s),
                                       relative_steps=True),
        vector_field=lambda u, t: F(u),
        norm=norm_fn, abstol=abstol, reltol=reltol, fu0=to_r(fu0_user), p=p, kind=prob.kind, traced=traced,
        host_arrays=backend.is_numpy(xp))
    if prob.sparsity is not None or raw_jac is not None:
        made = []

        def source(u):  # decided once per context: the (m, n) pattern's colouring, or a sparse jac
            if not made:
                made.append(sparse.sparse_jacobians(ctx, prob.residual_sparsity(n, m), raw_jac, u, where, m=m))
            return made[0]

        source.given = prob.sparsity is not None
        source.decided = made
        ctx.sparse_source = source
    return ctx


def narrower(prob, xp, layout, norm):
    """``narrow(ctx, idx)``: the context of rows ``idx`` of a batched solve, for the eager driver's
    working set (see ``_engine.rows``) and the JAX driver's compaction (``_engine.compaction``). Only for
    row-wise problems: ``p`` holds no array with an axis of the batch size (per-element parameters
    could not follow a smaller batch), unless the problem says otherwise (``rowwise``)."""
    B = layout.batch
    if prob.kind == "least_squares":  # the residual rows have their own layout: the whole batch is stepped
        return None
    if getattr(prob, "lb", None) is not None:  # the bounds are per element: the whole batch is stepped
        return None
    if prob.rowwise is False or (prob.rowwise is None and any(
            backend.is_array(x) and B in tuple(x.shape) for x in backend.tree_leaves(prob.p))):
        return None

    def narrow(ctx, idx):
        fu0 = xp.take(ctx.fu0, idx, axis=0)
        shape = list(layout.shape)
        shape[layout.axis] = int(fu0.shape[0])
        sub = Layout(xp, shape, layout.axis)
        like = sub.from_rows(fu0)  # a user-layout array of the smaller batch (shape, dtype, device)
        out = build_context(prob, like, sub, xp, like, ctx.abstol, ctx.reltol, norm, traced=ctx.traced)
        source = ctx.sparse_source
        if source is not None and source.decided and source.decided[0] is None:  # a dense jac: known, not asked again
            out.sparse_source = None
        return out

    return narrow


def fname_of(prob) -> str:
    return f"{prob._fname}(u, p{', t' if prob.kind == 'steady_state' else ''})"


