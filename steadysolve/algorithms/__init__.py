"""Nonlinear algorithms; importing this package registers them by name."""

from .anderson import Anderson
from .base import Algorithm, Context
from .fixed_point import FixedPointIteration

__all__ = ["Algorithm", "Context", "Anderson", "FixedPointIteration"]
