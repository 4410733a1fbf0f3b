"""The DEQ work budget ``max_nfe``: evaluations of ``f`` (JVPs counted), the same for every
solver, mapped onto each solver's iteration limits (used by ``_options.LayerOptions.budgeted``)."""

from __future__ import annotations

import dataclasses

__all__ = ["budgeted", "BUDGET_KRYLOV"]

# ---------------------------------------------------------------------------------------
# A work budget in evaluations of f (counting JVPs / VJPs), the same for every solver
# ---------------------------------------------------------------------------------------

#: Krylov steps per Newton iteration under a budget (an inexact Newton step; DEQ tolerances are loose)
BUDGET_KRYLOV = 4


def _setup_nfe(alg) -> int:
    """Evaluations before the first iteration: ``f(z0)``, plus dynamic_ss's automatic first step."""
    from steadysolve.algorithms.dynamic_ss import DynamicSS

    return 2 if isinstance(alg, DynamicSS) and alg.dt0 is None else 1


def _budget_alg(alg, reltol: float = 0.0):
    """The solver configured for a budget: Newton-Krylov gets a short inner solve, no recycling;
    dynamic_ss controls its local error at the layer's tolerance (not a tenth of it): a DEQ
    needs the steady state, not an accurate transient."""
    from steadysolve.algorithms.dynamic_ss import DynamicSS
    from steadysolve.algorithms.newton_krylov import NewtonKrylov

    if isinstance(alg, NewtonKrylov) and alg.linsolve.maxiters is None:
        ls = dataclasses.replace(alg.linsolve, restart=BUDGET_KRYLOV, maxiters=BUDGET_KRYLOV)
        return dataclasses.replace(alg, linsolve=ls, recycle=0)
    if isinstance(alg, DynamicSS) and alg.controller.reltol is None and alg.controller.abstol is None and reltol > 0:
        # a local error of 10 x reltol and a unit first step (which also saves one evaluation) reach a
        # far smaller residual within a DEQ budget than the default control (docs/benchmarks.md)
        ctl = dataclasses.replace(alg.controller, reltol=10 * reltol, abstol=10 * reltol)
        return dataclasses.replace(alg, controller=ctl, dt0=1.0 if alg.dt0 is None else alg.dt0)
    return alg


def _check_budget(owner: str, alg, max_nfe: int, n: int = 1) -> None:
    need = _setup_nfe(alg) + _budget_alg(alg).cost(n)
    if max_nfe < need:
        name = getattr(alg, "name", "") or type(alg).__name__
        raise ValueError(f"{owner}: max_nfe={max_nfe} is too small for solver {name!r}: one iteration needs "
                         f"{need} evaluations of f (the initial one included); raise max_nfe to at least {need} "
                         f"or pick a cheaper solver (anderson, broyden, fixed_point cost 1 per iteration)")


def budgeted(owner: str, alg, max_nfe: int, n: int = 1, reltol: float = 0.0):
    """``(algorithm, maxiters)`` so that a solve spends at most ``max_nfe`` evaluations of ``f``
    (JVPs counted, the initial evaluation included) for a state of ``n`` entries per element.

    anderson / broyden / fixed_point: one evaluation per iteration; newton_krylov: a Newton
    iteration of ``1 + BUDGET_KRYLOV`` (one evaluation and the GMRES steps); newton: ``1 + n``;
    dynamic_ss: the integrator's new evaluations per step (Tsit5: 6); trust_region and
    levenberg_marquardt: ``1 + n`` as newton (a dense Jacobian after each accepted step);
    pseudo_transient: ``1 + n`` with its dense Jacobian, else one evaluation and one GMRES cycle.
    """
    from steadysolve.algorithms.auto import Auto

    if isinstance(alg, Auto):
        algs = [a for a, _ in alg.chain("fixed_point", n)]
        if all(_setup_nfe(a) == 1 and a.cost(n) == 1 for a in algs):
            # one evaluation per iteration throughout (the DEQ chain): the chain's shared iteration
            # budget is the evaluation budget, the restarts re-use f at their start (no evaluation)
            return alg, max(1, max_nfe - 1)
        alg = algs[0]  # iterations of different costs: the budget holds for one solver, the chain's first
    _check_budget(owner, alg, max_nfe, n)
    alg = _budget_alg(alg, reltol)
    setup = _setup_nfe(alg)
    return alg, max(1, (max_nfe - setup) // alg.cost(n))
