"""Sparse Jacobians: patterns, column colouring, assembly from one product per colour.

Building blocks for the sparse methods (internal: the public surface is the problems'
``sparsity=`` and ``jac=``):

* :class:`Pattern`, :func:`as_pattern` (``_pattern``): what ``sparsity=`` accepts, normalised and checked;
* :func:`colour_columns` (``_colour``): columns of one colour share no row;
* :class:`ColumnGroups` (``_assemble``): the Jacobian's stored entries from one finite difference,
  JVP or ``jax.jvp`` per colour, and the library's sparse matrix from them;
* :func:`check_sparse_jacobian`, :func:`values_on` (``_jacobian``): a user's sparse ``jac``
  checked (library, shape, dtype) and read onto a pattern (nonzeros outside it reported);
* :class:`SparseJacobians` (``_source``): one solve's residual Jacobian at a point as values on a
  pattern (the problem's sparse ``jac``, else colouring): what every sparse method asks
  (``ctx.sparse_jacobians()``);
* :func:`detect_jax` (``_detect``): the pattern of a JAX function from its jaxpr;
* :func:`problem_sparsity`, :func:`residual_pattern` (``_problem``): a problem's ``sparsity=``
  checked against ``u0``, then bound to one element's size at solve time.

Sparse factorisations and least squares live in :mod:`steadysolve.linear.sparse`.
"""

from ._assemble import ColumnGroups, library_matrices
from ._colour import colour_columns, is_valid_colouring
from ._detect import detect_jax
from ._formats import sparse_library
from ._jacobian import check_sparse_jacobian, dense_jacobian, is_sparse_jacobian, minus_identity, values_on
from ._pattern import Pattern, as_pattern
from ._problem import IndexPairs, least_squares_sparsity, problem_sparsity, residual_pattern
from ._source import SparseJacobians, same_rows, sparse_jacobians

__all__ = ["Pattern", "as_pattern", "colour_columns", "is_valid_colouring", "ColumnGroups", "check_sparse_jacobian",
           "values_on", "minus_identity", "sparse_library", "detect_jax", "problem_sparsity", "residual_pattern",
           "IndexPairs", "dense_jacobian", "is_sparse_jacobian", "library_matrices", "SparseJacobians",
           "sparse_jacobians", "same_rows", "least_squares_sparsity"]
