"""Matrix-free linear solvers and their preconditioners; importing this package registers them by name."""

from .gmres import GMRES, linear_solve
from .precond import AMG, ILU, BlockJacobi, Jacobi, Preconditioner

__all__ = ["GMRES", "linear_solve", "Preconditioner", "Jacobi", "BlockJacobi", "ILU", "AMG"]
