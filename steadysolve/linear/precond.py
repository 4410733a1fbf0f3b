"""Preconditioners for GMRES and Newton-Krylov: the protocol and the built-ins.

GMRES is preconditioned on the right: it solves ``A M y = b`` and returns ``x = M y``, so the
residual it measures and stops on is the true residual ``b - A x`` (a preconditioner changes the
work, never the meaning of the tolerance). Two kinds of preconditioner:

* a **fixed callable** ``M(v)``: any linear map, applied to ``(batch, n)`` rows inside
  ``NewtonKrylov`` (to arrays shaped like ``b`` in ``linear_solve``);
* a :class:`Preconditioner`: options (a frozen dataclass) with ``setup(jac) -> data`` from the
  Jacobian at the current Newton point (:class:`JacobianAt`: the sparse values on the problem's
  pattern, the library's sparse matrices, or Jacobian-vector products) and
  ``apply(data, v) -> M v`` on rows. ``NewtonKrylov`` sets it up at the start and refreshes it on
  the schedule ``refresh``: every ``k`` Newton directions (``refresh=1``: at each one, as SciPy's
  ``inner_M.update``), ``"krylov"``: when an inner solve needs more than twice the Krylov steps
  of the first solve after the last setup, or stops short of its tolerance, or ``"growth"``: on the
  first condition only (a truncated inner solve alone is no reason for an expensive setup: :class:`AMG`'s
  default).

Built-ins: :class:`Jacobi` and :class:`BlockJacobi` (written on the array API: NumPy,
array_api_strict, PyTorch, JAX, also under ``jax.jit``), :class:`ILU` (SciPy's ``spilu``) and
:class:`AMG` (PyAMG smoothed aggregation, the ``sparse`` extra); the last two factor on the host
and do not run under ``jax.jit``. In a batch every element gets its own preconditioner, from its
own Jacobian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Union

from .. import _backend as backend
from .._backend import fused
from .._checks import check_int, check_positive

__all__ = ["Preconditioner", "JacobianAt", "Jacobi", "BlockJacobi", "ILU", "AMG", "check_precond"]

#: ``refresh="krylov"``: set up again when an inner solve takes more than this many times the Krylov
#: steps of the first solve after the last setup
KRYLOV_GROWTH = 2


class JacobianAt:
    """The residual's Jacobian at one point of a solve, as a :class:`Preconditioner` may read it.

    Attributes: ``xp`` (the namespace), ``u``, ``fu`` (rows ``(batch, n)``), ``batch``, ``n``.
    :attr:`values` and :attr:`pattern` (the sparse Jacobian, computed at the first access: from the
    problem's sparse ``jac``, else by the colouring of ``sparsity=``), :meth:`matrices` (the library's
    sparse matrices: SciPy CSR per element for NumPy), :meth:`jvp`. The products spent are counted in
    the solve's ``njvp``.
    """

    def __init__(self, ctx, u, fu):
        self.xp, self.u, self.fu = ctx.xp, u, fu
        self.batch, self.n = ctx.batch, ctx.n
        self._ctx = ctx
        self._values = None
        self.nprod = 0

    def _source(self, what):
        src = self._ctx.sparse_jacobians(self.u)
        if src is None:
            raise ValueError(f"{what} needs the residual's sparse Jacobian: give the problem sparsity= "
                             "(steadysolve.sparse) or a jac returning a sparse matrix")
        return src

    @property
    def values(self):
        """``(batch, nnz)`` values on :attr:`pattern` (CSR order)."""
        if self._values is None:
            self._values, nprod = self._source("this preconditioner").at(self.u, self.fu)
            self.nprod += nprod
        return self._values

    @property
    def pattern(self):
        """One element's :class:`steadysolve.sparse.Pattern`."""
        self.values  # noqa: B018 - a pattern read from jac is known after the first Jacobian
        return self._source("this preconditioner").pattern

    def matrices(self):
        """The Jacobians as the library's sparse matrices (``SparseJacobians.matrices``)."""
        return self._source("this preconditioner").matrices(self.values)

    def jvp(self, v):
        """``J v`` per row (one product)."""
        self.nprod += 1
        return self._ctx.jvp(self.u, v, self.fu)


