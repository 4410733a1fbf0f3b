"""Problem definitions and their validation.

Three ways to state the same question, each reduced to a *residual* ``F(u)``
whose root is sought:

* ``NonlinearProblem(f, u0, p)``: ``F(u) = f(u, p)``.
* ``SteadyStateProblem(f, u0, p)``: ``du/dt = f(u, p, t)``; ``F(u) = f(u, p, inf)``
  (SciML's convention for root-finding on a steady-state problem); ``DynamicSS``
  integrates ``f`` in real time instead.
* ``FixedPointProblem(g, u0, p)``: ``F(u) = g(u, p) - u``; fixed-point algorithms
  iterate ``g`` itself.
* ``NonlinearLeastSquaresProblem(f, u0, p)``: minimise ``0.5 ||F(u)||^2`` with ``F(u) = f(u, p)``
  of ``m >= n`` components (a root when there is one).

Optional derivative callables, all taking ``p`` last like ``f``:
``jvp(u, v, p)`` (Jacobian of ``f`` -- or ``g`` -- times ``v``), ``vjp(u, w, p)``
(``w`` times that Jacobian) and ``jac(u, p)`` (the Jacobian: dense, or a sparse matrix of the
state's library), and ``sparsity`` (that Jacobian's pattern; see :mod:`steadysolve.sparse`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

from . import _backend as backend
from ._backend import fused
from . import sparse

__all__ = ["NonlinearProblem", "SteadyStateProblem", "FixedPointProblem", "NonlinearLeastSquaresProblem",
           "AbstractProblem", "check_least_squares_output"]


class AbstractProblem:
    kind: str = "abstract"
    _fname = "f"
    #: the box ``lb <= u <= ub`` (arrays of ``u0``'s shape, or None): ``NonlinearProblem`` and
    #: ``NonlinearLeastSquaresProblem`` only (see :func:`check_bounds`)
    lb: Any = None
    ub: Any = None

    def __init__(self, f: Callable, u0: Any, p: Any = None, *, jvp: Optional[Callable] = None,
                 vjp: Optional[Callable] = None, jac: Optional[Callable] = None, sparsity: Any = None,
                 rowwise: Optional[bool] = None):
        if not callable(f):
            raise TypeError(f"{type(self).__name__}: {self._fname} must be callable, got {type(f).__name__}")
        for name, fn in (("jvp", jvp), ("vjp", vjp), ("jac", jac)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{type(self).__name__}: {name} must be callable or None, got {type(fn).__name__}")
        self.f = f
        self.u0 = u0
        self.p = p
        self.jvp = jvp
        self.vjp = vjp
        self.jac = jac
        if rowwise is not None and not isinstance(rowwise, bool):
            raise TypeError(f"{type(self).__name__}: rowwise must be True, False or None, got {rowwise!r}")
        self.rowwise = rowwise
        validate_u0(u0, p, type(self).__name__)
        self.sparsity = sparse.problem_sparsity(sparsity, u0, type(self).__name__)

    # --- the residual view used by every root-finding algorithm -------------------
    def residual(self, u, p):  # pragma: no cover - overridden
        raise NotImplementedError

    def residual_jvp(self, u, v, p):
        """J_F(u) v, or None when the problem has no ``jvp``."""
        return None if self.jvp is None else self.jvp(u, v, p)

    def residual_vjp(self, u, w, p):
        return None if self.vjp is None else self.vjp(u, w, p)

    def residual_jac(self, u, p):
        return None if self.jac is None else self.jac(u, p)

    def residual_sparsity(self, n: int):
        """The pattern of the residual's Jacobian for elements of ``n`` unknowns, or ``None``."""
        return sparse.residual_pattern(self, n)

    def vector_field(self, u, p, t):
        """The ODE right-hand side whose steady state ``DynamicSS`` integrates to."""
        return self.residual(u, p)

    def remake(self, *, u0=None, p=None, **kw):
        """A copy with a new ``u0`` and/or ``p`` (other fields kept)."""
        args = dict(jvp=self.jvp, vjp=self.vjp, jac=self.jac, sparsity=self.sparsity, rowwise=self.rowwise)
        if self.bounded:
            args.update(lb=self.lb, ub=self.ub)
        args.update(kw)
        return type(self)(self.f, self.u0 if u0 is None else u0, self.p if p is None else p, **args)

    @property
    def bounded(self) -> bool:
        """Whether the problem has bounds ``lb <= u <= ub`` (``lb=`` / ``ub=``)."""
        return self.lb is not None

    def __repr__(self) -> str:
        shape = tuple(getattr(self.u0, "shape", ()))
        lib = backend.library_name(self.u0)
        box = ", bounded" if self.bounded else ""
        return f"{type(self).__name__}({self._fname}={getattr(self.f, '__name__', self.f)!r}, u0=<{lib} {shape}>{box})"


