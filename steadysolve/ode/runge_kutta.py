"""One explicit Runge-Kutta step with an embedded error estimate, written once for every library.

Arrays are in the solver layout ``(batch, n)``; ``t`` and ``h`` are row times (``(batch, 1)``
arrays, or Python floats for one system), so that every batch element can have its own time and
step size.

The step works in one workspace ``Y`` of shape ``(stages + 1, batch * n)``, allocated once per solve
(:func:`stage_buffer`): row 0 holds ``u`` and row ``j + 1`` the stage ``h k_j``, written *already scaled
by the step* (``fused.set_row_scaled``: on NumPy and PyTorch one multiplication into the row). The
weights are then constants, and stage ``i``'s input ``u + sum_j a_ij h k_j`` is one matrix-vector
product ``[1, a_i] @ Y[:i + 1]``, as are the solution and the local error: besides ``f``, a stage
costs one product and one scaled write, and nothing is stacked. On eager backends the stages are a
Python ``for`` over the constant stage count. Under JAX tracing they are a ``lax.fori_loop`` over the
stages (as diffrax does): the vector field is traced once, and XLA cannot fuse the whole chain of
stage combinations into the user's ``f`` (with a ``u @ W.T`` on a 1-D state and ``W`` a traced
argument, XLA on CPU emits the product as a loop that recomputes its input per output element,
several times slower per evaluation).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from .. import _backend as backend
from .._backend import fused
from .tsit5 import ButcherTableau

__all__ = ["RKStep", "Stages", "rk_step", "dense_eval", "stage_buffer", "coefficients"]


class RKStep(NamedTuple):
    u: Any  # (B, n) the propagated solution at t + h
    f: Any  # (B, n) the vector field at (t + h, u): the next step's first stage (FSAL)
    err: Any  # (B, n) local error estimate sum_j b_err[j] h k_j
    ks: Any  # the scaled stages h k_j, (stages, B * n) (for dense output; valid until the next step)
    nf: int  # vector-field evaluations made by this step (a Python int)
    ey: Any = None  # (B, n) sum_l (b_err^T A)_l h k_l, when asked for (``ButcherTableau.error_inputs``)


class Stages:
    """The workspace of a solve's steps (:func:`stage_buffer`): ``Y`` ``(stages + 1, B * n)`` and, fixed per
    solve, the weights of each product and (libraries that write in place) the slices of ``Y`` they
    read and the ``(B, n)`` views of its rows (``fused.row_views``)."""

    __slots__ = ("Y", "weights", "reads", "rows", "c")

    def __init__(self, xp, tab: ButcherTableau, u):
        B, n = u.shape
        s = tab.stages
        device = backend.device_of(u)
        self.Y = Y = xp.zeros((s + 1, B * n), dtype=u.dtype, device=device)
        C, self.c = coefficients(xp, tab, u.dtype, device)
        # stage inputs 1 .. s - 1, then the solution, the local error and its inputs
        self.weights = [C[i, :i + 1] for i in range(1, s)] + [C[s, :], C[s + 1, 1:], C[s + 2, 1:]]
        self.rows = fused.row_views(xp, Y, (B, n))
        self.reads = None if self.rows is None else [Y[:i + 1, :] for i in range(1, s)] + [Y, Y[1:, :]]


def stage_buffer(xp, tab: ButcherTableau, u) -> Stages:
    """The workspace for steps of states like ``u`` ``(B, n)``, allocated once per solve."""
    return Stages(xp, tab, u)


_COEFFS: dict = {}


def _host_coefficients(tab: ButcherTableau):
    """``(C, c)``: ``C`` is ``(stages + 3, stages + 1)``, the weights on the workspace rows ``[u, h k_1,
    ...]``: row ``i < stages`` gives stage ``i``'s input (``[1, a_i]``, zero padded), row ``stages`` the
    solution (``[1, b]``), row ``stages + 1`` the local error (``[0, b_err]``), row ``stages + 2`` the
    error estimate's inputs (``[0, b_err^T A]``); ``c`` the stage times; nested lists of Python floats."""
    key = id(tab)
    if key not in _COEFFS or _COEFFS[key][0] is not tab:
        s = tab.stages
        C = [[1.0] + [float(v) for v in row] + [0.0] * (s - len(row)) for row in tab.a]
        C += [[1.0] + [float(v) for v in tab.b], [0.0] + [float(v) for v in tab.b_err]]
        C.append([0.0] + list(tab.error_inputs))
        _COEFFS[key] = (tab, C, [float(v) for v in tab.c])
    return _COEFFS[key][1:]


def coefficients(xp, tab: ButcherTableau, dtype, device):
    """The weights of :func:`_host_coefficients` as arrays of ``xp`` (cached per library, dtype and
    device; built fresh while tracing) and the stage times as floats."""
    key = (id(tab), id(xp), dtype, device)
    try:
        hit = _COEFFS.get(key)
    except TypeError:  # an unhashable device
        key, hit = None, None
    if hit is not None and hit[0] is tab:
        return hit[1:]
    C, c = _host_coefficients(tab)
    if backend.is_jax(xp):  # constants of the trace (cheap; a cached tracer would leak)
        return xp.asarray(C, dtype=dtype), c
    out = (tab, backend.from_numpy(xp, C, dtype, device), c)
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


