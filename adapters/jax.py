"""JAX adapter: differentiable fixed points, roots and steady states (implicit layers).

``fixed_point(f, z0, *args)`` finds ``z* = f(z*, *args)``; ``root(f, u0, *args)`` finds
``f(u*, *args) = 0``; ``steady_state(f, u0, *args)`` the steady state of ``du/dt = f(u, *args)``.
All three run any registered ``steadysolve`` algorithm through the core's ``lax.while_loop``
driver and return ``(solution, SolveStats)``; they compose with ``jax.jit``, ``jax.vmap``,
``jax.grad`` / ``jax.jvp`` (forward and reverse mode) and ``lax.scan``, without host callbacks.

Derivatives (``backward=Implicit(...)``, the default): the solve is a ``jax.custom_jvp``. With
``F`` the residual and ``z*`` the solution, ``J_F(z*) dz = -F_p dp``; the tangent rule
linearises ``F`` once at ``z*`` (``jax.linearize``, no dense Jacobian) and solves that system
with ``jax.lax.custom_linear_solve`` through ``adapters/_implicit.adjoint_solve`` (GMRES or any
registered algorithm), whose transpose JAX uses for reverse mode. ``backward=Phantom(...)``
unrolls damped steps from ``z*`` instead (fixed points only). Gradients flow to every
floating-point array in ``args`` (pytrees, Equinox modules, closed-over tracers); integer
arrays and non-array leaves are constants; the initial guess gets a zero derivative.

Failures: ``stats.retcode_array`` holds the integer codes (valid under ``jit``/``vmap``);
``throw=True`` raises instead (eagerly ``steadysolve.ConvergenceError``; under ``jax.jit`` an
``equinox.error_if`` runtime error, also for the adjoint solve). This module is glue only.
"""

from __future__ import annotations

from typing import Any, Optional

import jax.numpy as jnp

from steadysolve._checks import check_callable, reject_unknown
from steadysolve.registry import resolve

from ._implicit import SolveStats, explained
from ._jax_solve import OPTIONS, implicit
from ._options import Implicit, Phantom
from ._structure import is_structured, tree_map

__all__ = ["fixed_point", "root", "steady_state", "SolveStats", "DEQ", "MultiScaleDEQ", "MultiScaleSkipDEQ",
           "Implicit", "Phantom"]

try:  # pragma: no cover - equinox is part of the jax extra
    import equinox as eqx

    from ._jax_multiscale import MultiScaleDEQ, MultiScaleSkipDEQ
except ImportError:  # pragma: no cover
    eqx = None

_OPTIONS = OPTIONS


_DOC_COMMON = """
    Keyword arguments
    -----------------
    solver : any registered algorithm name (``steadysolve.available()``) or instance.
    abstol, reltol : success when ``norm(resid) <= abstol`` or ``<= reltol * norm(u)``
        (per element with ``batch_axis``); default ``eps ** 0.8`` of the dtype.
    maxiters : iteration cap of the forward solve (default 1000).
    max_nfe : instead of ``maxiters``, a work budget in evaluations of ``f`` counting JVPs, the same
        for every solver (as in the torch ``DEQ``); also caps the adjoint solve.
    norm : ``"max"`` (default), ``"l2"``, ``"rms"`` or ``callable((B, n)) -> (B,)``.
    batch_axis : axis of the initial guess indexing independent problems: each element gets its
        own convergence test and return code, is frozen once converged, and the
        implicit-differentiation solve is per element too. Under ``jax.vmap`` leave it ``None``.
    throw : raise on failure instead of only reporting it in the stats (eagerly
        ``steadysolve.ConvergenceError``; under ``jit`` an ``equinox.error_if`` runtime error).
    backward : ``"implicit"`` / ``Implicit(solver="gmres" | any algorithm, abstol=, reltol=,
        maxiters=)`` (default) or ``"phantom"`` / ``Phantom(steps=, damping=)`` (fixed points only).

    The initial guess may be a tuple, list or dict of arrays (a structured state, one dtype); ``f``
    gets and must return the same structure; the solver sees one ``(batch, n)`` row array.

    Returns
    -------
    ``(solution, SolveStats)``: the solution has the shape (or structure) of the initial guess.
    """


def fixed_point(f, z0, *args, solver="anderson", abstol: Optional[float] = None, reltol: Optional[float] = None,
                maxiters: Optional[int] = None, norm="max", batch_axis: Optional[int] = None, throw: bool = False,
                backward: Any = "implicit", **unknown):
    """Differentiable fixed point ``z* = f(z*, *args)`` (the Deep Equilibrium form).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from steadysolve.adapters.jax import fixed_point
    >>> g = jax.grad(lambda a: fixed_point(lambda z, a: a * z + 1.0, jnp.zeros(()), a)[0])(0.5)
    >>> round(float(g), 6)                      # z* = 1 / (1 - a): dz*/da = 1 / (1 - a)^2
    4.0
    """
    return implicit("fixed_point", "fixed_point", f, z0, args, solver=solver, abstol=abstol, reltol=reltol,
                     maxiters=maxiters, norm=norm, batch_axis=batch_axis, throw=throw, backward=backward,
                     unknown=unknown)


