"""The default polyalgorithm: pick a chain of algorithms by problem kind and size, run them in turn.

``solve(prob)`` and ``solve(prob, "auto")`` use ``Auto``. Each attempt is a complete
solve by one algorithm through the ordinary driver, started from the best iterate of the
attempts before it; an element that an attempt solved starts the next one converged, so
the driver stops it at once (it is never re-solved). The chain is fixed by the problem's
kind and ``n`` alone (static), so the same code runs under ``jax.jit`` / ``vmap``: a later
attempt whose elements have all converged runs zero iterations of its ``lax.while_loop``.
Eager solves stop the chain as soon as every element has succeeded.

``Auto`` holds the choice (``chain``) and its options; running the chain is the engine's job
(``steadysolve._engine.chain``), so ``Auto`` is a :class:`~steadysolve.algorithms.base.Polyalgorithm`,
not an ``init`` / ``step`` algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._checks import check_int, check_positive
from ..registry import register, resolve
from .anderson import Anderson
from .base import Algorithm, Polyalgorithm
from .broyden import Broyden
from .dynamic_ss import DynamicSS
from .levenberg_marquardt import LevenbergMarquardt
from .newton import NewtonRaphson
from .newton_krylov import NewtonKrylov
from .trust_region import TrustRegion

__all__ = ["Auto"]


@register("auto")
@dataclass(frozen=True)
class Auto(Polyalgorithm):
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
    * larger: ``NewtonKrylov`` -> ``Broyden``, then Broyden from ``u0`` (matrix-free only);
    * a sparse Jacobian (eager solves; fixed-point problems too, a ``SteadyStateProblem`` keeps its
      chain, which follows the flow): given ``sparsity=``, whatever ``n``; given only a ``jac`` that
      returns sparse matrices, above ``dense_max`` (below, the chains above, ``jac`` densified): sparse
      ``NewtonRaphson`` (line search) -> sparse ``TrustRegion`` -> ``NewtonKrylov``. Under ``jax.jit`` the chains above (the sparse factorisation runs on the host);
    * ``NonlinearLeastSquaresProblem``: ``LevenbergMarquardt`` alone;
    * a ``NonlinearProblem`` with bounds (``lb=`` / ``ub=``): the methods that honour them,
      ``TrustRegion`` -> ``LevenbergMarquardt``, then Levenberg-Marquardt again from ``u0``.

    An attempt that fails (any return code but ``Success``) hands its best iterate to the
    next one (the attempts "from ``u0``" restart the unsolved elements there: a best
    iterate can sit at a minimum of ``||F||`` that is not a root); elements solved by an
    attempt are frozen. ``maxiters`` is the budget of the whole chain: the attempts share it
    (``stats.attempts`` shows the split); every attempt but the last stops after at most
    ``max(min(maxiters, 100), share * maxiters)`` iterations (a slow attempt hands over to
    the next instead of spending the whole budget), and the chain ends when the budget is spent.
    Every attempt is judged against the original start. The Solution's ``alg`` is the algorithm that produced ``u`` (the one that
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

    def chain(self, kind: str, n: int, sparse: bool = False, bounded: bool = False) -> tuple:
        """``((algorithm, from_start), ...)``: the attempts, in order, for a problem of this kind with ``n``
        unknowns per element (``from_start``: restart the unsolved elements from ``u0``, not from the
        best iterate); ``sparse``: the problem has a sparse Jacobian that the solve can factorise;
        ``bounded``: the problem has bounds (only the methods that honour them)."""
        if self.algs:
            return tuple((a, False) for a in self.algs)
        if kind == "steady_state":
            return self._steady_chain(n)
        if kind == "least_squares":  # a NonlinearLeastSquaresProblem: its minimum, root or not
            return ((LevenbergMarquardt(), False),)
        if bounded:  # the projected trust region, then Levenberg-Marquardt from its best iterate and from u0
            return ((TrustRegion(), False), (LevenbergMarquardt(), False), (LevenbergMarquardt(), True))
        if sparse:  # a sparse LU costs about what the Krylov solves of one Newton step do, and needs no tuning
            return ((NewtonRaphson(), False), (TrustRegion(), False), (NewtonKrylov(), False))
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

    def attempt_cap(self, maxiters: int, last: bool) -> int:
        """The iterations one attempt may use at most: all of ``maxiters`` for the last, else
        ``max(min(maxiters, 100), share * maxiters)`` (a slow attempt hands over to the next; what it
        leaves unused stays in the budget). Every attempt is also bounded by what is left."""
        return maxiters if last else max(min(maxiters, 100), int(self.share * maxiters))
