"""The base of the engine's twins of generic algorithms."""

from __future__ import annotations

from dataclasses import dataclass

from ..algorithms.base import Algorithm

__all__ = ["Twin"]


@dataclass(frozen=True)
class Twin(Algorithm):
    """A twin stands in for the generic algorithm ``alg``, whose options it runs: the verdict's patience,
    the names of the statistics and the failure hints are ``alg``'s."""

    alg: Algorithm

    @property
    def stall_patience(self):
        return self.alg.stall_patience

    def extra_stats(self, state) -> dict:
        return self.alg.extra_stats(state)

    def failure_hint(self, state, codes):
        return self.alg.failure_hint(state, codes)
