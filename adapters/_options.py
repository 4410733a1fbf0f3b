"""The configuration of an implicit layer, shared by the PyTorch and JAX adapters.

* ``Implicit`` and ``Phantom`` -- the backward pass as a small configuration
  object (``backward="implicit" | "phantom"`` are shorthands for their defaults);
* ``LayerOptions`` -- the validated options of one layer (forward solver, tolerances,
  norm, batch axis, backward), built by ``layer_options`` with clear errors before any work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import steadysolve as ss
from steadysolve._checks import (check_batch_axis, check_choice, check_int, check_positive, check_tol, reject_unknown,
                                 renamed_options)
from steadysolve.registry import LINEAR, resolve
from steadysolve.termination import get_norm

from ._budget import _check_budget, budgeted, nfe_per_iteration  # noqa: F401  (re-exported)

__all__ = ["Implicit", "Phantom", "LayerOptions", "layer_options", "deq_chain", "check_layer_batch_axis",
           "budgeted", "nfe_per_iteration"]


# ---------------------------------------------------------------------------------------
# The backward as an object
# ---------------------------------------------------------------------------------------

@renamed_options(rtol="reltol", atol="abstol", max_iter="maxiters")
@dataclass(frozen=True)
class Implicit:
    """Exact gradient by the implicit function theorem: one adjoint solve per backward pass.

    For a DEQ ``z* = f(z*, x)`` the incoming gradient ``g`` becomes ``w = J_f(z*)^T w + g``.

    Parameters
    ----------
    solver
        ``"gmres"`` (the default; a Krylov solve of ``(I - J^T) w = g``), a
        ``steadysolve.GMRES`` instance, or any registered algorithm name / instance
        (``"anderson"``: the adjoint as the fixed point ``w -> J^T w + g``).
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

    solver: Any = "gmres"
    abstol: Optional[float] = None
    reltol: Optional[float] = None
    maxiters: Optional[int] = None

    def __post_init__(self):
        check_tol("Implicit", "abstol", self.abstol)
        check_tol("Implicit", "reltol", self.reltol)
        check_int("Implicit", "maxiters", self.maxiters, 1, allow_none=True)
        _backward_solver("Implicit", self.solver)  # unknown names fail here, before any work


@renamed_options(phantom_steps="steps", phantom_damping="damping")
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


class _Backward(NamedTuple):
    """A resolved backward configuration (what the adapters act on)."""

    mode: str  # "implicit" | "phantom"
    solver: Any = None  # GMRES or an Algorithm instance (implicit)
    abstol: float = 0.0
    reltol: float = 0.0
    maxiters: Optional[int] = 1
    steps: int = 0
    damping: float = 1.0

    @property
    def linear(self) -> bool:
        return type(self.solver) in LINEAR.values()


def _resolve_backward(owner, backward, abstol: float, reltol: float, maxiters: int) -> _Backward:
    if isinstance(backward, str):
        check_choice(owner, "backward", backward, ("implicit", "phantom"))
        backward = Implicit() if backward == "implicit" else Phantom()
    if isinstance(backward, Phantom):
        return _Backward("phantom", steps=backward.steps, damping=backward.damping)
    if not isinstance(backward, Implicit):
        raise TypeError(f"{owner}: backward must be 'implicit', 'phantom', an Implicit(...) or a Phantom(...), "
                        f"got {type(backward).__name__}")
    b = backward
    solver = _backward_solver(owner, b.solver)
    if type(solver) in LINEAR.values() and not isinstance(b.solver, str):
        # a configured GMRES instance keeps its own settings where the Implicit object sets none
        return _Backward("implicit", solver=solver,
                         abstol=solver.abstol if b.abstol is None else float(b.abstol),
                         reltol=solver.reltol if b.reltol is None else float(b.reltol),
                         maxiters=solver.maxiters if b.maxiters is None else b.maxiters)
    if b.abstol is None and b.reltol is None:
        babs, brel = 0.0, float(reltol if reltol > 0 else abstol)
    else:  # a tolerance set binds: the one not set is 0
        babs, brel = float(b.abstol or 0.0), float(b.reltol or 0.0)
    return _Backward("implicit", solver=solver, abstol=babs, reltol=brel,
                     maxiters=maxiters if b.maxiters is None else b.maxiters)


# ---------------------------------------------------------------------------------------
# Layer options
# ---------------------------------------------------------------------------------------

#: old flat spellings and where they went
_MOVED = {
    "backward_solver": "backward=Implicit(solver=...)",
    "backward_abstol": "backward=Implicit(abstol=...)",
    "backward_reltol": "backward=Implicit(reltol=...)",
    "backward_maxiters": "backward=Implicit(maxiters=...)",
    "phantom_steps": "backward=Phantom(steps=...)",
    "phantom_damping": "backward=Phantom(damping=...)",
}


