"""The algorithm contract and the solve context every algorithm receives.

An algorithm is a frozen (hashable) dataclass of options with two methods::

    init(prob, u0, ctx) -> State
    step(prob, state, ctx) -> State

``State`` is a ``typing.NamedTuple`` holding at least ``u``, ``fu`` (the residual
at ``u``; for ``DynamicSS`` the vector field) and the counters ``nf``, ``njvp``,
``nvjp`` (0-d integer arrays). Inside a solve every array is 2-D, ``(batch, n)``:

* leaves with ``ndim >= 1`` are per batch element, batch axis first (the driver
  freezes converged elements by ``where`` over that axis);
* 0-d leaves are global (counters, ring-buffer positions);
* an optional ``flag`` leaf of shape ``(batch,)`` (int32) lets a step report a
  per-element failure (a ``ReturnCode`` code, 0 for none), e.g. a failed linear solve.

``step`` may not branch in Python on array values, mutate arrays, use boolean
indexing or pull Python scalars out of arrays: choices use ``xp.where``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

from .._backend import l2
from .._backend.derivatives import Products

__all__ = ["Algorithm", "Polyalgorithm", "Context", "residual_scale", "PROGRESS_DROP", "PROGRESS_ITERS", "no_progress"]

#: The Newton family's progress test (after MINPACK's): an accepted step *progresses* when it takes
#: ``||F||`` at least ``PROGRESS_DROP`` below its value at the last progress; ``PROGRESS_ITERS``
#: iterations in a row without progress stop the element with ``Stalled`` (a minimum of ``||F||`` that
#: is not a root, or a floor of rounding error).
PROGRESS_DROP = 1e-3
PROGRESS_ITERS = 20
_KEEP2 = (1.0 - PROGRESS_DROP) ** 2


def no_progress(xp, accept, ftn2, count, ref2):
    """``(count, ref2)`` after an iteration: the iterations without progress and ``||F||^2`` at the
    last progress, per element, from ``accept`` and ``ftn2 = ||F(trial)||^2``. ``xp`` is an array
    namespace, or the one-system engine's namespace of Python floats (``_small.floats.FLOATS``)."""
    go = accept & (ftn2 <= _KEEP2 * ref2)
    return xp.where(go, 0, count + 1), xp.where(go, ftn2, ref2)


