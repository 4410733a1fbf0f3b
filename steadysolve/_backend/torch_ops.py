"""PyTorch spellings of the backend's hot helpers (eager solves): direct ``torch`` calls, no wrapper layer.

At DEQ sizes the per-call overhead decides: the array-api-compat ``matmul`` adds promotion checks to
a ``bmm``; ``baddbmm`` computes ``x - c X`` in one kernel without a temporary; both Anderson
products ``X a`` and ``X b`` go in one ``bmm`` of a stacked pair; a difference is written straight
into its history slot (``out=``) instead of a subtraction and a copy. The timings are in
docs/benchmarks.md ("Measurements behind implementation choices"). Nothing here imports torch at
module level.
"""

from __future__ import annotations

__all__ = ["rows_dot", "rows_dot2", "combine_rows", "minus_combined", "solve", "sub_into", "norms_to_host", "l2",
           "row_sumsq", "mul_into", "where", "maximum", "minimum", "max_real_eigenvalue", "from_host", "all_finite",
           "int_of_size", "torch_jvp", "torch_linearize", "adjoint_mismatch", "torch_vjp", "torch_jacobian", "NotRowwise", "REVERSE_MAX_N", "ad_unsupported",
           "NoDerivative"]


def _torch():
    import torch

    return torch


def rows_dot(X, v):
    """``(B, m, n), (B, n) -> (B, m)``: ``v[b] @ X[b]^T`` (the fastest CPU spelling)."""
    return _torch().bmm(v.unsqueeze(1), X.mT).squeeze(1)


def rows_dot2(X, a, b):
    """``(X a, X b)`` per element in one batched product."""
    torch = _torch()
    out = torch.bmm(torch.stack((a, b), 1), X.mT)  # (B, 2, m)
    return out[:, 0], out[:, 1]


def combine_rows(c, X):
    """``(B, m), (B, m, n) -> (B, n)``: ``c[b] @ X[b]``."""
    return _torch().bmm(c.unsqueeze(1), X).squeeze(1)


def minus_combined(x, c, X):
    """``x - c[b] @ X[b]`` per element, in one kernel."""
    return _torch().baddbmm(x.unsqueeze(1), c.unsqueeze(1), X, alpha=-1).squeeze(1)


def solve(A, b):
    return _torch().linalg.solve(A, b)


def sub_into(out, a, b):
    """``out[...] = a - b`` (``out`` a view into a workspace); returns ``out``."""
    return _torch().sub(a, b, out=out)


def l2(x, axis=-1):
    return _torch().linalg.vector_norm(x, dim=axis)


def where(c, a, b):
    return _torch().where(c, a, b)  # Python scalars natively (the compat wrapper converts them: 3 more calls)


def maximum(a, b):
    if isinstance(b, (int, float)):
        return _torch().clamp(a, min=b)  # NaN propagates, as in maximum
    return _torch().maximum(a, b)


def minimum(a, b):
    if isinstance(b, (int, float)):
        return _torch().clamp(a, max=b)
    return _torch().minimum(a, b)


def max_real_eigenvalue(A):
    wide = A.float() if A.dtype in (_torch().float16, _torch().bfloat16) else A
    return _torch().linalg.eigvals(wide).real.amax(dim=-1).to(A.dtype)


def row_sumsq(x):
    return _torch().linalg.vecdot(x, x, dim=-1)


def mul_into(out, a, b):
    return _torch().mul(a, b, out=out)


def from_host(arr, dtype, device):
    torch = _torch()
    return torch.from_numpy(arr).to(device=device, dtype=dtype)


def all_finite(x):
    return _torch().isfinite(x.abs().amax())


