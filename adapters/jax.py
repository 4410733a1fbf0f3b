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

import jax
import jax.numpy as jnp
import numpy as np

import steadysolve as ss
from steadysolve.checks import check_bool, check_callable, reject_unknown
from steadysolve.layout import Layout
from steadysolve.registry import resolve
from steadysolve.termination import default_tolerance

from ._implicit import SolveStats, adjoint_solve, explained, forward_stats
from ._options import Implicit, Phantom, check_layer_batch_axis, layer_options

__all__ = ["fixed_point", "root", "steady_state", "SolveStats", "DEQ", "Implicit", "Phantom"]

try:  # pragma: no cover - equinox is part of the jax extra
    import equinox as eqx
except ImportError:  # pragma: no cover
    eqx = None

_OPTIONS = ("solver", "abstol", "reltol", "maxiters", "norm", "batch_axis", "throw", "backward")


def _is_dynamic(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic, jax.core.Tracer))


def _is_inexact(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _zero_tangent(x):
    return jnp.zeros_like(x) if _is_inexact(x) else np.zeros(np.shape(x), dtype=jax.dtypes.float0)


def _error_if(x, pred, msg):
    if eqx is None:  # pragma: no cover
        raise ValueError("throw=True inside jax.jit needs equinox (pip install equinox)")
    return eqx.error_if(x, pred, msg)


def _split(where, f, z0, args):
    """``f(z, *args)`` as ``user_f(z, diff, nondiff)`` over explicit lists of inputs: the
    differentiable (inexact) arrays, the other arrays; closed-over tracers become inputs."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    leaves = [jnp.asarray(x) if isinstance(x, (np.ndarray, np.generic)) else x for x in leaves]
    dyn_pos = [i for i, x in enumerate(leaves) if _is_dynamic(x)]

    def call_user(z, dyn):
        full = list(leaves)
        for i, v in zip(dyn_pos, dyn):
            full[i] = v
        return f(z, *jax.tree_util.tree_unflatten(treedef, full))

    conv, consts = jax.closure_convert(call_user, z0, [leaves[i] for i in dyn_pos])
    inputs = [leaves[i] for i in dyn_pos] + list(consts)
    nd = len(dyn_pos)
    out = jax.eval_shape(lambda z, i: conv(z, i[:nd], *i[nd:]), z0, inputs)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(f"{where}: f must return a single array like the initial guess, got {out}")
    if tuple(out.shape) != tuple(z0.shape):
        raise ValueError(f"{where}: f returned shape {tuple(out.shape)} but the initial guess has shape "
                         f"{tuple(z0.shape)}")
    if out.dtype != z0.dtype:
        raise TypeError(f"{where}: f returned dtype {out.dtype} but the initial guess has dtype {z0.dtype} "
                        "(check for float32/float64 promotion)")
    diff_pos = [i for i, x in enumerate(inputs) if _is_inexact(x)]
    other_pos = [i for i in range(len(inputs)) if i not in diff_pos]

    def user_f(z, dlist, ndlist):
        full = [None] * len(inputs)
        for i, v in zip(diff_pos, dlist):
            full[i] = v
        for i, v in zip(other_pos, ndlist):
            full[i] = v
        return conv(z, full[:nd], *full[nd:])

    return user_f, [inputs[i] for i in diff_pos], [inputs[i] for i in other_pos]


def _problem(kind, fn, z_init, p):
    if kind == "fixed_point":
        return ss.FixedPointProblem(lambda u, p: fn(u, *p), z_init, p)
    if kind == "root":
        return ss.NonlinearProblem(lambda u, p: fn(u, *p), z_init, p)
    return ss.SteadyStateProblem(lambda u, p, t: fn(u, *p), z_init, p)


def _implicit(kind, where, f, z0, args, *, solver, abstol, reltol, maxiters, norm, batch_axis, throw, backward,
              unknown):
    check_callable(where, "f", f)
    if isinstance(z0, (np.ndarray, np.generic)):
        z0 = jnp.asarray(z0)
    if not isinstance(z0, (jax.Array, jax.core.Tracer)):
        raise TypeError(f"{where}: the initial guess must be a JAX array, got {type(z0).__name__}")
    if not jnp.issubdtype(z0.dtype, jnp.floating):
        raise TypeError(f"{where}: the initial guess must have a real floating dtype, got {z0.dtype}")
    opts = layer_options(where, solver=solver, abstol=abstol, reltol=reltol, maxiters=maxiters, norm=norm,
                         batch_axis=batch_axis, backward=backward, default_tol=default_tolerance(jnp, z0.dtype),
                         unknown=unknown, valid=_OPTIONS)
    opts = check_layer_batch_axis(where, opts, tuple(z0.shape))
    check_bool(where, "throw", throw)
    bwd = opts.backward
    if bwd.mode == "phantom" and kind != "fixed_point":
        raise ValueError(f"{where}: a Phantom backward needs a fixed-point map; use backward=Implicit(...)")
    user_f, dlist, ndlist = _split(where, f, z0, args)
    layout = Layout(jnp, tuple(z0.shape), opts.batch_axis)

    def forward(z_init, dlist, ndlist):
        dlist, ndlist, z_init = jax.tree_util.tree_map(jnp.asarray, (dlist, ndlist, z_init))
        sol = ss.solve(_problem(kind, user_f, z_init, (dlist, ndlist)), opts.solver, throw=throw,
                       **opts.solve_kwargs())
        return sol.u, forward_stats(sol, opts, layout, jnp)

    if bwd.mode == "phantom":
        z, stats = forward(z0, dlist, ndlist)
        z = jax.lax.stop_gradient(z)
        for _ in range(bwd.steps):
            fz = user_f(z, dlist, ndlist)
            z = fz if bwd.damping == 1.0 else (1.0 - bwd.damping) * z + bwd.damping * fz
        return z, stats

    def linsolve(op, b):
        """x with op(x) = b; op is J_F(z*) or its transpose (J_f - I for a fixed point)."""
        if kind == "fixed_point":  # (J_f - I) x = b  <=>  (I - J_f) x = -b
            res = adjoint_solve(lambda v: op(v) + v, -b, bwd, fixed_point_form=True, batch_axis=opts.batch_axis,
                                norm=opts.norm)
        else:
            res = adjoint_solve(op, b, bwd, fixed_point_form=False, batch_axis=opts.batch_axis, norm=opts.norm)
        x = res.w
        if throw:
            x = _error_if(x, jnp.any(jnp.asarray(res.stats.retcode_array) != 0),
                          f"steadysolve: the implicit-differentiation linear solve in {where} did not converge "
                          "(raise maxiters or loosen reltol of backward=Implicit(...))")
        return x

    @jax.custom_jvp
    def solve(z_init, dlist, ndlist):
        return forward(z_init, dlist, ndlist)

    def solve_jvp(primals, tangents):
        z_init, dlist, ndlist = primals
        _, ddlist, _ = tangents
        z, stats = solve(z_init, dlist, ndlist)
        stats_t = jax.tree_util.tree_map(_zero_tangent, stats)
        live = [i for i, t in enumerate(ddlist) if not isinstance(t, jax.custom_derivatives.SymbolicZero)]
        if not live:
            return (z, stats), (jnp.zeros_like(z), stats_t)

        def residual(zz, dl):
            r = user_f(zz, dl, ndlist)
            return r - zz if kind == "fixed_point" else r

        def F_live(sub):
            dl = list(dlist)
            for i, v in zip(live, sub):
                dl[i] = v
            return residual(z, dl)

        _, Fp_dp = jax.jvp(F_live, ([dlist[i] for i in live],),
                           ([jnp.asarray(ddlist[i], dtype=jnp.result_type(dlist[i])) for i in live],))
        _, A = jax.linearize(lambda zz: residual(zz, dlist), z)
        dz = jax.lax.custom_linear_solve(A, -Fp_dp, solve=linsolve, transpose_solve=linsolve)
        return (z, stats), (dz, stats_t)

    solve.defjvp(solve_jvp, symbolic_zeros=True)
    return solve(z0, dlist, ndlist)


_DOC_COMMON = """
    Keyword arguments
    -----------------
    solver : any registered algorithm name (``steadysolve.available()``) or instance.
    abstol, reltol : success when ``norm(resid) <= abstol`` or ``<= reltol * norm(u)``
        (per element with ``batch_axis``); default ``eps ** 0.8`` of the dtype.
    maxiters : iteration cap of the forward solve (default 1000).
    norm : ``"max"`` (default), ``"l2"``, ``"rms"`` or ``callable((B, n)) -> (B,)``.
    batch_axis : axis of the initial guess indexing independent problems: each element gets its
        own convergence test and return code, is frozen once converged, and the
        implicit-differentiation solve is per element too. Under ``jax.vmap`` leave it ``None``.
    throw : raise on failure instead of only reporting it in the stats (eagerly
        ``steadysolve.ConvergenceError``; under ``jit`` an ``equinox.error_if`` runtime error).
    backward : ``"implicit"`` / ``Implicit(solver="gmres" | any algorithm, abstol=, reltol=,
        maxiters=)`` (default) or ``"phantom"`` / ``Phantom(steps=, damping=)`` (fixed points only).

    Returns
    -------
    ``(solution, SolveStats)``: the solution has the shape of the initial guess.
    """


def fixed_point(f, z0, *args, solver="anderson", abstol: Optional[float] = None, reltol: Optional[float] = None,
                maxiters: int = 1000, norm="max", batch_axis: Optional[int] = None, throw: bool = False,
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
    return _implicit("fixed_point", "fixed_point", f, z0, args, solver=solver, abstol=abstol, reltol=reltol,
                     maxiters=maxiters, norm=norm, batch_axis=batch_axis, throw=throw, backward=backward,
                     unknown=unknown)


def root(f, u0, *args, solver=None, abstol: Optional[float] = None, reltol: Optional[float] = None,
         maxiters: int = 1000, norm="max", batch_axis: Optional[int] = None, throw: bool = False,
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
    return _implicit("root", "root", f, u0, args, solver="newton_krylov" if solver is None else solver,
                     abstol=abstol, reltol=reltol, maxiters=maxiters, norm=norm, batch_axis=batch_axis,
                     throw=throw, backward=backward, unknown=unknown)


def steady_state(f, u0, *args, solver=None, abstol: Optional[float] = None, reltol: Optional[float] = None,
                 maxiters: int = 1000, norm="max", batch_axis: Optional[int] = None, throw: bool = False,
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
    return _implicit("steady_state", "steady_state", f, u0, args, solver="dynamic_ss" if solver is None else solver,
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
            run = fixed_point
            if z0 is None:
                shape = jnp.shape(x) if self.latent_shape is None else self.latent_shape
                z0 = jnp.zeros(shape, dtype=jnp.result_type(x))
                if self.latent_shape is None:
                    run = explained(fixed_point, shape, "pass latent_shape= (or z0=)")
            z, stats = run(_apply_cell, z0, self.cell, x, solver=self.solver, **dict(self.options))
            return (z, stats) if return_stats else z

else:  # pragma: no cover

    class DEQ:  # noqa: D101
        def __init__(self, *a, **k):
            raise ImportError("steadysolve.adapters.jax.DEQ needs equinox (pip install equinox)")