class Preconditioner:
    """Base of the preconditioners set up from the Jacobian (subclasses are frozen dataclasses).

    A subclass defines ``setup(jac: JacobianAt) -> data`` and ``apply(data, v) -> M v`` (``v`` and the
    result ``(batch, n)`` rows, element ``b`` preconditioned by element ``b``'s data). ``data`` is
    carried between Newton steps: arrays for a preconditioner that runs under ``jax.jit``
    (``traceable = True``), any Python objects otherwise. Options every subclass has: ``refresh``
    (the schedule, see :mod:`steadysolve.linear.precond`).

    Examples
    --------
    A preconditioner from Jacobian-vector products alone: the inverse of ``J``'s action on the ones
    vector as a diagonal scaling (exact for a diagonal ``J``).

    >>> import numpy as np, steadysolve as ss
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class RowScale(ss.Preconditioner):
    ...     refresh: int = 1
    ...     def setup(self, jac):
    ...         return 1.0 / jac.jvp(jac.xp.ones_like(jac.u))
    ...     def apply(self, data, v):
    ...         return data * v
    >>> d = np.linspace(1.0, 4.0, 20)
    >>> prob = ss.NonlinearProblem(lambda u, p: d * u + 0.1 * u**3 - 1.0, np.zeros(20))
    >>> sol = ss.solve(prob, ss.NewtonKrylov(precond=RowScale(), recycle=0), abstol=1e-10)
    >>> sol.retcode.name, sol.stats["nlinear"] == sol.stats["nlinsolve"], sol.stats["nprecond"]
    ('Success', True, 4)
    """

    traceable: ClassVar[bool] = True

    def setup(self, jac: JacobianAt):  # pragma: no cover - interface
        raise NotImplementedError

    def apply(self, data, v):  # pragma: no cover - interface
        raise NotImplementedError

    def _check_refresh(self):
        r = getattr(self, "refresh", 1)
        if isinstance(r, str):
            if r not in ("krylov", "growth"):
                raise ValueError(f"{type(self).__name__}: refresh must be a positive int, 'krylov' or 'growth', "
                                 f"got {r!r}")
        else:
            check_int(type(self).__name__, "refresh", r, 1)


def check_precond(owner: str, precond) -> None:
    """A clear error for a preconditioner that is neither a callable nor a :class:`Preconditioner`."""
    if precond is None or isinstance(precond, Preconditioner):
        return
    if not callable(precond):
        raise TypeError(f"{owner}: precond must be a callable M(v), a steadysolve Preconditioner or None, "
                        f"got {type(precond).__name__}")


def _gathered(xp, values, idx, device):
    """``values[:, idx]`` with ``idx == nnz`` reading 0 (a slot the pattern does not store)."""
    B = values.shape[0]
    padded = xp.concat([values, xp.zeros((B, 1), dtype=values.dtype, device=device)], axis=1)
    index = xp.asarray(idx.tolist(), dtype=xp.int32 if backend.is_jax(xp) else xp.int64, device=device)
    return xp.take(padded, index, axis=1)


