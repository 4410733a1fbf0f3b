"""Derivative products of a map on the solvers' ``(batch, n)`` rows: JVPs, VJPs, dense Jacobians.

One place for every way the package differentiates a user function:

* the problem's own ``jvp`` / ``vjp`` / ``jac`` when given;
* automatic differentiation where the array library has it: PyTorch forward-mode AD
  (``torch.autograd.forward_ad``; reverse mode or ``torch.func`` for whole Jacobians) and
  ``jax.jvp`` / ``jax.vjp``. If PyTorch cannot differentiate the user's function (an op
  without a forward-mode formula, a NumPy call inside a torch function, a ``detach``: see
  ``torch_ops.ad_unsupported``), the first failure switches that solve to finite differences
  with one ``RuntimeWarning``; any other exception from the function propagates;
* finite differences otherwise (NumPy, CuPy, ``array_api_strict``): a directional
  difference ``(F(u + h v) - F(u)) / h`` with ``h = sqrt(eps) max(||u||, 1) / ||v||`` for
  JVPs, and per-component steps ``h_j = sqrt(eps) max(|u_j|, typical_j)`` for Jacobian
  columns (MINPACK's ``fdjac`` rule), so small components of ``u`` are not swamped.

Rows are independent problems: the dense Jacobian of a batch is the ``(batch, n, n)``
stack of per-row Jacobians.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Optional

from .. import _backend as backend
from .torch_ops import REVERSE_MAX_N, NoDerivative, NotRowwise, ad_unsupported
from .torch_ops import torch_jacobian as _torch_jacobian, torch_jvp as _torch_jvp, torch_vjp as _torch_vjp
from .torch_ops import adjoint_mismatch as _adjoint_mismatch, torch_linearize as _torch_linearize

__all__ = ["Products", "fd_jvp", "fd_linearize"]


def fd_jvp(xp, F: Callable, rel_step: Optional[float] = None, box=None) -> Callable:
    """Forward-difference ``jvp(u, v, fu) ~ J_F(u) v`` per row: one evaluation of ``F``.

    ``h = rel_step * max(||u||_2, 1) / ||v||_2`` (``rel_step`` defaults to ``sqrt(eps)``). ``box``: the
    bounds ``(lb, ub)`` of a bounded problem on rows: ``F`` is evaluated inside them only (below).
    """

    def jvp(u, v, fu):
        return fd_linearize(xp, F, u, fu, rel_step, box)(v)

    return jvp


def _in_box(xp, box, u, h, v):
    """The step ``h`` (``(B, 1)``) of a difference along ``v`` from ``u`` kept in the box ``(lb, ub)``: its
    sign flipped where ``u + h v`` leaves the box (a backward difference), and the point projected where
    both signs leave it (a box narrower than the step). Returns ``(point, h)``."""
    lb, ub = box
    out = xp.any((u + h * v > ub) | (u + h * v < lb), axis=1, keepdims=True)
    h = xp.where(out, -h, h)
    return xp.minimum(xp.maximum(u + h * v, lb), ub), h


def fd_linearize(xp, F: Callable, u, fu, rel_step: Optional[float] = None, box=None) -> Callable:
    """``v -> J_F(u) v`` by forward differences at a fixed ``u`` (the step rule of :func:`fd_jvp`).

    The part of the step that depends on ``u`` is computed once, here, not on every product
    (a linear solve applies the same Jacobian many times). One row on NumPy: the step is a
    host float (the host holds the norms anyway).
    """
    rel = float(xp.finfo(u.dtype).eps) ** 0.5 if rel_step is None else float(rel_step)
    B, n = u.shape
    if box is not None:  # a bounded problem: no evaluation outside the box
        un = backend.l2(xp, u)
        one = xp.ones_like(un)
        c = xp.reshape(rel * xp.maximum(un, one), (B, 1))

        def jvp_box(v):
            vn = backend.l2(xp, v)
            point, h = _in_box(xp, box, u, c / xp.reshape(xp.where(vn > 0, vn, one), (B, 1)), v)
            return (F(point) - fu) / h

        return jvp_box
    if backend.one_host_system(xp, B):
        ur = xp.reshape(u, (n,))
        c = rel * max(float(xp.vecdot(ur, ur)) ** 0.5, 1.0)

        def jvp1(v):
            # ``@`` is BLAS's dot (``vecdot`` is ~10x slower at n ~ 1e4); the point and the difference are
            # formed in place in the arrays created here (never in F's output, which is the user's), so a
            # product costs two temporaries instead of four.
            vr = xp.reshape(v, (n,))
            vn = float(vr @ vr) ** 0.5
            h = c / vn if vn > 0 else c
            point = v * h
            point += u
            d = F(point) - fu
            d /= h
            return d

        return jvp1
    un = backend.l2(xp, u)
    one = xp.ones_like(un)
    c = xp.reshape(rel * xp.maximum(un, one), (B, 1))

    def jvp(v):
        vn = backend.l2(xp, v)
        h = c / xp.reshape(xp.where(vn > 0, vn, one), (B, 1))
        return (F(u + h * v) - fu) / h

    return jvp


def _jax_jvp(F):
    import jax

    def jvp(u, v, fu):
        return jax.jvp(F, (u,), (v,))[1]

    return jvp


def _jax_vjp(F):
    import jax

    def vjp(u, w):
        return jax.vjp(F, u)[1](w)[0]

    return vjp


def _jax_jacobian(F):
    import jax
    import jax.numpy as jnp

    def jac(u, fu):
        B, n = u.shape
        eye = jnp.eye(n, dtype=u.dtype)
        cols = jax.vmap(lambda e: jax.jvp(F, (u,), (jnp.broadcast_to(e, (B, n)),))[1])(eye)  # (n, B, n)
        return jnp.transpose(cols, (1, 2, 0))

    return jac


class Products:
    """The derivative products of one solve's residual ``F`` on ``(batch, n)`` rows.

    Parameters
    ----------
    xp : the array namespace.
    F : the residual on rows.
    jvp, vjp, jac : the problem's own products on rows (``jvp(u, v, fu)``, ``vjp(u, w)``,
        ``jac(u) -> (batch, n, n)``), or ``None``.
    ad : use automatic differentiation where the library has it (PyTorch, JAX).
    typical : typical magnitude of the components of ``u`` for finite-difference Jacobian
        columns (a number; default 1).
    box : ``(lb, ub)`` on rows for a bounded problem: finite differences then step inwards from a bound
        (a backward difference), so ``F`` is never evaluated outside the bounds.
    relative_steps : finite-difference Jacobian steps relative to each component alone,
        ``h_j = sqrt(eps) |u_j|`` (``sqrt(eps) typical`` where ``u_j`` is 0 or subnormal), as MINPACK's ``lmdif``: for
        least squares, whose unknowns are parameters of any scale (a coefficient of ``1e-7`` moved by
        ``sqrt(eps)`` would change by 15 %, and its Jacobian column would be a secant, not a derivative).

    ``jvp_kind`` is ``"user"``, ``"ad"`` or ``"fd"``; ``jvp_costs_f`` says whether a JVP
    costs one evaluation of ``F`` (finite differences), which the algorithms count.
    """

    def __init__(self, xp, F: Callable, *, jvp=None, vjp=None, jac=None, ad: bool = True, typical: float = 1.0,
                 box=None, relative_steps: bool = False):
        self.xp = xp
        self.F = F
        self._user_jac = jac
        self._typical = float(typical)
        self._box = box  # (lb, ub) rows of a bounded problem: finite differences evaluate F inside them
        self._relative = bool(relative_steps)
        lib = "torch" if backend.is_torch(xp) else "jax" if backend.is_jax(xp) else None
        self._lib = lib if ad else None
        self._fd = fd_jvp(xp, F, box=box)
        #: PyTorch: linearisations by reverse over reverse (``torch_linearize``) until one fails
        self._reverse = True
        self._verified = False  # the adjoint test passed on this solve's first product
        #: ``widen(idx) -> F`` on the rows ``idx`` (repeats allowed) of the batch: row-wise problems on
        #: PyTorch, set by the eager driver; lets a small dense Jacobian take one backward pass
        self.widen, self._wide = None, None
        if jvp is not None:
            self._jvp, self.jvp_kind = jvp, "user"
        elif self._lib == "torch":
            self._jvp, self.jvp_kind = self._guard(_torch_jvp(F)), "ad"
        elif self._lib == "jax":
            self._jvp, self.jvp_kind = _jax_jvp(F), "ad"
        else:
            self._jvp, self.jvp_kind = self._fd, "fd"
        if vjp is not None:
            self._vjp = vjp
        elif self._lib == "torch":
            self._vjp = _torch_vjp(F)
        elif self._lib == "jax":
            self._vjp = _jax_vjp(F)
        else:
            self._vjp = None

    def _guard(self, ad_jvp):
        """Fall back to finite differences (once, with a warning) when PyTorch cannot differentiate ``F``;
        an exception of ``F`` itself propagates."""

        def jvp(u, v, fu):
            if self.jvp_kind == "fd":
                return self._fd(u, v, fu)
            try:
                return ad_jvp(u, v, fu)
            except Exception as e:
                if not self._fall_back(e):
                    raise
                return self._warned(e, "Jacobian-vector products", self._fd(u, v, fu))

        return jvp

    def _fall_back(self, e: BaseException) -> bool:
        """Switch this solve to finite differences after ``e`` from AD when ``e`` says that PyTorch cannot
        differentiate ``F``; False otherwise (the caller re-raises: an error of the user's function is
        never swallowed)."""
        if self._lib != "torch" or not ad_unsupported(e):
            return False
        self.jvp_kind = "fd"
        return True

    def _warned(self, e: BaseException, what: str, first):
        """``first`` (the first finite-difference result), after the one warning of the fallback. When
        autograd only saw no dependence on ``u`` (``NoDerivative``) and finite differences agree (a zero
        product: a residual constant along it), there is nothing to warn about."""
        if not isinstance(e, NoDerivative) or backend.host_bool(self.xp.any(first != 0)):
            warnings.warn(f"steadysolve: PyTorch cannot differentiate the residual ({type(e).__name__}: {e}); "
                          f"using finite-difference {what} for this solve", RuntimeWarning, stacklevel=4)
        return first

    @property
    def jvp_costs_f(self) -> bool:
        return self.jvp_kind == "fd"

    @property
    def jacobian_by_differences(self) -> bool:
        """Whether :meth:`jacobian` is by finite differences (entries accurate to about ``sqrt(eps)``)."""
        return self._user_jac is None and self.jvp_kind == "fd"

    @property
    def typical(self) -> float:
        """Typical magnitude of ``u``'s components (finite-difference steps)."""
        return self._typical

    @property
    def has_vjp(self) -> bool:
        return self._vjp is not None

    def jvp(self, u, v, fu):
        """``J_F(u) v`` per row."""
        return self._jvp(u, v, fu)

    def linearize(self, u, fu, rel_step: Optional[float] = None) -> Callable:
        """``v -> J_F(u) v`` at a fixed ``u`` (what a linear solve applies repeatedly): finite
        differences precompute their step's ``u`` part once; ``rel_step`` overrides their step."""
        if self.jvp_kind == "fd":
            return fd_linearize(self.xp, self.F, u, fu, rel_step, self._box)
        jvp = self._jvp
        if self.jvp_kind == "ad" and self._lib == "torch" and self._reverse and not u.is_complex():
            return self._reverse_or_forward(u, lambda v: jvp(u, v, fu))
        return lambda v: jvp(u, v, fu)

    def _reverse_or_forward(self, u, forward):
        """``v -> J v`` at ``u`` by reverse over reverse (``torch_linearize``, built at the first product),
        switching this solve to ``forward`` (forward mode) for
        good when PyTorch cannot take the second backward pass (an operation without a double-backward
        formula), or when the solve's first product fails the adjoint test (a backward pass that is
        not differentiable, which the second pass silently drops: ``adjoint_mismatch``)."""
        built = []  # built on the first product: an iteration without a linear solve (a backtrack) costs nothing

        def jvp(v):
            if self._reverse and not built:
                built.append(_torch_linearize(self.F, u))
            lin = built[0] if built else None
            if self._reverse and lin is not None:
                rr, rr_t = lin
                try:
                    if self._verified:
                        return rr(v)
                    jv, bad = _adjoint_mismatch(rr, rr_t, v)
                    if not bad:
                        self._verified = True
                        return jv
                    self._reverse = False
                except Exception as e:
                    if not ad_unsupported(e):
                        raise
                    self._reverse = False
            return forward(v)

        return jvp

    def vjp(self, u, w):
        """``w J_F(u)`` per row (``None`` when no product is available)."""
        return None if self._vjp is None else self._vjp(u, w)

    def jacobian(self, u, fu):
        """The dense per-row Jacobian ``(batch, n, n)`` and the Jacobian-vector products it cost
        (``n`` columns, each one evaluation of ``F`` with finite differences; 0 for the problem's ``jac``)."""
        n = u.shape[1]
        if self._user_jac is not None:
            return self._user_jac(u), 0
        if self.jvp_kind == "ad":
            if self._lib == "jax":
                return _jax_jacobian(self.F)(u, fu), n
            try:
                try:
                    return _torch_jacobian(self.F, self._wide_F(u))(u, fu), n
                except NotRowwise:  # F on stacked rows is not F on each row: per-row products from now on
                    self.widen = None
                    return _torch_jacobian(self.F)(u, fu), n
            except Exception as e:
                if not self._fall_back(e):
                    raise
                return self._warned(e, "Jacobians", self._fd_jacobian(u, fu)), n
        if self.jvp_kind == "user":
            return self._columns(lambda e: self._jvp(u, e, fu), u), n
        return self._fd_jacobian(u, fu), n

    def _wide_F(self, u):
        """``F`` on ``n`` stacked copies of the batch (``n * B`` rows), from ``widen`` (PyTorch only)."""
        B, n = u.shape
        if self.widen is None or self._lib != "torch" or not 2 <= n <= REVERSE_MAX_N:
            return None
        if self._wide is None or self._wide[0] != (B, n):
            xp = self.xp
            idx = xp.reshape(xp.broadcast_to(xp.arange(B, device=backend.device_of(u)), (n, B)), (n * B,))
            self._wide = ((B, n), self.widen(idx))
        return self._wide[1]

    def _columns(self, column, u):
        """Stack ``column(e_j)`` for the unit vectors ``e_j`` (broadcast over the rows)."""
        xp = self.xp
        B, n = u.shape
        idx = xp.arange(n, device=backend.device_of(u))
        cols = [column(xp.broadcast_to(xp.astype(xp.reshape(idx == j, (1, n)), u.dtype), (B, n))) for j in range(n)]
        return xp.stack(cols, axis=2)

    def _fd_jacobian(self, u, fu):
        """Forward differences with per-component steps ``h_j = sqrt(eps) max(|u_j|, typical)`` (with
        ``relative_steps``: ``sqrt(eps) |u_j|``, ``sqrt(eps) typical`` where ``u_j`` is 0 or subnormal)."""
        xp = self.xp
        B, n = u.shape
        rel = float(xp.finfo(u.dtype).eps) ** 0.5
        if backend.one_host_system(xp, B) and self._box is None:  # the steps on Python floats
            return self._fd_jacobian_host(u, fu, rel)
        typical = xp.full_like(u, self._typical)
        if self._relative:  # (a zero or subnormal component: the typical step)
            a = xp.abs(u)
            h = rel * xp.where(a >= float(xp.finfo(u.dtype).smallest_normal), a, typical)
        else:
            h = rel * xp.maximum(xp.abs(u), typical)
        h = xp.where(u < 0, -h, h)
        if self._box is not None:  # a bounded problem: step inwards from a bound, never beyond the other
            lb, ub = self._box
            h = xp.where((u + h > ub) | (u + h < lb), -h, h)
            h = xp.minimum(xp.maximum(u + h, lb), ub) - u  # (0 for a variable fixed by lb = ub)
        h = (u + h) - u  # the step actually representable in floating point
        # every perturbed point at once (row j: u + h_j e_j), F at each, one difference and one division
        eye = xp.reshape(xp.eye(n, dtype=u.dtype, device=backend.device_of(u)), (1, n, n))
        points = xp.reshape(u, (B, 1, n)) + xp.reshape(h, (B, 1, n)) * eye
        if self._box is not None:
            points = xp.minimum(xp.maximum(points, xp.reshape(lb, (B, 1, n))), xp.reshape(ub, (B, 1, n)))
            h = xp.where(h == 0, xp.ones_like(h), h)  # a fixed variable: a zero column
        cols = xp.stack([self.F(points[:, j, :]) for j in range(n)], axis=2)
        return (cols - xp.reshape(fu, (B, fu.shape[1], 1))) / xp.reshape(h, (B, 1, n))  # (B, m, n)

    def _fd_jacobian_host(self, u, fu, rel):
        """:meth:`_fd_jacobian` of one NumPy element: the same steps and points, built on Python floats."""
        xp = self.xp
        x = u[0].tolist()
        n, typ = len(x), self._typical
        if self._relative:  # (a zero or subnormal component: the typical step)
            tiny = float(xp.finfo(u.dtype).smallest_normal)
            h = [rel * (abs(v) if abs(v) >= tiny else typ) for v in x]
        else:
            h = [rel * max(abs(v), typ) for v in x]
        h = [((v - s) - v) if v < 0 else ((v + s) - v) for v, s in zip(x, h)]
        points = xp.asarray([[v + h[j] if k == j else v for k, v in enumerate(x)] for j in range(n)], dtype=u.dtype)
        rows = xp.concat([self.F(points[j:j + 1, :]) for j in range(n)], axis=0)  # row j: F(u + h_j e_j)
        return xp.reshape((rows - fu).T / xp.asarray(h, dtype=u.dtype), (1, fu.shape[1], n))
