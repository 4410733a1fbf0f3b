"""PyTorch adapter: any steadysolve algorithm as a differentiable Deep Equilibrium (DEQ) layer.

::

    from steadysolve.adapters.torch import DEQ, fixed_point

    cell = Cell()                                   # an nn.Module computing f(z, x)
    deq = DEQ(cell, solver="anderson")              # any name in steadysolve.available()
    z = deq(x)                                      # z = f(z, x), differentiable
    loss = criterion(head(z), y) + deq.aux_loss     # aux_loss: Jacobian reg. + Skip-DEQ terms
    loss.backward()                                 # implicit gradient (one adjoint solve)
    deq.forward_stats, deq.backward_stats           # iterations, NFE, residuals, return codes

How it works. The forward solve runs under ``torch.no_grad()`` on the tensors themselves
(no NumPy round trip, so CPU and CUDA alike) through the core's eager driver. Then one
tracked application ``f(z*, x)`` (with ``z*`` a fresh leaf) re-attaches the parameters
and ``x``. A ``torch.autograd.Function`` outputs ``z*`` and, in the backward pass,
replaces the incoming gradient ``g`` by the solution ``w`` of ``w = J_f(z*)^T w + g``,
solved with the core (GMRES through ``linear_solve``, or any fixed-point algorithm) using
``torch.autograd.grad`` vector-Jacobian products on that same tracked application.
``w`` is then pushed through the tracked application into the parameters and ``x``.
``backward="phantom"`` instead unrolls ``k`` damped steps ``z <- (1-tau) z + tau f(z, x)``
from ``z*`` with autograd (cheap, approximate).
"""

from __future__ import annotations

import difflib
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

import steadysolve as ss
from steadysolve import backend
from steadysolve.registry import resolve
from steadysolve.solution import ConvergenceError, ReturnCode
from steadysolve.termination import get_norm

from ._implicit import check_backward_solver, check_choice, failure_message, solve_adjoint

__all__ = ["DEQ", "fixed_point", "DEQStats", "SolveStats", "DEQConvergenceError"]

_BACKWARD_MODES = ("implicit", "phantom")
_OPTION_NAMES = ("abstol", "reltol", "maxiters", "norm", "backward_solver", "backward_abstol", "backward_reltol",
                 "backward_maxiters", "phantom_steps", "phantom_damping", "batch_axis", "on_failure",
                 "failed_grad")
_ON_FAILURE = ("warn", "raise", "ignore")


class DEQConvergenceError(ConvergenceError):
    """Raised (with ``on_failure="raise"``) when the forward or backward solve fails.

    ``err.phase`` is ``"forward"`` or ``"backward"``; ``err.stats`` the :class:`SolveStats`.
    """

    def __init__(self, message: str, stats: "SolveStats"):
        self.solution = stats.solution
        self.stats = stats
        self.phase = stats.phase
        RuntimeError.__init__(self, message)


# ---------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------