class NonlinearProblem(AbstractProblem):
    """Find ``u`` with ``f(u, p) = 0``.

    Parameters
    ----------
    f : callable
        ``f(u, p) -> residual``, an array of ``u``'s shape, dtype and library.
    u0 : array
        Initial guess: any shape, floating point, finite, from any array-API library.
    p : any, optional
        Parameters, passed to ``f`` untouched (arrays, tuples, dicts, modules).
    jvp, vjp, jac : callable, optional
        ``jvp(u, v, p)``, ``vjp(u, w, p)``, ``jac(u, p)`` for the derivative-based algorithms
        (default: forward-difference products). ``jac`` may return a sparse matrix:
        ``scipy.sparse`` (NumPy), a torch sparse CSR/COO tensor, a JAX ``BCOO``.
    sparsity : optional
        The pattern of the Jacobian of ``f`` (of ``g`` for a :class:`FixedPointProblem`) for one
        element, ``(n, n)``: a ``scipy.sparse`` matrix, a boolean array, a ``(rows, cols)`` pair
        of index arrays, or ``"detect"`` (JAX: read from the trace of ``f``). See the guide
        "Large sparse systems".
    rowwise : bool or None, optional
        For batched solves (``solve(..., batch_axis=...)``): whether ``f`` may be called on any
        subset of the batch (the elements are independent and no per-element data lives outside
        ``p`` or ``u``). Once most elements have stopped, the eager driver then steps the running
        ones alone instead of the whole batch (under ``jax.jit``, batches of 1,024 or more: on a
        compacted batch of fixed size). ``None`` (default): yes unless ``p`` holds an array
        with an axis of the batch's size, and only if ``f`` accepts the smaller batch the first
        time (otherwise the solve goes on with the whole batch); ``True``: also with such a ``p``
        (shared, not per-element); ``False``: never.
    lb, ub : scalar or array, optional
        Bounds ``lb <= u <= ub``, broadcast to ``u0``'s shape (per element of a batch too); ``-inf`` /
        ``inf`` (or ``None``) leave a side open. Honoured by ``TrustRegion``, ``LevenbergMarquardt`` and the
        default ``Auto`` (every iterate stays in the box); other algorithms refuse a bounded problem.
        ``Success`` means a root inside the box; a root that lies outside ends with
        ``ReturnCode.BoundConstrained`` (see the guide "Bounds").

    Raises
    ------
    TypeError, ValueError
        ``f`` not callable; ``u0`` not a floating-point array, not finite, or mixing libraries;
        bounds of another shape or library, ``lb > ub``, ``u0`` outside the bounds.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> prob = ss.NonlinearProblem(lambda u, p: u**2 - p, np.ones(2), np.array([2.0, 9.0]))
    >>> np.round(ss.solve(prob, "newton").u, 6)
    array([1.414214, 3.      ])
    """

    kind = "nonlinear"

    def __init__(self, f: Callable, u0: Any, p: Any = None, *, jvp: Optional[Callable] = None,
                 vjp: Optional[Callable] = None, jac: Optional[Callable] = None, sparsity: Any = None,
                 rowwise: Optional[bool] = None, lb: Any = None, ub: Any = None):
        super().__init__(f, u0, p, jvp=jvp, vjp=vjp, jac=jac, sparsity=sparsity, rowwise=rowwise)
        self.lb, self.ub = check_bounds(type(self).__name__, u0, lb, ub)
        if self.bounded and self.sparsity is not None:
            raise ValueError(f"{type(self).__name__}: bounds (lb=, ub=) are honoured by the dense TrustRegion and "
                             "LevenbergMarquardt; they do not combine with sparsity= (a sparse Jacobian)")

    def residual(self, u, p):
        return self.f(u, p)


