"""One generic explicit Runge-Kutta step with an embedded error estimate.

Arrays are in the solver layout ``(batch, n)``; ``t`` and ``h`` are ``(batch, 1)``
so that every batch element can have its own time and step size.

The stages live in one workspace ``K`` of shape ``(stages, batch * n)``, allocated once
per solve (:func:`stage_buffer`) and written in place with ``backend.set_at``: a stage
combination ``sum_j a_ij k_j`` is then one matrix-vector product ``a_i @ K[:i]`` instead
of ``2 i`` small array operations, and nothing is stacked. On eager backends the stages
are a Python ``for`` over the constant stage count. Under JAX tracing they are a
``lax.fori_loop`` over the stages (as diffrax does): the vector field is traced once, and
XLA cannot fuse the whole chain of stage combinations into the user's ``f`` (with a
``u @ W.T`` on a 1-D state and ``W`` a traced argument, XLA on CPU emits the product as a
loop that recomputes its input per output element: 3x slower per evaluation).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from .. import _backend as backend
from .tsit5 import ButcherTableau

__all__ = ["RKStep", "rk_step", "dense_eval", "stage_buffer", "coefficients"]


class RKStep(NamedTuple):
    u: Any  # (B, n) the propagated solution at t + h
    f: Any  # (B, n) the vector field at (t + h, u): the next step's first stage (FSAL)
    err: Any  # (B, n) local error estimate h * sum_j b_err[j] k_j
    ks: Any  # the stage workspace (stages, B * n) (for dense output; valid until the next step)
    nf: int  # vector-field evaluations made by this step (a Python int)


def stage_buffer(xp, tab: ButcherTableau, u):
    """The stage workspace ``(stages, B * n)`` for states like ``u`` ``(B, n)``."""
    return xp.zeros((tab.stages, u.shape[0] * u.shape[1]), dtype=u.dtype, device=backend.device_of(u))


_COEFFS: dict = {}


def _host_coefficients(tab: ButcherTableau):
    """``(C, c)``: ``C`` is ``(stages + 2, stages)`` -- the rows of ``a`` (zero padded), then ``b``
    and ``b_err`` -- and ``c`` the stage times, as nested lists of Python floats."""
    key = id(tab)
    if key not in _COEFFS or _COEFFS[key][0] is not tab:
        s = tab.stages
        C = [[float(v) for v in row] + [0.0] * (s - len(row)) for row in tab.a]
        C += [[float(v) for v in tab.b], [float(v) for v in tab.b_err]]
        _COEFFS[key] = (tab, C, [float(v) for v in tab.c])
    return _COEFFS[key][1:]


def coefficients(xp, tab: ButcherTableau, dtype, device):
    """The tableau as arrays of ``xp`` (cached per library, dtype and device; built fresh while tracing)."""
    key = (id(tab), id(xp), dtype, device)
    try:
        hit = _COEFFS.get(key)
    except TypeError:  # an unhashable device
        key, hit = None, None
    if hit is not None and hit[0] is tab:
        return hit[1:]
    C, c = _host_coefficients(tab)
    if backend.is_jax(xp):  # constants of the trace (cheap; a cached tracer would leak)
        return xp.asarray(C, dtype=dtype), xp.asarray(c, dtype=dtype)
    out = (tab, backend.from_numpy(xp, C, dtype, device), backend.from_numpy(xp, c, dtype, device))
    if key is not None:
        _COEFFS[key] = out
    return out[1:]


def _combo(coeffs, ks):
    """sum_j coeffs[j] * ks[j] skipping zero coefficients (None when all are zero)."""
    acc = None
    for c, k in zip(coeffs, ks):
        if c == 0.0:
            continue
        term = k if c == 1.0 else c * k
        acc = term if acc is None else acc + term
    return acc


def rk_step(tab: ButcherTableau, f: Callable, t, u, h, k1, K=None, xp=None) -> RKStep:
    """Advance ``u`` from ``t`` by ``h`` with the pair ``tab``, the stages written into ``K``.

    ``f(t, u)`` returns du/dt; ``k1 = f(t, u)`` is the first stage, supplied by the
    caller (with FSAL it is the previous step's last stage, so a step costs
    ``tab.new_evaluations`` evaluations). ``t=None`` (an autonomous field) skips the
    stage times and calls ``f(None, u)``. ``K`` is the workspace from :func:`stage_buffer`
    (ignored under JAX tracing, where the loop carries its own; None allocates one).
    Half-precision states keep the per-term combinations (coefficients rounded to half
    would cost accuracy).
    """
    xp = backend.namespace(("u", u)) if xp is None else xp
    if backend.is_half(xp, u.dtype):
        return _rk_step_terms(tab, f, t, u, h, k1)
    B, n = u.shape
    s = tab.stages
    C, c = coefficients(xp, tab, u.dtype, backend.device_of(u))
    if backend.is_jax(xp) and backend.is_traced(u):
        return _rk_step_jax(xp, tab, f, t, u, h, k1, C, c)
    if K is None:
        K = stage_buffer(xp, tab, u)
    K = backend.set_at(xp, K, (0, slice(None)), xp.reshape(k1, (B * n,)))
    u_stage, k = u, k1
    for i in range(1, s):
        incr = xp.reshape(C[i, :i] @ K[:i, :], (B, n))
        u_stage = u + h * incr
        k = f(None if t is None else t + tab.c[i] * h, u_stage)
        K = backend.set_at(xp, K, (i, slice(None)), xp.reshape(k, (B * n,)))
    nf = s - 1
    if tab.fsal:
        u_new, f_new = u_stage, k
    else:
        u_new = u + h * xp.reshape(C[s, :] @ K, (B, n))
        f_new = f(None if t is None else t + h, u_new)
        nf += 1
    err = h * xp.reshape(C[s + 1, :] @ K, (B, n))
    return RKStep(u_new, f_new, err, K, nf)


def _rk_step_jax(xp, tab, f, t, u, h, k1, C, c):
    """The stages as a ``lax.fori_loop``. The loop carries the next stage's input, so the user's ``f``
    always receives a loop-carried array: XLA cannot fuse the stage combination into ``f``'s first
    product (which it would recompute per output element)."""
    import jax

    B, n = u.shape
    s = tab.stages
    K = xp.zeros((s, B * n), dtype=u.dtype)
    K = K.at[0].set(xp.reshape(k1, (B * n,)))

    def stage(i, carry):
        K, u_stage = carry
        k = f(None if t is None else t + c[i] * h, u_stage)
        # i is in bounds: a plain dynamic-update-slice (``.at[i].set`` adds an index test and a select)
        K = jax.lax.dynamic_update_index_in_dim(K, xp.reshape(k, (B * n,)), i, 0)
        # the next stage's input; after the last stage, row s of C (the weights b): u_new
        return K, u + h * xp.reshape(C[i + 1] @ K, (B, n))

    K, u_new = jax.lax.fori_loop(1, s, stage, (K, u + h * xp.reshape(C[1] @ K, (B, n))))
    nf = s - 1
    if tab.fsal:
        f_new = xp.reshape(K[s - 1], (B, n))
    else:
        f_new = f(None if t is None else t + h, u_new)
        nf += 1
    err = h * xp.reshape(C[s + 1] @ K, (B, n))
    return RKStep(u_new, f_new, err, K, nf)


def _rk_step_terms(tab, f, t, u, h, k1) -> RKStep:
    ks = [k1]
    u_stage = u
    for i in range(1, tab.stages):
        incr = _combo(tab.a[i], ks)
        u_stage = u if incr is None else u + h * incr
        ks.append(f(None if t is None else t + tab.c[i] * h, u_stage))
    nf = tab.stages - 1
    if tab.fsal:
        u_new, f_new = u_stage, ks[-1]
    else:
        u_new = u + h * _combo(tab.b, ks)
        f_new = f(None if t is None else t + h, u_new)
        nf += 1
    err = h * _combo(tab.b_err, ks)
    return RKStep(u_new, f_new, err, tuple(ks), nf)


def dense_eval(tab: ButcherTableau, u, h, ks, theta, xp=None):
    """The free interpolant ``u(t + theta h) = u + h sum_i b_i(theta) k_i``.

    ``theta`` broadcasts against ``u`` (a Python float or a ``(B, 1)`` array); ``ks`` is the
    step's stage workspace (or a tuple of stages).
    """
    if tab.dense is None:
        raise ValueError(f"tableau {tab.name!r} has no dense output coefficients")
    if not isinstance(ks, tuple):
        xp = xp if xp is not None else backend.namespace(("u", u))
        ks = tuple(xp.reshape(ks[i, :], tuple(u.shape)) for i in range(tab.stages))
    acc = None
    for poly, k in zip(tab.dense, ks):
        # Horner: b_i(theta) = theta * (d_1 + theta * (d_2 + ...))
        bi = None
        for d in reversed(poly):
            bi = d if bi is None else d + theta * bi
        if bi is None:
            continue
        term = (theta * bi) * k
        acc = term if acc is None else acc + term
    return u if acc is None else u + h * acc
