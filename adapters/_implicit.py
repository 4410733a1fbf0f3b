"""Framework-neutral pieces shared by the PyTorch and JAX implicit layers.

Nothing here imports PyTorch or JAX: the functions work on whatever arrays the
core works on (including JAX tracers, where ``steadysolve.solve`` switches to its
``lax.while_loop`` driver). Each function is small and documented so that both
adapters can use it without surprises.

* :func:`default_backward_solver` -- ``"gmres"`` when ``steadysolve.linear_solve``
  exists, else ``"anderson"``.
* :func:`check_backward_solver` -- validate a backward-solver name / instance early.
* :func:`solve_adjoint` -- solve ``w = vjp(w) + g`` (i.e. ``(I - J^T) w = g``) with
  GMRES through ``linear_solve`` or with any registered fixed-point/root algorithm.
* :func:`failure_message` -- the text of the warning / error of a failed solve.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, NamedTuple, Optional

import steadysolve as ss
from steadysolve.registry import resolve

__all__ = [
    "LINEAR_BACKWARD",
    "default_backward_solver",
    "check_backward_solver",
    "solve_adjoint",
    "AdjointResult",
    "failure_message",
    "check_choice",
]

#: backward-solver names that mean "a Krylov linear solve of (I - J^T) w = g"
LINEAR_BACKWARD = ("gmres",)


def check_choice(owner: str, name: str, value, choices) -> None:
    """Raise a ``ValueError`` naming the valid choices (with a close match) when ``value`` is not one."""
    if value in choices:
        return
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"{owner}: unknown {name} {value!r}{hint}; valid: {', '.join(repr(c) for c in choices)}")


def default_backward_solver() -> str:
    """``"gmres"`` when the core has ``linear_solve`` (the preferred adjoint solver), else ``"anderson"``."""
    return "gmres" if hasattr(ss, "linear_solve") else "anderson"


def _is_linear(solver) -> bool:
    """True for a linear-solver instance registered with ``kind="linear"`` (e.g. ``GMRES(restart=20)``)."""
    from steadysolve.registry import LINEAR

    return type(solver) in LINEAR.values()


def check_backward_solver(owner: str, solver) -> Any:
    """Normalise a backward-solver choice before any work.

    ``None`` -> the default; ``"gmres"`` stays a string (the adjoint tolerances are then
    passed to ``GMRES``); a linear-solver instance (``GMRES(restart=20, rtol=...)``) is kept
    as given, with its own tolerances; anything else is resolved as a nonlinear algorithm
    (unknown names raise a ``ValueError`` listing both kinds of valid names).
    """
    if solver is None:
        solver = default_backward_solver()
    if isinstance(solver, str):
        key = solver.strip().lower().replace("-", "_")
        if key in LINEAR_BACKWARD:
            if not hasattr(ss, "linear_solve"):
                raise ValueError(f"{owner}: backward_solver={solver!r} needs steadysolve.linear_solve, which this "
                                 f"version does not have; use a fixed-point algorithm such as 'anderson'")
            return key
        if key not in ss.available():
            check_choice(owner, "backward_solver", key, list(LINEAR_BACKWARD) + ss.available())
        return resolve(key)
    if _is_linear(solver):
        return solver
    try:
        return resolve(solver)
    except TypeError as e:
        raise TypeError(f"{owner}: backward_solver must be 'gmres', a GMRES instance, an algorithm name or an "
                        f"algorithm instance, got {type(solver).__name__}") from e


class AdjointResult(NamedTuple):
    """What :func:`solve_adjoint` reports, the same for GMRES and fixed-point solvers.

    ``codes``: per-element integer return codes (an array; 0 = success); ``niter``:
    iterations; ``nvjp``: products with ``J^T``; ``resid_norm``: per-element residual
    norms of ``w - J^T w - g`` (an array of shape ``(batch,)``, ``(1,)`` unbatched)
    or ``None`` when only the residual array is known; ``resid``: that array (fixed-point
    solvers) or ``None``; ``raw``: the core's own result (``Solution``/``LinearSolution``).
    """

    w: Any
    codes: Any
    niter: Any
    nvjp: Any
    resid_norm: Any
    resid: Any
    raw: Any


def solve_adjoint(vjp: Callable, g, *, solver, abstol: float, reltol: float, maxiters: int,
                  norm="max", batch_axis: Optional[int] = 0) -> AdjointResult:
    """Solve ``w = vjp(w) + g`` for ``w`` (the implicit-function-theorem adjoint).

    ``vjp(w)`` returns ``w^T J_f(z*)`` in the layout of ``g``.

    * ``solver="gmres"``: ``linear_solve`` on ``(I - J^T) w = g`` from ``w0 = 0`` with
      ``GMRES(rtol=reltol, atol=abstol, maxiters=maxiters)`` (2-norm test
      ``||g - (I - J^T) w|| <= max(abstol, reltol ||g||)``, per element);
      a GMRES instance is used as given.
    * an algorithm instance: the fixed-point problem ``w -> vjp(w) + g`` from ``w0 = g``
      with the core's test (``norm``, ``abstol``, ``reltol``); its exact Jacobian-vector
      product ``J^T v = vjp(v)`` (the map is linear) is passed along, so Newton-type
      algorithms need no finite differences.
    """
    if isinstance(solver, str) or _is_linear(solver):
        alg = ss.GMRES(rtol=reltol, atol=abstol, maxiters=maxiters) if isinstance(solver, str) else solver
        res = ss.linear_solve(lambda w: w - vjp(w), g, alg, x0=None, batch_axis=batch_axis)
        st = res.stats
        rn = st.resid_norm
        if batch_axis is None and rn is not None:
            rn = [rn]
        return AdjointResult(res.x, res.retcode_array, st.niter, st.nmatvec, rn, None, res)

    def G(w, p):
        return vjp(w) + g

    def jvp(w, v, p):
        return vjp(v)

    prob = ss.FixedPointProblem(G, g, None, jvp=jvp, vjp=None)
    sol = ss.solve(prob, solver, abstol=abstol, reltol=reltol, maxiters=maxiters, norm=norm,
                   batch_axis=batch_axis)
    # one vjp per evaluation of G, plus the exact jvps (also vjps) a Newton-type solver used
    return AdjointResult(sol.u, sol.retcode_array, sol.stats.niter, sol.stats.nf + sol.stats.njvp, None,
                         sol.resid, sol)


def failure_message(phase: str, retcode, nfailed: int, batch: int, niter, resid: float, hint: str) -> str:
    """One-line description of a failed forward/backward solve for a warning or an exception."""
    return (f"steadysolve DEQ: the {phase} solve did not converge: {retcode} ({retcode.value}); "
            f"{nfailed} of {batch} element(s) failed, worst residual norm {resid:.3e} after {niter} "
            f"iteration(s). {hint}")
