"""Matrix-free linear solvers; importing this package registers them by name."""
