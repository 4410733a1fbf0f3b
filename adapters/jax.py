"""JAX adapter: differentiable fixed points, roots and steady states (implicit layers).

``fixed_point(f, z0, *args)`` finds ``z* = f(z*, *args)``; ``root(f, u0, *args)`` finds
``f(u*, *args) = 0``; ``steady_state(f, u0, *args)`` the steady state of ``du/dt = f(u, *args)``.
All three run any registered ``steadysolve`` algorithm through the core's ``lax.while_loop``
driver and return ``(solution, SolveStats)``; they compose with ``jax.jit``, ``jax.vmap``,
``jax.grad`` / ``jax.jvp`` (forward and reverse mode) and ``lax.scan``; the only host callback is
the failure warning (``on_failure="warn"``, the default; ``"ignore"`` has none).

Derivatives (``backward=Implicit(...)``, the default): the solve is a ``jax.custom_jvp``. With
``F`` the residual and ``z*`` the solution, ``J_F(z*) dz = -F_p dp``; the tangent rule
linearises ``F`` once at ``z*`` (``jax.linearize``, no dense Jacobian) and solves that system
with ``jax.lax.custom_linear_solve`` through ``adapters/_implicit.adjoint_solve`` (GMRES or any
registered algorithm), whose transpose JAX uses for reverse mode. ``backward=Phantom(...)``
unrolls damped steps from ``z*`` instead (fixed points only). Gradients flow to every
floating-point array in ``args`` (pytrees, Equinox modules, closed-over tracers); integer
arrays and non-array leaves are constants; the initial guess gets a zero derivative.

Failures: ``stats.retcode_array`` holds the integer codes (valid under ``jit``/``vmap``);
``on_failure`` (as in the torch adapter) warns (default; under ``jit`` from a host callback),
raises (eagerly ``steadysolve.ConvergenceError``; under ``jax.jit`` an ``equinox.error_if``
runtime error, also for the adjoint solve) or ignores. This module is glue only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp

from steadysolve import Algorithm, Polyalgorithm
from steadysolve._checks import check_callable, reject_unknown
from steadysolve.registry import resolve

from ._implicit import SolveStats, explained
from ._jax_solve import DEFAULT_MAXITERS, OPTIONS, LayerOptions, implicit, run_fixed_point
from ._least_squares import jax_least_squares as least_squares
from ._options import FailedGrad, OnFailure, sample_bounds
from .backward import Implicit, Phantom
from ._structure import is_structured, tree_map

__all__ = ["fixed_point", "root", "steady_state", "SolveStats", "DEQ", "MultiScaleDEQ", "MultiScaleSkipDEQ",
           "Implicit", "Phantom", "least_squares"]

try:  # pragma: no cover - equinox is part of the jax extra
    import equinox as eqx

    from ._jax_multiscale import MultiScaleDEQ, MultiScaleSkipDEQ
except ImportError:  # pragma: no cover
    eqx = None

_OPTIONS = OPTIONS
_EQUINOX_CLASSES = ("DEQ", "MultiScaleDEQ", "MultiScaleSkipDEQ")
Solver = Union[str, Algorithm, Polyalgorithm]

if TYPE_CHECKING:
    from typing_extensions import Never, Unpack  # typing's own from Python 3.11


def fixed_point(f: Callable, z0: Any, *args: Any, solver: Solver = "anderson", backward: Any = "implicit",
                abstol: Optional[float] = None, reltol: Optional[float] = None, maxiters: Optional[int] = None,
                max_nfe: Optional[int] = None, norm: Union[str, Callable] = "max", batch_axis: Optional[int] = None,
                on_failure: OnFailure = "warn", failed_grad: FailedGrad = "implicit", **unknown: Never) -> Any:
    """Differentiable fixed point ``z* = f(z*, *args)`` (the Deep Equilibrium form).

    The same arguments, in the same order, with the same defaults and return value ``(z, stats)``
    as :func:`steadysolve.adapters.torch.fixed_point` (``stats`` here is the forward solve's: JAX
    has no place to put the backward's after the fact).

    Parameters
    ----------
    f : callable
        ``f(z, *args) -> z``, the same shape (or structure) and dtype as ``z``.
    z0 : array or pytree
        The initial guess; a tuple, list or dict of arrays (one dtype) is a structured state, which
        ``f`` gets and returns in the same structure (the solver sees one ``(batch, n)`` row array).
        It gets a zero derivative.
    *args
        Passed to ``f``; gradients flow to every floating-point array in them (pytrees, Equinox
        modules) and to arrays ``f`` closes over; integer arrays and other leaves are constants.
    solver : str or Algorithm
        Any registered algorithm name (``steadysolve.available()``) or instance; default
        ``"anderson"``; ``"auto"`` is Anderson, then Broyden from its best iterate (one evaluation
        of ``f`` per iteration each, sharing the one budget).
    backward : str or Implicit or Phantom
        ``"implicit"`` / ``Implicit(solver="gmres" | any algorithm, abstol=, reltol=, maxiters=)``
        (default; its solver is GMRES here, the Neumann series ``"fixed_point"`` in the ``DEQ``
        modules, see ``Implicit``) or ``"phantom"`` / ``Phantom(steps=, damping=)`` (fixed points only).
    abstol : float, optional
        Success when ``norm(resid) <= abstol`` or ``<= reltol * norm(u)`` (per element with
        ``batch_axis``); default ``eps ** 0.8`` of the dtype.
    reltol : float, optional
        The relative part of the test above; default ``eps ** 0.8`` of the dtype.
    maxiters : int, optional
        Iteration cap of the forward solve (default 1000).
    max_nfe : int, optional
        Instead of ``maxiters``, a work budget in evaluations of ``f`` counting JVPs, the same for
        every solver (as in the torch ``DEQ``); also caps the adjoint solve.
    norm : str or callable
        ``"max"`` (default), ``"l2"``, ``"rms"`` or ``callable((B, n)) -> (B,)``.
    batch_axis : int, optional
        Axis of the initial guess indexing independent problems: each element gets its own
        convergence test and return code, is frozen once converged, and the
        implicit-differentiation solve is per element too. Under ``jax.vmap`` leave it ``None``.
    on_failure : {"warn", "warn_always", "raise", "ignore"}
        What a failed forward or adjoint solve does besides its code in the stats: ``"warn"``
        (default; a ``steadysolve.ConvergenceWarning``, under ``jit`` from a host callback at run
        time), ``"warn_always"`` (the same: each call warns), ``"raise"`` (eagerly
        ``steadysolve.ConvergenceError``; under ``jit`` an ``equinox.error_if`` runtime error) or
        ``"ignore"`` (the stats only; no callback under ``jit``).
    failed_grad : {"implicit", "jfb"}
        The gradient of elements whose forward solve failed: the implicit one at the returned
        iterate (default) or the Jacobian-free one (``dz* = f_p dp``, ``J_f`` taken as zero).

    Returns
    -------
    z : array or pytree
        The solution, the shape (or structure) of ``z0``.
    stats : SolveStats
        The forward solve's counters and return codes (``stats.retcode_array`` under ``jit``).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from steadysolve.adapters.jax import fixed_point
    >>> g = jax.grad(lambda a: fixed_point(lambda z, a: a * z + 1.0, jnp.zeros(()), a)[0])(0.5)
    >>> round(float(g), 6)                      # z* = 1 / (1 - a): dz*/da = 1 / (1 - a)^2
    4.0
    """
    return implicit("fixed_point", "fixed_point", f, z0, args, solver=solver, abstol=abstol, reltol=reltol,
                     maxiters=maxiters, norm=norm, batch_axis=batch_axis, on_failure=on_failure,
                     failed_grad=failed_grad, backward=backward, unknown=dict(unknown, max_nfe=max_nfe))


def root(f: Callable, u0: Any, *args: Any, solver: Optional[Solver] = None, backward: Any = "implicit",
         abstol: Optional[float] = None, reltol: Optional[float] = None, maxiters: Optional[int] = None,
         max_nfe: Optional[int] = None, norm: Union[str, Callable] = "max", batch_axis: Optional[int] = None,
         on_failure: OnFailure = "warn", lb: Any = None, ub: Any = None, **unknown: Never) -> Any:
    """Differentiable root ``f(u*, *args) = 0``; ``solver=None`` picks ``"newton_krylov"`` (with bounds
    ``lb`` / ``ub``: ``"trust_region"``).

    Parameters
    ----------
    f : callable
        ``f(u, *args) -> residual``, the shape (or structure) and dtype of ``u``.
    u0 : array or pytree
        The initial guess (see ``fixed_point``'s ``z0``).
    *args
        Passed to ``f``; differentiable as in ``fixed_point``.
    solver : str or Algorithm, optional
        Any registered name or instance; ``None`` picks ``"newton_krylov"``. The other keywords
        (``abstol``, ``reltol``, ``maxiters``, ``norm``, ``batch_axis``, ``on_failure``, ``backward``,
        ``max_nfe``) are those of ``fixed_point``.
    lb, ub : scalar or array, optional
        Bounds on ``u`` (an array ``u0``), as on ``NonlinearProblem``; the solver must honour them.

    Returns
    -------
    u0 : array or pytree
        The solution.
    stats : SolveStats
        The forward solve's counters and return codes.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from steadysolve.adapters.jax import root
    >>> u, stats = root(lambda u, a: u**2 - a, jnp.ones(()), 2.0)
    >>> round(float(u), 5), float(jax.grad(lambda a: root(lambda u, a: u**2 - a, u, a)[0])(4.0))
    (1.41421, 0.25)
    """
    bounds = None if lb is None and ub is None else (lb, ub)
    default = "newton_krylov" if bounds is None else "trust_region"
    return implicit("root", "root", f, u0, args, solver=default if solver is None else solver,
                     abstol=abstol, reltol=reltol, maxiters=maxiters, norm=norm, batch_axis=batch_axis,
                     on_failure=on_failure, backward=backward, unknown=dict(unknown, max_nfe=max_nfe),
                     bounds=bounds)


def steady_state(f: Callable, u0: Any, *args: Any, solver: Optional[Solver] = None, backward: Any = "implicit",
                 abstol: Optional[float] = None, reltol: Optional[float] = None, maxiters: Optional[int] = None,
                 max_nfe: Optional[int] = None, norm: Union[str, Callable] = "max", batch_axis: Optional[int] = None,
                 on_failure: OnFailure = "warn", **unknown: Never) -> Any:
    """Differentiable steady state of ``du/dt = f(u, *args)``; ``solver=None`` picks ``"dynamic_ss"``
    (time stepping). Any root-finding algorithm works too (it solves ``f(u) = 0``).

    Parameters
    ----------
    f : callable
        ``f(u, *args) -> du/dt``, the shape (or structure) and dtype of ``u``.
    u0 : array or pytree
        The initial guess; it, ``*args`` and the keywords are those of ``root``.
    solver : str or Algorithm, optional
        ``None`` picks ``"dynamic_ss"``.

    Returns
    -------
    tuple
        ``(u, stats)``, as ``root`` returns them.

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
                     on_failure=on_failure, backward=backward, unknown=dict(unknown, max_nfe=max_nfe))


def _apply_cell(z, cell, x):
    return cell(z, x)


if eqx is not None:

    class DEQ(eqx.Module):
        """A Deep Equilibrium layer: ``z* = cell(z*, x)``, differentiable by implicit differentiation.

        ``cell`` is any callable pytree (typically an Equinox module) mapping ``(z, x)`` to the next
        ``z``; its floating-point arrays are the trainable parameters. Options are those of
        ``fixed_point``. ``latent_shape`` fixes the shape of ``z`` (default: the shape of ``x``);
        the initial guess is zeros unless ``z0`` is given. ``n_states = k > 1`` (or ``indexing``,
        where the states end): fixed-point correction as in the torch ``DEQ`` -- the call returns a
        tuple of ``k`` states, the cap (``max_nfe``, else ``maxiters``) cut into ``k`` segments each
        solved from the last state, each state with its own implicit gradient (stats: the last).

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
        bounds: Optional[tuple] = eqx.field(static=True)

        def __init__(self, cell: Callable, solver: Solver = "anderson", *, latent_shape: Optional[tuple] = None,
                     n_states: int = 1, indexing: Optional[Sequence[int]] = None, **options: Unpack[LayerOptions]):
            check_callable("DEQ", "cell", cell, what="callable as cell(z, x)")
            reject_unknown("DEQ", {k: v for k, v in options.items() if k not in _OPTIONS}, _OPTIONS)
            resolve(solver)  # fail early on an unknown name
            self.cell = cell
            self.solver = solver
            self.latent_shape = None if latent_shape is None else tuple(latent_shape)
            self.options = tuple(sorted(options.items()))
            cap = options.get("max_nfe") or options.get("maxiters") or DEFAULT_MAXITERS
            self.bounds = sample_bounds("DEQ", n_states, indexing, cap)

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
            opts, states, done = dict(self.options), [], 0
            key = "max_nfe" if "max_nfe" in opts else "maxiters"
            for b in self.bounds or (None,):  # fixed-point correction: one solve per segment, from the last state
                seg = opts if b is None else dict(opts, **{key: b - done})
                z, stats = run_fixed_point("DEQ", cell, z0, self.cell, x, solver=self.solver, **seg)
                states.append(z)
                z0, done = jax.tree_util.tree_map(jax.lax.stop_gradient, z), b
            z = z if self.bounds is None else tuple(states)
            return (z, stats) if return_stats else z

else:  # pragma: no cover
    __all__ = [n for n in __all__ if n not in _EQUINOX_CLASSES]

    def __getattr__(name: str):
        # without Equinox the modules do not exist; say what to install (module __getattr__, so that
        # static readers see one definition of each class)
        if name in _EQUINOX_CLASSES:
            raise ImportError(f"steadysolve.adapters.jax.{name} needs equinox (pip install equinox)")
        raise AttributeError(f"module 'steadysolve.adapters.jax' has no attribute {name!r}")
