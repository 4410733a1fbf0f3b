"""The one predicate that picks the small-system engine, and the algorithms that have a twin there."""

from __future__ import annotations

from .. import _backend as backend
from . import applies as _one_numpy_system
from ..algorithms.broyden import Broyden
from ..algorithms.dynamic_ss import DynamicSS
from ..algorithms.gauss_newton import GaussNewton
from ..algorithms.levenberg_marquardt import LevenbergMarquardt
from ..algorithms.newton import NewtonRaphson
from ..algorithms.newton_krylov import NewtonKrylov
from ..algorithms.trust_region import TrustRegion
from ..ode.rosenbrock import Rosenbrock
from ..ode.tsit5 import ExplicitRK
from .broyden import SmallBroyden
from .dynamic_ss import SmallDynamicSS, SmallStiffDynamicSS
from .gauss_newton import SmallGaussNewton
from .levenberg_marquardt import SmallLevenbergMarquardt
from .newton import SmallNewtonKrylov, SmallNewtonRaphson
from .trust_region import SmallTrustRegion

__all__ = ["small_twin", "applies", "sparse_problem", "decide_sparse"]

_FLOAT64 = backend.host_numpy().float64

#: the twins by the exact class of the generic algorithm (a subclass may change ``step``: it keeps its own)
_TWINS = {NewtonRaphson: SmallNewtonRaphson, NewtonKrylov: SmallNewtonKrylov, TrustRegion: SmallTrustRegion,
          LevenbergMarquardt: SmallLevenbergMarquardt, Broyden: SmallBroyden}
_JACOBIAN_TWINS = (NewtonRaphson, TrustRegion, LevenbergMarquardt, GaussNewton)
#: the twins that also take a least-squares problem (an m x n Jacobian)
_LEAST_SQUARES_TWINS = {LevenbergMarquardt: SmallLevenbergMarquardt, GaussNewton: SmallGaussNewton}


def applies(ctx) -> bool:
    """One eager float64 NumPy system: the engine's domain (its scalars are Python floats, whose arithmetic
    is float64: a float32 solve keeps a float32 clock, as the generic algorithms do)."""
    return (_one_numpy_system(ctx.xp, ctx.batch) and not ctx.traced and ctx.dtype == _FLOAT64
            and ctx.lb is None)  # bounds: the generic TrustRegion / LevenbergMarquardt honour them



def sparse_problem(ctx) -> bool:
    """Whether the solve has a sparse Jacobian: a stated pattern (``sparsity=``), or a ``jac`` that
    :func:`decide_sparse` found sparse. The sparse methods are the generic algorithms', never a twin's."""
    source = ctx.sparse_source
    if source is None:
        return False
    return source.given or (bool(source.decided) and source.decided[0] is not None)


def decide_sparse(alg, ctx, u) -> None:
    """Before a Newton-family twin could take the solve of a problem with a ``jac`` and no ``sparsity=``:
    call ``jac`` at rows ``u`` to see whether it is sparse (its value serves the first Jacobian, sparse
    or dense, so nothing is evaluated twice). Other algorithms never call ``jac`` for it."""
    source = ctx.sparse_source
    if source is not None and not source.given and not source.decided and type(alg) in _JACOBIAN_TWINS \
            and applies(ctx):
        ctx.sparse_jacobians(u)


def small_twin(alg, ctx):
    """The algorithm that runs ``alg``'s solve in context ``ctx``: its small-system twin where the engine
    applies and has one (for the Newton family: unless the problem has a sparse Jacobian), else ``alg``
    itself."""
    if not applies(ctx):
        return alg
    least_squares = ctx.kind == "least_squares"  # an m x n Jacobian: only the twins written for it
    # the time-stepping twins take sparse problems too (the Rosenbrock twin runs the sparse W-solver)
    if not least_squares and isinstance(alg, DynamicSS) and isinstance(alg.integrator, ExplicitRK):
        return SmallDynamicSS(alg)
    if not least_squares and isinstance(alg, DynamicSS) and isinstance(alg.integrator, Rosenbrock):
        return SmallStiffDynamicSS(alg)
    if sparse_problem(ctx):
        return alg
    twin = (_LEAST_SQUARES_TWINS if least_squares else _TWINS).get(type(alg))
    return alg if twin is None else twin(alg)