class SteadyStateProblem(AbstractProblem):
    """Find the steady state of ``du/dt = f(u, p, t)``: ``f(u, p, inf) = 0``.

    Parameters are those of ``NonlinearProblem``, with ``f(u, p, t) -> du/dt``
    (``t`` is ``inf`` for the root-finding algorithms, the time for ``DynamicSS``).

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> prob = ss.SteadyStateProblem(lambda u, p, t: p - u, np.zeros(2), np.array([1.0, 3.0]))
    >>> sol = ss.solve(prob, ss.DynamicSS(), abstol=1e-8)
    >>> np.round(sol.u, 6), sol.retcode.name
    (array([1., 3.]), 'Success')
    """

    kind = "steady_state"

    def residual(self, u, p):
        return self.f(u, p, math.inf)

    def vector_field(self, u, p, t):
        return self.f(u, p, t)


class FixedPointProblem(AbstractProblem):
    """Find ``u`` with ``g(u, p) = u`` (the Deep Equilibrium form).

    Parameters are those of ``NonlinearProblem``, with ``g(u, p) -> next u`` in place
    of ``f``; the residual is ``g(u, p) - u``.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> prob = ss.FixedPointProblem(lambda u, p: np.cos(u), np.zeros(1))
    >>> np.round(ss.solve(prob, "anderson", abstol=1e-10).u, 6)
    array([0.739085])
    """

    kind = "fixed_point"
    _fname = "g"

    def __init__(self, g: Callable, u0: Any, p: Any = None, *, jvp: Optional[Callable] = None,
                 vjp: Optional[Callable] = None, jac: Optional[Callable] = None, sparsity: Any = None,
                 rowwise: Optional[bool] = None):
        super().__init__(g, u0, p, jvp=jvp, vjp=vjp, jac=jac, sparsity=sparsity, rowwise=rowwise)

    @property
    def g(self):
        return self.f

    def fixed_point_map(self, u, p):
        return self.f(u, p)

    def residual(self, u, p):
        return self.f(u, p) - u

    def residual_jvp(self, u, v, p):
        return None if self.jvp is None else self.jvp(u, v, p) - v

    def residual_vjp(self, u, w, p):
        return None if self.vjp is None else self.vjp(u, w, p) - w

    def residual_jac(self, u, p):
        if self.jac is None:
            return None
        J = self.jac(u, p)
        if sparse.is_sparse_jacobian(J):
            return sparse.minus_identity(J)
        xp = backend.namespace(("u", u))
        # the last axis is the state size; a leading batch axis (B, n, n) broadcasts
        return J - xp.eye(J.shape[-1], dtype=J.dtype, device=backend.device_of(J))


