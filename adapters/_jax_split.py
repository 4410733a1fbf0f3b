"""Helpers of the JAX adapter: splitting ``f``'s inputs into differentiable / constant arrays,
zero tangents and ``equinox.error_if`` (used by ``jax.py``). Glue only."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

try:  # pragma: no cover - equinox is part of the jax extra
    import equinox as eqx
except ImportError:  # pragma: no cover
    eqx = None

__all__ = ["split_inputs", "zero_tangent", "error_if"]


def _is_dynamic(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic, jax.core.Tracer))


def _is_inexact(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def zero_tangent(x):
    return jnp.zeros_like(x) if _is_inexact(x) else np.zeros(np.shape(x), dtype=jax.dtypes.float0)


def error_if(x, pred, msg):
    if eqx is None:  # pragma: no cover
        raise ValueError("throw=True inside jax.jit needs equinox (pip install equinox)")
    return eqx.error_if(x, pred, msg)


def split_inputs(where, f, z0, args):
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
