"""Framework-neutral numerics of the implicit layers, shared by the PyTorch and JAX adapters.

Nothing here imports PyTorch or JAX: the functions work on whatever arrays the core works
on (JAX tracers included, where ``steadysolve.solve`` switches to its ``lax.while_loop``
driver). The adapters keep only framework glue; the layer's configuration lives in
``_options.py``, and every numerical piece is here, once:

* ``adjoint_solve`` -- the one adjoint builder: ``(I - K) w = b`` (fixed-point form,
  e.g. ``K = J_f^T`` for a DEQ) or ``A w = b`` (root form), with GMRES or any registered
  algorithm;
* ``SolveStats`` -- the stats of one forward or backward solve, a member of the core's
  result family (``retcode``, ``retcodes``, ``retcode_array``, ``successful``);
* ``failure_message`` -- the text of the warning / error of a failed solve.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from typing import Any, Callable, NamedTuple, Optional

import steadysolve as ss
from steadysolve import _backend as backend
from steadysolve._backend.layout import Layout
from steadysolve.retcodes import ConvergenceError, Result
from steadysolve.termination import get_norm

from ._options import LayerOptions
from .backward import CONTRACTION, ResolvedBackward

__all__ = ["adjoint_solve", "AdjointResult", "SolveStats", "failure_message", "solver_name", "forward_stats",
           "DEQStats", "DEQConvergenceError", "Reporter", "explained"]


# ---------------------------------------------------------------------------------------
# Stats
# ---------------------------------------------------------------------------------------

class SolveStats(Result):
    """Statistics of one forward or backward solve of an implicit layer.

    Attributes: ``phase`` (``"forward"`` / ``"backward"``), ``solver`` (its name), ``niter``,
    ``nf`` (evaluations of ``f``; for the backward: products with ``J^T``), ``njvp``, ``nvjp``,
    ``niter_per_element`` (batched solves), ``resid_norm`` (per element, shape ``(batch,)``),
    and the result family's ``retcode``, ``retcodes``, ``retcode_array``, ``successful``,
    ``nfailed``. A JAX pytree (returned from jitted functions; under ``vmap`` every field
    gains the mapped axis).

    Examples
    --------
    >>> import torch
    >>> from steadysolve.adapters.torch import DEQ
    >>> deq = DEQ(lambda z, x: 0.5 * z + x)
    >>> z = deq(torch.ones(2, 3))
    >>> st = deq.forward_stats
    >>> st.phase, st.solver, st.successful, tuple(st.resid_norm.shape)
    ('forward', 'anderson', True, (2,))
    """

    def __init__(self, phase, solver, codes, niter, nf, njvp=0, nvjp=0, niter_per_element=None, resid_norm=None,
                 batched=False, like=None):
        super().__init__(codes, batched, like if like is not None else resid_norm)
        self.phase, self.solver = phase, solver
        self.niter, self.nf, self.njvp, self.nvjp = niter, nf, njvp, nvjp
        self.niter_per_element, self.resid_norm = niter_per_element, resid_norm

    def as_dict(self) -> dict:
        return dict(phase=self.phase, solver=self.solver, niter=self.niter, nf=self.nf, njvp=self.njvp,
                    nvjp=self.nvjp, retcode=self.retcode, max_resid=self.max_resid)

    @property
    def max_resid(self) -> float:
        r = self.resid_norm
        xp = backend.namespace(("r", r))
        return float(backend.to_numpy(xp, xp.max(r)))

    def __repr__(self) -> str:
        try:
            resid = f"{self.max_resid:.3e}"
        except TypeError:
            resid = "<traced>"
        return (f"SolveStats({self.phase}, solver={self.solver!r}, {self._rc_repr()}, niter={self.niter}, "
                f"nf={self.nf}, max_resid={resid})")


def solver_name(alg) -> str:
    return getattr(alg, "name", "") or type(alg).__name__


def forward_stats(sol, opts: LayerOptions, layout: Layout, xp) -> SolveStats:
    """The forward ``SolveStats`` of a core Solution (residual norms per element)."""
    _register_stats_pytree()
    st = sol.stats
    rn = get_norm(opts.norm)(xp, layout.to_rows(sol.resid))
    batched = opts.batch_axis is not None
    return SolveStats("forward", solver_name(opts.solver), sol._codes, st.niter, st.nf, st.njvp, st.nvjp,
                      st.niter_per_element, rn if batched else xp.reshape(rn, ()), batched, like=sol.u)


def _register_stats_pytree() -> None:
    if "jax" not in sys.modules or getattr(_register_stats_pytree, "done", False):
        return
    import jax

    def flat(s: SolveStats):
        return ((s._codes, s.niter, s.nf, s.njvp, s.nvjp, s.niter_per_element, s.resid_norm),
                (s.phase, s.solver, s._batched))

    def unflat(aux, ch):
        codes, niter, nf, njvp, nvjp, per, rn = ch
        return SolveStats(aux[0], aux[1], codes, niter, nf, njvp, nvjp, per, rn, aux[2])

    jax.tree_util.register_pytree_node(SolveStats, flat, unflat)
    _register_stats_pytree.done = True


# ---------------------------------------------------------------------------------------
# The one adjoint builder
# ---------------------------------------------------------------------------------------

class AdjointResult(NamedTuple):
    w: Any  # the solution, in the layout of b
    stats: SolveStats


def adjoint_solve(op: Callable, b, bwd: ResolvedBackward, *, fixed_point_form: bool, batch_axis: Optional[int],
                  norm="max", forward_failed=None) -> AdjointResult:
    """Solve the linear system of an implicit derivative, with GMRES or any registered algorithm.

    ``fixed_point_form=True``: ``(I - K) w = b`` with ``K = op`` (a DEQ's adjoint ``w = J_f^T w + g``
    or tangent ``(I - J_f) t = r``). Fixed-point algorithms iterate ``w -> K w + b`` from ``w = b``.
    ``fixed_point_form=False``: ``A w = b`` with ``A = op`` (a root's ``J_F``); fixed-point-type
    algorithms then solve the root problem ``A w - b = 0`` from ``w = 0``.

    The operator is linear, so the exact Jacobian-vector product is ``op`` itself: Newton-type
    algorithms need no finite differences. GMRES uses the 2-norm test
    ``||b - A w|| <= max(abstol, reltol ||b||)`` per element; the algorithms use the core's test.
    ``forward_failed``: ``(batch,)`` (or one) flags of the elements whose forward solve failed, the only ones
    the DEQ default's truncated series may truncate (None: every element may be).
    """
    _register_stats_pytree()
    xp = backend.namespace(("b", b))
    name = solver_name(bwd.solver)
    batched = batch_axis is not None
    if bwd.linear:
        alg = dataclasses.replace(bwd.solver, abstol=bwd.abstol, reltol=bwd.reltol, maxiters=bwd.maxiters)
        mv = (lambda w: w - op(w)) if fixed_point_form else op
        res = ss.linear_solve(mv, b, alg, batch_axis=batch_axis)
        st = res.stats
        rn = st.resid_norm
        if not batched and not backend.is_traced(rn) and not backend.is_array(rn):
            rn = xp.asarray(rn, dtype=b.dtype)
        stats = SolveStats("backward", name, res._codes, st.niter, st.nmatvec, 0, st.nmatvec,
                           None, rn, batched, like=b)
        return AdjointResult(res.x, stats)
    layout = Layout(xp, tuple(b.shape), sol_axis(batch_axis, b))
    if fixed_point_form and bwd.truncate and bwd.maxiters > bwd.truncate:
        return _truncated_series(op, b, bwd, layout, norm, batch_axis, name, forward_failed)

    def solve(start, maxiters):
        if fixed_point_form:
            prob = ss.FixedPointProblem(lambda w, p: op(w) + b, start, None, jvp=lambda w, v, p: op(v),
                                        rowwise=False)
        else:
            prob = ss.NonlinearProblem(lambda w, p: op(w) - b, start, None, jvp=lambda w, v, p: op(v),
                                       rowwise=False)
        return ss.solve(prob, bwd.solver, abstol=bwd.abstol, reltol=bwd.reltol, maxiters=maxiters, norm=norm,
                        batch_axis=batch_axis)

    sol = solve(b if fixed_point_form else b * 0, bwd.maxiters)
    st = sol.stats
    rn = get_norm(norm)(xp, layout.to_rows(sol.resid))
    # one product per evaluation of the map, plus the exact JVPs (also products) a Newton-type solver used
    nprod = st.nf + st.njvp
    stats = SolveStats("backward", name, sol._codes, st.niter, nprod, 0, nprod, st.niter_per_element,
                       rn if batched else xp.reshape(rn, ()), batched, like=b)
    return AdjointResult(sol.u, stats)


def _truncated_series(op, b, bwd: ResolvedBackward, layout: Layout, norm, batch_axis, name,
                      forward_failed=None) -> AdjointResult:
    """The DEQ default adjoint: ``w <- K w + b`` from ``w = b`` (the Neumann series), ``bwd.truncate`` terms for
    every element, then up to the cap only for the elements whose residual shrank at least ``CONTRACTION`` per
    term over those (their series converges to the exact gradient at a few more terms). An element whose series
    contracts slower -- the spectral radius of ``K`` near or above 1, where the exact adjoint is many times
    ``b`` and a few such samples wreck a training step -- keeps its truncated sum, if its forward solve failed
    (``forward_failed``; an element whose forward converged gets the series to the cap, its exact gradient) (its code says not converged; the layers count it without a warning).
    Measured on MNIST and digits DEQs trained where the forward solves stop at their cap: as accurate as the
    series run to the cap of 50, or more, at a fraction of the products (docs/benchmarks.md)."""
    xp = layout.xp
    batched = batch_axis is not None
    nrm = get_norm(norm)

    def solve(start, maxiters):
        prob = ss.FixedPointProblem(lambda w, p: op(w) + b, start, None, jvp=lambda w, v, p: op(v), rowwise=False)
        return ss.solve(prob, bwd.solver, abstol=bwd.abstol, reltol=bwd.reltol, maxiters=maxiters, norm=norm,
                        batch_axis=batch_axis)

    k = bwd.truncate
    first = solve(b, k)
    r0 = nrm(xp, layout.to_rows(op(b)))  # the residual K b of the start w = b
    r1 = nrm(xp, layout.to_rows(first.resid))
    tiny = xp.finfo(r0.dtype).tiny
    fast = r1 <= (CONTRACTION ** k) * xp.where(r0 > tiny, r0, tiny)  # per element: a rate <= CONTRACTION
    if forward_failed is not None:
        fast = fast | ~xp.reshape(xp.asarray(forward_failed, device=backend.device_of(r1)), (-1,))
    c1 = first.retcode_array if batched else xp.reshape(first.retcode_array, (1,))
    go = fast & (xp.reshape(c1, (-1,)) != 0)  # converging fast but not converged yet
    traced = backend.is_traced(r1)
    st1 = first.stats
    if not traced and not bool(backend.to_numpy(xp, xp.any(go))):
        w, codes, rn, niter, nprod, per = first.u, first._codes, r1, st1.niter, st1.nf + st1.njvp, st1.niter_per_element
    else:
        second = solve(first.u, bwd.maxiters - k)
        st2 = second.stats
        r2 = nrm(xp, layout.to_rows(second.resid))
        w = xp.where(layout.per_element(go), second.u, first.u)
        c2 = second.retcode_array if batched else xp.reshape(second.retcode_array, (1,))
        codes = xp.where(go, xp.reshape(c2, (-1,)), xp.reshape(c1, (-1,)))
        if not traced:
            codes = [int(c) for c in backend.to_numpy(xp, codes).reshape(-1)]
            codes = codes if batched else codes[:1]
        rn = xp.where(go, r2, r1)
        niter, nprod = st1.niter + st2.niter, st1.nf + st1.njvp + st2.nf + st2.njvp
        per = None
    nprod = nprod + 1  # the product K b of the rate test
    stats = SolveStats("backward", name, codes, niter, nprod, 0, nprod, per,
                       rn if batched else xp.reshape(rn, ()), batched, like=b)
    return AdjointResult(w, stats)


def sol_axis(batch_axis, x):
    return None if batch_axis is None else batch_axis % len(x.shape)


# ---------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------

FORWARD_HINT = ("Raise maxiters, loosen abstol/reltol, try another solver, or regularise f (jacobian_reg) so that "
                "it stays contractive.")
BACKWARD_HINT = ("Raise maxiters or loosen reltol of backward=Implicit(...), pick another backward solver, or "
                 "regularise f (jacobian_reg) so that J_f stays contractive.")


def failure_message(stats: SolveStats, batch: int, hint: str) -> str:
    """One-line description of a failed forward/backward solve for a warning or an exception."""
    rc = stats.retcode
    return (f"steadysolve DEQ: the {stats.phase} solve did not converge: {rc} ({rc.value}); "
            f"{stats.nfailed} of {batch} element(s) failed, worst residual norm {stats.max_resid:.3e} after "
            f"{stats.niter} iteration(s). {hint}")


class DEQConvergenceError(ConvergenceError):
    """Raised (with ``on_failure="raise"``) when the forward or backward solve fails.

    ``err.phase`` is ``"forward"`` or ``"backward"``; ``err.stats`` the ``SolveStats``.

    Examples
    --------
    >>> import torch
    >>> from steadysolve.adapters.torch import DEQ, DEQConvergenceError
    >>> deq = DEQ(lambda z, x: z + x, maxiters=5, on_failure="raise")   # no fixed point
    >>> try:
    ...     deq(torch.ones(1, 2))
    ... except DEQConvergenceError as err:
    ...     print(err.phase, err.stats.successful)
    forward False
    """

    def __init__(self, message: str, stats: SolveStats):
        self.stats = stats
        self.phase = stats.phase
        super().__init__(stats, message)


class DEQStats:
    """The stats of one DEQ call: ``forward``, ``backward`` (set when the implicit backward has
    run; always ``None`` for the phantom backward), ``jac_estimate`` (Hutchinson estimate of
    ``||J_f||_F^2 / dim``, or None) and ``failures`` (the module's running count of failed
    solves per phase, which ``on_failure="warn"`` reports only once).

    Examples
    --------
    >>> import torch
    >>> from steadysolve.adapters.torch import fixed_point
    >>> z, stats = fixed_point(lambda z, x: 0.5 * z + x, torch.zeros(2, 3), torch.ones(2, 3))
    >>> stats.forward.successful, stats.backward is None, stats.failures["forward"]
    (True, True, 0)
    """

    def __init__(self, failures: Optional[dict] = None):
        self.forward: Optional[SolveStats] = None
        self.backward: Optional[SolveStats] = None
        self.jac_estimate: Optional[float] = None
        self.failures = failures if failures is not None else {"forward": 0, "backward": 0}

    def __repr__(self) -> str:
        return f"DEQStats(forward={self.forward!r}, backward={self.backward!r}, failures={self.failures})"


class Reporter:
    """Warn / raise / count failed solves; ``"warn"`` warns once per owner (a module or a call)."""

    #: what "warn" adds to its one warning (the torch layers'; the JAX adapter says its own)
    ONCE = (" (Warned once for this layer; deq.stats.failures counts every failure, on_failure='warn_always' "
            "warns each time.)")

    def __init__(self, on_failure: str, failures: dict, warned: set, once: str = ONCE):
        self.on_failure, self.failures, self.warned, self.once = on_failure, failures, warned, once

    def count(self, stats: SolveStats, batch: int = 0, hint: str = "") -> None:
        """Count a failed solve without warning or raising: the truncated adjoint's elements, whose truncated
        sum is the gradient by design."""
        if stats.nfailed:
            self.failures[stats.phase] = self.failures.get(stats.phase, 0) + 1

    def __call__(self, stats: SolveStats, batch: int, hint: str) -> None:
        if stats.nfailed == 0:
            return
        self.count(stats)
        if self.on_failure == "ignore":
            return
        msg = failure_message(stats, batch, hint)
        if self.on_failure == "raise":
            raise DEQConvergenceError(msg, stats)
        if self.on_failure == "warn":
            if stats.phase in self.warned:
                return
            self.warned.add(stats.phase)
            msg += self.once
        warnings.warn(msg, ss.ConvergenceWarning, stacklevel=_user_stacklevel())


_LIBRARY_DIRS = tuple(os.path.dirname(os.path.abspath(m)) + os.sep for m in (__file__, ss.__file__))
_FRAMEWORKS = tuple(os.sep + name + os.sep for name in ("torch", "jax", "jaxlib", "equinox"))


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside steadysolve and the frameworks (the user's call),
    so that a warning points at the line that called the layer, however deep the adapter's stack is."""
    frame, level = sys._getframe(1), 1
    while frame is not None:
        name = os.path.abspath(frame.f_code.co_filename)
        if not name.startswith(_LIBRARY_DIRS) and not any(d in name for d in _FRAMEWORKS):
            return level
        frame, level = frame.f_back, level + 1
    return 2


_SHAPE_WORDS = ("shape", "size", "dimension", "broadcast", "channel")


def explained(cell: Callable, shape, remedy: str) -> Callable:
    """The cell on a default initial state (zeros of ``shape``; None: with the structure of ``x``): a
    shape error at its *first* evaluation most often means that ``z`` and ``x`` differ in shape, which
    only the user can fix (``remedy``). The hint is added to that exception as a note (Python >= 3.11; on 3.10 the
    exception is left as it is) and the exception itself propagates: never re-wrapped, its type and
    message unchanged. Errors of later evaluations, and other errors, are left alone."""
    first = [True]

    def call(*args, **kwargs):
        if not first[0]:
            return cell(*args, **kwargs)
        first[0] = False
        try:
            return cell(*args, **kwargs)
        except Exception as e:
            if hasattr(e, "add_note") and any(w in str(e).lower() for w in _SHAPE_WORDS):
                state = "with the structure of x" if shape is None else f"of shape {tuple(shape)}"
                e.add_note(f"(the DEQ evaluated the cell on its default initial state z = zeros {state}: if z "
                           f"and x have different shapes, {remedy})")
            raise

    return call