def _check_tol(owner, name, value, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a number >= 0, got {type(value).__name__}")
    if not (value >= 0) or math.isinf(value):
        raise ValueError(f"{owner}: {name} must be a finite number >= 0, got {value}")


def _check_int(owner, name, value, minimum=1, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value}")


@dataclass(frozen=True)
class _Spec:
    """Validated options of one DEQ layer (shared by :class:`DEQ` and :func:`fixed_point`)."""

    solver: Any
    backward: str
    abstol: float
    reltol: float
    maxiters: int
    norm: Any
    backward_solver: Any
    backward_abstol: float
    backward_reltol: float
    backward_maxiters: int
    phantom_steps: int
    phantom_damping: float
    batch_axis: Optional[int]
    jacobian_reg: float
    on_failure: str
    failed_grad: str

    @staticmethod
    def build(owner, solver="anderson", backward="implicit", *, abstol=1e-6, reltol=1e-4, maxiters=50,
              norm="max", backward_solver=None, backward_abstol=None, backward_reltol=None,
              backward_maxiters=None, phantom_steps=5, phantom_damping=0.5, batch_axis=0,
              jacobian_reg=0.0, on_failure="warn", failed_grad="jfb") -> "_Spec":
        try:
            alg = resolve(solver)
        except TypeError as e:
            raise TypeError(f"{owner}: solver must be an algorithm name ({', '.join(ss.available())}) or an "
                            f"algorithm instance such as steadysolve.Anderson(memory=5), got "
                            f"{type(solver).__name__}") from e
        check_choice(owner, "backward", backward, _BACKWARD_MODES)
        check_choice(owner, "on_failure", on_failure, _ON_FAILURE)
        check_choice(owner, "failed_grad", failed_grad, ("jfb", "implicit"))
        _check_tol(owner, "abstol", abstol)
        _check_tol(owner, "reltol", reltol)
        _check_int(owner, "maxiters", maxiters)
        _check_tol(owner, "backward_abstol", backward_abstol, allow_none=True)
        _check_tol(owner, "backward_reltol", backward_reltol, allow_none=True)
        _check_int(owner, "backward_maxiters", backward_maxiters, allow_none=True)
        _check_int(owner, "phantom_steps", phantom_steps)
        if isinstance(phantom_damping, bool) or not isinstance(phantom_damping, (int, float)) \
                or not 0 < phantom_damping <= 1:
            raise ValueError(f"{owner}: phantom_damping must be a number in (0, 1], got {phantom_damping!r}")
        if batch_axis is not None:
            _check_int(owner, "batch_axis", batch_axis, minimum=-(2 ** 31))
        _check_tol(owner, "jacobian_reg", jacobian_reg)
        get_norm(norm)  # raises on an unknown norm
        bsolver = check_backward_solver(owner, backward_solver) if backward == "implicit" else None
        return _Spec(
            solver=alg, backward=backward, abstol=float(abstol), reltol=float(reltol), maxiters=maxiters,
            norm=norm, backward_solver=bsolver,
            # The adjoint w has the scale of the incoming gradient (often tiny): by default its
            # test is relative only (abstol 0), with the forward reltol (or, when that is 0, the
            # forward abstol read as a relative tolerance).
            backward_abstol=0.0 if backward_abstol is None else float(backward_abstol),
            backward_reltol=float((reltol if reltol > 0 else abstol) if backward_reltol is None
                                  else backward_reltol),
            backward_maxiters=maxiters if backward_maxiters is None else backward_maxiters,
            phantom_steps=phantom_steps, phantom_damping=float(phantom_damping), batch_axis=batch_axis,
            jacobian_reg=float(jacobian_reg), on_failure=on_failure, failed_grad=failed_grad,
        )


# ---------------------------------------------------------------------------------------
# Stats
# ---------------------------------------------------------------------------------------

def _rows(x: torch.Tensor, batch_axis) -> torch.Tensor:
    """``x`` as ``(batch, -1)`` (one row for an unbatched solve)."""
    if batch_axis is None:
        return x.reshape(1, -1)
    return torch.movedim(x, batch_axis, 0).reshape(x.shape[batch_axis], -1)


class SolveStats:
    """Statistics of one forward or backward solve of a DEQ call.

    Attributes: ``phase`` (``"forward"``/``"backward"``), ``solver`` (its name),
    ``niter``, ``nf`` (evaluations of ``f``; for the backward: products with ``J^T``),
    ``njvp``, ``nvjp``, ``retcode`` (worst element), ``retcodes`` (per element, batched
    solves), ``successful``, ``niter_per_element`` (tensor or None), ``resid_norm``
    (per-element residual norms, a tensor), ``solution`` (the core's result object).
    """

    def __init__(self, phase, solver_name, codes, niter, nf, njvp, nvjp, niter_el, resid, norm, batch_axis,
                 solution, resid_norm=None):
        self.phase = phase
        self.solver = solver_name
        self._codes = codes
        self.niter = niter
        self.nf = nf
        self.njvp = njvp
        self.nvjp = nvjp
        self.niter_per_element = niter_el
        self._resid = resid
        self._resid_norm = resid_norm
        self._norm = norm
        self._batch_axis = batch_axis
        self.solution = solution
        self._nfailed = None

    @property
    def retcode_array(self) -> torch.Tensor:
        """Per-element integer codes (``ReturnCode.from_code`` decodes them; 0 = success)."""
        return self._codes

    @property
    def retcodes(self) -> list:
        return [ReturnCode.from_code(c) for c in torch.as_tensor(self._codes).reshape(-1).tolist()]

    @property
    def nfailed(self) -> int:
        if self._nfailed is None:
            self._nfailed = int(torch.count_nonzero(torch.as_tensor(self._codes)))
        return self._nfailed

    @property
    def retcode(self) -> ReturnCode:
        if self.nfailed == 0:
            return ReturnCode.Success
        return next(rc for rc in self.retcodes if rc is not ReturnCode.Success)

    @property
    def successful(self) -> bool:
        return self.nfailed == 0

    @property
    def resid_norm(self) -> torch.Tensor:
        """Residual norm of each batch element (the solve's norm; 2-norm for GMRES), shape ``(batch,)``."""
        if self._resid_norm is not None:
            return torch.as_tensor(self._resid_norm)
        r = _rows(self._resid.detach(), self._batch_axis)
        return get_norm(self._norm)(_xp(r), r)

    def as_dict(self) -> dict:
        return dict(phase=self.phase, solver=self.solver, niter=self.niter, nf=self.nf, njvp=self.njvp,
                    nvjp=self.nvjp, retcode=self.retcode, max_resid=float(self.resid_norm.max()))

    def __repr__(self) -> str:
        return (f"SolveStats({self.phase}, solver={self.solver!r}, retcode={self.retcode}, niter={self.niter}, "
                f"nf={self.nf}, max_resid={float(self.resid_norm.max()):.3e})")


class DEQStats:
    """The stats of one DEQ call: ``forward`` (set by the forward pass), ``backward`` (set when
    the implicit backward has run; ``None`` before, and always ``None`` for the phantom
    backward), ``jac_estimate`` (Hutchinson estimate of ``||J_f||_F^2 / dim`` or None)."""

    def __init__(self):
        self.forward: Optional[SolveStats] = None
        self.backward: Optional[SolveStats] = None
        self.jac_estimate: Optional[float] = None

    def __repr__(self) -> str:
        return f"DEQStats(forward={self.forward!r}, backward={self.backward!r})"


def _report(stats: SolveStats, spec: _Spec, batch: int, hint: str) -> None:
    if spec.on_failure == "ignore" or stats.nfailed == 0:
        return
    msg = failure_message(stats.phase, stats.retcode, stats.nfailed, batch, stats.niter,
                          float(stats.resid_norm.max()), hint)
    if spec.on_failure == "raise":
        raise DEQConvergenceError(msg, stats)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _xp(x):
    return backend.namespace(("x", x))


def _name(alg) -> str:
    return alg if isinstance(alg, str) else (getattr(alg, "name", "") or type(alg).__name__)


# ---------------------------------------------------------------------------------------
# The forward solve
# ---------------------------------------------------------------------------------------

def _checked_map(fn: Callable, z0: torch.Tensor, what: str) -> Callable:
    """``fn`` wrapped so that its first output is checked against ``z0`` (shape, dtype, type)."""
    state = {"checked": False}

    def g(z, p=None):
        out = fn(z)
        if not state["checked"]:
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"{what} must return a torch.Tensor shaped like z, got {type(out).__name__}")
            if out.shape != z.shape:
                raise ValueError(f"{what} returned shape {tuple(out.shape)} but z has shape {tuple(z.shape)}; "
                                 "f must map z to a tensor of the same shape (pass z0= or init= to set the "
                                 "shape of z when it differs from x)")
            if out.dtype != z.dtype:
                raise TypeError(f"{what} returned dtype {out.dtype} but z has dtype {z.dtype}; cast the "
                                "parameters/inputs (e.g. module.to(dtype)) so that both agree")
            state["checked"] = True
        return out

    return g


