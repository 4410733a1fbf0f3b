"""``solve(..., verbose=True)``: one line per iteration, printed while the solve runs.

Eagerly the lines come from the driver's callback (``solve`` wraps the user's ``callback``); under
``jax.jit`` the JAX driver's loop body prints them with ``jax.debug.print`` when a printer is active
(``active()``, set by ``solve`` for the duration of the call, read while the body is traced). Each line:
the iteration (counted across the attempts of ``Auto``), the attempt and its algorithm, the largest
residual norm over the batch and the largest change of ``u`` in that iteration (max norm).
"""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np

__all__ = ["Printer", "active", "printing"]

_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("steadysolve_verbose", default=None)

_HEADER = f"{'iter':>6}  {'attempt':>7}  {'algorithm':<20} {'max |F|':>11}  {'max |du|':>11}"


def active():
    """The printer of the running ``solve(..., verbose=True)``, or ``None``."""
    return _ACTIVE.get()


@contextlib.contextmanager
def printing(printer):
    token = _ACTIVE.set(printer)
    try:
        yield printer
    finally:
        _ACTIVE.reset(token)


class Printer:
    """Prints the table; ``begin`` starts an attempt, calling the printer reports one iteration."""

    def __init__(self, xp, write=print):
        self.xp, self.write = xp, write
        self.attempt, self.name, self.prev = 0, "", None

    def begin(self, alg, u_start, traced: bool) -> None:
        self.attempt += 1
        self.name = getattr(alg, "name", "") or type(alg).__name__
        self.prev = None if traced else u_start
        if self.attempt == 1:
            if traced:
                import jax

                jax.debug.print(_HEADER)
            else:
                self.write(_HEADER)

    def attempt_callback(self, alg, u_start, traced: bool, before: int, callback):
        """Start an attempt (``before``: iterations of the attempts before it) and return the eager
        driver's callback for it: this printer, then the user's ``callback`` (already offset)."""
        self.begin(alg, u_start, traced)
        if traced:
            return callback

        def both(it, u, fn):
            self(before + it, u, fn)
            if callback is not None:
                callback(it, u, fn)

        return both

    def __call__(self, it, u, fn) -> None:
        """The eager driver's callback: iteration ``it``, iterate ``u`` (user's shape), residual norm(s)."""
        xp = self.xp
        du = "-" if self.prev is None else f"{float(xp.max(xp.abs(u - self.prev))):.3e}"
        self.prev = u
        self.write(f"{it:>6}  {self.attempt:>7}  {self.name:<20} {float(np.max(fn)):>11.3e}  {du:>11}")

    def traced_line(self, it, fn, du) -> None:
        """The same line from inside ``lax.while_loop`` (``du``: ``new.u - u`` in the driver's rows)."""
        import jax
        import jax.numpy as jnp

        fmt = f"{{it:>6}}  {self.attempt:>7}  {self.name:<20} {{f:>11.3e}}  {{du:>11.3e}}"
        jax.debug.print(fmt, it=it, f=jnp.max(fn), du=jnp.max(jnp.abs(du)))

    def result(self, sol) -> None:
        self.write(f"{'':>6}  -> {sol!r}")
