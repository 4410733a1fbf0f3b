"""The DEQ work budget ``max_nfe``: evaluations of ``f`` (JVPs counted), the same for every
solver, mapped onto each solver's iteration limits (used by ``_options.LayerOptions.budgeted``)
through what each algorithm states: ``setup_cost()``, ``cost(n)`` per iteration and
``under_budget(reltol)``, its configuration for a budget."""

from __future__ import annotations

__all__ = ["budgeted"]


def _check_budget(owner: str, alg, max_nfe: int, n: int = 1) -> None:
    need = alg.setup_cost() + alg.under_budget().cost(n)
    if max_nfe < need:
        name = getattr(alg, "name", "") or type(alg).__name__
        raise ValueError(f"{owner}: max_nfe={max_nfe} is too small for solver {name!r}: one iteration needs "
                         f"{need} evaluations of f (the initial one included); raise max_nfe to at least {need} "
                         f"or pick a cheaper solver (anderson, broyden, fixed_point cost 1 per iteration)")


def budgeted(owner: str, alg, max_nfe: int, n: int = 1, reltol: float = 0.0):
    """``(algorithm, maxiters)`` so that a solve spends at most ``max_nfe`` evaluations of ``f``
    (JVPs counted, the initial evaluation included) for a state of ``n`` entries per element.

    anderson / broyden / fixed_point: one evaluation per iteration; newton_krylov: a Newton
    iteration of one evaluation and 4 GMRES steps (``NewtonKrylov.under_budget``); newton: ``1 + n``;
    dynamic_ss: the integrator's new evaluations per step (Tsit5: 6); trust_region and
    levenberg_marquardt: ``1 + n`` as newton (a dense Jacobian after each accepted step);
    pseudo_transient: ``1 + n`` with its dense Jacobian, else one evaluation and one GMRES cycle.
    """
    from steadysolve import Polyalgorithm

    if isinstance(alg, Polyalgorithm):
        algs = [a for a, _ in alg.chain("fixed_point", n)]
        if all(a.setup_cost() == 1 and a.cost(n) == 1 for a in algs):
            # one evaluation per iteration throughout (the DEQ chain): the chain's shared iteration
            # budget is the evaluation budget, the restarts re-use f at their start (no evaluation)
            return alg, max(1, max_nfe - 1)
        alg = algs[0]  # iterations of different costs: the budget holds for one solver, the chain's first
    _check_budget(owner, alg, max_nfe, n)
    alg = alg.under_budget(reltol)
    maxiters = max(1, (max_nfe - alg.setup_cost()) // alg.cost(n))
    size = getattr(alg, "for_iterations", None)
    return (alg if size is None else size(maxiters)), maxiters