def rk_step(tab: ButcherTableau, f: Callable, t, u, h, k1, work=None, xp=None, stiffness: bool = False) -> RKStep:
    """Advance ``u`` from ``t`` by ``h`` with the pair ``tab``, in the workspace ``work``.

    ``f(t, u)`` returns du/dt; ``k1 = f(t, u)`` is the first stage, supplied by the
    caller (with FSAL it is the previous step's last stage, so a step costs
    ``tab.new_evaluations`` evaluations). ``t=None`` (an autonomous field) skips the
    stage times and calls ``f(None, u)``. ``work`` is the workspace from :func:`stage_buffer`
    (ignored under JAX tracing, where the loop carries its own; None allocates one; a library that
    cannot write in place gets the new ``Y`` back in it).
    Half-precision states combine the stages term by term (weights rounded to half
    precision in a matrix product would cost accuracy). ``stiffness=True`` also returns
    :attr:`RKStep.ey` (one more product).
    """
    xp = backend.namespace(("u", u)) if xp is None else xp
    if backend.is_half(xp, u.dtype):
        return _rk_step_terms(tab, f, t, u, h, k1, stiffness)
    if backend.is_jax(xp) and backend.is_traced(u):
        return _rk_step_jax(xp, tab, f, t, u, h, k1, *coefficients(xp, tab, u.dtype, None), stiffness=stiffness)
    B, n = u.shape
    s = tab.stages
    work = work if work is not None else stage_buffer(xp, tab, u)
    W, R, V, c = work.weights, work.reads, work.rows, work.c
    Y = fused.set_row_scaled(xp, work.Y, 0, u, None, V)
    Y = fused.set_row_scaled(xp, Y, 1, k1, h, V)
    u_stage, k = u, k1
    for i in range(1, s):
        u_stage = fused.weighted_rows(xp, W[i - 1], Y[:i + 1, :] if R is None else R[i - 1], (B, n))
        k = f(None if t is None else t + c[i] * h, u_stage)
        Y = fused.set_row_scaled(xp, Y, i + 1, k, h, V)
    work.Y = Y
    nf = s - 1
    if tab.fsal:
        u_new, f_new = u_stage, k
    else:
        u_new = fused.weighted_rows(xp, W[s - 1], Y, (B, n))
        f_new = f(None if t is None else t + h, u_new)
        nf += 1
    ks = Y[1:, :] if R is None else R[s]
    err = fused.weighted_rows(xp, W[s], ks, (B, n))
    return RKStep(u_new, f_new, err, ks, nf, fused.weighted_rows(xp, W[s + 1], ks, (B, n)) if stiffness else None)


def _rk_step_jax(xp, tab, f, t, u, h, k1, C, c, stiffness=False):
    """The stages as a ``lax.fori_loop``. The loop carries the next stage's input, so the user's ``f``
    always receives a loop-carried array: XLA cannot fuse the stage combination into ``f``'s first
    product (which it would recompute per output element). XLA fuses ``u + h (a_i @ K)`` into one
    pass, so the loop keeps the stages unscaled (a product over one row fewer than the eager
    workspace's, and no scaled write); the scaled stages for dense output are formed only if used."""
    import jax

    B, n = u.shape
    s = tab.stages
    A = C[:, 1:]  # the weights on the stages alone
    K = xp.zeros((s, B * n), dtype=u.dtype)
    K = K.at[0].set(xp.reshape(k1, (B * n,)))
    cs = xp.asarray(c, dtype=t.dtype) if t is not None else None

    def stage(i, carry):
        K, u_stage = carry
        k = f(None if t is None else t + cs[i] * h, u_stage)
        # i is in bounds: a plain dynamic-update-slice (``.at[i].set`` adds an index test and a select)
        K = jax.lax.dynamic_update_index_in_dim(K, xp.reshape(k, (B * n,)), i, 0)
        # the next stage's input; after the last stage, row s of A (the weights b): u_new
        return K, u + h * xp.reshape(A[i + 1] @ K, (B, n))

    K, u_new = jax.lax.fori_loop(1, s, stage, (K, u + h * xp.reshape(A[1] @ K, (B, n))))
    nf = s - 1
    if tab.fsal:
        f_new = xp.reshape(K[s - 1], (B, n))
    else:
        f_new = f(None if t is None else t + h, u_new)
        nf += 1
    err = h * xp.reshape(A[s + 1] @ K, (B, n))
    hks = xp.reshape(xp.reshape(K, (s, B, n)) * h, (s, B * n))
    return RKStep(u_new, f_new, err, hks, nf, h * xp.reshape(A[s + 2] @ K, (B, n)) if stiffness else None)


def _rk_step_terms(tab, f, t, u, h, k1, stiffness=False) -> RKStep:
    hks = [h * k1]
    u_stage, k = u, k1
    for i in range(1, tab.stages):
        incr = _combo(tab.a[i], hks)
        u_stage = u if incr is None else u + incr
        k = f(None if t is None else t + tab.c[i] * h, u_stage)
        hks.append(h * k)
    nf = tab.stages - 1
    if tab.fsal:
        u_new, f_new = u_stage, k
    else:
        u_new = u + _combo(tab.b, hks)
        f_new = f(None if t is None else t + h, u_new)
        nf += 1
    ey = _combo(tab.error_inputs, hks) if stiffness else None
    return RKStep(u_new, f_new, _combo(tab.b_err, hks), tuple(hks), nf, ey)


def dense_eval(tab: ButcherTableau, u, ks, theta, xp=None):
    """The free interpolant ``u(t + theta h) = u + sum_i b_i(theta) h k_i``.

    ``theta`` broadcasts against ``u`` (a Python float or a ``(B, 1)`` array); ``ks`` is the step's
    scaled stages ``h k_i`` (:attr:`RKStep.ks`: the workspace rows, or a tuple of ``(B, n)`` stages).
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
    return u if acc is None else u + acc