class NonlinearLeastSquaresProblem(AbstractProblem):
    """Minimise ``0.5 ||f(u, p)||_2^2`` over ``u``, with ``f`` returning ``m >= n`` residuals.

    A zero residual is a root and ends with ``Success``; a minimum whose residual is not zero
    ends with ``ReturnCode.LeastSquaresMinimum`` (``sol.successful`` is True for both, but only
    ``Success`` means ``f(u) = 0``). Solved by ``GaussNewton``, ``LevenbergMarquardt`` (the default)
    and ``TrustRegion``; ``sol.stats.extra["objective"]`` holds ``0.5 ||F||^2`` at the answer.

    Parameters
    ----------
    f : callable
        ``f(u, p) -> residuals``: an array of ``u``'s dtype and library with ``m >= n`` elements
        (``n`` the size of ``u``), of any shape; batched (``solve(..., batch_axis=k)``), the residual
        has the batch on the same axis ``k``. Checked on the first call, before iterating.
    u0 : array
        Initial guess: floating point, finite.
    p : any, optional
        Parameters, passed to ``f`` untouched.
    jvp, vjp, jac : callable, optional
        ``jvp(u, v, p)`` (``J v``, residual-shaped), ``vjp(u, w, p)`` (``w J``, ``u``-shaped) and
        ``jac(u, p)``: the dense Jacobian ``(m, n)`` (``(B, m, n)`` for a batch, batch first).
        Default: AD (PyTorch, JAX) or forward differences. ``jac`` may return a sparse ``(m, n)``
        matrix (``scipy.sparse`` for NumPy, as for :class:`NonlinearProblem`): the solve is then sparse.
    sparsity : optional
        The ``(m, n)`` pattern of one element's Jacobian (a ``scipy.sparse`` matrix or a boolean array):
        the Jacobian is built from one product per colour of its columns and the steps are sparse
        (``LevenbergMarquardt``, ``GaussNewton``, ``TrustRegion``; see the guide "Sparse Jacobians").
    lb, ub : scalar or array, optional
        Bounds ``lb <= u <= ub`` (as for :class:`NonlinearProblem`): the solve then minimises over the box
        (``LevenbergMarquardt``, ``TrustRegion``; every iterate stays inside), and a minimum on a bound
        is a ``LeastSquaresMinimum`` of the bounded problem (the projected gradient vanishes).

    Raises
    ------
    TypeError, ValueError
        ``f`` not callable; ``u0`` not a finite floating-point array; bounds of another shape, ``lb > ub``
        or ``u0`` outside them. At ``solve``: ``f`` returning
        fewer residuals than unknowns, another dtype or library, or a batch of another size.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> t = np.array([0.0, 1.0, 2.0, 3.0]); y = np.array([1.0, 3.0, 2.0, 4.0])
    >>> line = lambda u, p: u[0] + u[1] * t - y           # 4 residuals, 2 unknowns
    >>> sol = ss.solve(ss.NonlinearLeastSquaresProblem(line, np.zeros(2)))
    >>> sol.retcode.name, sol.successful, np.round(sol.u, 6)
    ('LeastSquaresMinimum', True, array([1.3, 0.8]))
    """

    kind = "least_squares"

    def __init__(self, f: Callable, u0: Any, p: Any = None, *, jvp: Optional[Callable] = None,
                 vjp: Optional[Callable] = None, jac: Optional[Callable] = None, rowwise: Optional[bool] = None,
                 lb: Any = None, ub: Any = None, sparsity: Any = None, **unknown):
        if unknown:
            raise TypeError(f"NonlinearLeastSquaresProblem: unknown keyword(s) {sorted(unknown)}")
        super().__init__(f, u0, p, jvp=jvp, vjp=vjp, jac=jac, rowwise=rowwise)
        self.lb, self.ub = check_bounds(type(self).__name__, u0, lb, ub)
        self.sparsity = sparse.least_squares_sparsity(sparsity, u0, type(self).__name__)
        if self.bounded and self.sparsity is not None:
            raise ValueError(f"{type(self).__name__}: bounds (lb=, ub=) are honoured by the dense TrustRegion and "
                             "LevenbergMarquardt; they do not combine with sparsity= (a sparse Jacobian)")

    def residual(self, u, p):
        return self.f(u, p)

    def residual_sparsity(self, n: int, m: Optional[int] = None):
        """The ``(m, n)`` pattern of the residual's Jacobian (``sparsity=``, checked against one element's
        ``m`` residuals and ``n`` unknowns), or ``None``."""
        if self.sparsity is None:
            return None
        return self.sparsity.check_rectangular(self.sparsity.m if m is None else m, n, type(self).__name__)

    def remake(self, *, u0=None, p=None, **kw):
        args = dict(jvp=self.jvp, vjp=self.vjp, jac=self.jac, rowwise=self.rowwise, sparsity=self.sparsity)
        if self.bounded:
            args.update(lb=self.lb, ub=self.ub)
        args.update(kw)
        return type(self)(self.f, self.u0 if u0 is None else u0, self.p if p is None else p, **args)