class Algorithm:
    """Base class of every nonlinear algorithm (subclasses are frozen dataclasses).

    A subclass defines ``init(prob, u0, ctx) -> State`` and ``step(prob, state, ctx) -> State``
    (see the module notes); the driver (``steadysolve._engine``) owns iteration and termination.

    Examples
    --------
    >>> import steadysolve as ss
    >>> isinstance(ss.Anderson(), ss.Algorithm), ss.Anderson().name
    (True, 'anderson')
    """

    #: registered name (set by :func:`steadysolve.registry.register`)
    name: ClassVar[str] = ""
    #: iterations without a new best residual before ``Stalled`` (None: never)
    stall_patience: ClassVar[Optional[int]] = 50
    #: eager batched solves: keep the state of converged elements with ``where`` (needed when
    #: the state holds per-element statistics, like DynamicSS's time); otherwise converged
    #: elements ride along with the batch and only their reported iterate is frozen
    freeze_converged: ClassVar[bool] = False
    #: the method assumes ``du/dt = F(u)`` is stable at the root (a failure on a root problem then
    #: gets a hint about the sign convention in ``Solution.message``)
    sign_sensitive: ClassVar[bool] = False
    #: the method keeps every iterate inside the bounds ``lb <= u <= ub`` of a bounded problem (the others
    #: refuse one at the start of the solve)
    honours_bounds: ClassVar[bool] = False
    #: the method minimises ``||F||`` with an ``m x n`` Jacobian, so it solves a least-squares problem
    #: (``m > n`` residuals); the others refuse one at the start of the solve
    least_squares: ClassVar[bool] = False

    def init(self, prob, u0, ctx: "Context"):  # pragma: no cover - interface
        raise NotImplementedError

    def step(self, prob, state, ctx: "Context"):  # pragma: no cover - interface
        raise NotImplementedError

    def cost(self, n: int) -> int:
        """Worst-case evaluations of ``f`` (Jacobian-vector products counted) one iteration spends on a
        system of ``n`` unknowns per element; a DEQ's ``max_nfe`` budget is divided by it. The default:
        one evaluation (Anderson, Broyden, fixed-point iteration)."""
        return 1

    def setup_cost(self) -> int:
        """Evaluations of ``f`` before the first iteration (the one of ``u0``; more where ``init`` spends
        them), so that a budget of ``max_nfe`` evaluations is ``setup_cost() + k * cost(n)``."""
        return 1

    def under_budget(self, reltol: float = 0.0) -> "Algorithm":
        """This algorithm configured for a DEQ's evaluation budget at a relative tolerance ``reltol``
        (the default: unchanged). Methods whose defaults spend evaluations on accuracy a fixed point
        under a budget does not need (long inner solves, tight local error) return a cheaper twin."""
        return self

    def for_iterations(self, maxiters: int) -> "Algorithm":
        """This algorithm sized for solves of at most ``maxiters`` iterations, with the same iterates (the
        default: unchanged). A history longer than the iterations that can fill it only costs memory and
        products over empty slots."""
        return self

    def host_step_scale(self, state) -> Optional[float]:
        """``c`` with ``norm(u_next - u) <= c * norm(F(u))`` for every step from here on, or None. The
        unbatched NumPy driver then bounds ``norm(u)`` by the triangle inequality and computes it
        only when a decision could depend on it (called once, after ``init``)."""
        return None

    def extra_stats(self, state) -> dict:
        """Algorithm-specific counters for ``Solution.stats`` (arrays or ints)."""
        return {}

    def failure_hint(self, state, codes) -> Optional[str]:
        """What to tell the user about a failed solve that ended in ``state`` with the per-element
        ``codes`` (``Solution.message``), or None."""
        return None

    def residual_jvp(self, ctx: "Context", state, v):
        """``(J v, evaluations of F)``: the Jacobian of the residual ``state.fu`` at ``state.u`` times ``v``
        (the verdict measures the size of the residual's terms with it)."""
        return ctx.jvp(state.u, v, state.fu), (1 if ctx.jvp_costs_f else 0)


class Polyalgorithm:
    """Base of the algorithms that run other algorithms: a chain of attempts (``Auto``). A subclass
    says which attempts (``chain(kind, n)``) and how many iterations each may use
    (``attempt_cap(maxiters, last)``); the engine runs them (``steadysolve._engine.chain``), each
    through the ordinary driver.

    Examples
    --------
    >>> import steadysolve as ss
    >>> auto = ss.Auto()
    >>> isinstance(auto, ss.Polyalgorithm), [a.name for a, _ in auto.chain("fixed_point", 4)][:2]
    (True, ['anderson', 'newton_krylov'])
    """

    #: registered name (set by :func:`steadysolve.registry.register`)
    name: ClassVar[str] = ""

    def chain(self, kind: str, n: int) -> tuple:  # pragma: no cover - interface
        """``((algorithm, from_start), ...)`` for a problem of this kind with ``n`` unknowns per element."""
        raise NotImplementedError

    def attempt_cap(self, maxiters: int, last: bool) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def cost(self, n: int) -> int:
        """The cost per iteration (:meth:`Algorithm.cost`) of the first attempt on a fixed-point problem
        (the DEQ form, where a budget holds for that one attempt)."""
        return self.chain("fixed_point", n)[0][0].cost(n)

    def setup_cost(self) -> int:  # the chain's first attempt starts from f(u0); restarts re-use f
        return 1

    def under_budget(self, reltol: float = 0.0) -> "Polyalgorithm":  # the chain configures its attempts
        return self


