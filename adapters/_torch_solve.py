"""The autograd glue of the PyTorch adapter: the forward solve, the implicit / phantom backward,
the Jacobian estimate, on tensor or structured (tuple / list / dict) states (used by ``torch.py``)."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, NamedTuple, Optional, Sequence, TypedDict, Union

import torch
from torch import nn
from torch.nn.utils import parametrize

import steadysolve as ss
from steadysolve import _backend as backend
from steadysolve._backend.layout import Layout

from ._implicit import BACKWARD_HINT, FORWARD_HINT, DEQStats, Reporter, adjoint_solve, forward_stats
from ._options import FailedGrad, OnFailure, check_layer_batch_axis, segment
from ._structure import Structure, is_structured, tree_leaves, tree_map

__all__ = ["run", "jacobian_estimate", "parametrizations_once", "state_dtype"]



class _LayerOptions(TypedDict, total=False):
    """The keyword options the multi-scale layers pass on to ``DEQ`` (for type checkers)."""

    abstol: Optional[float]
    reltol: Optional[float]
    maxiters: Optional[int]
    max_nfe: Optional[int]
    norm: Union[str, Callable]
    batch_axis: Optional[int]
    jacobian_reg: float
    on_failure: OnFailure
    failed_grad: FailedGrad
    n_states: int
    indexing: Optional[Sequence[int]]


def _checked(fn: Callable, what: str) -> Callable:
    """``fn`` with its output checked on every call (a cheap shape comparison; type and dtype too)."""

    def g(z, p=None):
        out = fn(z)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"{what} must return a torch.Tensor shaped like z, got {type(out).__name__}")
        if out.shape != z.shape:
            raise ValueError(f"{what} returned shape {tuple(out.shape)} but z has shape {tuple(z.shape)}; "
                             "f must map z to a tensor of the same shape (pass z0= or init= to set the shape "
                             "of z when it differs from x)")
        if out.dtype != z.dtype:
            raise TypeError(f"{what} returned dtype {out.dtype} but z has dtype {z.dtype}; cast the "
                            "parameters/inputs (e.g. module.to(dtype)) so that both agree")
        return out

    return g


class _Autocast(NamedTuple):
    """The caller's ``torch.autocast`` for the state's device, and the dtype the solver works in.

    The precision policy: the solver's own arithmetic (the iterate, Anderson / Broyden histories and
    their small solves, norms, the convergence test, the adjoint's GMRES) runs with autocast off in
    ``work`` = float32 (or the state's dtype when wider); every call of ``f`` runs under the caller's
    autocast (its matmuls and convolutions in bfloat16 / float16) and its output is cast to ``work``.
    A bfloat16 iterate could not pass the default test (its eps, 7.8e-3, exceeds ``reltol=1e-3``), and
    autocast would otherwise also run the solver's Gram products and Krylov dot products in 8 bits."""

    device: str
    dtype: torch.dtype
    cache: bool
    work: torch.dtype

    def off(self):
        return torch.autocast(self.device, enabled=False)

    def wrap(self, fn: Callable) -> Callable:
        def f(z):
            with torch.autocast(self.device, dtype=self.dtype, enabled=True, cache_enabled=self.cache):
                out = fn(z)
            return tree_map(lambda v: v.to(self.work) if isinstance(v, torch.Tensor) and v.is_floating_point()
                            else v, out)
        return f

    def cast(self, z):
        return tree_map(lambda v: v.to(self.work) if isinstance(v, torch.Tensor) and v.is_floating_point() else v, z)


def _autocast(z0) -> Optional[_Autocast]:
    """The caller's autocast state for ``z0``'s device (``None`` when autocast is off there)."""
    leaves = [v for v in tree_leaves(z0)[0] if isinstance(v, torch.Tensor)] if is_structured(z0) else [z0]
    if not leaves or not isinstance(leaves[0], torch.Tensor) or not leaves[0].is_floating_point():
        return None
    dev = leaves[0].device.type
    if not torch.is_autocast_enabled(dev):
        return None
    work = torch.promote_types(leaves[0].dtype, torch.float32)
    return _Autocast(dev, torch.get_autocast_dtype(dev), torch.is_autocast_cache_enabled(), work)


def _refuse_func_transforms(owner: str) -> None:
    """A clear error inside ``torch.func.grad`` / ``vjp`` / ``jacrev`` / ``vmap``, before any work: their
    tensors have no storage, and the solve reads each iteration's residual norms on the host."""
    peek = getattr(getattr(torch._C, "_functorch", None), "peek_interpreter_stack", None)
    if peek is not None and peek() is not None:
        raise RuntimeError(
            f"{owner}: cannot run inside a torch.func transform (grad, vjp, jacrev, jacfwd, vmap): the solve "
            "loop reads the residual on the host every iteration, which functorch's tensors do not allow. "
            "Differentiate with torch.autograd instead: out = torch.func.functional_call(model, params, args) "
            "with params that require grad, then torch.autograd.grad(loss, list(params.values())) (or "
            "loss.backward()); for per-sample gradients, loop over the samples or use the JAX adapter "
            "(jax.vmap(jax.grad(...))).")


class _Call(NamedTuple):
    """What the backward of one DEQ call needs."""

    opts: Any
    z_req: torch.Tensor
    stats: "DEQStats"
    batch: int
    failed: Optional[torch.Tensor]
    report: "Reporter"
    amp: Optional[_Autocast] = None


class _ImplicitGrad(torch.autograd.Function):
    """Outputs ``f(z*, x)`` (the tracked application's value; the derivative of ``f(z*(p), p)`` is that
    of ``z*(p)``); its backward turns ``g`` into ``w = J^T w + g`` for the tracked ``f(z_req, x)``."""

    @staticmethod
    def forward(ctx, f_out, z_star, call):
        ctx.call = call
        ctx.save_for_backward(f_out)
        return f_out.detach().clone()

    @staticmethod
    def backward(ctx, g):
        if torch.is_grad_enabled():  # create_graph=True: w would be treated as a constant -> wrong
            raise RuntimeError("steadysolve DEQ: higher-order derivatives (create_graph=True) through the "
                               "implicit backward are not supported; use backward='phantom' for double backward")
        (f_out,) = ctx.saved_tensors
        call: _Call = ctx.call
        opts, failed = call.opts, call.failed
        if failed is not None and failed.ndim == 0:  # unbatched solve that failed: JFB gradient
            return g, None, None

        def vjp(w):
            (gw,) = torch.autograd.grad(f_out, call.z_req, w, retain_graph=True, allow_unused=True)
            return torch.zeros_like(w) if gw is None else gw

        g = g.contiguous()
        g_solve = g if failed is None else torch.where(failed, torch.zeros_like(g), g)
        with call.amp.off() if call.amp is not None else contextlib.nullcontext():
            fwd_bad = call.stats.forward.retcode_array != 0
            res = adjoint_solve(vjp, g_solve, opts.backward, fixed_point_form=True, batch_axis=opts.batch_axis,
                                forward_failed=fwd_bad if torch.is_tensor(fwd_bad) else torch.as_tensor(fwd_bad),
                                norm=opts.norm)
        call.stats.backward = res.stats
        # the DEQ default's truncated series truncates only elements whose forward failed (already reported):
        # those are counted, not warned; a failure of any other element follows on_failure
        bwd_bad = res.stats.retcode_array != 0
        quiet = opts.backward.truncate and not bool(torch.any(torch.as_tensor(bwd_bad) & ~torch.as_tensor(fwd_bad)))
        (call.report.count if quiet else call.report)(res.stats, call.batch, BACKWARD_HINT)
        w = res.w if failed is None else torch.where(failed, g, res.w)
        return w, None, None


def state_dtype(owner: str, leaves) -> torch.dtype:
    """The dtype of a state's first tensor (the default dtype without one), refused unless real floating
    point: before the default tolerances, which ``torch.finfo`` of it would fail on with an unrelated message."""
    dtype = leaves[0].dtype if leaves and isinstance(leaves[0], torch.Tensor) else torch.get_default_dtype()
    if not dtype.is_floating_point or dtype.is_complex:
        raise TypeError(f"{owner}: z0 must have a real floating-point dtype, got {dtype}")
    return dtype


def _apply(fn: Callable, z0: torch.Tensor, opts, what: str, report: Reporter, failed_grad: str,
           amp: Optional[_Autocast] = None):
    """Solve ``z = fn(z)`` from ``z0``; returns ``(z*, stats, tracked)`` with the gradient attached
    (``tracked = (f_out, z_req)`` is the application the Jacobian regulariser reuses, or None)."""
    if not isinstance(z0, torch.Tensor):
        raise TypeError(f"{what}: z0 must be a torch.Tensor, got {type(z0).__name__}")
    if not z0.is_floating_point():
        raise TypeError(f"{what}: z0 must have a floating-point dtype, got {z0.dtype}")
    opts = check_layer_batch_axis(what.split(":")[0], opts, tuple(z0.shape))
    # max_nfe: the budget of evaluations of f mapped onto this solver for this state size; maxiters: the
    # solver sized for its cap
    opts = opts.budgeted(z0.numel() // max(1, z0.shape[opts.batch_axis] if opts.batch_axis is not None else 1))
    stats = DEQStats(report.failures)
    prob = ss.FixedPointProblem(_checked(fn, what), z0.detach(), None, rowwise=False)  # f closes over x
    with torch.no_grad(), amp.off() if amp is not None else contextlib.nullcontext():
        sol = ss.solve(prob, opts.solver, **opts.solve_kwargs())
    layout = Layout(backend.namespace(("z", z0)), tuple(z0.shape), opts.batch_axis)
    stats.forward = fwd = forward_stats(sol, opts, layout, layout.xp)
    batch = layout.batch
    grad = torch.is_grad_enabled()
    fallback = (" Their gradient falls back to the Jacobian-free one (failed_grad='jfb')."
                if failed_grad == "jfb" and opts.backward.mode == "implicit" and grad else
                " Their gradient is the implicit one at the returned iterate (failed_grad='implicit')."
                if opts.backward.mode == "implicit" and grad else "")
    report(fwd, batch, FORWARD_HINT + fallback)
    z_star = sol.u
    if not grad:
        return z_star, stats, None
    if opts.backward.mode == "phantom":
        z, tau = z_star.detach(), opts.backward.damping
        for _ in range(opts.backward.steps):
            fz = fn(z)
            z = fz if tau == 1.0 else (1.0 - tau) * z + tau * fz
        return z, stats, None
    z_req = z_star.detach().requires_grad_(True)
    f_out = fn(z_req)
    if not f_out.requires_grad:  # nothing upstream needs a gradient
        return z_star, stats, None
    failed = None
    if failed_grad == "jfb" and fwd.nfailed:
        bad = fwd.retcode_array != 0
        failed = bad if opts.batch_axis is None else layout.per_element(bad)
    call = _Call(opts, z_req, stats, batch, failed, report, amp)
    return _ImplicitGrad.apply(f_out, z_star, call), stats, (f_out, z_req)


def run(cell: Callable, z0, opts, what: str, report: Reporter, failed_grad: str):
    """:func:`_apply` on a tensor or a structured (tuple / list / dict) state; the core sees rows
    ``(batch, n)``. Returns ``(z*, stats, tracked, rows_fn, rows_of)`` (``rows_of`` flattens a tree).
    Under ``torch.autocast`` the state is cast to the solver's working dtype and ``f`` wrapped
    (:class:`_Autocast`)."""
    _refuse_func_transforms(what.split(":")[0])
    amp = _autocast(z0)
    if amp is not None:
        cell, z0 = amp.wrap(cell), amp.cast(z0)
    if not is_structured(z0):
        z, stats, tracked = _apply(cell, z0, opts, what, report, failed_grad, amp)
        return z, stats, tracked, cell, (lambda t: t), z
    owner = what.split(":")[0]
    leaves, paths, _ = tree_leaves(z0)
    for path, v in zip(paths, leaves):
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{owner}: every leaf of a structured state must be a torch.Tensor; {path} is a "
                            f"{type(v).__name__}")
    st = Structure(z0, opts.batch_axis, owner)
    rows_fn = st.wrap(cell, what)
    opts = opts.with_batch_axis(None if opts.batch_axis is None else 0)
    rows, stats, tracked = _apply(rows_fn, st.flatten(z0), opts, what, report, failed_grad, amp)
    return st.unflatten(rows), stats, tracked, rows_fn, st.flatten, rows


def run_sampled(cell: Callable, z0, opts, bounds, report: Reporter, failed_grad: str, what: str = "DEQ: f(z, x)"):
    """Fixed-point correction: one :func:`run` per segment of the cap ending at ``bounds`` (in units of
    ``maxiters``, or ``max_nfe``), each from the last state (detached); ``bounds=None``: one run.
    Returns ``(states, the last run's result)``."""
    states, start, done, out = [], z0, 0, None
    for b in bounds or (None,):
        seg = opts if b is None else segment(opts, b - done)
        out = run(cell, start, seg, what, report, failed_grad)
        states.append(out[0])
        start, done = tree_map(torch.Tensor.detach, out[0]) if is_structured(out[0]) else out[0].detach(), b
    return states, out


def jacobian_estimate(tracked, like: torch.Tensor) -> torch.Tensor:
    """Hutchinson estimate of ``||J_f(z*)||_F^2 / dim`` (one Gaussian probe, differentiable)."""
    f_out, z_req = tracked
    v = torch.randn_like(f_out)
    (vj,) = torch.autograd.grad(f_out, z_req, v, create_graph=True, retain_graph=True, allow_unused=True)
    if vj is None:
        return torch.zeros((), dtype=like.dtype, device=like.device)
    return vj.pow(2).sum() / vj.numel()


@contextlib.contextmanager
def parametrizations_once(f):
    """Every ``torch.nn.utils.parametrize`` tensor of the cell (``weight_norm``, ``spectral_norm``, ...)
    computed once per forward, with gradients, and reused by every solver iteration and the tracked
    application (torchdeq's ``reset_norm`` per forward): the solve runs under ``no_grad``, so a cache
    filled by its first evaluation would cut the parameters off from the gradient, and without the
    cache each iteration would recompute (and ``spectral_norm`` re-iterate) the weights."""
    mods = [m for m in f.modules() if parametrize.is_parametrized(m)] if isinstance(f, nn.Module) else []
    if not mods:
        yield
        return
    with parametrize.cached():
        for m in mods:
            for name in m.parametrizations:
                getattr(m, name)
        yield
