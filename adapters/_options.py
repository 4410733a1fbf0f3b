"""The validated options of an implicit layer, shared by the PyTorch and JAX adapters:
``LayerOptions`` (forward solver, tolerances, norm, batch axis, backward, budget), built by
``layer_options`` with clear errors before any work. The backward objects live in ``backward.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Optional

import steadysolve as ss
from steadysolve._checks import check_batch_axis, check_int, check_tol, reject_unknown
from steadysolve.registry import resolve
from steadysolve.termination import get_norm

from ._budget import _check_budget, budgeted
from .backward import DEFAULT_ADJOINT, ResolvedBackward, resolve_backward

#: what a failed forward / adjoint solve of a layer does (both adapters), and the gradient a failed
#: fixed point gets (the implicit one at the returned iterate, or the Jacobian-free one)
OnFailure = Literal["warn", "warn_always", "raise", "ignore"]
FailedGrad = Literal["jfb", "implicit"]

__all__ = ["OnFailure", "FailedGrad", "LayerOptions", "layer_options", "deq_chain", "check_layer_batch_axis", "sample_bounds", "segment", "cap_of"]


@dataclass(frozen=True)
class LayerOptions:
    """The validated options of one implicit layer (hashable: JAX keeps it static)."""

    solver: Any
    abstol: float
    reltol: float
    maxiters: int
    norm: Any
    batch_axis: Optional[int]
    backward: ResolvedBackward
    max_nfe: Optional[int] = None

    def solve_kwargs(self) -> dict:
        return dict(abstol=self.abstol, reltol=self.reltol, maxiters=self.maxiters, norm=self.norm,
                    batch_axis=self.batch_axis)

    def budgeted(self, n: int) -> "LayerOptions":
        """The options with ``max_nfe`` mapped onto the solver for a state of ``n`` entries per element."""
        if self.max_nfe is None:  # an iteration cap: the solver sized for it (same iterates)
            size = getattr(self.solver, "for_iterations", None)  # a Polyalgorithm sizes its attempts itself
            alg = self.solver if size is None else size(self.maxiters)
            return self if alg is self.solver else dataclasses.replace(self, solver=alg)
        alg, maxiters = budgeted("DEQ", self.solver, self.max_nfe, n, self.reltol or self.abstol)
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
                  max_nfe: Optional[int] = None, default_maxiters: int = 50, deq: bool = False,
                  default_adjoint: str = DEFAULT_ADJOINT) -> LayerOptions:
    """Validate a layer's options before any work. Tolerances: ``defaults = (abstol, reltol)`` when
    neither is given; when exactly one is, the other is 0 (a tolerance set binds). ``deq``: a fixed-point
    layer, where ``"auto"`` is :func:`deq_chain`. ``default_adjoint``: the solver of ``Implicit(solver=None)``."""
    if unknown:
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
    bwd = resolve_backward(owner, backward, abstol or 0.0, reltol or 0.0, maxiters, default_adjoint)
    if max_nfe is not None:  # the backward's default cap: the same budget in products with J^T
        bwd = bwd._replace(maxiters=max_nfe) if bwd.maxiters == maxiters else bwd
    return LayerOptions(alg, abstol, reltol, maxiters, norm, batch_axis, bwd, max_nfe)


def check_layer_batch_axis(owner: str, opts: LayerOptions, shape) -> LayerOptions:
    """Normalise the batch axis against the state's shape (clear error when out of range)."""
    return opts.with_batch_axis(check_batch_axis(owner, opts.batch_axis, shape, "z"))


def sample_bounds(owner: str, n_states, indexing, cap: int) -> Optional[tuple]:
    """Where the sampled states of fixed-point correction end, in units of the cap (``maxiters``, or
    ``max_nfe``), the last at the cap: ``n_states`` evenly spaced (torchdeq's rule), or ``indexing``
    and the cap. ``None``: one state, the layer returns a tensor."""
    n_states = check_int(owner, "n_states", n_states, 1)
    if indexing is not None:
        if n_states > 1:
            raise TypeError(f"{owner}: give either n_states= (evenly spaced states) or indexing= (where they end), "
                            "not both")
        if isinstance(indexing, (str, bytes)) or not hasattr(indexing, "__iter__"):
            raise TypeError(f"{owner}: indexing must be a list of ints, got {type(indexing).__name__}")
        idx = sorted({check_int(owner, "indexing entry", i, 1) for i in indexing})
        if idx and idx[-1] >= cap:
            raise ValueError(f"{owner}: indexing entries must lie below the cap ({cap}: the last state is at the "
                             f"cap), got {idx[-1]}")
        return tuple(idx) + (cap,)
    if n_states == 1:
        return None
    if n_states > cap:
        raise ValueError(f"{owner}: n_states={n_states} exceeds the cap ({cap}); each state needs its own iterations")
    step = cap // n_states
    return tuple(cap - (n_states - k - 1) * step for k in range(n_states))


def segment(opts: LayerOptions, length: int) -> LayerOptions:
    """The layer's options for one segment of ``length`` units of its cap."""
    if opts.max_nfe is not None:
        return dataclasses.replace(opts, max_nfe=length)
    return dataclasses.replace(opts, maxiters=length)


def cap_of(opts: LayerOptions) -> int:
    """The layer's cap: ``max_nfe`` when given, else ``maxiters``."""
    return opts.max_nfe if opts.max_nfe is not None else opts.maxiters