def check_least_squares_output(name: str, out, u0, batch_axis) -> tuple:
    """Validate ``f(u0, p)`` of a least-squares problem: an array of ``u0``'s library and dtype with
    ``m >= n`` residuals per element (the batch on ``batch_axis``). Returns its shape."""
    if not backend.is_array(out):
        raise TypeError(f"{name} must return an array of residuals like u0, got {type(out).__name__}")
    lib_u, lib_o = backend.library_name(u0), backend.library_name(out)
    if lib_o != lib_u:
        raise TypeError(f"{name} returned a {lib_o} array for a {lib_u} u0: mixed array libraries")
    if out.dtype != u0.dtype:
        raise TypeError(f"{name} returned dtype {out.dtype} but u0 has dtype {u0.dtype}; the residuals must have "
                        "u0's dtype (check for float64/float32 promotion)")
    shape, ushape = tuple(out.shape), tuple(u0.shape)
    if batch_axis is None:
        n, m, per = math.prod(ushape), math.prod(shape), ""
    else:
        B = ushape[batch_axis]
        if len(shape) <= batch_axis or shape[batch_axis] != B:
            raise ValueError(f"{name} returned shape {shape} for a batch of {B} on axis {batch_axis} (u0 has shape "
                             f"{ushape}); the residuals must have the batch on the same axis")
        n, m, per = math.prod(ushape) // B, math.prod(shape) // B, " per element"
    if m < n:
        raise ValueError(f"{name} returned {m} residuals{per} (shape {shape}) for n = {n} unknowns; a least-squares "
                         f"problem needs m >= n residuals (fewer leave the minimiser undetermined)")
    return shape


def check_bounds(where: str, u0, lb, ub) -> tuple:
    """``(lb, ub)`` as arrays of ``u0``'s shape, dtype and library (``None, None`` without bounds): scalars
    and arrays broadcast, ``None`` is an open side (``-inf`` / ``inf``). Raises for bounds of another
    library or of a shape that does not broadcast to ``u0``'s, NaN bounds, ``lb > ub`` anywhere, and
    ``u0`` outside the box (naming how many entries and the first one). Under ``jax.jit`` the checks on
    traced values are skipped (they cannot be read)."""
    if lb is None and ub is None:
        return None, None
    xp = backend.namespace(("u0", u0))
    shape, dev = tuple(u0.shape), backend.device_of(u0)

    def as_box(name, v, fill):
        if v is None:
            return xp.full(shape, fill, dtype=u0.dtype, device=dev)
        if isinstance(v, bool) or not (isinstance(v, (int, float)) or backend.is_array(v)):
            raise TypeError(f"{where}: {name} must be a number or an array like u0, got {type(v).__name__}")
        if backend.is_array(v):
            if backend.library_name(v) == "numpy" != backend.library_name(u0):  # host data: moved to u0's library
                v = xp.asarray(v, dtype=u0.dtype, device=dev)
            if backend.library_name(v) != backend.library_name(u0):
                raise TypeError(f"{where}: {name} is a {backend.library_name(v)} array but u0 is a "
                                f"{backend.library_name(u0)} array; give the bounds in u0's library")
            try:
                v = xp.broadcast_to(xp.astype(v, u0.dtype), shape)
            except (ValueError, RuntimeError, TypeError) as e:
                raise ValueError(f"{where}: {name} has shape {tuple(v.shape)}, which does not broadcast to u0's "
                                 f"shape {shape}") from e
            return v
        return xp.full(shape, float(v), dtype=u0.dtype, device=dev)

    lo, hi = as_box("lb", lb, -math.inf), as_box("ub", ub, math.inf)
    if any(backend.is_traced(x) for x in (u0, lo, hi)):
        return lo, hi
    for name, box in (("lb", lo), ("ub", hi)):
        if backend.host_bool(xp.any(xp.isnan(box))):
            raise ValueError(f"{where}: {name} contains NaN; use -inf / inf for an open side")
    _first_violation(where, xp, lo > hi, "lb > ub", "the box is empty")
    _first_violation(where, xp, (u0 < lo) | (u0 > hi), "u0 outside the bounds",
                     "start from a point with lb <= u0 <= ub (e.g. clip u0 into the box)")
    return lo, hi