def _derivatives(fn: Callable, batch_axis):
    """Exact ``jvp`` (forward-mode AD, with a finite-difference fallback) and ``vjp`` (reverse
    mode) of ``z -> fn(z)`` for the Newton-type algorithms of the core."""
    mode = {"fd": False}

    def jvp(u, v, p):
        if not mode["fd"]:
            try:
                with torch.enable_grad():
                    return torch.func.jvp(fn, (u,), (v,))[1]
            except (RuntimeError, NotImplementedError, TypeError) as e:
                mode["fd"] = True
                warnings.warn(f"steadysolve DEQ: forward-mode AD of f failed ({type(e).__name__}: {e}); "
                              "using finite-difference Jacobian-vector products instead", RuntimeWarning,
                              stacklevel=2)
        eps = torch.finfo(u.dtype).eps ** 0.5
        ur, vr = _rows(u, batch_axis), _rows(v, batch_axis)
        un = torch.linalg.vector_norm(ur, dim=1, keepdim=True)
        vn = torch.linalg.vector_norm(vr, dim=1, keepdim=True)
        h = eps * torch.clamp(un, min=1.0) / torch.where(vn > 0, vn, torch.ones_like(vn))
        shape = [1] * u.ndim
        if batch_axis is not None:
            shape[batch_axis] = u.shape[batch_axis]
        h = h.reshape(shape)
        return (fn(u + h * v) - fn(u)) / h

    def vjp(u, w, p):
        with torch.enable_grad():
            u_ = u.detach().requires_grad_(True)
            out = fn(u_)
            (gw,) = torch.autograd.grad(out, u_, w, allow_unused=True)
        return torch.zeros_like(u) if gw is None else gw

    return jvp, vjp


