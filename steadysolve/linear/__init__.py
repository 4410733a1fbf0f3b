"""Matrix-free linear solvers; importing this package registers them by name."""

from .gmres import GMRES, linear_solve

__all__ = ["GMRES", "linear_solve"]