@dataclass
class Context:
    """What an algorithm needs from a solve, in the solver's 2-D ``(batch, n)`` layout."""

    xp: Any
    dtype: Any
    device: Any
    batch: int
    n: int
    F: Callable  # residual, (B, n) -> (B, n)
    G: Optional[Callable]  # fixed-point map for FixedPointProblem, else None
    products: Products  # JVPs, VJPs and dense Jacobians of F (the problem's own, AD or finite differences)
    vector_field: Callable  # vector_field(u, t) -> du/dt, for DynamicSS
    norm: Callable  # (B, n) -> (B,)
    abstol: float
    reltol: float
    fu0: Any  # F(u0), evaluated once by solve() to validate f
    p: Any = None
    kind: str = "nonlinear"
    traced: bool = False  # the JAX lax.while_loop driver runs this solve
    host_arrays: bool = False  # the arrays are NumPy arrays on the host (no transfer needed)
    host_norm: Optional[Callable] = None  # unbatched host arrays, built-in norm: (1, n) row -> Python float
    #: ``u -> SparseJacobians or None`` (see :meth:`sparse_jacobians`), set by the engine
    sparse_source: Optional[Callable] = None
    #: the box ``lb <= u <= ub`` on rows ``(batch, n)`` (``-inf`` / ``inf`` where open), or None: a bounded
    #: problem, honoured by the methods with ``honours_bounds`` (see ``algorithms._bounds``)
    lb: Any = None
    ub: Any = None

    def jvp(self, u, v, fu):
        """``J_F(u) v`` per row (``fu = F(u)`` lets finite differences skip one evaluation)."""
        return self.products.jvp(u, v, fu)

    @property
    def jvp_costs_f(self) -> bool:
        """True when a JVP costs one evaluation of ``F`` (finite differences)."""
        return self.products.jvp_costs_f

    def f_calls(self, nprod):
        """The calls of ``F`` that ``nprod`` Jacobian-vector products just spent: one each by finite
        differences (counted in ``nf`` as well as in ``njvp``), none by AD or the problem's ``jvp``."""
        return nprod if self.products.jvp_costs_f else 0

    def jacobian(self, u, fu):
        """Dense per-row Jacobian of ``F`` ``(batch, n, n)`` and the Jacobian-vector products it cost
        (:meth:`f_calls` of them are calls of ``F``)."""
        return self.products.jacobian(u, fu)

    def sparse_jacobians(self, u):
        """The residual's sparse Jacobians (:class:`steadysolve.sparse.SparseJacobians`: values on one
        pattern, by the problem's sparse ``jac`` or by colouring), or ``None`` when the problem gives
        neither ``sparsity=`` nor a sparse ``jac``. Decided at the first call (at rows ``u``, where a
        ``jac`` without ``sparsity=`` is called once to see whether it is sparse) and kept for the solve."""
        if "_sparse" not in self.__dict__:  # (the engine's source answers once: copies of the context agree)
            self._sparse = None if self.sparse_source is None else self.sparse_source(u)
        return self._sparse

    def zeros(self, shape, dtype=None):
        return self.xp.zeros(shape, dtype=self.dtype if dtype is None else dtype, device=self.device)

    def counter(self, value: int = 0):
        """A work counter: a Python int in eager solves (incrementing it costs no device
        operation), a 0-d int32 array under the JAX driver (int32 so that JAX without x64
        agrees with the others). Algorithms treat both alike (``+``, comparisons, ``where``)."""
        if not self.traced:
            return int(value)
        return self.xp.asarray(value, dtype=self.xp.int32, device=self.device)

    def batched(self, x):
        """Reshape a ``(batch,)`` array so that it broadcast against ``(batch, n)``."""
        return self.xp.reshape(x, (self.batch, 1))


def residual_scale(ctx: Context, u0, fu0, alpha):
    """Per-element scale ``a`` of the residual step ``u <- u + a F(u)``, shape ``(B, 1)``, or None.

    For a ``FixedPointProblem`` ``F(u) = g(u) - u`` and the natural scale is 1 (None:
    iterate ``g`` itself). For the other problems, unless the user fixed ``alpha``,
    it is SciPy's ``anderson`` choice ``0.5 * max(||u0||, 1) / ||F(u0)||`` (2-norms).
    """
    xp = ctx.xp
    if alpha is not None:
        return xp.full((ctx.batch, 1), float(alpha), dtype=ctx.dtype, device=ctx.device)
    if ctx.kind == "fixed_point":
        return None
    unorm = l2(xp, u0)
    fnorm = l2(xp, fu0)
    one = xp.ones_like(unorm)
    safe = xp.where(fnorm > 0, fnorm, one)
    a = xp.where(fnorm > 0, 0.5 * xp.maximum(unorm, one) / safe, one)
    return ctx.batched(a)