def _forward_solve(fn: Callable, z0: torch.Tensor, spec: _Spec, what: str) -> SolveStats:
    jvp, vjp = _derivatives(fn, spec.batch_axis)
    prob = ss.FixedPointProblem(_checked_map(fn, z0, what), z0.detach(), None, jvp=jvp, vjp=vjp)
    with torch.no_grad():
        sol = ss.solve(prob, spec.solver, abstol=spec.abstol, reltol=spec.reltol, maxiters=spec.maxiters,
                       norm=spec.norm, batch_axis=spec.batch_axis)
    st = sol.stats
    return SolveStats("forward", _name(spec.solver), sol.retcode_array, st.niter, st.nf, st.njvp, st.nvjp,
                      st.niter_per_element, sol.resid, spec.norm, spec.batch_axis, sol)


# ---------------------------------------------------------------------------------------
# The implicit backward
# ---------------------------------------------------------------------------------------

class _Call:
    """What the backward of one DEQ call needs: the tracked application and the options."""

    __slots__ = ("spec", "z_req", "stats", "batch", "failed")

    def __init__(self, spec, z_req, stats, batch, failed):
        self.spec = spec
        self.z_req = z_req
        self.stats = stats
        self.batch = batch
        self.failed = failed  # None, or a bool tensor broadcastable to z: forward failed there


class _ImplicitGrad(torch.autograd.Function):
    """Outputs ``z*``; its backward turns the incoming ``g`` into ``w = J^T w + g`` and sends
    ``w`` into the tracked application ``f_out = f(z_req, x)``."""

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
        spec, z_req = call.spec, call.z_req

        def vjp(w):
            (gw,) = torch.autograd.grad(f_out, z_req, w, retain_graph=True, allow_unused=True)
            return torch.zeros_like(w) if gw is None else gw

        g = g.contiguous()
        failed = call.failed
        if failed is not None and failed.ndim == 0:  # unbatched solve that failed: JFB gradient
            return g, None, None
        if failed is not None:  # those samples take the JFB gradient w = g; solve for the others
            g_solve = torch.where(failed, torch.zeros_like(g), g)
        else:
            g_solve = g
        res = solve_adjoint(vjp, g_solve, solver=spec.backward_solver, abstol=spec.backward_abstol,
                            reltol=spec.backward_reltol, maxiters=spec.backward_maxiters, norm=spec.norm,
                            batch_axis=spec.batch_axis)
        raw = res.raw
        niter_el = getattr(raw.stats, "niter_per_element", None)
        stats = SolveStats("backward", _name(spec.backward_solver), res.codes, res.niter, res.nvjp, 0, res.nvjp,
                           niter_el, res.resid, spec.norm, spec.batch_axis, raw, resid_norm=res.resid_norm)
        call.stats.backward = stats
        _report(stats, spec, call.batch, "Raise backward_maxiters, loosen backward_reltol, pick another "
                "backward_solver, or regularise f (jacobian_reg) so that J_f stays contractive.")
        w = res.w if failed is None else torch.where(failed, g, res.w)
        return w, None, None


