"""Benchmark scripts (run from the repository root as ``python -m benchmarks.<script>``) and the problem
sets they share with the tests (``benchmarks.problems``). Not part of the installed package."""
