"""steadysolve: steady-state, nonlinear and fixed-point solvers on the Python array API."""

import logging as _logging

from .algorithms import Algorithm, Anderson, FixedPointIteration, Polyalgorithm
from .algorithms.dynamic_ss import DynamicSS
from .algorithms.newton_krylov import NewtonKrylov
from .algorithms.broyden import Broyden
from .algorithms.newton import NewtonRaphson
from .algorithms.trust_region import TrustRegion
from .algorithms.levenberg_marquardt import LevenbergMarquardt
from .algorithms.gauss_newton import GaussNewton
from .algorithms.pseudo_transient import PseudoTransient
from .algorithms.auto import Auto
from .algorithms.bracketing import Bisection, Ridder
from .algorithms.brent import Brent
from .algorithms.itp import ITP
from .linear import AMG, GMRES, ILU, BlockJacobi, Jacobi, Preconditioner, linear_solve
from .ode import PIController, Rodas4, Rodas5P, Rosenbrock23, Tsit5
from .ode.integrate import integrate
from .interval import IntervalNonlinearProblem
from .problems import FixedPointProblem, NonlinearLeastSquaresProblem, NonlinearProblem, SteadyStateProblem
from .registry import available
from .solution import (ConvergenceError, ConvergenceWarning, LinearSolution, ODESolution, Result, ReturnCode, Solution,
                       Stats)
from .solve import solve

__version__ = "0.1.0"

# The library's logger; like every library it only adds a NullHandler, and the application decides
# what is shown (logging.basicConfig(level=logging.DEBUG), or a handler on "steadysolve").
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "NonlinearProblem",
    "SteadyStateProblem",
    "FixedPointProblem",
    "IntervalNonlinearProblem",
    "NonlinearLeastSquaresProblem",
    "solve",
    "Solution",
    "Stats",
    "ReturnCode",
    "Result",
    "ConvergenceError",
    "ConvergenceWarning",
    "Algorithm",
    "Polyalgorithm",
    "Anderson",
    "FixedPointIteration",
    "DynamicSS",
    "Tsit5",
    "Rosenbrock23",
    "Rodas4",
    "Rodas5P",
    "PIController",
    "integrate",
    "ODESolution",
    "NewtonKrylov",
    "Broyden",
    "NewtonRaphson",
    "TrustRegion",
    "LevenbergMarquardt",
    "GaussNewton",
    "PseudoTransient",
    "Auto",
    "ITP",
    "Brent",
    "Bisection",
    "Ridder",
    "GMRES",
    "linear_solve",
    "Preconditioner",
    "Jacobi",
    "BlockJacobi",
    "ILU",
    "AMG",
    "LinearSolution",
    "available",
    "__version__",
]
