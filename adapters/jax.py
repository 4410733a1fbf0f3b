"""JAX adapter: differentiable fixed points, roots and steady states (implicit layers).

``fixed_point(f, z0, *args)`` finds ``z* = f(z*, *args)``; ``root(f, u0, *args)``
finds ``f(u*, *args) = 0``; ``steady_state(f, u0, *args)`` finds the steady state
of ``du/dt = f(u, *args)``. All three run any registered ``steadysolve``
algorithm through the core's ``lax.while_loop`` driver and return
``(solution, SolveStats)``. They compose with ``jax.jit``, ``jax.vmap``,
``jax.grad`` / ``jax.value_and_grad`` / ``jax.jvp`` (forward and reverse mode)
and ``lax.scan``, in float32 and float64, without host callbacks.

Derivatives
-----------
The solve is a ``jax.custom_jvp``. With ``F`` the residual (``f(z) - z`` for a
fixed point, ``f`` itself otherwise) and ``z*`` the solution, the implicit
function theorem gives ``J_F(z*) dz = -F_p dp``. The tangent rule linearises
``F`` once at ``z*`` (``jax.linearize``; no dense Jacobian is ever formed) and
solves that system with ``jax.lax.custom_linear_solve``, whose transpose JAX
uses for reverse mode: ``jax.grad`` therefore solves the adjoint system
``J_F(z*)^T w = -g`` with vector-Jacobian products only. The linear solves use
the core too: GMRES (``steadysolve.linear_solve``) by default, or any
registered nonlinear algorithm (``backward_solver="anderson"`` solves the
adjoint as the fixed point ``w = J_f^T w + g``). Because the rule calls the
custom-JVP function itself for the primal, higher derivatives compose as well.

Gradients flow to every floating-point array in ``args`` (pytrees, Equinox
modules, closed-over tracers included); integer arrays and non-array leaves are
treated as constants. The initial guess gets a zero derivative.

Failures
--------
``SolveStats.retcode`` holds the integer return code (``0`` = success,
``steadysolve.ReturnCode.from_code`` decodes it); it stays valid under ``jit``
and ``vmap``. ``throw=True`` raises instead: eagerly a
``steadysolve.ConvergenceError``; under ``jax.jit`` a runtime error raised
through ``equinox.error_if`` (the core's mechanism) when the forward solve, or
during differentiation the adjoint linear solve, fails.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

import steadysolve as ss
from steadysolve.algorithms.base import Algorithm
from steadysolve.registry import resolve
from steadysolve.termination import default_tolerance, get_norm

__all__ = ["fixed_point", "root", "steady_state", "SolveStats", "DEQ"]

try:  # pragma: no cover - equinox is part of the jax extra
    import equinox as eqx
except ImportError:  # pragma: no cover
    eqx = None


class SolveStats(NamedTuple):
    """Solver statistics returned next to the solution (a pytree of JAX arrays).

    ``niter`` (int32): iterations, per element (shape ``(B,)``) when ``batch_axis``
    is given; ``nf`` (int32): evaluations of ``f`` (a batched call counts once);
    ``resid_norm``: norm of the residual at the solution (per element when
    batched); ``retcode`` (int32): ``steadysolve.ReturnCode`` code, ``0`` =
    success. Under ``jax.vmap`` every field gains the mapped axis.
    """

    niter: Any
    nf: Any
    resid_norm: Any
    retcode: Any

    @property
    def successful(self):
        """Boolean array: ``retcode == 0``."""
        return self.retcode == 0

    def retcodes(self):
        """The return codes decoded into ``steadysolve.ReturnCode`` (concrete values only)."""
        codes = np.asarray(self.retcode).reshape(-1)
        out = [ss.ReturnCode.from_code(int(c)) for c in codes]
        return out[0] if np.ndim(self.retcode) == 0 else out


# ---------------------------------------------------------------------------
# option checking (everything is validated before any tracing or iteration)
# ---------------------------------------------------------------------------

def _check_tol(where, name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where}: {name} must be a non-negative number or None, got {type(value).__name__}")
    if not value >= 0 or math.isinf(value):
        raise ValueError(f"{where}: {name} must be a finite number >= 0, got {value}")
    return float(value)


def _check_maxiters(where, name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where}: {name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{where}: {name} must be >= 1, got {value}")
    return value


def _default_backward() -> str:
    return "gmres" if hasattr(ss, "linear_solve") and "gmres" in ss.available("linear") else "anderson"


def _resolve_backward(where, backward_solver):
    """``("linear", name_or_obj)`` or ``("nonlinear", Algorithm)``."""
    if backward_solver is None:
        backward_solver = _default_backward()
    linear = ss.available("linear")
    if isinstance(backward_solver, str):
        key = backward_solver.strip().lower().replace("-", "_")
        if key in linear:
            if not hasattr(ss, "linear_solve"):  # pragma: no cover - transitional
                raise ValueError(f"{where}: backward_solver={backward_solver!r} needs steadysolve.linear_solve")
            return "linear", key
        if key in ss.available():
            return "nonlinear", resolve(key)
        raise ValueError(f"{where}: unknown backward_solver {backward_solver!r}; valid names: linear solvers "
                         f"{', '.join(linear) or '(none)'} or nonlinear algorithms {', '.join(ss.available())}")
    if isinstance(backward_solver, Algorithm):
        return "nonlinear", backward_solver
    if linear:
        try:
            return "linear", resolve(backward_solver, kind="linear")
        except TypeError:
            pass
    raise TypeError(f"{where}: backward_solver must be a registered name, a linear solver or an algorithm "
                    f"instance, got {type(backward_solver).__name__}")


def _configure_linear(alg, abstol, reltol, maxiters, given_abstol, given_reltol, given_maxiters, dtype):
    """The linear solver of the backward pass with its tolerances.

    A name gets ``rtol`` / ``atol`` / ``maxiters`` from the resolved ``backward_*`` values
    (converged when ``||b - A x||_2 <= max(atol, rtol ||b||_2)``); an instance keeps its
    own settings except for ``backward_*`` given explicitly.
    """
    import dataclasses

    if isinstance(alg, str):
        return resolve(alg, kind="linear").__class__(rtol=reltol, atol=abstol, maxiters=maxiters)
    changes = {}
    if given_abstol is not None:
        changes["atol"] = given_abstol
    if given_reltol is not None:
        changes["rtol"] = given_reltol
    if given_maxiters is not None:
        changes["maxiters"] = given_maxiters
    return dataclasses.replace(alg, **changes) if changes else alg


def _is_dynamic(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic, jax.core.Tracer))


def _is_inexact(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _as_jax(x):
    return x if isinstance(x, (jax.Array, jax.core.Tracer)) else jnp.asarray(x)


def _zero_tangent(x):
    if _is_inexact(x):
        return jnp.zeros_like(x)
    return np.zeros(np.shape(x), dtype=jax.dtypes.float0)


# ---------------------------------------------------------------------------
# the implicit solve
# ---------------------------------------------------------------------------

def _implicit(kind, where, f, z0, args, *, solver, abstol, reltol, maxiters, norm, batch_axis, throw,
              backward_solver, backward_abstol, backward_reltol, backward_maxiters):
    # ---- validation ---------------------------------------------------------------
    if not callable(f):
        raise TypeError(f"{where}: f must be callable, got {type(f).__name__}")
    if isinstance(z0, (np.ndarray, np.generic)):
        z0 = jnp.asarray(z0)
    if not isinstance(z0, (jax.Array, jax.core.Tracer)):
        raise TypeError(f"{where}: the initial guess must be a JAX array, got {type(z0).__name__}")
    if not jnp.issubdtype(z0.dtype, jnp.floating):
        raise TypeError(f"{where}: the initial guess must have a real floating dtype, got {z0.dtype}")
    alg = resolve(solver)
    abstol = _check_tol(where, "abstol", abstol)
    reltol = _check_tol(where, "reltol", reltol)
    maxiters = _check_maxiters(where, "maxiters", maxiters)
    b_abstol = _check_tol(where, "backward_abstol", backward_abstol)
    b_reltol = _check_tol(where, "backward_reltol", backward_reltol)
    b_maxiters = _check_maxiters(where, "backward_maxiters", backward_maxiters)
    b_maxiters = maxiters if b_maxiters is None else b_maxiters
    bkind, balg = _resolve_backward(where, backward_solver)
    if bkind == "linear":
        # Krylov test ||b - A x||_2 <= max(atol, rtol ||b||_2): relative to the cotangent by
        # default, with the forward solve's accuracy.
        fwd_tol = default_tolerance(jnp, z0.dtype)
        fwd_tol = max(fwd_tol if abstol is None else abstol, fwd_tol if reltol is None else reltol)
        b_reltol = fwd_tol if b_reltol is None else b_reltol
        b_abstol = 0.0 if b_abstol is None else b_abstol
    else:
        b_abstol = abstol if b_abstol is None else b_abstol
        b_reltol = reltol if b_reltol is None else b_reltol
    if not isinstance(throw, bool):
        raise TypeError(f"{where}: throw must be a bool, got {type(throw).__name__}")
    norm_fn = get_norm(norm)
    ndim = z0.ndim
    if batch_axis is not None:
        if isinstance(batch_axis, bool) or not isinstance(batch_axis, int):
            raise TypeError(f"{where}: batch_axis must be an int or None, got {type(batch_axis).__name__}")
        if not -ndim <= batch_axis < ndim:
            raise ValueError(f"{where}: batch_axis={batch_axis} is out of range for an initial guess with "
                             f"shape {tuple(z0.shape)}")
        batch_axis %= ndim

    # ---- split the arguments: differentiable arrays / other arrays / static leaves ------
    leaves, treedef = jax.tree_util.tree_flatten(args)
    leaves = [jnp.asarray(x) if isinstance(x, (np.ndarray, np.generic)) else x for x in leaves]
    dyn_pos = [i for i, x in enumerate(leaves) if _is_dynamic(x)]
    dyn = [leaves[i] for i in dyn_pos]

    def call_user(z, dyn_leaves):
        full = list(leaves)
        for i, v in zip(dyn_pos, dyn_leaves):
            full[i] = v
        return f(z, *jax.tree_util.tree_unflatten(treedef, full))

    # Closed-over tracers (e.g. weights captured by a lambda) become explicit inputs so
    # that derivatives reach them.
    conv, consts = jax.closure_convert(call_user, z0, dyn)
    inputs = dyn + list(consts)
    nd = len(dyn)
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
    nondiff_pos = [i for i in range(len(inputs)) if i not in diff_pos]

    def merge(dlist, ndlist):
        full = [None] * len(inputs)
        for i, v in zip(diff_pos, dlist):
            full[i] = v
        for i, v in zip(nondiff_pos, ndlist):
            full[i] = v
        return full

    def user_f(z, dlist, ndlist):
        full = merge(dlist, ndlist)
        return conv(z, full[:nd], *full[nd:])

    def residual(z, dlist, ndlist):
        r = user_f(z, dlist, ndlist)
        return r - z if kind == "fixed_point" else r

    shape = tuple(z0.shape)
    batch = 1 if batch_axis is None else shape[batch_axis]
    n = math.prod(shape) // max(batch, 1)

    def to_rows(x):
        if batch_axis is None:
            return jnp.reshape(x, (1, -1))
        return jnp.reshape(jnp.moveaxis(x, batch_axis, 0), (batch, -1))

    def from_rows(x):
        if batch_axis is None:
            return jnp.reshape(x, shape)
        inner = shape[:batch_axis] + shape[batch_axis + 1:]
        return jnp.moveaxis(jnp.reshape(x, (batch,) + inner), 0, batch_axis)

    solve_kw = dict(abstol=abstol, reltol=reltol, maxiters=maxiters, norm=norm, batch_axis=batch_axis)

    def forward(z_init, dlist, ndlist):
        # Inputs may arrive as NumPy-backed literals (constant folding inside transformations).
        dlist, ndlist, z_init = jax.tree_util.tree_map(_as_jax, (dlist, ndlist, z_init))
        p = (dlist, ndlist)

        def jvp(u, v, p):
            return jax.jvp(lambda uu: user_f(uu, *p), (u,), (v,))[1]

        def vjp(u, w, p):
            return jax.vjp(lambda uu: user_f(uu, *p), u)[1](w)[0]

        def jac(u, p):
            # Dense Jacobian, used only by algorithms that ask for one (NewtonRaphson). For a
            # batch, the diagonal blocks come from n JVPs with the same unit vector in every row.
            def fun(r):
                return to_rows(user_f(from_rows(r), *p))

            eye = jnp.eye(n, dtype=u.dtype)
            cols = jax.vmap(lambda e: jax.jvp(fun, (to_rows(u),), (jnp.broadcast_to(e, (batch, n)),))[1])(eye)
            J = jnp.moveaxis(cols, 0, -1)  # (B, n, n)
            return J[0] if batch_axis is None else J

        if kind == "fixed_point":
            prob = ss.FixedPointProblem(lambda u, p: user_f(u, *p), z_init, p, jvp=jvp, vjp=vjp,
                                        jac=jac if batch_axis is None else None)
        elif kind == "root":
            prob = ss.NonlinearProblem(lambda u, p: user_f(u, *p), z_init, p, jvp=jvp, vjp=vjp, jac=jac)
        else:
            prob = ss.SteadyStateProblem(lambda u, p, t: user_f(u, *p), z_init, p, jvp=jvp, vjp=vjp, jac=jac)
        sol = ss.solve(prob, alg, throw=throw, **solve_kw)
        rn = norm_fn(jnp, to_rows(sol.resid))
        codes = jnp.asarray(sol.retcode_array, dtype=jnp.int32)
        if batch_axis is None:
            niter = jnp.asarray(sol.stats.niter, dtype=jnp.int32)
            rn, codes = rn[0], codes[0]
        else:
            niter = jnp.asarray(sol.stats.niter_per_element, dtype=jnp.int32)
        stats = SolveStats(niter=niter, nf=jnp.asarray(sol.stats.nf, dtype=jnp.int32), resid_norm=rn,
                           retcode=codes)
        return sol.u, stats

    # ---- the adjoint / tangent linear solves ---------------------------------------
    lin_kw = dict(abstol=b_abstol, reltol=b_reltol, maxiters=b_maxiters, batch_axis=batch_axis)
    if bkind == "linear":
        balg = _configure_linear(balg, b_abstol, b_reltol, b_maxiters, backward_abstol, backward_reltol,
                                 backward_maxiters, z0.dtype)

    def linsolve(op, b):
        """x with op(x) = b; op is J_F(z*) or its transpose (both ~ -I for a contraction)."""
        if bkind == "linear":
            res = ss.linear_solve(op, b, balg, x0=None, batch_axis=batch_axis)
            x, codes = res.x, res.retcode_array
        else:
            x0 = jnp.zeros_like(b)
            kw = dict(jvp=lambda x, v, _: v + op(v), vjp=lambda x, w, _: jax.vjp(op, x)[1](w)[0] + w)
            if kind == "fixed_point":
                # op = J_f - I:  x = x + op(x) - b = J_f x - b is the adjoint fixed point
                prob = ss.FixedPointProblem(lambda x, _: x + op(x) - b, x0, None, **kw)
            else:
                kw = dict(jvp=lambda x, v, _: op(v), vjp=lambda x, w, _: jax.vjp(op, x)[1](w)[0])
                prob = ss.NonlinearProblem(lambda x, _: op(x) - b, x0, None, **kw)
            sol = ss.solve(prob, balg, **lin_kw)
            x, codes = sol.u, sol.retcode_array
        if throw:
            x = _error_if(x, jnp.any(jnp.asarray(codes) != 0),
                          f"steadysolve: the implicit-differentiation linear solve in {where} did not converge "
                          "(raise backward_maxiters or loosen backward_abstol / backward_reltol)")
        return x

    def transpose_solve(vecmat, b):
        return linsolve(vecmat, b)

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

        def F_live(sub):
            dl = list(dlist)
            for i, v in zip(live, sub):
                dl[i] = v
            return residual(z, dl, ndlist)

        _, Fp_dp = jax.jvp(F_live, ([dlist[i] for i in live],),
                           ([jnp.asarray(ddlist[i], dtype=jnp.result_type(dlist[i])) for i in live],))
        _, A = jax.linearize(lambda zz: residual(zz, dlist, ndlist), z)
        dz = jax.lax.custom_linear_solve(A, -Fp_dp, solve=linsolve, transpose_solve=transpose_solve)
        return (z, stats), (dz, stats_t)

    solve.defjvp(solve_jvp, symbolic_zeros=True)

    dlist = [inputs[i] for i in diff_pos]
    ndlist = [inputs[i] for i in nondiff_pos]
    return solve(z0, dlist, ndlist)


def _error_if(x, pred, msg):
    if eqx is None:  # pragma: no cover
        raise ValueError("throw=True inside jax.jit needs equinox (pip install equinox)")
    return eqx.error_if(x, pred, msg)


_DOC_COMMON = """
    Keyword arguments
    -----------------
    solver : any registered algorithm name (``steadysolve.available()``) or instance.
    abstol, reltol : success when ``norm(resid) <= abstol`` or ``<= reltol * norm(u)``
        (per element with ``batch_axis``); default ``eps ** 0.8`` of the dtype.
    maxiters : iteration cap of the forward solve (default 1000).
    norm : ``"max"`` (default), ``"l2"``, ``"rms"`` or ``callable((B, n)) -> (B,)``.
    batch_axis : axis of the initial guess indexing independent problems: each element
        gets its own convergence test and return code, is frozen once converged, and the
        implicit-differentiation solve is per element too. Under ``jax.vmap`` leave it
        ``None``: vmap already gives per-element stats.
    throw : raise on failure instead of only reporting it in ``stats.retcode``
        (eagerly ``steadysolve.ConvergenceError``; under ``jit`` an ``equinox.error_if``
        runtime error). Also covers the linear solve of the backward pass.
    backward_solver : the linear solver of the tangent / adjoint system: ``"gmres"``
        (default when ``steadysolve.linear_solve`` is available) or any nonlinear algorithm
        name or instance (``"anderson"``: the adjoint as a fixed point ``w = J^T w + g``).
    backward_abstol, backward_reltol, backward_maxiters : its tolerances (default: the
        forward ones).

    Returns
    -------
    ``(solution, SolveStats)``: the solution has the shape of the initial guess.
    """


def fixed_point(f, z0, *args, solver="anderson", abstol: Optional[float] = None, reltol: Optional[float] = None,
                maxiters: int = 1000, norm="max", batch_axis: Optional[int] = None, throw: bool = False,
                backward_solver=None, backward_abstol: Optional[float] = None,
                backward_reltol: Optional[float] = None, backward_maxiters: Optional[int] = None):
    """Differentiable fixed point ``z* = f(z*, *args)`` (the Deep Equilibrium form)."""
    return _implicit("fixed_point", "fixed_point", f, z0, args, solver=solver, abstol=abstol, reltol=reltol,
                     maxiters=maxiters, norm=norm, batch_axis=batch_axis, throw=throw,
                     backward_solver=backward_solver, backward_abstol=backward_abstol,
                     backward_reltol=backward_reltol, backward_maxiters=backward_maxiters)


def root(f, u0, *args, solver=None, abstol: Optional[float] = None, reltol: Optional[float] = None,
         maxiters: int = 1000, norm="max", batch_axis: Optional[int] = None, throw: bool = False,
         backward_solver=None, backward_abstol: Optional[float] = None,
         backward_reltol: Optional[float] = None, backward_maxiters: Optional[int] = None):
    """Differentiable root ``f(u*, *args) = 0``.

    ``solver=None`` picks ``"newton_krylov"`` when registered, else ``"anderson"`` (which
    assumes ``f`` points towards the root, ``f ~ -(u - u*)``).
    """
    if solver is None:
        solver = "newton_krylov" if "newton_krylov" in ss.available() else "anderson"
    return _implicit("root", "root", f, u0, args, solver=solver, abstol=abstol, reltol=reltol,
                     maxiters=maxiters, norm=norm, batch_axis=batch_axis, throw=throw,
                     backward_solver=backward_solver, backward_abstol=backward_abstol,
                     backward_reltol=backward_reltol, backward_maxiters=backward_maxiters)


def steady_state(f, u0, *args, solver=None, abstol: Optional[float] = None, reltol: Optional[float] = None,
                 maxiters: int = 1000, norm="max", batch_axis: Optional[int] = None, throw: bool = False,
                 backward_solver=None, backward_abstol: Optional[float] = None,
                 backward_reltol: Optional[float] = None, backward_maxiters: Optional[int] = None):
    """Differentiable steady state of the autonomous system ``du/dt = f(u, *args)``.

    ``solver=None`` picks ``"dynamic_ss"`` (time stepping) when registered, else
    ``"anderson"``. Any root-finding algorithm works too (it solves ``f(u) = 0``).
    """
    if solver is None:
        solver = "dynamic_ss" if "dynamic_ss" in ss.available() else "anderson"
    return _implicit("steady_state", "steady_state", f, u0, args, solver=solver, abstol=abstol, reltol=reltol,
                     maxiters=maxiters, norm=norm, batch_axis=batch_axis, throw=throw,
                     backward_solver=backward_solver, backward_abstol=backward_abstol,
                     backward_reltol=backward_reltol, backward_maxiters=backward_maxiters)


for _fn in (fixed_point, root, steady_state):
    _fn.__doc__ += _DOC_COMMON

_OPTION_NAMES = ("abstol", "reltol", "maxiters", "norm", "batch_axis", "throw", "backward_solver",
                 "backward_abstol", "backward_reltol", "backward_maxiters")


def _apply_cell(z, cell, x):
    return cell(z, x)


if eqx is not None:

    class DEQ(eqx.Module):
        """A Deep Equilibrium layer: ``z* = cell(z*, x)``, differentiable by implicit differentiation.

        ``cell`` is any callable pytree (typically an Equinox module) mapping ``(z, x)`` to
        the next ``z``; its floating-point arrays are the trainable parameters::

            deq = DEQ(cell, solver="anderson", abstol=1e-6)
            z = deq(x)                       # or: z, stats = deq(x, return_stats=True)

        Options are those of :func:`fixed_point`. ``latent_shape`` fixes the shape of ``z``
        (default: the shape of ``x``); the initial guess is zeros unless ``z0`` is given.
        """

        cell: Any
        solver: Any = eqx.field(static=True)
        latent_shape: Optional[tuple] = eqx.field(static=True)
        options: tuple = eqx.field(static=True)

        def __init__(self, cell, solver="anderson", *, latent_shape=None, **options):
            if not callable(cell):
                raise TypeError(f"DEQ: cell must be callable as cell(z, x), got {type(cell).__name__}")
            unknown = [k for k in options if k not in _OPTION_NAMES]
            if unknown:
                raise TypeError(f"DEQ got an unexpected option {unknown[0]!r}; valid options: "
                                f"{', '.join(_OPTION_NAMES)}")
            resolve(solver)  # fail early on an unknown name
            self.cell = cell
            self.solver = solver
            self.latent_shape = None if latent_shape is None else tuple(latent_shape)
            self.options = tuple(sorted(options.items()))

        def __call__(self, x, z0=None, *, return_stats: bool = False):
            if z0 is None:
                shape = jnp.shape(x) if self.latent_shape is None else self.latent_shape
                z0 = jnp.zeros(shape, dtype=jnp.result_type(x))
            z, stats = fixed_point(_apply_cell, z0, self.cell, x, solver=self.solver, **dict(self.options))
            return (z, stats) if return_stats else z

else:  # pragma: no cover

    class DEQ:  # noqa: D101
        def __init__(self, *a, **k):
            raise ImportError("steadysolve.adapters.jax.DEQ needs equinox (pip install equinox)")
