"""Array-library plumbing. The only module that imports ``array_api_compat``.

Everything else in the package asks this module for the namespace ``xp`` of the
user's arrays and for the few helpers that the standard leaves out (dtype
checks, host transfers, tracer detection).
"""

from __future__ import annotations

import math
import sys
from typing import Any

import array_api_compat

from . import torch_ops
from .numpy_ns import fast_numpy

__all__ = [
    "namespace",
    "when_any",
    "is_array",
    "is_jax",
    "is_torch",
    "is_traced",
    "one_host_system",
    "device_of",
    "library_name",
    "is_floating",
    "finfo",
    "to_numpy",
    "host_ints",
    "from_numpy",
    "rows_dot",
    "combine_rows",
    "host_bool",
    "tree_leaves",
    "is_half",
    "working_dtype",
    "solve_small",
    "is_singular_error",
    "quiet_host",
    "keep_errstate",
    "no_grad",
    "requires_grad",
    "cast",
    "set_at",
    "host_namespace",
    "take_block",
    "put_block",
    "l2",
    "max_real_eigenvalue",
]


def _ndarray():
    import numpy as np

    return np.ndarray


_NDARRAY = _ndarray()


def is_array(x: Any) -> bool:
    if type(x) is _NDARRAY:  # the common case, without the generic checks
        return True
    return array_api_compat.is_array_api_obj(x) and not isinstance(x, (int, float, complex, bool))


def library_name(x: Any) -> str:
    """A short human name for the array library of ``x`` (for error messages)."""
    if type(x) is _NDARRAY:
        return "numpy"
    if array_api_compat.is_torch_array(x):
        return "torch"
    if array_api_compat.is_jax_array(x):
        return "jax"
    if array_api_compat.is_cupy_array(x):
        return "cupy"
    if array_api_compat.is_numpy_array(x):
        return "numpy"
    mod = type(x).__module__.split(".")[0]
    return mod


def tree_leaves(tree: Any) -> list:
    """Array leaves of a nested tuple/list/dict (and JAX pytrees when JAX is loaded)."""
    if tree is None:
        return []
    if "jax" in sys.modules:
        import jax

        return [leaf for leaf in jax.tree_util.tree_leaves(tree) if is_array(leaf)]
    if isinstance(tree, dict):
        return [leaf for v in tree.values() for leaf in tree_leaves(v)]
    if isinstance(tree, (list, tuple)):
        return [leaf for v in tree for leaf in tree_leaves(v)]
    return [tree] if is_array(tree) else []


def namespace(*named: tuple[str, Any]):
    """Return the array namespace shared by the named arrays.

    ``named`` are ``(name, value)`` pairs; values may be nested containers. Mixing
    array libraries (or devices) raises a ``TypeError`` that names the culprits.
    """
    if _FAST_NUMPY is not None and all(v is None or type(v) is _NDARRAY for _, v in named):
        return _FAST_NUMPY  # plain NumPy arrays: the common case, decided by one type check
    leaves = [(name, leaf) for name, value in named for leaf in tree_leaves(value)]
    if not leaves:
        raise TypeError("no array found among the inputs: u0 must be an array (NumPy, CuPy, PyTorch, JAX, ...)")
    first_name, first = leaves[0]
    lib = library_name(first)
    for name, leaf in leaves[1:]:
        other = library_name(leaf)
        if other != lib:
            raise TypeError(
                f"mixed array libraries: {first_name} is a {lib} array but {name} is a {other} array; "
                "convert all inputs to one library"
            )
    dev = device_of(first)
    for name, leaf in leaves[1:]:
        d = device_of(leaf)
        if d is not None and dev is not None and str(d) != str(dev) and not is_traced(leaf) \
                and not (lib == "jax" and _nested_devices(first, leaf)):
            raise TypeError(f"mixed devices: {first_name} is on {dev} but {name} is on {d}; move them to one device")
    if lib == "numpy" and _FAST_NUMPY is not None:
        return _FAST_NUMPY
    return array_api_compat.array_namespace(*(leaf for _, leaf in leaves))


def _nested_devices(a, b) -> bool:
    """JAX arrays one of whose device sets holds the other's: a parameter on one device next to a
    state sharded over several that include it, which JAX itself computes with (it moves the
    uncommitted one, or raises its own error for committed arrays it cannot place together)."""
    da, db = a.devices(), b.devices()
    return da <= db or db <= da


_FAST_NUMPY = fast_numpy()


def is_jax(xp) -> bool:
    return xp is not _FAST_NUMPY and array_api_compat.is_jax_namespace(xp)


