"""The small-system engine: low-overhead twins of the generic algorithms for ONE NumPy system.

A solve of one system on NumPy holds its per-element scalars (a time, a step size, an error norm)
on the host anyway; running their arithmetic on Python floats instead of ``(1,)`` arrays removes
most of a step's fixed cost. Such twins live here, as a separate family of short files (the
pattern of SciML's SimpleNonlinearSolve), never as branches inside ``algorithms/``: ``solve()``
picks a twin once, by one predicate (:func:`steadysolve._small.choose.small_twin`), and each twin
reuses its generic algorithm's arithmetic, written once against a namespace (Python floats here:
:mod:`steadysolve._small.floats`). A parity suite checks every twin against its generic algorithm
(same codes and counts, states equal to rounding).
"""
