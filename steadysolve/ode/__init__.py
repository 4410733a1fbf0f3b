"""Explicit Runge-Kutta integration used by DynamicSS (and by :func:`integrate`)."""

from .controller import PIController
from .runge_kutta import dense_eval, rk_step
from .tsit5 import TSIT5_TABLEAU, ButcherTableau, ExplicitRK, Tsit5

__all__ = ["Tsit5", "ExplicitRK", "ButcherTableau", "TSIT5_TABLEAU", "PIController", "rk_step", "dense_eval"]