def is_torch(xp) -> bool:
    return xp is not _FAST_NUMPY and array_api_compat.is_torch_namespace(xp)


def is_numpy(xp) -> bool:
    return xp is _FAST_NUMPY or array_api_compat.is_numpy_namespace(xp)


def is_traced(x: Any) -> bool:
    """True when ``x`` is a JAX tracer (inside jit / vmap / grad)."""
    if "jax" not in sys.modules:
        return False
    import jax

    return isinstance(x, jax.core.Tracer)


def device_of(x: Any):
    if is_traced(x):
        return None
    try:
        dev = array_api_compat.device(x)
    except Exception:  # pragma: no cover - libraries without a device notion
        return None
    # A JAX array sharded over several devices reports its sharding, which fits only arrays of its
    # own shape: the solver's small work arrays are left to JAX's placement (uncommitted, they
    # follow the sharded operands they meet).
    return None if getattr(dev, "num_devices", 1) > 1 else dev


def is_floating(xp, dtype) -> bool:
    return xp.isdtype(dtype, "real floating")


def finfo(xp, dtype):
    return xp.finfo(dtype)


def to_numpy(xp, x):
    """Copy an array to a host NumPy array (one device sync on accelerators)."""
    import numpy as np

    if is_torch(xp):
        x = x.detach().cpu()
        if x.dtype.itemsize < 4:  # bfloat16 has no NumPy dtype; float16 is promoted alike
            x = x.float()
        return x.numpy()
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_numpy_array(x) or array_api_compat.is_jax_array(x):
        return np.asarray(x)
    try:  # array_api_strict and other libraries exporting DLPack
        return np.from_dlpack(x)
    except Exception:
        return np.asarray(x.tolist() if hasattr(x, "tolist") else x)


def from_numpy(xp, arr, dtype, device):
    """A small host NumPy array as an array of namespace ``xp`` (one host-to-device copy)."""
    try:
        return xp.asarray(arr, dtype=dtype, device=device)
    except (TypeError, ValueError):
        return xp.asarray(arr.tolist(), dtype=dtype, device=device)


def host_bool(x) -> bool:
    return bool(x)


def when_any(xp, mask, build, skip, operand):
    """``(build(operand), 1)`` if any entry of ``mask`` is true, else ``(skip(operand), 0)``: work that
    no element needs is not done. Eagerly a host branch; under JAX tracing ``lax.cond`` (the count is
    then an int32 array, and integer results of either branch become int32 arrays so both agree)."""
    if is_jax(xp) and is_traced(mask):
        import jax
        import jax.numpy as jnp

        def typed(fn):
            def run(args):
                out = fn(args)
                return tuple(jnp.asarray(x, dtype=jnp.int32) if isinstance(x, int) or (
                    getattr(x, "ndim", None) == 0 and jnp.issubdtype(x.dtype, jnp.integer)) else x for x in out)
            return run

        hit = jnp.any(mask)
        return jax.lax.cond(hit, typed(build), typed(skip), operand), hit.astype(jnp.int32)
    if host_bool(xp.any(mask)):
        return build(operand), 1
    return skip(operand), 0


def host_ints(xp, x) -> list[int]:
    """Transfer a small 1-D integer array to the host in one go (one device sync)."""
    return [int(v) for v in to_numpy(xp, x).reshape(-1).tolist()]


def rows_dot(xp, X, v):
    """Per element ``X[b] @ v[b]``: ``X`` is ``(B, m, n)``, ``v`` is ``(B, n)``; returns ``(B, m)``.

    The fastest spelling differs by library at DEQ and Krylov sizes: XLA on CPU runs ``vecdot``
    far faster than a skinny batched ``matmul``; PyTorch's CPU ``vecdot`` is slower than
    ``v[b] @ X[b]^T``, and its matrix-times-column ``matmul`` slower still; NumPy is indifferent
    (numbers in docs/benchmarks.md).
    """
    if is_jax(xp):
        return xp.vecdot(X, v[:, None, :])
    B, n = v.shape
    if B == 1 and _plain_matmul(xp):  # one element: a 2-D product (NumPy's batched matmul costs more)
        return xp.reshape(X[0, ...] @ v[0, ...], (1, X.shape[1]))
    if is_torch(xp):
        return torch_ops.rows_dot(X, v)
    return xp.reshape(xp.matmul(xp.reshape(v, (B, 1, n)), xp.matrix_transpose(X)), (B, X.shape[1]))


