"""Time integrators used by DynamicSS (and by :func:`integrate`): explicit Runge-Kutta pairs and
linearly implicit Rosenbrock pairs for stiff systems."""

from ._wsolve import DenseLU, SparseLU, SparseRows
from .controller import PIController
from .rosenbrock import Rodas4, Rodas5P, Rosenbrock, Rosenbrock23, RosenbrockTableau
from .runge_kutta import dense_eval, rk_step
from .tsit5 import TSIT5_TABLEAU, ButcherTableau, ExplicitRK, Tsit5

__all__ = ["Tsit5", "ExplicitRK", "ButcherTableau", "TSIT5_TABLEAU", "PIController", "rk_step", "dense_eval",
           "Rosenbrock", "RosenbrockTableau", "Rosenbrock23", "Rodas4", "Rodas5P", "DenseLU",
           "SparseLU", "SparseRows"]
