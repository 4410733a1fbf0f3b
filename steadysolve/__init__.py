"""steadysolve: steady-state, nonlinear and fixed-point solvers on the Python array API."""

from .algorithms import Algorithm, Anderson, FixedPointIteration
from .problems import FixedPointProblem, NonlinearProblem, SteadyStateProblem
from .registry import available
from .solution import ConvergenceError, ReturnCode, Solution, Stats
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
    "available",
    "__version__",
]