@dataclass(frozen=True)
class LayerOptions:
    """The validated options of one implicit layer (hashable: JAX keeps it static)."""

    solver: Any
    abstol: float
    reltol: float
    maxiters: int
    norm: Any
    batch_axis: Optional[int]
    backward: _Backward
    max_nfe: Optional[int] = None

    def solve_kwargs(self) -> dict:
        return dict(abstol=self.abstol, reltol=self.reltol, maxiters=self.maxiters, norm=self.norm,
                    batch_axis=self.batch_axis)

    def budgeted(self, n: int) -> "LayerOptions":
        """The options with ``max_nfe`` mapped onto the solver for a state of ``n`` entries per element."""
        if self.max_nfe is None:
            return self
        alg, maxiters = budgeted("DEQ", self.solver, self.max_nfe, n, self.reltol or 0.0)
        return dataclasses.replace(self, solver=alg, maxiters=maxiters)

    def with_batch_axis(self, axis: Optional[int]) -> "LayerOptions":
        return dataclasses.replace(self, batch_axis=axis)


def deq_chain(alg):
    """``"auto"`` in a DEQ (a fixed-point layer): Anderson, then Broyden from its best iterate, both one
    evaluation of ``f`` per iteration, so that the chain's shared ``maxiters`` is also a budget of
    ``maxiters + 1`` evaluations. The solve's own fixed-point chain falls back to Newton-type methods
    whose iterations cost a Jacobian or a Krylov solve each (hundreds of evaluations of a wide cell)."""
    from steadysolve.algorithms.auto import Auto

    if type(alg) is Auto and not alg.algs:
        return dataclasses.replace(alg, algs=(ss.Anderson(), ss.Broyden()))
    return alg


def layer_options(owner: str, *, solver, abstol, reltol, maxiters, norm, batch_axis, backward,
                  defaults: tuple = (None, None), unknown: Optional[dict] = None, valid=(),
                  max_nfe: Optional[int] = None, default_maxiters: int = 50, deq: bool = False) -> LayerOptions:
    """Validate a layer's options before any work. Tolerances: ``defaults = (abstol, reltol)`` when
    neither is given; when exactly one is, the other is 0 (a tolerance set binds). ``deq``: a fixed-point
    layer, where ``"auto"`` is :func:`deq_chain`."""
    if unknown:
        moved = [k for k in unknown if k in _MOVED]
        if moved:
            raise TypeError(f"{owner}: the option {moved[0]!r} moved into the backward object: write "
                            f"{_MOVED[moved[0]]} (from steadysolve.adapters import Implicit, Phantom)")
        reject_unknown(owner, unknown, valid, {"tol": "abstol' or 'reltol", "max_iter": "maxiters",
                                               "f_tol": "abstol", "rtol": "reltol", "atol": "abstol"})
    try:
        alg = resolve(solver)
    except TypeError as e:
        raise TypeError(f"{owner}: solver must be an algorithm name ({', '.join(ss.available())}) or an "
                        f"algorithm instance such as steadysolve.Anderson(memory=5), got "
                        f"{type(solver).__name__}") from e
    if deq:
        alg = deq_chain(alg)
    abstol = check_tol(owner, "abstol", abstol)
    reltol = check_tol(owner, "reltol", reltol)
    if abstol is None and reltol is None:
        abstol, reltol = defaults
    else:
        abstol, reltol = abstol or 0.0, reltol or 0.0
    if max_nfe is not None:
        max_nfe = check_int(owner, "max_nfe", max_nfe, 1)
        if maxiters is not None:
            raise TypeError(f"{owner}: give either max_nfe= (a budget of evaluations of f, counting JVPs/VJPs, "
                            f"mapped onto each solver's iteration limits) or maxiters=, not both")
        _check_budget(owner, alg, max_nfe)
    maxiters = default_maxiters if maxiters is None else check_int(owner, "maxiters", maxiters, 1)
    get_norm(norm)  # raises on an unknown norm
    if batch_axis is not None:
        check_int(owner, "batch_axis", batch_axis, minimum=None)
    bwd = _resolve_backward(owner, backward, abstol or 0.0, reltol or 0.0, maxiters)
    if max_nfe is not None:  # the backward's default cap: the same budget in products with J^T
        bwd = bwd._replace(maxiters=max_nfe) if bwd.maxiters == maxiters else bwd
    return LayerOptions(alg, abstol, reltol, maxiters, norm, batch_axis, bwd, max_nfe)


def check_layer_batch_axis(owner: str, opts: LayerOptions, shape) -> LayerOptions:
    """Normalise the batch axis against the state's shape (clear error when out of range)."""
    return opts.with_batch_axis(check_batch_axis(owner, opts.batch_axis, shape, "z"))