def int_of_size():
    """The signed integer dtype of each element size in bytes (to reinterpret floats bitwise)."""
    torch = _torch()
    return {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def norms_to_host(kind, a, b, flag):
    """Per-row ``kind`` norms (``"l2"`` / ``"max"``) of ``a`` and ``b`` (``(B, n)``) and ``flag``
    (``(B,)`` ints or None) as one float64 host array of rows ``[norm(a), norm(b)(, flag)]``."""
    torch = _torch()
    ord_ = 2 if kind == "l2" else float("inf")
    parts = [torch.linalg.vector_norm(a, ord_, dim=1), torch.linalg.vector_norm(b, ord_, dim=1)]
    if flag is not None:
        parts.append(flag.to(a.dtype))
    return torch.stack(parts).cpu().numpy().astype("float64")


# ---------------------------------------------------------------------------------------
# Automatic differentiation of a residual on (B, n) rows (``derivatives.Products``)
# ---------------------------------------------------------------------------------------

class NoDerivative(NotImplementedError):
    """The residual came out of a differentiated evaluation without a derivative (no tangent, no
    ``grad_fn``): autograd lost track of ``u`` (a ``detach``, a NumPy round trip, an operation
    without a derivative formula). A zero Jacobian would be a silent wrong answer."""

    def __init__(self):
        super().__init__("the residual does not depend on u through autograd (a detach(), a NumPy round trip "
                         "or an operation without a derivative formula in f)")


#: fragments of the messages PyTorch raises when it cannot differentiate an operation (lower case)
_AD_MESSAGES = (
    "forward ad", "forward-mode ad", "derivative for", "not differentiable", "does not require grad",
    "can't call numpy()", "cannot access data pointer", "use tensor.detach()", "in-place operation",
    "vmap", "batching rule", "functorch", "torch.func", "is not implemented for", "does not have a grad_fn",
)


def ad_unsupported(e: BaseException) -> bool:
    """Whether ``e``, raised while PyTorch differentiated the user's function, is PyTorch refusing to
    differentiate it (an operation without a forward-mode formula, a NumPy call on a tracked tensor,
    vmap limits ...), which finite differences can replace, rather than an error of the function
    itself (which must reach the user). Narrow on purpose: the exception types PyTorch uses, with one
    of its own message fragments."""
    if isinstance(e, NoDerivative):
        return True
    if not isinstance(e, (RuntimeError, NotImplementedError)):
        return False
    text = str(e).lower()
    return any(m in text for m in _AD_MESSAGES)


def torch_jvp(F):
    import torch.autograd.forward_ad as fwad

    def jvp(u, v, fu):
        with fwad.dual_level():
            out = F(fwad.make_dual(u, v))
            tangent = fwad.unpack_dual(out).tangent
        if tangent is None:
            raise NoDerivative()
        return tangent

    return jvp


def torch_linearize(F, u):
    """``(jvp, vjp)`` at a fixed ``u``, the JVP by reverse over reverse, or None when autograd cannot build it.

    One tracked evaluation ``out = F(u)`` and one backward pass with ``create_graph`` give
    ``g(w) = J^T w``, linear in ``w``; the JVP is then the VJP of ``g`` with cotangent ``v``, one
    backward pass through that graph per product (exact, as forward mode). On CPU forward mode runs
    ``linear`` through Python decompositions, several times an evaluation of ``F``; a Krylov solve
    applies the same Jacobian repeatedly, so the tracked evaluation is paid once per linear solve
    (numbers in docs/benchmarks.md). Returns None (the caller keeps forward mode) when ``F`` cannot be
    differentiated in reverse mode or does not depend on ``u``; an error of ``F`` itself propagates."""
    torch = _torch()
    try:
        with torch.enable_grad():
            u_ = u.detach().requires_grad_(True)
            out = F(u_)
            if not isinstance(out, torch.Tensor) or not out.requires_grad:
                return None
            w = torch.zeros_like(out, requires_grad=True)
            (gw,) = torch.autograd.grad(out, u_, w, create_graph=True, allow_unused=True)
    except Exception as e:
        if ad_unsupported(e):
            return None
        raise
    if gw is None or not gw.requires_grad:  # J^T w does not depend on w: a Jacobian autograd sees as 0
        return None

    def jvp(v):
        with torch.enable_grad():
            (jv,) = torch.autograd.grad(gw, w, v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if jv is None else jv

    def vjp(r):
        (g,) = torch.autograd.grad(out, u_, r, retain_graph=True, allow_unused=True)
        return torch.zeros_like(u_) if g is None else g

    return jvp, vjp


def adjoint_mismatch(jvp, vjp, v) -> tuple:
    """``(J v, mismatch)``: the product, and whether ``<r, J v> = <J^T r, v>`` fails for a random ``r``
    beyond rounding. Reverse over reverse is silently wrong where a backward pass is not itself
    differentiable (a custom ``autograd.Function`` whose backward runs under ``no_grad``, or is marked
    ``once_differentiable``): its second pass drops that path instead of raising; the first-order VJP,
    which training relies on, is right."""
    torch = _torch()
    jv = jvp(v)
    gen = torch.Generator(device=v.device).manual_seed(0)  # not the caller's stream (dropout, data order)
    r = torch.randn(v.shape, dtype=v.dtype, device=v.device, generator=gen)
    jtr = vjp(r)
    a, b = torch.sum(r * jv), torch.sum(jtr * v)
    scale = torch.linalg.vector_norm(r) * torch.linalg.vector_norm(jv) + torch.linalg.vector_norm(jtr) * torch.linalg.vector_norm(v)
    tol = 10.0 * float(torch.finfo(v.dtype).eps) ** 0.5
    return jv, bool(~(torch.abs(a - b) <= tol * scale))


def torch_vjp(F):
    torch = _torch()

    def vjp(u, w):
        with torch.enable_grad():
            u_ = u.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(F(u_), u_, w, allow_unused=True)
        return torch.zeros_like(u) if g is None else g

    return vjp


#: per-row Jacobians of at most this many columns by reverse mode (see ``torch_jacobian``)
REVERSE_MAX_N = 16


class NotRowwise(Exception):
    """``F`` on the stacked rows did not reproduce its residuals on the batch."""


def _reverse_jacobian(F, u, fu, wide):
    """``(B, n, n)`` by reverse mode: row ``i`` of every element's Jacobian is the VJP with ``e_i``.
    With ``wide`` (``F`` on ``n * B`` rows: a row-wise problem) one tracked evaluation on ``n`` stacked
    copies of ``u`` and ONE backward pass; else one evaluation and ``n`` backward passes. Either is
    exact, and for small ``n`` on CPU cheaper than ``vmap`` over forward-mode JVPs, whose functorch
    dispatch sends many elementwise ops through Python decompositions (the systems of
    ``benchmarks/many_small.py``; numbers in docs/benchmarks.md). Raises :class:`NotRowwise` when ``wide`` does not
    reproduce ``fu`` on every copy (the caller then drops it)."""
    torch = _torch()
    B, n = u.shape
    eye = torch.eye(n, dtype=u.dtype, device=u.device)
    with torch.enable_grad():
        if wide is not None:
            uu = u.detach().repeat(n, 1).requires_grad_(True)  # block i: u
            try:
                out = wide(uu)
            except Exception as e:  # e.g. per-element data closed over by f: no stacking
                raise NotRowwise from e
            ref = fu.detach().repeat(n, 1)
            tol = float(torch.finfo(u.dtype).eps) ** 0.5  # an elementwise kernel may round its tail apart
            gap = (out.detach() - ref).abs().max() - tol * (1.0 + ref.abs().max())
            if not bool(gap <= 0):  # NaN included
                raise NotRowwise
            if not out.requires_grad:
                raise NoDerivative()
            w = eye.repeat_interleave(B, dim=0)  # block i: e_i on every row
            g = torch.autograd.grad(out, uu, w, allow_unused=True)[0]
            return torch.zeros((B, n, n), dtype=u.dtype, device=u.device) if g is None else \
                g.reshape(n, B, n).transpose(0, 1)
        uu = u.detach().requires_grad_(True)
        out = F(uu)
        if not out.requires_grad:
            raise NoDerivative()
        rows = [torch.autograd.grad(out, uu, eye[i].expand(B, n), retain_graph=i < n - 1, allow_unused=True)[0]
                for i in range(n)]
    return torch.stack([torch.zeros_like(u) if r is None else r for r in rows], dim=1)


def torch_jacobian(F, wide=None):
    """``jac(u, fu) -> (B, n, n)``, the per-row Jacobian of ``F`` (see :func:`_reverse_jacobian`;
    ``vmap`` over forward-mode JVPs beyond ``REVERSE_MAX_N`` columns or when reverse mode fails)."""
    torch = _torch()

    def jac(u, fu):
        B, n = u.shape
        if n <= REVERSE_MAX_N and fu.shape[1] == n:  # (a least-squares residual of m != n rows: forward mode)
            try:
                return _reverse_jacobian(F, u, fu, wide)
            except (RuntimeError, NotImplementedError) as e:  # not differentiable backwards: forward mode below
                if isinstance(e, NoDerivative) or not ad_unsupported(e):
                    raise
        eye = torch.eye(n, dtype=u.dtype, device=u.device)
        cols = torch.func.vmap(lambda e: torch.func.jvp(F, (u,), (e.expand(B, n),))[1])(eye)  # (n, B, n)
        return cols.permute(1, 2, 0)

    return jac