def _first_violation(where, xp, bad, what: str, hint: str) -> None:
    """Raise ``ValueError`` naming how many entries of ``bad`` are true and the first one's index."""
    count = int(backend.to_numpy(xp, xp.sum(xp.astype(xp.reshape(bad, (-1,)), xp.int32))))
    if count:
        import numpy as np

        flat = int(np.argmax(backend.to_numpy(xp, xp.reshape(bad, (-1,)))))
        index = tuple(int(i) for i in np.unravel_index(flat, tuple(bad.shape)))
        raise ValueError(f"{where}: {what} at {count} entr{'y' if count == 1 else 'ies'} (first at index "
                         f"{index}); {hint}")


def validate_u0(u0, p, where: str) -> None:
    """Checks that need no call of ``f``: an array, floating point, finite, one library."""
    if not backend.is_array(u0):
        raise TypeError(f"{where}: u0 must be an array (NumPy, CuPy, PyTorch, JAX, ...), got {type(u0).__name__}")
    if type(u0).__name__ == "MaskedArray":  # the solvers' arithmetic would drop or trip over the mask
        raise TypeError(f"{where}: u0 is a NumPy masked array, whose mask the solvers cannot honour; pass "
                        "u0.filled(value) or np.asarray(u0)")
    xp = backend.namespace(("u0", u0), ("p", p))
    if not backend.is_floating(xp, u0.dtype):
        raise TypeError(
            f"{where}: u0 must have a real floating-point dtype, got {u0.dtype}; "
            "convert it first (e.g. u0.astype(float64))"
        )
    if any(int(d) == 0 for d in u0.shape):
        raise ValueError(f"{where}: u0 is empty (shape {tuple(u0.shape)}); there is nothing to solve")
    finite = fused.all_finite(xp, u0)
    if not backend.is_traced(finite) and not backend.host_bool(finite):
        raise ValueError(f"{where}: u0 contains NaN or Inf; start from a finite initial guess")


def with_user_errstate(prob):
    """A shallow copy of ``prob`` whose functions (``f``, ``jvp``, ``vjp``, ``jac``) run under the NumPy
    floating-point error handling in force now: the solve silences NumPy's warnings for its own
    arithmetic (``backend.quiet_host``), not for the user's."""
    copy = object.__new__(type(prob))
    copy.__dict__.update(prob.__dict__)
    for name in ("f", "jvp", "vjp", "jac"):
        setattr(copy, name, backend.keep_errstate(getattr(prob, name)))
    return copy


def as_output(out, u):
    """NumPy arithmetic on a 0-d array returns a NumPy scalar: make it a 0-d array again."""
    if type(out).__module__ == "numpy" and not backend.is_array(out) and getattr(u, "ndim", None) == 0:
        import numpy as np

        return np.asarray(out)
    return out


def checked(fn, name: str, u0, out_shape=None, ref=None):
    """``fn`` with every output checked against ``u0``'s shape (or ``out_shape``) and dtype (a cheap
    comparison per call, so a change of shape on the k-th call is reported as such, naming ``fn``).
    ``ref`` names the expected shape for a function not called before the solve (``jvp``, ``vjp``)."""
    shape, dtype = tuple(u0.shape) if out_shape is None else tuple(out_shape), u0.dtype
    changed = ref is None
    ref = ref or ("u0 has shape" if out_shape is None else "it returned")
    zero_d_numpy = getattr(u0, "ndim", None) == 0 and type(u0).__module__ == "numpy"

    def call(*args):
        out = fn(*args)
        if zero_d_numpy:
            out = as_output(out, u0)
        if getattr(out, "shape", None) != shape or getattr(out, "dtype", None) != dtype:
            if not backend.is_array(out):
                raise TypeError(f"{name} returned a {type(out).__name__} during the solve; it must return an "
                                "array like u0")
            if tuple(out.shape) != shape:
                raise ValueError(f"{name} returned shape {tuple(out.shape)} during the solve but {ref} "
                                 f"{shape}" + (" (its output shape changed after the first call)" if changed else ""))
            if out.dtype != dtype:
                raise TypeError(f"{name} returned dtype {out.dtype} during the solve but u0 has dtype {dtype}")
        return out

    return call