def _failed_mask(fwd: SolveStats, spec: _Spec, z: torch.Tensor) -> Optional[torch.Tensor]:
    """Where the forward failed and ``failed_grad="jfb"``: a bool mask broadcastable to ``z``."""
    if spec.failed_grad != "jfb" or fwd.nfailed == 0:
        return None
    bad = torch.as_tensor(fwd.retcode_array, device=z.device).reshape(-1) != 0
    if spec.batch_axis is None:
        return bad.reshape(())
    shape = [1] * z.ndim
    shape[spec.batch_axis] = z.shape[spec.batch_axis]
    return bad.reshape(shape)


def _apply(fn: Callable, z0: torch.Tensor, spec: _Spec, what: str) -> tuple[torch.Tensor, DEQStats, Any]:
    """Solve ``z = fn(z)`` from ``z0`` and return ``(z*, stats, f_out)`` with the gradient attached.

    ``f_out`` is the tracked application used for the gradient (None when no graph is built);
    the Jacobian regulariser reuses it.
    """
    if not isinstance(z0, torch.Tensor):
        raise TypeError(f"{what}: z0 must be a torch.Tensor, got {type(z0).__name__}")
    if not z0.is_floating_point():
        raise TypeError(f"{what}: z0 must have a floating-point dtype, got {z0.dtype}")
    if spec.batch_axis is not None and not -z0.ndim <= spec.batch_axis < max(z0.ndim, 1):
        raise ValueError(f"{what}: batch_axis={spec.batch_axis} is out of range for z with shape {tuple(z0.shape)}")
    stats = DEQStats()
    fwd = _forward_solve(fn, z0, spec, what)
    stats.forward = fwd
    batch = 1 if spec.batch_axis is None else z0.shape[spec.batch_axis]
    fallback = (" Their gradient falls back to the Jacobian-free one (failed_grad='jfb')."
                if spec.failed_grad == "jfb" and spec.backward == "implicit" and torch.is_grad_enabled() else "")
    _report(fwd, spec, batch, "Raise maxiters, loosen abstol/reltol, try another solver, or regularise f "
            "(jacobian_reg) so that it stays contractive." + fallback)
    z_star = fwd.solution.u
    if not torch.is_grad_enabled():
        return z_star, stats, None
    if spec.backward == "phantom":
        z, tau = z_star.detach(), spec.phantom_damping
        for _ in range(spec.phantom_steps):
            fz = fn(z)
            z = fz if tau == 1.0 else (1.0 - tau) * z + tau * fz
        return z, stats, None
    z_req = z_star.detach().requires_grad_(True)
    f_out = fn(z_req)
    if not f_out.requires_grad:  # nothing upstream needs a gradient
        return z_star, stats, None
    call = _Call(spec, z_req, stats, batch, _failed_mask(fwd, spec, z_star))
    return _ImplicitGrad.apply(f_out, z_star, call), stats, (f_out, z_req)


def _jacobian_estimate(tracked, z_like: torch.Tensor) -> Optional[torch.Tensor]:
    """Hutchinson estimate of ``||J_f(z*)||_F^2 / dim`` (one Gaussian probe, differentiable)."""
    if tracked is None:
        return None
    f_out, z_req = tracked
    v = torch.randn_like(f_out)
    (vj,) = torch.autograd.grad(f_out, z_req, v, create_graph=True, retain_graph=True, allow_unused=True)
    if vj is None:
        return torch.zeros((), dtype=z_like.dtype, device=z_like.device)
    return vj.pow(2).sum() / vj.numel()


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------