def _block_slots(pattern, bs: int):
    """For every entry of the ``(n / bs)`` diagonal ``bs x bs`` blocks (C order), its position in the
    pattern's values, or ``nnz`` where the pattern stores nothing."""
    np = backend.host_numpy()
    n, nnz = pattern.n, pattern.nnz
    rows = np.repeat(np.arange(n), np.diff(pattern.indptr))
    cols = np.asarray(pattern.indices)
    nb = n // bs
    slots = np.full(nb * bs * bs, nnz, dtype=np.int64)
    inside = rows // bs == cols // bs
    k = np.nonzero(inside)[0]
    slots[(rows[k] // bs) * bs * bs + (rows[k] % bs) * bs + cols[k] % bs] = k
    return slots


@dataclass(frozen=True)
class BlockJacobi(Preconditioner):
    """Block-Jacobi: ``M`` is the inverse of the Jacobian's diagonal blocks of ``block_size``
    consecutive unknowns (``n`` must be a multiple), inverted once per setup by a batched dense solve.
    Needs the sparse Jacobian (``sparsity=`` or a sparse ``jac``); runs on every array library and under
    ``jax.jit``. A singular block makes ``M`` non-finite, which GMRES reports as ``LinearSolveFailed``.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> A = np.kron(np.eye(10), [[3.0, 1.0], [-1.0, 2.0]])  # 2 x 2 blocks on the diagonal
    >>> prob = ss.NonlinearProblem(lambda u, p: A @ u + 0.1 * u**3 - 1.0, np.zeros(20), sparsity=np.nonzero(A))
    >>> sol = ss.solve(prob, ss.NewtonKrylov(precond=ss.BlockJacobi(2), recycle=0), abstol=1e-10)
    >>> sol.retcode.name, sol.stats["nlinear"] == sol.stats["nlinsolve"]
    ('Success', True)
    """

    block_size: int = 2
    refresh: Union[int, str] = 1

    def __post_init__(self):
        check_int("BlockJacobi", "block_size", self.block_size, 1)
        self._check_refresh()

    def setup(self, jac: JacobianAt):
        xp, bs, n = jac.xp, self.block_size, jac.n
        if n % bs:
            raise ValueError(f"{type(self).__name__}: the state size n = {n} is not a multiple of block_size = {bs}")
        values = jac.values
        device = backend.device_of(values)
        blocks = _gathered(xp, values, _block_slots(jac.pattern, bs), device)
        B, nb = jac.batch, n // bs
        if bs == 1:
            one = xp.ones_like(blocks)
            return xp.where(blocks != 0, one / xp.where(blocks != 0, blocks, one), math.nan)
        A = xp.reshape(blocks, (B * nb, bs, bs))
        eye = xp.eye(bs, dtype=values.dtype, device=device) * xp.ones((B * nb, 1, 1), dtype=values.dtype, device=device)
        inv = backend.solve_small(xp, A, eye)  # NaN for a singular block
        return xp.reshape(inv, (B, nb, bs, bs))  # batch first: the driver selects per element

    def apply(self, data, v):
        bs = self.block_size
        if bs == 1:
            return data * v
        xp = backend.namespace(("v", v))
        B, n = v.shape
        w = xp.matmul(data, xp.reshape(v, (B, n // bs, bs, 1)))
        return xp.reshape(w, (B, n))


@dataclass(frozen=True)
class Jacobi(BlockJacobi):
    """Jacobi: ``M v = v / diag(J)`` (:class:`BlockJacobi` with blocks of one). A zero on the diagonal
    makes ``M`` non-finite: GMRES then reports ``LinearSolveFailed``.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> d = np.linspace(1.0, 4.0, 20)
    >>> prob = ss.NonlinearProblem(lambda u, p: d * u + 0.1 * u**3 - 1.0, np.zeros(20),
    ...                            sparsity=(np.arange(20), np.arange(20)))
    >>> sol = ss.solve(prob, ss.NewtonKrylov(precond=ss.Jacobi(), recycle=0), abstol=1e-10)
    >>> sol.retcode.name, sol.stats["nlinear"] == sol.stats["nlinsolve"]
    ('Success', True)
    """

    block_size: int = 1


def _host_rows(xp, v):
    return backend.host_numpy().asarray(backend.to_numpy(xp, v), dtype=backend.host_numpy().float64)


class HostSolves:
    """The data of a host preconditioner: one solve ``v -> M v`` (1-D float64) per element, ``None``
    where the setup failed (that element's ``M v`` is NaN). Opaque to the driver's per-element selects."""

    __slots__ = ("solves",)

    def __init__(self, solves):
        self.solves = solves

    def __iter__(self):
        return iter(self.solves)


class _HostApply:
    """Shared by the host preconditioners (:class:`HostSolves` data)."""

    traceable: ClassVar[bool] = False

    def apply(self, data, v):
        xp = backend.namespace(("v", v))
        if backend.is_traced(v):
            raise TypeError(f"{type(self).__name__} factors on the host with SciPy and does not run under jax.jit; "
                            "use Jacobi or BlockJacobi there")
        np = backend.host_numpy()
        h = _host_rows(xp, v)
        out = np.empty_like(h)
        for b, solve in enumerate(data):
            out[b] = solve(h[b]) if solve is not None else np.nan
        return fused.from_host(xp, out, v.dtype, backend.device_of(v))

    def _host_matrices(self, jac: JacobianAt):
        """One SciPy CSR matrix per element (on the host, float64), whatever the library."""
        from ..sparse._formats import scipy_matrix

        values = _host_rows(jac.xp, jac.values)
        return [scipy_matrix(jac.pattern, values[b]) for b in range(values.shape[0])]


@dataclass(frozen=True)
class ILU(_HostApply, Preconditioner):
    """Incomplete LU of the sparse Jacobian (SciPy's ``spilu``), one per batch element.

    Parameters: ``drop_tol``, ``fill_factor``, ``permc_spec`` (``spilu``'s; the defaults, a looser drop
    tolerance than ``spilu``'s ``1e-4`` and the minimum-degree ordering of ``J^T + J``, gave the fewest
    Krylov steps per unit of setup time on the Brusselator benchmark, where ``spilu``'s own defaults hit the
    fill limit and precondition worse), ``refresh`` (the schedule; by default ``"krylov"``: a factorisation
    costs many Krylov steps, and on the Brusselator at N = 128 two setups served the whole solve with
    the same Newton and Krylov counts as one per Newton step, in 0.4x the time). Needs the sparse
    Jacobian (``sparsity=`` or a sparse ``jac``). Factors on the host (any eager library; not under
    ``jax.jit``). A Jacobian ``spilu`` cannot factor (exactly singular) gives a NaN ``M``: the inner solve
    reports ``LinearSolveFailed`` and Newton stops honestly.

    Examples
    --------
    A tridiagonal Jacobian: its incomplete LU has no fill, so it is exact; set up at every Newton step, it
    makes every inner solve one Krylov step.

    >>> import numpy as np, steadysolve as ss
    >>> def f(u, p):
    ...     return 3 * u - np.r_[0.0, u[:-1]] - np.r_[u[1:], 0.0] + 0.1 * u**3 - 1.0
    >>> rows = np.r_[np.arange(30), np.arange(1, 30), np.arange(29)]
    >>> cols = np.r_[np.arange(30), np.arange(29), np.arange(1, 30)]
    >>> prob = ss.NonlinearProblem(f, np.zeros(30), sparsity=(rows, cols))
    >>> sol = ss.solve(prob, ss.NewtonKrylov(precond=ss.ILU(refresh=1), recycle=0), abstol=1e-10)
    >>> sol.retcode.name, sol.stats["nlinear"] == sol.stats["nlinsolve"]
    ('Success', True)
    """

    drop_tol: float = 1e-2
    fill_factor: float = 10.0
    permc_spec: str = "MMD_AT_PLUS_A"
    refresh: Union[int, str] = "krylov"

    def __post_init__(self):
        check_positive("ILU", "drop_tol", self.drop_tol)
        check_positive("ILU", "fill_factor", self.fill_factor)
        if self.permc_spec not in ("MMD_AT_PLUS_A", "COLAMD", "MMD_ATA", "NATURAL"):
            raise ValueError(f"ILU: permc_spec must be one of spilu's orderings, got {self.permc_spec!r}")
        self._check_refresh()

    def setup(self, jac: JacobianAt):
        from scipy.sparse.linalg import spilu

        out = []
        for A in self._host_matrices(jac):
            try:
                out.append(spilu(A.tocsc(), drop_tol=self.drop_tol, fill_factor=self.fill_factor,
                                 permc_spec=self.permc_spec).solve)
            except RuntimeError:  # "Factor is exactly singular"
                out.append(None)
        return HostSolves(out)


@dataclass(frozen=True)
class AMG(_HostApply, Preconditioner):
    """Algebraic multigrid (PyAMG's smoothed aggregation, one V-cycle per application), one hierarchy per
    batch element; install ``steadysolve[sparse]`` (PyAMG). Parameters: ``cycle`` (``"V"``, ``"W"``,
    ``"F"``), ``sweep`` (the Gauss-Seidel smoothing of a cycle: ``"single"``, one forward sweep before
    the coarse correction and one backward sweep after it, or ``"symmetric"``, PyAMG's default, a
    forward and a backward sweep on each side: twice the relaxation work, which on the Brusselator at
    N = 128 bought no fewer Newton steps and about 10 % fewer Krylov steps, for 1.2-1.9x the time),
    ``refresh`` (by default ``"growth"``: a new hierarchy only when an inner solve needs more than twice
    the Krylov steps of the first one after the last setup; a setup costs about a hundred Krylov steps
    on the Brusselator at N = 128, where the hierarchy of ``J(u0)`` served the whole solve with the
    Newton and Krylov counts of 7-8 setups under ``"krylov"``). Needs the sparse Jacobian; host only
    (not under ``jax.jit``).

    Examples
    --------
    A 1-D Poisson-like system: one V-cycle per application keeps the Krylov steps per direction few.

    >>> import numpy as np, steadysolve as ss
    >>> def f(u, p):
    ...     return 2 * u - np.r_[0.0, u[:-1]] - np.r_[u[1:], 0.0] + 0.01 * u**3 - 1e-3
    >>> n = 400
    >>> rows = np.r_[np.arange(n), np.arange(1, n), np.arange(n - 1)]
    >>> cols = np.r_[np.arange(n), np.arange(n - 1), np.arange(1, n)]
    >>> prob = ss.NonlinearProblem(f, np.zeros(n), sparsity=(rows, cols))
    >>> sol = ss.solve(prob, ss.NewtonKrylov(precond=ss.AMG()), abstol=1e-10)
    >>> sol.retcode.name, sol.stats["nlinear"] < 20 * sol.stats["nlinsolve"]
    ('Success', True)
    """

    cycle: str = "V"
    refresh: Union[int, str] = "growth"
    sweep: str = "single"

    def __post_init__(self):
        if self.cycle not in ("V", "W", "F"):
            raise ValueError(f"AMG: cycle must be 'V', 'W' or 'F', got {self.cycle!r}")
        if self.sweep not in ("single", "symmetric"):
            raise ValueError(f"AMG: sweep must be 'single' or 'symmetric', got {self.sweep!r}")
        self._check_refresh()

    def setup(self, jac: JacobianAt):
        try:
            import pyamg
        except ImportError as e:  # pragma: no cover - the extra is installed in the test environment
            raise ImportError("AMG needs PyAMG: pip install 'steadysolve[sparse]'") from e
        if self.sweep == "single":
            kw = dict(presmoother=("gauss_seidel", {"sweep": "forward"}),
                      postsmoother=("gauss_seidel", {"sweep": "backward"}))
        else:
            kw = {}
        out = []
        for A in self._host_matrices(jac):
            ml = pyamg.smoothed_aggregation_solver(A.tocsr(), **kw)
            out.append(ml.aspreconditioner(cycle=self.cycle).matvec)
        return HostSolves(out)


def due(pc: Preconditioner, since, ref, last, short):
    """Whether ``pc`` is set up again before this Newton direction: ``since`` directions computed since
    the last setup, ``ref`` the Krylov steps of the first solve after it, ``last`` those of the latest
    solve and ``short`` whether it stopped short of its tolerance (Python values eagerly, 0-d arrays under
    ``jax.jit``)."""
    r = getattr(pc, "refresh", 1)
    if r == "growth":
        return (since > 0) & (last > KRYLOV_GROWTH * ref)
    if isinstance(r, str):  # "krylov"
        return (since > 0) & ((last > KRYLOV_GROWTH * ref) | short)
    return since >= r


def setup_operator(pc, ctx, u, fu):
    """``(data, products spent)`` of ``pc`` set up at rows ``u``."""
    jac = JacobianAt(ctx, u, fu)
    data = pc.setup(jac)
    return data, jac.nprod