def root(f, u0, *args, solver=None, abstol: Optional[float] = None, reltol: Optional[float] = None,
         maxiters: Optional[int] = None, norm="max", batch_axis: Optional[int] = None, throw: bool = False,
         backward: Any = "implicit", **unknown):
    """Differentiable root ``f(u*, *args) = 0``; ``solver=None`` picks ``"newton_krylov"``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from steadysolve.adapters.jax import root
    >>> u, stats = root(lambda u, a: u**2 - a, jnp.ones(()), 2.0)
    >>> round(float(u), 5), float(jax.grad(lambda a: root(lambda u, a: u**2 - a, u, a)[0])(4.0))
    (1.41421, 0.25)
    """
    return implicit("root", "root", f, u0, args, solver="newton_krylov" if solver is None else solver,
                     abstol=abstol, reltol=reltol, maxiters=maxiters, norm=norm, batch_axis=batch_axis,
                     throw=throw, backward=backward, unknown=unknown)


def steady_state(f, u0, *args, solver=None, abstol: Optional[float] = None, reltol: Optional[float] = None,
                 maxiters: Optional[int] = None, norm="max", batch_axis: Optional[int] = None, throw: bool = False,
                 backward: Any = "implicit", **unknown):
    """Differentiable steady state of ``du/dt = f(u, *args)``; ``solver=None`` picks ``"dynamic_ss"``
    (time stepping). Any root-finding algorithm works too (it solves ``f(u) = 0``).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from steadysolve.adapters.jax import steady_state
    >>> u, stats = steady_state(lambda u, a: a - u, jnp.zeros(2), jnp.array([1.0, 2.0]))
    >>> [round(float(v), 4) for v in u], stats.solver
    ([1.0, 2.0], 'dynamic_ss')
    """
    return implicit("steady_state", "steady_state", f, u0, args, solver="dynamic_ss" if solver is None else solver,
                     abstol=abstol, reltol=reltol, maxiters=maxiters, norm=norm, batch_axis=batch_axis,
                     throw=throw, backward=backward, unknown=unknown)


for _fn in (fixed_point, root, steady_state):
    _fn.__doc__ += _DOC_COMMON


def _apply_cell(z, cell, x):
    return cell(z, x)


if eqx is not None:

    class DEQ(eqx.Module):
        """A Deep Equilibrium layer: ``z* = cell(z*, x)``, differentiable by implicit differentiation.

        ``cell`` is any callable pytree (typically an Equinox module) mapping ``(z, x)`` to the next
        ``z``; its floating-point arrays are the trainable parameters. Options are those of
        :func:`fixed_point`. ``latent_shape`` fixes the shape of ``z`` (default: the shape of ``x``);
        the initial guess is zeros unless ``z0`` is given.

        Examples
        --------
        >>> import jax, jax.numpy as jnp
        >>> from steadysolve.adapters.jax import DEQ
        >>> deq = DEQ(lambda z, x: jnp.tanh(0.5 * z + x), solver="anderson")
        >>> z, stats = deq(jnp.ones(3), return_stats=True)
        >>> bool(stats.successful)
        True
        """

        cell: Any
        solver: Any = eqx.field(static=True)
        latent_shape: Optional[tuple] = eqx.field(static=True)
        options: tuple = eqx.field(static=True)

        def __init__(self, cell, solver="anderson", *, latent_shape=None, **options):
            check_callable("DEQ", "cell", cell, what="callable as cell(z, x)")
            reject_unknown("DEQ", {k: v for k, v in options.items() if k not in _OPTIONS}, _OPTIONS)
            resolve(solver)  # fail early on an unknown name
            self.cell = cell
            self.solver = solver
            self.latent_shape = None if latent_shape is None else tuple(latent_shape)
            self.options = tuple(sorted(options.items()))

        def __call__(self, x, z0=None, *, return_stats: bool = False):
            cell = _apply_cell
            if z0 is None and self.latent_shape is None and is_structured(x):  # z has the structure of x
                z0 = tree_map(jnp.zeros_like, x)
                cell = explained(_apply_cell, None, "pass z0=")
            elif z0 is None:
                shape = jnp.shape(x) if self.latent_shape is None else self.latent_shape
                z0 = jnp.zeros(shape, dtype=jnp.result_type(x))
                if self.latent_shape is None:
                    cell = explained(_apply_cell, shape, "pass latent_shape= (or z0=)")
            z, stats = fixed_point(cell, z0, self.cell, x, solver=self.solver, **dict(self.options))
            return (z, stats) if return_stats else z

else:  # pragma: no cover

    class DEQ:  # noqa: D101
        def __init__(self, *a, **k):
            raise ImportError("steadysolve.adapters.jax.DEQ needs equinox (pip install equinox)")

    MultiScaleDEQ = MultiScaleSkipDEQ = DEQ
