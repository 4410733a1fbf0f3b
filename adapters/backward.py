"""The backward pass of an implicit layer, as a small configuration object shared by the PyTorch
and JAX adapters: ``Implicit`` (the exact gradient by the implicit function theorem) and
``Phantom`` (a few damped steps unrolled with autodiff). ``backward="implicit"`` / ``"phantom"``
are shorthands for their defaults. Import them from ``steadysolve.adapters`` (or from either
framework module).

>>> from steadysolve.adapters import Implicit, Phantom
>>> Implicit(solver="anderson", reltol=1e-8).solver, Phantom(steps=3).damping
('anderson', 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import steadysolve as ss
from steadysolve._checks import check_choice, check_int, check_positive, check_tol
from steadysolve.registry import LINEAR, resolve

__all__ = ["Implicit", "Phantom"]


@dataclass(frozen=True)
class Implicit:
    """Exact gradient by the implicit function theorem: one adjoint solve per backward pass.

    For a DEQ ``z* = f(z*, x)`` the incoming gradient ``g`` becomes ``w = J_f(z*)^T w + g``.

    Parameters
    ----------
    solver
        ``None`` (the default): the layer's own -- ``"fixed_point"`` in the DEQ modules (the
        truncated Neumann series, see below), ``"gmres"`` in the functional ``fixed_point``,
        ``root`` and ``steady_state``. ``"gmres"`` (a Krylov solve of ``(I - J^T) w = g``), a
        ``steadysolve.GMRES`` instance, or any registered algorithm name / instance
        (``"anderson"``: the adjoint as the fixed point ``w -> J^T w + g``).

        Why the DEQ modules iterate ``w <- J^T w + g`` from ``w = g`` (the Neumann series
        ``sum_k (J^T)^k g``, capped, best iterate): where the equilibrium attracts (spectral
        radius of ``J_f`` below 1) it converges to the exact gradient; where it does not -- Anderson,
        Broyden and Newton also reach equilibria that the map itself repels, and ``I - J_f`` is then
        near-singular -- the exact adjoint is hundreds to thousands of times the incoming gradient
        and a few such samples wreck a training step, while the truncated series stays on the
        gradient's scale (its unconverged elements keep their codes in the backward stats and are
        counted in ``stats.failures``, but ``on_failure`` does not warn or raise for them: their
        truncated sum is the gradient by design). Measured on a digits DEQ
        trained where most forward solves stop at their cap: GMRES 0.71 test accuracy, the Neumann
        series 0.89, torchdeq (whose regularised Anderson adjoint behaves alike) 0.88
        (docs/benchmarks.md).

        With neither ``solver`` nor ``maxiters`` given, the DEQ modules truncate the series: every
        element gets ``TRUNCATE = 10`` terms, and only the elements whose residual shrank by at least
        ``CONTRACTION = 0.6`` per term over those, or whose forward solve converged, go on to the cap
        (their series converges to the exact gradient); the others keep their 10-term sum. On MNIST-5k (2 seeds, capped regime)
        this took anderson from 1.3 points below torchdeq's accuracy to 0.2 above, fixed_point from
        1.6 to 0.7 below.
        ``Implicit(maxiters=n)`` (or ``solver="fixed_point"``) runs the plain series to ``n``.
    abstol
        The adjoint's convergence test. Neither tolerance given: ``abstol = 0`` (the adjoint has
        the scale of the incoming gradient, often tiny, so the test is relative) and ``reltol`` =
        the forward ``reltol`` (or the forward ``abstol`` when that is 0); exactly one given: the
        other is 0 (a tolerance set binds).
    reltol
        As ``abstol``.
    maxiters
        The adjoint's iteration cap; defaults to the forward ``maxiters``.

    Examples
    --------
    >>> from steadysolve.adapters import Implicit
    >>> Implicit(solver="anderson", reltol=1e-8)
    Implicit(solver='anderson', abstol=None, reltol=1e-08, maxiters=None)
    """

    solver: Any = None
    abstol: Optional[float] = None
    reltol: Optional[float] = None
    maxiters: Optional[int] = None

    def __post_init__(self):
        check_tol("Implicit", "abstol", self.abstol)
        check_tol("Implicit", "reltol", self.reltol)
        check_int("Implicit", "maxiters", self.maxiters, 1, allow_none=True)
        if self.solver is not None:
            _backward_solver("Implicit", self.solver)  # unknown names fail here, before any work


@dataclass(frozen=True)
class Phantom:
    """Phantom gradient: ``steps`` damped steps ``z <- (1 - damping) z + damping f(z, x)`` unrolled
    from ``z*`` with autodiff (cheap, approximate: error ``O(q^steps)`` with
    ``q = 1 - damping + damping ||J_f||``).

    Examples
    --------
    >>> from steadysolve.adapters import Phantom
    >>> Phantom(steps=5, damping=0.8)
    Phantom(steps=5, damping=0.8)
    """

    steps: int = 5
    damping: float = 0.5

    def __post_init__(self):
        check_int("Phantom", "steps", self.steps, 1)
        d = check_positive("Phantom", "damping", self.damping)
        if d > 1:
            raise ValueError(f"Phantom: damping must be a number in (0, 1], got {self.damping!r}")


def _backward_solver(owner: str, solver):
    """A ``GMRES`` instance (linear form) or an algorithm instance, from a name or an instance."""
    if isinstance(solver, str):
        key = solver.strip().lower().replace("-", "_")
        if key in LINEAR:
            return LINEAR[key]()
        if key in ss.available():
            return resolve(key)
        check_choice(owner, "backward solver", key, list(LINEAR) + ss.available())
    if type(solver) in LINEAR.values():
        return solver
    try:
        return resolve(solver)
    except TypeError as e:
        raise TypeError(f"{owner}: the backward solver must be 'gmres', a GMRES instance, an algorithm name or "
                        f"an algorithm instance, got {type(solver).__name__}") from e


class ResolvedBackward(NamedTuple):
    """A resolved backward configuration (what the adapters act on; not part of the public API)."""

    mode: str  # "implicit" | "phantom"
    solver: Any = None  # GMRES or an Algorithm instance (implicit)
    abstol: float = 0.0
    reltol: float = 0.0
    maxiters: Optional[int] = 1
    steps: int = 0
    damping: float = 1.0
    truncate: int = 0  # > 0: the DEQ default's truncated Neumann series (``_implicit.adjoint_solve``)

    @property
    def linear(self) -> bool:
        return type(self.solver) in LINEAR.values()


#: the adjoint solver of ``Implicit(solver=None)``: a DEQ module's, and every other implicit layer's
DEQ_ADJOINT, DEFAULT_ADJOINT = "fixed_point", "gmres"
#: the DEQ default's series: ``TRUNCATE`` terms for every element, the rest of the cap only for the elements
#: whose residual shrank at least ``CONTRACTION`` per term over those (``_implicit.adjoint_solve``)
TRUNCATE, CONTRACTION = 10, 0.6


def resolve_backward(owner, backward, abstol: float, reltol: float, maxiters: int,
                     default_solver: str = DEFAULT_ADJOINT) -> ResolvedBackward:
    """The layer's ``backward`` option (a shorthand string or an object) against the forward tolerances
    and cap (an ``Implicit`` without its own tolerances follows the forward solve; without its own
    solver, ``default_solver``)."""
    if isinstance(backward, str):
        check_choice(owner, "backward", backward, ("implicit", "phantom"))
        backward = Implicit() if backward == "implicit" else Phantom()
    if isinstance(backward, Phantom):
        return ResolvedBackward("phantom", steps=backward.steps, damping=backward.damping)
    if not isinstance(backward, Implicit):
        raise TypeError(f"{owner}: backward must be 'implicit', 'phantom', an Implicit(...) or a Phantom(...), "
                        f"got {type(backward).__name__}")
    b = backward
    solver = _backward_solver(owner, default_solver if b.solver is None else b.solver)
    if type(solver) in LINEAR.values() and b.solver is not None and not isinstance(b.solver, str):
        # a configured GMRES instance keeps its own settings where the Implicit object sets none
        return ResolvedBackward("implicit", solver=solver,
                         abstol=solver.abstol if b.abstol is None else float(b.abstol),
                         reltol=solver.reltol if b.reltol is None else float(b.reltol),
                         maxiters=solver.maxiters if b.maxiters is None else b.maxiters)
    if b.abstol is None and b.reltol is None:
        babs, brel = 0.0, float(reltol if reltol > 0 else abstol)
    else:  # a tolerance set binds: the one not set is 0
        babs, brel = float(b.abstol or 0.0), float(b.reltol or 0.0)
    # the DEQ default (no solver, no cap set): the contraction-aware truncated series
    truncate = TRUNCATE if b.solver is None and b.maxiters is None and default_solver == DEQ_ADJOINT else 0
    return ResolvedBackward("implicit", solver=solver, abstol=babs, reltol=brel,
                     maxiters=maxiters if b.maxiters is None else b.maxiters, truncate=truncate)
