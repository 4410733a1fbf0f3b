"""Explicit Runge-Kutta integration used by DynamicSS."""