class DEQ(nn.Module):
    """A Deep Equilibrium layer: ``deq(x)`` returns ``z*`` with ``z* = f(z*, x)``.

    Parameters
    ----------
    f : an ``nn.Module`` (or callable) ``f(z, x) -> z`` (same shape and dtype as ``z``).
    solver : forward algorithm: any name in ``steadysolve.available()`` or an instance
        (``steadysolve.Anderson(memory=6)``).
    backward : ``"implicit"`` (exact gradient through ``w = J_f^T w + g``) or ``"phantom"``
        (``phantom_steps`` unrolled damped steps from ``z*``; error ``O(q^k)`` with
        ``q = 1 - tau + tau * ||J_f||``).
    abstol, reltol, maxiters, norm : forward convergence test (per batch element):
        ``norm(f(z, x) - z) <= max(abstol, reltol * norm(z))``.
    backward_solver : ``"gmres"`` (``linear_solve``; the default when available) or any
        algorithm name / instance, run on the adjoint fixed point ``w -> J^T w + g``.
    backward_abstol, backward_reltol, backward_maxiters : adjoint convergence test
        (defaults: 0, ``reltol``, ``maxiters``).
    phantom_steps, phantom_damping : ``k`` and ``tau`` of the phantom gradient.
    batch_axis : axis of ``z`` indexing independent samples (per-sample convergence and
        freezing); ``None`` treats the whole tensor as one system.
    init : optional module ``init(x) -> z0`` (Skip DEQ); its loss ``mean((z0 - z*)^2)``
        (``z*`` detached) is ``deq.init_loss`` after each call.
    jacobian_reg : weight of the Hutchinson estimate of ``||J_f||_F^2 / dim``; when ``> 0``
        ``deq.jac_loss`` holds ``jacobian_reg * estimate`` (differentiable) after each training call.
    on_failure : ``"warn"`` (one ``RuntimeWarning`` per failed solve), ``"raise"``
        (:class:`DEQConvergenceError`) or ``"ignore"``.
    failed_grad : gradient of the samples whose *forward* solve failed: ``"jfb"`` (default)
        gives them the Jacobian-free gradient ``w = g`` (the phantom gradient with one
        undamped step), because the implicit one is unreliable away from a fixed point --
        where the solve fails ``I - J_f`` is often near-singular and the exact adjoint
        explodes; ``"implicit"`` solves the adjoint for them too.

    After each call: ``deq.stats`` (a :class:`DEQStats`), ``deq.forward_stats``,
    ``deq.backward_stats`` (filled by the backward pass), ``deq.jac_loss``,
    ``deq.init_loss`` and ``deq.aux_loss`` (their sum, 0 when neither is enabled).
    """

    def __init__(self, f, solver="anderson", backward="implicit", *, abstol=1e-6, reltol=1e-4, maxiters=50,
                 norm="max", backward_solver=None, backward_abstol=None, backward_reltol=None,
                 backward_maxiters=None, phantom_steps=5, phantom_damping=0.5, batch_axis=0, init=None,
                 jacobian_reg=0.0, on_failure="warn", failed_grad="jfb"):
        super().__init__()
        if not callable(f):
            raise TypeError(f"DEQ: f must be an nn.Module or a callable f(z, x), got {type(f).__name__}")
        if init is not None and not callable(init):
            raise TypeError(f"DEQ: init must be an nn.Module or a callable init(x) -> z0, got {type(init).__name__}")
        self.f = f
        self.init = init
        self._spec = _Spec.build("DEQ", solver, backward, abstol=abstol, reltol=reltol, maxiters=maxiters,
                                 norm=norm, backward_solver=backward_solver, backward_abstol=backward_abstol,
                                 backward_reltol=backward_reltol, backward_maxiters=backward_maxiters,
                                 phantom_steps=phantom_steps, phantom_damping=phantom_damping,
                                 batch_axis=batch_axis, jacobian_reg=jacobian_reg, on_failure=on_failure,
                                 failed_grad=failed_grad)
        self.stats: Optional[DEQStats] = None
        self.jac_loss: Optional[torch.Tensor] = None
        self.init_loss: Optional[torch.Tensor] = None

    # options readable as attributes
    @property
    def solver(self):
        return self._spec.solver

    @property
    def backward_mode(self) -> str:
        return self._spec.backward

    @property
    def forward_stats(self) -> Optional[SolveStats]:
        return None if self.stats is None else self.stats.forward

    @property
    def backward_stats(self) -> Optional[SolveStats]:
        return None if self.stats is None else self.stats.backward

    @property
    def aux_loss(self):
        """``jac_loss + init_loss`` of the last call (each only when enabled); 0 otherwise."""
        total = 0.0
        for t in (self.jac_loss, self.init_loss):
            if t is not None:
                total = total + t
        return total

    def extra_repr(self) -> str:
        s = self._spec
        return (f"solver={_name(s.solver)!r}, backward={s.backward!r}, abstol={s.abstol:g}, reltol={s.reltol:g}, "
                f"maxiters={s.maxiters}, batch_axis={s.batch_axis}")

    @torch.compiler.disable
    def forward(self, x, z0=None):
        # torch.compile: the solve loop (host syncs, data-dependent iteration count) is not
        # traceable; the layer runs eagerly (a graph break) and the rest of the model compiles.
        f = self.f
        z0_tracked = None
        if z0 is None:
            if self.init is not None:
                z0_tracked = self.init(x)
                z0 = z0_tracked
            elif isinstance(x, torch.Tensor):
                z0 = torch.zeros_like(x)
            else:
                raise TypeError("DEQ: x is not a tensor, so the shape of z is unknown: pass z0= or init=")
        z, stats, tracked = _apply(lambda z: f(z, x), z0, self._spec, "DEQ: f(z, x)")
        self.stats = stats
        self.jac_loss = None
        if self._spec.jacobian_reg > 0 and self.training and torch.is_grad_enabled():
            if tracked is None:  # phantom backward: one extra tracked application at z*
                z_req = stats.forward.solution.u.detach().requires_grad_(True)
                tracked = (f(z_req, x), z_req)
            est = _jacobian_estimate(tracked, z)
            stats.jac_estimate = float(est.detach())
            self.jac_loss = self._spec.jacobian_reg * est
        self.init_loss = None
        if z0_tracked is not None and isinstance(z0_tracked, torch.Tensor):
            self.init_loss = (z0_tracked - stats.forward.solution.u.detach()).pow(2).mean()
        return z


