"""Problem sets shared by the benchmark scripts and the tests.

``honesty``: the honesty matrix (every algorithm on every problem, with and without a root);
``mgh``: the 23 Moré–Garbow–Hillstrom / MINPACK-1 problems; ``bruss``: the 2-D Brusselator.
Both sides import them as ``benchmarks.problems.<set>`` from the repository root (the tests through
pytest's ``pythonpath``, the scripts by running as ``python -m benchmarks.<script>``). Modules here
import NumPy/SciPy, ``array_api_compat`` and ``steadysolve`` only, never a benchmark script or ``_common``.
"""
