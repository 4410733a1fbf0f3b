"""PyTorch adapter: any steadysolve algorithm as a differentiable Deep Equilibrium (DEQ) layer.

``DEQ(cell, solver="anderson", backward=Implicit(...))``; ``z = deq(x)`` solves ``z = cell(z, x)``.
The forward solve runs under ``torch.no_grad()`` on the tensors themselves (CPU and CUDA
alike) through the core's eager driver. One tracked application ``f(z*, x)`` (with ``z*`` a
fresh leaf) re-attaches the parameters and ``x``; a ``torch.autograd.Function`` outputs
``z*`` and, in the backward pass, replaces the incoming gradient ``g`` by the solution ``w``
of ``w = J_f(z*)^T w + g`` (``adapters/_implicit.adjoint_solve``, on ``torch.autograd.grad``
products), which it sends into that application. This module is glue only.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import torch
from torch import nn

import steadysolve as ss
from steadysolve import backend
from steadysolve.checks import check_callable, check_choice, check_positive
from steadysolve.layout import Layout

from ._implicit import (BACKWARD_HINT, FORWARD_HINT, DEQConvergenceError, DEQStats, Reporter, SolveStats,
                        adjoint_solve, explained, forward_stats)
from ._options import Implicit, Phantom, check_layer_batch_axis, layer_options

__all__ = ["DEQ", "fixed_point", "DEQStats", "SolveStats", "DEQConvergenceError", "Implicit", "Phantom"]

_ON_FAILURE = ("warn", "warn_always", "raise", "ignore")
_OPTIONS = ("solver", "backward", "abstol", "reltol", "maxiters", "norm", "batch_axis", "on_failure", "failed_grad",
            "max_nfe")


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


class _Call(NamedTuple):
    """What the backward of one DEQ call needs."""

    opts: Any
    z_req: torch.Tensor
    stats: "DEQStats"
    batch: int
    failed: Optional[torch.Tensor]
    report: "Reporter"


class _ImplicitGrad(torch.autograd.Function):
    """Outputs ``z*``; its backward turns ``g`` into ``w = J^T w + g`` for the tracked ``f(z_req, x)``."""

    @staticmethod
    def forward(ctx, f_out, z_star, call):
        ctx.call = call
        ctx.save_for_backward(f_out)
        return z_star.clone()

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
        res = adjoint_solve(vjp, g_solve, opts.backward, fixed_point_form=True, batch_axis=opts.batch_axis,
                            norm=opts.norm)
        call.stats.backward = res.stats
        call.report(res.stats, call.batch, BACKWARD_HINT)
        w = res.w if failed is None else torch.where(failed, g, res.w)
        return w, None, None


def _apply(fn: Callable, z0: torch.Tensor, opts, what: str, report: Reporter, failed_grad: str):
    """Solve ``z = fn(z)`` from ``z0``; returns ``(z*, stats, tracked)`` with the gradient attached
    (``tracked = (f_out, z_req)`` is the application the Jacobian regulariser reuses, or None)."""
    if not isinstance(z0, torch.Tensor):
        raise TypeError(f"{what}: z0 must be a torch.Tensor, got {type(z0).__name__}")
    if not z0.is_floating_point():
        raise TypeError(f"{what}: z0 must have a floating-point dtype, got {z0.dtype}")
    opts = check_layer_batch_axis(what.split(":")[0], opts, tuple(z0.shape))
    if opts.max_nfe is not None:  # the budget of evaluations of f, mapped onto this solver for this state size
        opts = opts.budgeted(z0.numel() // max(1, z0.shape[opts.batch_axis] if opts.batch_axis is not None else 1))
    stats = DEQStats(report.failures)
    prob = ss.FixedPointProblem(_checked(fn, what), z0.detach(), None)
    with torch.no_grad():
        sol = ss.solve(prob, opts.solver, **opts.solve_kwargs())
    layout = Layout(backend.namespace(("z", z0)), tuple(z0.shape), opts.batch_axis)
    stats.forward = fwd = forward_stats(sol, opts, layout, layout.xp)
    batch = layout.batch
    grad = torch.is_grad_enabled()
    fallback = (" Their gradient falls back to the Jacobian-free one (failed_grad='jfb')."
                if failed_grad == "jfb" and opts.backward.mode == "implicit" and grad else "")
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
    call = _Call(opts, z_req, stats, batch, failed, report)
    return _ImplicitGrad.apply(f_out, z_star, call), stats, (f_out, z_req)


def _jacobian_estimate(tracked, like: torch.Tensor) -> torch.Tensor:
    """Hutchinson estimate of ``||J_f(z*)||_F^2 / dim`` (one Gaussian probe, differentiable)."""
    f_out, z_req = tracked
    v = torch.randn_like(f_out)
    (vj,) = torch.autograd.grad(f_out, z_req, v, create_graph=True, retain_graph=True, allow_unused=True)
    if vj is None:
        return torch.zeros((), dtype=like.dtype, device=like.device)
    return vj.pow(2).sum() / vj.numel()


def _layer(owner, solver, backward, abstol, reltol, maxiters, norm, batch_axis, on_failure, failed_grad, unknown):
    max_nfe = unknown.pop("max_nfe", None)
    opts = layer_options(owner, solver=solver, abstol=abstol, reltol=reltol, maxiters=maxiters, norm=norm,
                         batch_axis=batch_axis, backward=backward, unknown=unknown, valid=_OPTIONS,
                         max_nfe=max_nfe)
    check_choice(owner, "on_failure", on_failure, _ON_FAILURE)
    check_choice(owner, "failed_grad", failed_grad, ("jfb", "implicit"))
    return opts


class DEQ(nn.Module):
    """A Deep Equilibrium layer: ``deq(x)`` returns ``z*`` with ``z* = f(z*, x)``.

    Parameters
    ----------
    f : an ``nn.Module`` (or callable) ``f(z, x) -> z`` (same shape and dtype as ``z``).
    solver : forward algorithm: any name in ``steadysolve.available()`` or an instance.
    backward : ``"implicit"`` / :class:`Implicit` (exact gradient through ``w = J_f^T w + g``; its
        solver and tolerances are options of the object) or ``"phantom"`` / :class:`Phantom`
        (``steps`` unrolled damped steps from ``z*``).
    abstol, reltol, maxiters, norm : forward convergence test (per batch element):
        ``norm(f(z, x) - z) <= max(abstol, reltol * norm(z))``; the defaults (``reltol=1e-3``, the
        2-norm, 50 iterations) are torchdeq's nominal relative-residual test.
    max_nfe : (keyword, instead of ``maxiters``) a work budget in evaluations of ``f`` counting
        JVPs, the same for every solver: mapped onto each solver's iteration limits (Newton-Krylov:
        Newton iterations x short GMRES; dynamic_ss: RK stages per step); also caps the adjoint.
    batch_axis : axis of ``z`` indexing independent samples (per-sample convergence and
        freezing); ``None`` treats the whole tensor as one system.
    init : optional module ``init(x) -> z0`` (Skip DEQ); its loss ``mean((z0 - z*)^2)``
        (``z*`` detached) is ``deq.init_loss`` after each call.
    jacobian_reg : weight of the Hutchinson estimate of ``||J_f||_F^2 / dim``; when ``> 0``
        ``deq.jac_loss`` holds ``jacobian_reg * estimate`` (differentiable) after each training call.
    on_failure : ``"warn"`` (a ``RuntimeWarning`` the first time a solve of this layer fails;
        ``deq.stats.failures`` counts them all), ``"warn_always"``, ``"raise"``
        (:class:`DEQConvergenceError`) or ``"ignore"``.
    failed_grad : gradient of the samples whose *forward* solve failed: ``"jfb"`` (default) gives
        them the Jacobian-free gradient ``w = g`` (where the solve fails ``I - J_f`` is often
        near-singular and the exact adjoint explodes); ``"implicit"`` solves for them too.

    Notes
    -----
    After each call: ``deq.stats`` (a :class:`DEQStats`), ``deq.forward_stats``,
    ``deq.backward_stats`` (filled by the backward pass), ``deq.jac_loss``, ``deq.init_loss``
    and ``deq.aux_loss`` (their sum, 0 when neither is enabled).

    Examples
    --------
    >>> import torch
    >>> from steadysolve.adapters.torch import DEQ
    >>> lin = torch.nn.Linear(3, 3)
    >>> deq = DEQ(lambda z, x: torch.tanh(0.5 * lin(z) + x), solver="anderson")
    >>> z = deq(torch.randn(4, 3))
    >>> z.shape, deq.forward_stats.successful
    (torch.Size([4, 3]), True)
    """

    def __init__(self, f, solver="anderson", backward="implicit", *, abstol=1e-8, reltol=1e-3, maxiters=None,
                 norm="l2", batch_axis=0, init=None, jacobian_reg=0.0, on_failure="warn", failed_grad="jfb",
                 **unknown):
        super().__init__()
        check_callable("DEQ", "f", f, what="an nn.Module or a callable f(z, x)")
        check_callable("DEQ", "init", init, allow_none=True, what="an nn.Module or a callable init(x) -> z0")
        self.f = f
        self.init = init
        self._opts = _layer("DEQ", solver, backward, abstol, reltol, maxiters, norm, batch_axis, on_failure,
                            failed_grad, unknown)
        self.jacobian_reg = check_positive("DEQ", "jacobian_reg", jacobian_reg, allow_zero=True)
        self.on_failure, self.failed_grad = on_failure, failed_grad
        self._failures = {"forward": 0, "backward": 0}
        self._warned: set = set()
        self.stats: Optional[DEQStats] = None
        self.jac_loss: Optional[torch.Tensor] = None
        self.init_loss: Optional[torch.Tensor] = None

    solver = property(lambda self: self._opts.solver)
    backward_mode = property(lambda self: self._opts.backward.mode)
    forward_stats = property(lambda self: None if self.stats is None else self.stats.forward)
    backward_stats = property(lambda self: None if self.stats is None else self.stats.backward)

    @property
    def aux_loss(self):
        """``jac_loss + init_loss`` of the last call (each only when enabled); 0 otherwise."""
        return sum((t for t in (self.jac_loss, self.init_loss) if t is not None), 0.0)

    def __getstate__(self):  # the last call's stats and losses are transient (tensors with graphs)
        state = self.__dict__.copy()
        state.update(stats=None, jac_loss=None, init_loss=None)
        return state

    def extra_repr(self) -> str:
        o = self._opts
        return (f"solver={o.solver.name or type(o.solver).__name__!r}, backward={o.backward.mode!r}, "
                f"abstol={o.abstol:g}, reltol={o.reltol:g}, maxiters={o.maxiters}, batch_axis={o.batch_axis}")

    @torch.compiler.disable
    def forward(self, x, z0=None):
        # torch.compile: the solve loop (host syncs, data-dependent iteration count) is not
        # traceable; the layer runs eagerly (a graph break) and the rest of the model compiles.
        f = self.f
        z0_tracked = None
        cell = lambda z: f(z, x)  # noqa: E731
        if z0 is None:
            if self.init is not None:
                z0 = z0_tracked = self.init(x)
            elif isinstance(x, torch.Tensor):
                z0 = torch.zeros_like(x)
                cell = explained(cell, tuple(x.shape), "pass z0= (or init=) to set the shape of z")
            else:
                raise TypeError("DEQ: x is not a tensor, so the shape of z is unknown: pass z0= or init=")
        report = Reporter(self.on_failure, self._failures, self._warned)
        z, stats, tracked = _apply(cell, z0, self._opts, "DEQ: f(z, x)", report, self.failed_grad)
        self.stats = stats
        self.jac_loss = None
        if self.jacobian_reg > 0 and self.training and torch.is_grad_enabled():
            if tracked is None:  # phantom backward: one extra tracked application at z*
                z_req = z.detach().requires_grad_(True)
                tracked = (f(z_req, x), z_req)
            est = _jacobian_estimate(tracked, z)
            stats.jac_estimate = float(est.detach())
            self.jac_loss = self.jacobian_reg * est
        self.init_loss = None
        if isinstance(z0_tracked, torch.Tensor):
            self.init_loss = (z0_tracked - z.detach()).pow(2).mean()
        return z


@torch.compiler.disable
def fixed_point(f, x, z0, *params, solver="anderson", backward="implicit", return_stats=False, abstol=1e-8,
                reltol=1e-3, maxiters=None, norm="l2", batch_axis=0, on_failure="warn", failed_grad="jfb",
                **unknown):
    """Functional DEQ: ``z* = f(z*, x, *params)``, differentiable in ``x``, ``params`` and any
    tensor ``f`` closes over.

    Same options and gradients as :class:`DEQ` (``on_failure="warn"`` warns once per call).
    With ``return_stats=True`` returns ``(z, DEQStats)``; ``stats.backward`` is filled by the
    backward pass.

    Examples
    --------
    >>> import torch
    >>> from steadysolve.adapters.torch import fixed_point
    >>> W = (0.5 * torch.eye(2)).requires_grad_(True)
    >>> z = fixed_point(lambda z, x, W: z @ W.T + x, torch.ones(1, 2), torch.zeros(1, 2), W)
    >>> z.sum().backward(); W.grad.round(decimals=2)       # z* = x / (1 - 0.5) = 2
    tensor([[4., 4.],
            [4., 4.]])
    """
    check_callable("fixed_point", "f", f, what="callable f(z, x, *params)")
    for bad in ("init", "jacobian_reg"):
        if bad in unknown:
            raise TypeError(f"fixed_point() does not take {bad}=; use the DEQ module for Skip DEQ and Jacobian "
                            "regularisation")
    opts = _layer("fixed_point", solver, backward, abstol, reltol, maxiters, norm, batch_axis, on_failure,
                  failed_grad, unknown)
    report = Reporter(on_failure, {"forward": 0, "backward": 0}, set())
    z, stats, _ = _apply(lambda z: f(z, x, *params), z0, opts, "fixed_point: f(z, x, *params)", report,
                         failed_grad)
    return (z, stats) if return_stats else z
