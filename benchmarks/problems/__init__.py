"""Problem sets shared by the benchmark scripts and the tests.

A package (not a script), so tests import it as ``benchmarks.problems.bruss`` from the
repository root (``python -m pytest`` puts the root on ``sys.path``) and scripts run from
``benchmarks/`` import it as ``problems.bruss``. Modules here import NumPy/SciPy and
``steadysolve`` only, never a benchmark script or ``_common``.
"""