def checked_jac(jac, u0, batch=None, m=None):
    """The problem's ``jac`` with every output checked: an array of ``u0``'s library and dtype, of
    shape ``(n, n)`` (or ``u0.shape * 2``) for one system of ``n`` unknowns, ``(B, n, n)`` (or
    ``(B,) + element shape * 2``, batch first) for a batch of ``B`` (``batch`` the batch axis of
    ``u0``); a sparse matrix passes (the sparse module checks it). A wrong one raises at its first
    call, naming ``jac``."""
    lib, dtype, shape = backend.library_name(u0), u0.dtype, tuple(u0.shape)
    if batch is None:
        n = math.prod(shape)
        allowed, want = ((n, n), shape + shape), f"({n}, {n}) for a system of n = {n} unknowns"
        if m is not None:  # a least-squares problem: m residuals
            allowed, want = ((m, n),), f"({m}, {n}) for m = {m} residuals and n = {n} unknowns"
    else:
        B = shape[batch]
        elem = shape[:batch] + shape[batch + 1:]
        n = math.prod(elem)
        allowed = ((B, n, n), (B,) + elem + elem)
        want = (f"({B}, {n}, {n}) for a batch of {B} systems of n = {n} unknowns each (the batch axis "
                f"first, whatever batch_axis)")
        if m is not None:
            allowed, want = ((B, m, n),), f"({B}, {m}, {n}) for a batch of {B} problems (the batch axis first)"

    def call(u, p):
        J = jac(u, p)
        if sparse.sparse_library(J) is not None or (
                isinstance(J, (list, tuple)) and J and all(sparse.sparse_library(M) is not None for M in J)):
            return J  # a sparse matrix (or a NumPy batch's list of them): the sparse module checks it
        if not backend.is_array(J) or backend.library_name(J) != lib:
            got = f"a {backend.library_name(J)} array" if backend.is_array(J) else f"a {type(J).__name__}"
            raise TypeError(f"jac(u, p) must return the Jacobian as a {lib} array like u0, got {got}")
        if tuple(J.shape) not in allowed:
            raise ValueError(f"jac(u, p) returned shape {tuple(J.shape)}; expected {want}")
        if J.dtype != dtype:
            raise TypeError(f"jac(u, p) returned dtype {J.dtype} but u0 has dtype {dtype}; the Jacobian must "
                            "have u0's dtype")
        return J

    return call


def check_output(name: str, out, u, xp, like: str = "u0", hint: str = "the residual must have the same {} as u") -> None:
    """Validate one evaluation of the user's function against ``u`` (shape, dtype, library); ``like``
    names ``u`` in the messages and ``hint`` (with ``{}`` for "shape" or "dtype") says what is expected."""
    if not backend.is_array(out):
        raise TypeError(f"{name} must return an array like {like}, got {type(out).__name__}")
    lib_u, lib_o = backend.library_name(u), backend.library_name(out)
    if lib_o != lib_u:
        raise TypeError(f"{name} returned a {lib_o} array for a {lib_u} {like}: mixed array libraries")
    if tuple(out.shape) != tuple(u.shape):
        raise ValueError(
            f"{name} returned shape {tuple(out.shape)} but {like} has shape {tuple(u.shape)}; "
            + hint.format("shape")
        )
    if out.dtype != u.dtype:
        raise TypeError(
            f"{name} returned dtype {out.dtype} but {like} has dtype {u.dtype}; "
            + hint.format("dtype") + " (check for float64/float32 promotion)"
        )
