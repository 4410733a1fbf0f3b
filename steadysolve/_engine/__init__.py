"""Internal: steadysolve._engine."""