@torch.compiler.disable
def fixed_point(f, x, z0, *params, solver="anderson", backward="implicit", return_stats=False, **options):
    """Functional DEQ: ``z* = f(z*, x, *params)``, differentiable in ``x``, ``params`` and any
    tensor ``f`` closes over.

    Same options and gradients as :class:`DEQ` (``abstol``, ``reltol``, ``maxiters``, ``norm``,
    ``backward_solver``, ``phantom_steps``, ``batch_axis``, ``on_failure`` ...). With
    ``return_stats=True`` returns ``(z, DEQStats)``; ``stats.backward`` is filled by the
    backward pass.
    """
    if not callable(f):
        raise TypeError(f"fixed_point: f must be callable f(z, x, *params), got {type(f).__name__}")
    if "init" in options or "jacobian_reg" in options:
        bad = "init" if "init" in options else "jacobian_reg"
        raise TypeError(f"fixed_point() does not take {bad}=; use the DEQ module for Skip DEQ and Jacobian "
                        "regularisation")
    unknown = [k for k in options if k not in _OPTION_NAMES]
    if unknown:
        close = difflib.get_close_matches(unknown[0], _OPTION_NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TypeError(f"fixed_point() got an unexpected keyword argument {unknown[0]!r}{hint}; valid: "
                        f"{', '.join(_OPTION_NAMES)}")
    spec = _Spec.build("fixed_point", solver, backward, **options)
    z, stats, _ = _apply(lambda z: f(z, x, *params), z0, spec, "fixed_point: f(z, x, *params)")
    return (z, stats) if return_stats else z
