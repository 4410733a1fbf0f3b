"""Nonlinear algorithms; importing this package registers them by name."""

from .anderson import Anderson
from .base import Algorithm, Context, Polyalgorithm
from .dynamic_ss import DynamicSS
from .fixed_point import FixedPointIteration
from .newton_krylov import NewtonKrylov
from .broyden import Broyden
from .newton import NewtonRaphson
from .trust_region import TrustRegion
from .levenberg_marquardt import LevenbergMarquardt
from .gauss_newton import GaussNewton
from .pseudo_transient import PseudoTransient
from .auto import Auto
from .bracketing import Bisection, Ridder
from .brent import Brent
from .itp import ITP

__all__ = ["Algorithm", "Polyalgorithm", "Context", "Anderson", "FixedPointIteration", "DynamicSS", "NewtonKrylov", "Broyden", "NewtonRaphson",
           "TrustRegion", "LevenbergMarquardt", "GaussNewton", "PseudoTransient", "Auto", "ITP", "Brent", "Bisection", "Ridder"]
