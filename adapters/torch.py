"""PyTorch adapter: any steadysolve algorithm as a differentiable Deep Equilibrium (DEQ) layer.

``DEQ(cell, solver="anderson", backward=Implicit(...))``; ``z = deq(x)`` solves ``z = cell(z, x)``
under ``torch.no_grad()`` through the core's eager driver; one tracked application ``f(z*, x)``
re-attaches the parameters and ``x``, and its backward replaces the incoming gradient ``g`` by the
solution ``w`` of ``w = J_f(z*)^T w + g`` (``adapters/_implicit.adjoint_solve``). Glue only.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, Sequence, TypeVar, Union, get_args

import torch
from torch import nn

from steadysolve import Algorithm, Polyalgorithm
from steadysolve._checks import check_callable, check_choice, check_positive
from steadysolve.termination import default_tolerance

from ._implicit import DEQConvergenceError, DEQStats, Reporter, SolveStats, explained
from ._options import cap_of, layer_options, sample_bounds
from .backward import DEFAULT_ADJOINT, DEQ_ADJOINT, Implicit, Phantom
from ._structure import is_structured, tree_leaves, tree_map
from ._torch_solve import (FailedGrad, OnFailure, _LayerOptions, jacobian_estimate, parametrizations_once, run,
                           run_sampled, state_dtype)
from ._least_squares import torch_least_squares as least_squares
from ._multiscale import check_shapes
from ._torch_multiscale import MultiScaleCell, per_scale_or_callable
from ._torch_dropout import VariationalDropout, reset_dropout

if TYPE_CHECKING:
    from typing_extensions import Never, Unpack  # typing's own from Python 3.11

__all__ = ["DEQ", "MultiScaleDEQ", "MultiScaleSkipDEQ", "fixed_point", "VariationalDropout", "DEQStats", "SolveStats",
           "DEQConvergenceError", "Implicit", "Phantom", "least_squares"]

Solver = Union[str, Algorithm, Polyalgorithm]
Backward = Union[Literal["implicit", "phantom"], Implicit, Phantom]
_OPTIONS = ("solver", "backward", "abstol", "reltol", "maxiters", "max_nfe", "norm", "batch_axis", "on_failure",
            "failed_grad")

#: the forward test's tolerances when neither is given: torchdeq's nominal relative residual
DEFAULT_TOLERANCES = (1e-8, 1e-3)

_Fn = TypeVar("_Fn", bound=Callable)


def _not_compiled(fn: _Fn) -> _Fn:
    """``torch.compiler.disable``, typed so that checkers keep ``fn``'s signature. ``torch.compile``
    cannot trace the solve loop (host syncs, a data-dependent number of iterations)."""
    return torch.compiler.disable(fn)


def _layer(owner, solver, backward, abstol, reltol, maxiters, norm, batch_axis, on_failure, failed_grad, unknown,
           defaults=DEFAULT_TOLERANCES, default_maxiters=50, default_adjoint=DEQ_ADJOINT):
    max_nfe = unknown.pop("max_nfe", None)
    opts = layer_options(owner, solver=solver, abstol=abstol, reltol=reltol, maxiters=maxiters, norm=norm,
                         batch_axis=batch_axis, backward=backward, unknown=unknown, valid=_OPTIONS,
                         max_nfe=max_nfe, defaults=defaults, default_maxiters=default_maxiters, deq=True,
                         default_adjoint=default_adjoint)
    check_choice(owner, "on_failure", on_failure, get_args(OnFailure))
    check_choice(owner, "failed_grad", failed_grad, ("jfb", "implicit"))
    return opts


def _all_tensors(x) -> bool:
    return is_structured(x) and bool(x) and all(isinstance(v, torch.Tensor) for v in tree_leaves(x)[0])


class DEQ(nn.Module):
    """A Deep Equilibrium layer: ``deq(x)`` returns ``z*`` with ``z* = f(z*, x)``.

    Parameters
    ----------
    f
        An ``nn.Module`` (or callable) ``f(z, x) -> z`` (same shape and dtype as ``z``).
    solver
        Forward algorithm: any name in ``steadysolve.available()`` or an instance; ``"auto"``:
        Anderson, then Broyden from its best iterate (one evaluation of ``f`` per iteration each).
    backward
        ``"implicit"`` / ``Implicit`` (the implicit gradient, ``w = J_f^T w + g``, by default the
        capped Neumann series, see ``Implicit``) or ``"phantom"`` / ``Phantom`` (``steps``
        unrolled damped steps from ``z*``). With the implicit backward and gradients enabled the
        layer returns ``f(z*, x)``, the application it differentiates (derivative that of ``z*``).
    abstol
        Forward convergence test (per batch element):
        ``norm(f(z, x) - z) <= max(abstol, reltol * norm(z))`` (``norm(z)`` capped at 100 times the
        start's scale, see the core's concepts page); with neither tolerance given ``abstol=1e-8,
        reltol=1e-3`` (with the 2-norm and 50 iterations: torchdeq's nominal relative-residual test);
        with exactly one given the other is 0, so that ``abstol=1e-10`` alone binds.
    reltol
        The relative part of the test above.
    maxiters
        The forward iteration cap (default 50).
    norm
        The norm of the test (default ``"l2"``).
    max_nfe
        (keyword, instead of ``maxiters``) a work budget in evaluations of ``f`` counting
        JVPs, the same for every solver: mapped onto each solver's iteration limits (Newton-Krylov:
        Newton iterations x short GMRES; dynamic_ss: RK stages per step); also caps the adjoint.
    batch_axis
        Axis of ``z`` indexing independent samples (per-sample convergence and
        freezing); ``None`` treats the whole tensor as one system.
    init
        Optional module ``init(x) -> z0`` (Skip DEQ); its loss ``mean((z0 - z*)^2)``
        (``z*`` detached) is ``deq.init_loss`` after each call.
    jacobian_reg
        Weight of the Hutchinson estimate of ``||J_f||_F^2 / dim``; when ``> 0``
        ``deq.jac_loss`` holds ``jacobian_reg * estimate`` (differentiable) after each training call.
    on_failure
        ``"warn"`` (a ``steadysolve.ConvergenceWarning`` the first time a solve of this layer fails;
        ``deq.stats.failures`` counts them all), ``"warn_always"``, ``"raise"``
        (``DEQConvergenceError``) or ``"ignore"``.
    n_states
        Fixed-point correction (torchdeq's ``n_states``): ``k > 1`` makes a training call return
        a tuple of ``k`` states, the cap cut into ``k`` segments each solved from the last state,
        each with its own implicit gradient; without gradients ``(z*,)``. ``deq.stats``: the last.
    indexing
        Instead of ``n_states``: where the states end, in units of the cap (torchdeq's ``indexing``).
    failed_grad
        Gradient of the samples whose *forward* solve failed (stopped at its cap):
        ``"implicit"`` (default, as torchdeq) applies the implicit gradient at the returned
        (best) iterate, whatever its residual; ``"jfb"`` gives them the Jacobian-free gradient
        ``w = g``.

    Notes
    -----
    After each call: ``deq.stats`` (a ``DEQStats``), ``deq.forward_stats``,
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

    def __init__(self, f: Callable, solver: Solver = "anderson", backward: Backward = "implicit", *,
                 abstol: Optional[float] = None, reltol: Optional[float] = None, maxiters: Optional[int] = None,
                 norm: Union[str, Callable] = "l2", batch_axis: Optional[int] = 0, init: Optional[Callable] = None,
                 jacobian_reg: float = 0.0, on_failure: OnFailure = "warn", failed_grad: FailedGrad = "implicit",
                 max_nfe: Optional[int] = None, n_states: int = 1, indexing: Optional[Sequence[int]] = None,
                 **unknown: Never):
        super().__init__()
        check_callable("DEQ", "f", f, what="an nn.Module or a callable f(z, x)")
        check_callable("DEQ", "init", init, allow_none=True, what="an nn.Module or a callable init(x) -> z0")
        self.f = f
        self.init = init
        self._opts = _layer("DEQ", solver, backward, abstol, reltol, maxiters, norm, batch_axis, on_failure,
                            failed_grad, dict(unknown, max_nfe=max_nfe))
        self.jacobian_reg = check_positive("DEQ", "jacobian_reg", jacobian_reg, allow_zero=True)
        self.on_failure, self.failed_grad = on_failure, failed_grad
        self._bounds = sample_bounds("DEQ", n_states, indexing, cap_of(self._opts))
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
        with parametrizations_once(self.f):
            return self._forward(x, z0)

    def _forward(self, x, z0):
        f = self.f
        reset_dropout(f)
        z0_tracked = None
        cell = lambda z: f(z, x)  # noqa: E731
        if z0 is None:
            if self.init is not None:
                z0 = z0_tracked = self.init(x)
            elif isinstance(x, torch.Tensor) or _all_tensors(x):
                z0 = torch.zeros_like(x) if isinstance(x, torch.Tensor) else tree_map(torch.zeros_like, x)
                shape = tuple(x.shape) if isinstance(x, torch.Tensor) else None
                cell = explained(cell, shape, "pass z0= (or init=) to set the shape of z")
            else:
                raise TypeError("DEQ: x is not a tensor, so the shape of z is unknown: pass z0= or init=")
        report = Reporter(self.on_failure, self._failures, self._warned)
        bounds = self._bounds if self.training and torch.is_grad_enabled() else None
        states, (z, stats, tracked, rows_fn, rows_of, rows) = run_sampled(cell, z0, self._opts, bounds, report,
                                                                          self.failed_grad)
        self.stats = stats
        self.jac_loss = None
        if self.jacobian_reg > 0 and self.training and torch.is_grad_enabled():
            if tracked is None:  # phantom backward: one extra tracked application at z*
                z_req = rows.detach().requires_grad_(True)
                tracked = (rows_fn(z_req), z_req)
            est = jacobian_estimate(tracked, rows)
            stats.jac_estimate = float(est.detach())
            self.jac_loss = self.jacobian_reg * est
        self.init_loss = None
        if z0_tracked is not None:
            self.init_loss = (rows_of(z0_tracked) - rows.detach()).pow(2).mean()
        return tuple(states) if self._bounds is not None else z


class MultiScaleDEQ(DEQ):
    """A multi-scale DEQ (MDEQ): one equilibrium over all scales, ``deq(x) -> (z*_0, ..., z*_{S-1})``.

    ``main_layers[i](z_i, inj_i)`` is scale ``i``'s block; ``mapping_layers[i][j]`` maps scale ``j``'s
    output to scale ``i`` (an ``S x S`` matrix of modules: downsampling convolutions below the
    diagonal, upsampling above; ``None`` on the diagonal is the identity, ``None`` elsewhere no
    connection); the fused sum goes through ``post_fuse_layer`` (``None``, one module per scale,
    or one callable on the tuple). ``injection``: one module per scale applied to ``x``, a callable
    ``x -> tuple``, or ``None`` when ``x`` already is the tuple of per-scale injections. ``shapes``:
    the per-sample shape of each scale's state (default: that of its injection); the state starts at
    zeros. Options as ``DEQ``; the continuous variant (the Julia package's ``MultiScaleNeuralODE``)
    is ``solver="dynamic_ss"``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from steadysolve.adapters.torch import MultiScaleDEQ
    >>> class Block(nn.Module):                  # scale i's block: its own state and injection
    ...     def __init__(self, c):
    ...         super().__init__(); self.lin = nn.Linear(c, c)
    ...     def forward(self, z, inj):
    ...         return torch.tanh(0.5 * self.lin(z) + inj)
    >>> deq = MultiScaleDEQ([Block(4), Block(2)], [[None, nn.Linear(2, 4)], [nn.Linear(4, 2), None]],
    ...                     injection=[nn.Linear(3, 4), nn.Linear(3, 2)])
    >>> z_fine, z_coarse = deq(torch.randn(5, 3))
    >>> z_fine.shape, z_coarse.shape, deq.forward_stats.successful
    (torch.Size([5, 4]), torch.Size([5, 2]), True)
    """

    def __init__(self, main_layers: Any, mapping_layers: Any, post_fuse_layer: Any = None, solver: Solver = "anderson",
                 backward: Backward = "implicit", *, shapes: Any = None, injection: Any = None, init: Any = None,
                 **options: Unpack[_LayerOptions]):
        owner = type(self).__name__
        cell = MultiScaleCell(main_layers, mapping_layers, post_fuse_layer, owner=owner)
        S = cell.scales
        init = per_scale_or_callable(owner, "init", init, S, broadcast=False)
        super().__init__(cell, solver, backward, init=init, **options)
        self.injection = per_scale_or_callable(owner, "injection", injection, S, broadcast=True)
        self.shapes = check_shapes(owner, shapes, S, "per-sample shape")
        self.scales = S

    def forward(self, x, z0=None):
        inj = x if self.injection is None else self.injection(x)
        if not isinstance(inj, (tuple, list)) or len(inj) != self.scales:
            raise ValueError(f"{type(self).__name__}: the injection must give one tensor per scale "
                             f"({self.scales}), got {type(inj).__name__}")
        inj = tuple(inj)
        if z0 is None and self.init is None:
            ax = self._opts.batch_axis
            if self.shapes is None:
                z0 = tuple(torch.zeros_like(v) for v in inj)
            else:
                def full(sh):
                    if ax is None:
                        return sh
                    sh = list(sh)
                    sh.insert(ax % (len(sh) + 1), inj[0].shape[ax])
                    return tuple(sh)
                z0 = tuple(inj[0].new_zeros(full(sh)) for sh in self.shapes)
        return tuple(super().forward(inj, z0))


class MultiScaleSkipDEQ(MultiScaleDEQ):
    """``MultiScaleDEQ`` with a learned explicit initial guess per scale (Skip DEQ):
    ``init`` is one module per scale, ``z0_i = init[i](inj_i)``, or one callable on the tuple of
    injections; ``deq.init_loss`` is ``mean((z0 - z*)^2)`` over all scales after each call.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from steadysolve.adapters.torch import MultiScaleSkipDEQ
    >>> blocks = [lambda z, inj: torch.tanh(0.5 * z + inj)] * 2
    >>> deq = MultiScaleSkipDEQ(blocks, [[None, nn.Linear(2, 4)], [nn.Linear(4, 2), None]],
    ...                         injection=[nn.Linear(3, 4), nn.Linear(3, 2)],
    ...                         init=[nn.Linear(4, 4), nn.Linear(2, 2)])
    >>> z = deq(torch.randn(5, 3))
    >>> [tuple(v.shape) for v in z], deq.init_loss.ndim     # init_loss trains the initial guess
    ([(5, 4), (5, 2)], 0)
    """

    def __init__(self, main_layers: Any, mapping_layers: Any, post_fuse_layer: Any = None, solver: Solver = "anderson",
                 backward: Backward = "implicit", *, init: Any, **options: Unpack[_LayerOptions]):
        if init is None:
            raise TypeError("MultiScaleSkipDEQ: init= (one module per scale, z0_i = init[i](inj_i)) is required")
        super().__init__(main_layers, mapping_layers, post_fuse_layer, solver, backward, init=init, **options)


@_not_compiled
def fixed_point(f: Callable, z0: Any, *args: Any, solver: Solver = "anderson", backward: Backward = "implicit",
                abstol: Optional[float] = None, reltol: Optional[float] = None, maxiters: Optional[int] = None,
                max_nfe: Optional[int] = None, norm: Union[str, Callable] = "max", batch_axis: Optional[int] = None,
                on_failure: OnFailure = "warn", failed_grad: FailedGrad = "implicit", **unknown: Never) -> Any:
    """Functional DEQ: ``z* = f(z*, *args)`` from ``z0`` (a tensor or a tuple / list / dict of them),
    differentiable in every tensor of ``args`` and any tensor ``f`` closes over; returns
    ``(z, DEQStats)`` (``stats.backward`` is filled by the backward pass).

    The same arguments, defaults and return value as :func:`steadysolve.adapters.jax.fixed_point`
    (see it for each option), except the failure options, the last two: ``on_failure`` and
    ``failed_grad`` as for ``DEQ`` (``"warn"`` warns once per call). The defaults are the core's:
    tolerances ``eps ** 0.8`` of the dtype, ``norm="max"``, ``maxiters=1000``, ``batch_axis=None``
    (the whole state is one system; ``batch_axis=0`` gives each sample its own test and return code).

    Examples
    --------
    >>> import torch
    >>> from steadysolve.adapters.torch import fixed_point
    >>> W = (0.5 * torch.eye(2)).requires_grad_(True)
    >>> z, stats = fixed_point(lambda z, x, W: z @ W.T + x, torch.zeros(1, 2), torch.ones(1, 2), W)
    >>> z.sum().backward(); round(W.grad.sum().item(), 4)      # z* = x / (1 - 0.5) = 2; each dz*/dW_ij = 4
    16.0
    """
    check_callable("fixed_point", "f", f, what="callable f(z, *args)")
    for bad in ("init", "jacobian_reg"):
        if bad in unknown:
            raise TypeError(f"fixed_point() does not take {bad}=; use the DEQ module for Skip DEQ and Jacobian "
                            "regularisation")
    dtype = state_dtype("fixed_point", tree_leaves(z0)[0] if is_structured(z0) else [z0])
    opts = _layer("fixed_point", solver, backward, abstol, reltol, maxiters, norm, batch_axis, on_failure,
                  failed_grad, dict(unknown, max_nfe=max_nfe), defaults=(default_tolerance(torch, dtype),) * 2,
                  default_maxiters=1000, default_adjoint=DEFAULT_ADJOINT)
    report = Reporter(on_failure, {"forward": 0, "backward": 0}, set())
    z, stats, *_ = run(lambda z: f(z, *args), z0, opts, "fixed_point: f(z, *args)", report, failed_grad)
    return z, stats
