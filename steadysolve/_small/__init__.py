"""The small-system engine: the low-overhead solvers for ONE eager NumPy system.

A solve of one system on NumPy spends most of its time on the fixed cost of array calls (a
microsecond each, whatever the size) rather than on arithmetic. The solvers of this engine keep
their scalars as Python floats and their few vectors as host arrays, and run the same algorithm
as the generic one (the shared arithmetic, such as the Givens update, is written once against a
namespace and imported from the generic kernel, or against the per-element namespace of Python floats,
:mod:`steadysolve._small.floats`). The engine is chosen by :func:`applies`, never by branches inside
the generic algorithms (SciML's SimpleNonlinearSolve pattern): ``solve()`` swaps an algorithm for
its twin once (:func:`steadysolve._small.choose.small_twin`), and the linear layer picks the
one-system GMRES by the same predicate. A parity suite checks each solver here against its generic
twin (identical return codes and counts, iterates equal to rounding).
"""

from __future__ import annotations

from .. import _backend as backend

__all__ = ["applies"]


def applies(xp, batch: int) -> bool:
    """The one predicate: ONE system (a batch of one) of NumPy arrays, so eager and on the host
    (:func:`steadysolve._backend.one_host_system`)."""
    return backend.one_host_system(xp, batch)
