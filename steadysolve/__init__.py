"""steadysolve: steady-state, nonlinear and fixed-point solvers on the Python array API."""

from .algorithms import Algorithm, Anderson, FixedPointIteration
from .algorithms.dynamic_ss import DynamicSS
from .algorithms.newton_krylov import NewtonKrylov
from .algorithms.broyden import Broyden
from .algorithms.newton import NewtonRaphson
from .algorithms.trust_region import TrustRegion
from .algorithms.levenberg_marquardt import LevenbergMarquardt
from .algorithms.auto import Auto
from .linear import GMRES, linear_solve
from .ode import PIController, Rodas4, Rodas5P, Rosenbrock23, Tsit5
from .ode.integrate import integrate
from .problems import FixedPointProblem, NonlinearProblem, SteadyStateProblem
from .registry import available
from .solution import ConvergenceError, LinearSolution, ODESolution, ReturnCode, Solution, Stats
from .solve import solve

__version__ = "0.1.0"

__all__ = [
    "NonlinearProblem",
    "SteadyStateProblem",
    "FixedPointProblem",
    "solve",
    "Solution",
    "Stats",
    "ReturnCode",
    "ConvergenceError",
    "Algorithm",
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
    "Auto",
    "GMRES",
    "linear_solve",
    "LinearSolution",
    "available",
    "__version__",
]