def combine_rows(xp, c, X):
    """Per element ``c[b] @ X[b]``: ``c`` is ``(B, m)``, ``X`` is ``(B, m, n)``; returns ``(B, n)``."""
    B, m = c.shape
    if B == 1 and _plain_matmul(xp):
        return xp.reshape(c[0, ...] @ X[0, ...], (1, X.shape[2]))
    if is_torch(xp):
        return torch_ops.combine_rows(c, X)
    return xp.reshape(xp.matmul(xp.reshape(c, (B, 1, m)), X), (B, X.shape[2]))


def l2(xp, x, axis=-1):
    """The 2-norm along ``axis`` (by default per row of a ``(B, n)`` array), written once for the package.

    Generic spelling ``sqrt(sum(x * x))``; on PyTorch ``linalg.vector_norm``, one kernel instead of
    three (see the benchmarks page). The rounding differs from the generic spelling in the last bit.
    """
    if is_torch(xp):
        return torch_ops.l2(x, axis)
    return xp.sqrt(xp.sum(x * x, axis=axis))


def _plain_matmul(xp) -> bool:
    return xp is _FAST_NUMPY or is_torch(xp)


_HALF: dict = {}


def is_half(xp, dtype) -> bool:
    """True for floating dtypes narrower than 32 bits (float16, bfloat16)."""
    key = (id(xp), dtype)  # the namespace first: dtypes of two libraries are never compared
    try:
        return _HALF[key]
    except KeyError:
        half = _HALF[key] = xp.finfo(dtype).bits < 32
        return half
    except TypeError:  # an unhashable dtype
        return xp.finfo(dtype).bits < 32


def working_dtype(xp, dtype):
    """The dtype of small dense solves and norms: ``float32`` for half precision, else ``dtype``
    (the iterate itself stays in the user's dtype, as in mixed-precision training)."""
    return xp.float32 if is_half(xp, dtype) else dtype


def set_at(xp, x, index, value):
    """Write ``value`` into the workspace ``x`` at ``index`` (integers / slices) and return it.

    In place (``x[index] = value``) on NumPy, CuPy, PyTorch and array_api_strict; ``x.at[index].set``
    on JAX, which XLA performs in place inside ``lax.while_loop``. (array-api-extra's ``at`` does
    the same with a per-call cost that matters on this hot path: see docs/benchmarks.md.)
    """
    if is_jax(xp):
        return x.at[index].set(value)
    x[index] = value
    return x


def _offsets(xp, starts):
    """Offsets of one integer type (XLA's dynamic slices refuse a mix of int32 and int64)."""
    return tuple(xp.asarray(s, dtype=xp.int32) for s in starts)


def take_block(xp, x, starts, sizes):
    """The block of ``x`` of shape ``sizes`` at the offsets ``starts`` (Python ints, or traced ints
    under JAX: ``lax.dynamic_slice``, which XLA compiles to a plain read, not a gather)."""
    if type(x) is not _NDARRAY and is_jax(xp):
        import jax

        return jax.lax.dynamic_slice(x, _offsets(xp, starts), sizes)
    return x[tuple([slice(s, s + k) for s, k in zip(starts, sizes)])]


def put_block(xp, x, starts, value):
    """Write ``value`` into the workspace ``x`` at the offsets ``starts`` and return it (in place as
    :func:`set_at`; under JAX ``lax.dynamic_update_slice``, which takes traced offsets and compiles
    to an in-place write inside ``lax.while_loop``, not a scatter)."""
    if type(x) is not _NDARRAY and is_jax(xp):
        import jax

        return jax.lax.dynamic_update_slice(x, value, _offsets(xp, starts))
    x[tuple([slice(s, s + k) for s, k in zip(starts, value.shape)])] = value
    return x


def cast(xp, x, dtype):
    """``x`` in ``dtype`` (no copy, no operation when it already is)."""
    return x if x.dtype == dtype else xp.astype(x, dtype)


def one_host_system(xp, batch: int) -> bool:
    """ONE system (a batch of one) of NumPy arrays, so eager and on the host: where Python floats beat
    array calls. The small-system engine's predicate (``_small.applies``) and the derivative helpers'
    one-row paths ask this one function."""
    return batch == 1 and is_numpy(xp)


def quiet_host():
    """NumPy's floating-point warnings off for the solver's own host arithmetic: a runaway iterate
    legitimately overflows a norm or a dense step, and the return code reports it (see
    ``problems.with_user_errstate`` for the user's functions, which keep the caller's settings)."""
    import numpy

    return numpy.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore")


