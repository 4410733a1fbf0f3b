"""The linear solves of a Rosenbrock step: ``W U = rhs`` with ``W = I / (h gamma) - J``, one ``W`` per step.

A *W-solver* is a small frozen object with one class attribute and two methods:

* ``jacobian``: the form of ``J`` the caller builds for it -- ``"dense"``, a ``(B, n, n)`` array
  (a sparse matrix and a matrix-free ``v -> J v`` are the forms a sparse LU and a Krylov W-method
  will ask for);
* ``factor(xp, J, hgamma) -> fact``: prepare ``W`` for the step (``hgamma`` is ``(B, 1)``, one step
  size per element), once per step: a step of an ``s``-stage method then makes ``s`` solves with it;
* ``solve(xp, fact, rhs) -> x``: ``x = W^-1 rhs`` for a ``(B, n)`` right-hand side.

``factorizations`` says how many factorisations ``factor`` counts (0 for a matrix-free solver).
The integrator never looks inside ``fact``.

:class:`DenseLU` factorises the dense ``W`` with the library's batched LU (``torch.linalg``,
``jax.scipy.linalg``, SciPy's ``lu_factor`` for NumPy; without SciPy, and on libraries without an LU,
the inverse from the standard ``linalg.inv``). A singular ``W`` (``1 / (h gamma)`` an eigenvalue of
``J``) gives non-finite stages for that element only, so the step is rejected and retried with a
smaller ``h`` (a different ``W``) instead of raising; on the ``inv`` fallback a singular matrix
anywhere in the batch rejects the whole batch's step.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

from .. import _backend as backend

__all__ = ["DenseLU"]


@dataclass(frozen=True)
class DenseLU:
    """Dense LU factorisation of ``W = I / (h gamma) - J`` (batched, per element), for systems small
    enough for a dense Jacobian (the LU costs ``2 n^3 / 3`` per step, each stage's solve ``2 n^2``).

    Half-precision states are factorised in float32.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> from steadysolve.ode import DenseLU
    >>> J = np.array([[[-2.0, 1.0], [0.0, -3.0]]])
    >>> fact = DenseLU().factor(np, J, np.array([[0.5]]))
    >>> np.round(DenseLU().solve(np, fact, np.array([[4.0, 5.0]])), 6)    # (2 I - J) x = rhs
    array([[1.25, 1.  ]])
    """

    jacobian: ClassVar[str] = "dense"
    factorizations: ClassVar[int] = 1

    def factor(self, xp, J, hgamma):
        B, n = J.shape[0], J.shape[1]
        dtype = J.dtype
        work = backend.working_dtype(xp, dtype)
        eye = xp.reshape(xp.eye(n, dtype=work, device=backend.device_of(J)), (1, n, n))
        W = eye / xp.reshape(backend.cast(xp, hgamma, work), (B, 1, 1)) - backend.cast(xp, J, work)
        if backend.is_torch(xp):
            import torch

            LU, piv, _ = torch.linalg.lu_factor_ex(W)
            return ("torch", LU, piv, dtype)
        if backend.is_jax(xp):
            import jax.scipy.linalg as jsl

            return ("jax",) + tuple(jsl.lu_factor(W)) + (dtype,)
        if backend.is_numpy(xp):
            lu = _scipy_lu(W)
            if lu is not None:
                return ("scipy",) + lu + (dtype,)
        try:
            return ("inv", xp.linalg.inv(W), None, dtype)
        except (ValueError, RuntimeError):  # a singular W in the batch (NumPy's LinAlgError is a ValueError)
            return ("inv", xp.full_like(W, math.nan), None, dtype)

    def solve(self, xp, fact, rhs):
        kind, a, b, dtype = fact
        work = a.dtype
        r = backend.cast(xp, rhs, work)
        if kind == "torch":
            import torch

            x = torch.linalg.lu_solve(a, b, r[..., None])[..., 0]
        elif kind == "jax":
            import jax.scipy.linalg as jsl

            x = jsl.lu_solve((a, b), r[..., None])[..., 0]
        elif kind == "scipy":
            x = _scipy_solve(a, b, r)
        else:
            x = xp.reshape(a @ xp.reshape(r, (r.shape[0], r.shape[1], 1)), r.shape)
        return backend.cast(xp, x, dtype)


_SCIPY: list = []  # [scipy.linalg] once imported, [None] when SciPy is missing


def _linalg():
    if not _SCIPY:
        try:
            import scipy.linalg as sl
        except ImportError:  # pragma: no cover - SciPy is installed alongside the benchmarks and tests
            sl = None
        _SCIPY.append(sl)
    return _SCIPY[0]


def _scipy_lu(W):
    """SciPy's LU of the ``(B, n, n)`` NumPy stack (LAPACK's ``getrf`` for one element, the batched
    ``lu_factor`` otherwise), or None (no SciPy, or a SciPy without batched ``lu_factor``: the caller
    inverts instead)."""
    sl = _linalg()
    if sl is None:
        return None
    if W.shape[0] == 1:  # LAPACK directly: SciPy's wrappers cost more than the factorisation at small n
        getrf, getrs = sl.get_lapack_funcs(("getrf", "getrs"), (W,))
        lu, piv, _ = getrf(W[0], overwrite_a=True)  # info > 0 (singular): the solves say it (inf / nan)
        return lu, (piv, getrs)
    with warnings.catch_warnings():  # an exactly singular W: the non-finite stages say it
        warnings.simplefilter("ignore")
        try:
            return tuple(sl.lu_factor(W, check_finite=False))
        except ValueError:  # SciPy < 1.15: 2-D arrays only
            return None


def _scipy_solve(lu, piv, r):
    if lu.ndim == 2:
        piv, getrs = piv
        x, _ = getrs(lu, piv, r[0])
        return x[None]
    return _linalg().lu_solve((lu, piv), r[..., None], check_finite=False)[..., 0]