def keep_errstate(fn):
    """``fn`` run under the NumPy floating-point error handling in force now (the caller's), also
    when called inside :func:`quiet_host`; None stays None."""
    if fn is None:
        return None
    import numpy

    return numpy.errstate(**numpy.geterr())(fn)


def solve_small(xp, A, b, singular=None):
    """``linalg.solve`` of small batched systems, promoted to float32 for half-precision inputs
    (LAPACK has no half-precision solve on NumPy / PyTorch CPU / JAX) and cast back.

    Never raises for a singular matrix (NumPy and PyTorch do; JAX returns NaN/Inf): the batch is
    then solved by ``singular(A, b)`` when given, else element by element with NaN for the elements
    whose matrix is singular (the callers turn a non-finite solution into an honest return code)."""
    try:
        return _solve_small(xp, A, b)
    except Exception as e:
        if not is_singular_error(e):
            raise
    if singular is not None:
        return singular(A, b)
    if A.ndim == 2:
        return xp.full(b.shape, math.nan, dtype=b.dtype, device=device_of(b))
    parts = []
    for i in range(A.shape[0]):
        try:
            parts.append(_solve_small(xp, A[i:i + 1, ...], b[i:i + 1, ...]))
        except Exception as e:
            if not is_singular_error(e):
                raise
            parts.append(xp.full(b[i:i + 1, ...].shape, math.nan, dtype=b.dtype, device=device_of(b)))
    return xp.concat(parts, axis=0)


def _solve_small(xp, A, b):
    dt = A.dtype
    if is_half(xp, dt):
        return xp.astype(xp.linalg.solve(xp.astype(A, xp.float32), xp.astype(b, xp.float32)), dt)
    if xp is _FAST_NUMPY and A.shape[0] == 1 and A.ndim == 3:  # one system: NumPy's 2-D solve is ~1/3 cheaper
        return xp.linalg.solve(A[0], b[0])[None, ...]
    return torch_ops.solve(A, b) if is_torch(xp) else xp.linalg.solve(A, b)


def is_singular_error(e: BaseException) -> bool:
    """Whether ``e`` is a library's report of an exactly singular matrix (``numpy.linalg.LinAlgError``,
    ``torch.linalg.LinAlgError``), as opposed to a bad call."""
    return "LinAlgError" in type(e).__name__ or (isinstance(e, RuntimeError) and "singular" in str(e).lower())
def max_real_eigenvalue(xp, A):
    """The largest real part of the eigenvalues of each matrix of a ``(B, n, n)`` stack, ``(B,)`` in its
    dtype. The array API has no general eigensolver: PyTorch's and JAX's own (JAX: CPU), LAPACK through
    NumPy for the other libraries (a host round trip)."""
    if is_jax(xp):
        import jax.numpy as jnp

        return jnp.max(jnp.real(jnp.linalg.eigvals(A)), axis=-1).astype(A.dtype)
    if is_torch(xp):
        return torch_ops.max_real_eigenvalue(A)
    import numpy as np

    host = to_numpy(xp, A)
    wide = host.astype(np.float64) if host.dtype.itemsize < 4 else host
    out = np.linalg.eigvals(wide).real.max(axis=-1).astype(host.dtype)
    return out if xp is _FAST_NUMPY else from_numpy(xp, out, A.dtype, device_of(A))


class _NullContext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def no_grad(xp):
    """``torch.no_grad()`` for PyTorch (the core's solve is not differentiable), else a no-op."""
    if is_torch(xp):
        import torch

        return torch.no_grad()
    return _NullContext()


def requires_grad(tree) -> bool:
    """Whether any tensor leaf of ``tree`` requires grad (PyTorch autograd)."""
    return any(getattr(leaf, "requires_grad", False) for leaf in tree_leaves(tree))


# Host arrays: the eager paths' small host-side arrays (driver flags and statistics, GMRES's
# least-squares problem, the unbatched NumPy Runge-Kutta step) are NumPy whatever the user's
# library; algorithm code reaches NumPy only through here, never for the solve's own arrays.
def host_namespace():
    """The array namespace of host-side arithmetic on small NumPy arrays (the package's NumPy
    namespace: the hot functions as methods, and the backend's checks recognise it at once)."""
    return _FAST_NUMPY if _FAST_NUMPY is not None else array_api_compat.array_namespace(host_numpy().zeros(0))


def host_numpy():
    """The host array library (NumPy), for host-side arithmetic on small arrays."""
    import numpy

    return numpy
