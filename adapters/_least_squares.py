"""Least squares as a differentiable layer: ``u*(p) = argmin_u 0.5 ||f(u, *args)||^2``, the forward solve
by the core (``NonlinearLeastSquaresProblem``), the backward by the implicit function theorem on the
stationarity condition ``G(u, p) = J^T F = grad_u 0.5 ||F||^2 = 0``:

    H du/dp = -dG/dp,   H = dG/du = J^T J + sum_i F_i Hess(F_i)   (the exact Hessian of the objective),

so for an incoming cotangent ``g`` the backward solves ``H w = g`` and returns ``-(dG/dp)^T w``. ``H`` is
built exactly by automatic differentiation (forward-over-reverse in JAX, double backward in PyTorch):
the Gauss-Newton matrix ``J^T J`` alone would be wrong at a minimum with a nonzero residual, which is
exactly the case least squares is for. ``H`` is dense, of the size of all of ``u`` (a batch included):
the layer is meant for the dense least-squares methods' sizes. At a minimum where ``H`` is singular
(an undetermined minimiser) the gradient is not defined and the solve of ``H w = g`` reports it by
NaN or an exception of the library.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from steadysolve.problems import NonlinearLeastSquaresProblem
from steadysolve.solve import solve

__all__ = ["torch_least_squares", "jax_least_squares"]


def _forward(f, u0, args, solver, kw, lb=None, ub=None):
    prob = NonlinearLeastSquaresProblem(lambda u, p: f(u, *p), u0, tuple(args), lb=lb, ub=ub)
    return solve(prob, solver, **kw)


def _held(where, sol):
    """``1.0`` where the answer sits on a bound, ``0.0`` elsewhere (``u``'s shape), or None without bounds."""
    prob = sol.prob
    if prob.lb is None:
        return None
    return where((sol.u <= prob.lb) | (sol.u >= prob.ub), 1.0, 0.0)


def _reduced(held, H, g, eye):
    """The implicit function theorem's ``(H, g)`` of a bounded minimiser: a variable on a bound (``held``)
    stays there under a small change of the parameters (its derivative is 0), the free ones follow the
    stationarity of the free variables; so the held rows and columns of ``H`` become the identity's and
    their entries of the cotangent ``g`` zero (``w = 0`` there). Unchanged without bounds."""
    if held is None:
        return H, g
    N = g.shape[0]
    held = held.reshape(N)
    free = 1.0 - held
    H = H * free.reshape(N, 1) * free.reshape(1, N) + eye * held.reshape(N, 1)
    return H, g * free


def _options(abstol, reltol, maxiters, batch_axis) -> dict:
    return dict(abstol=abstol, reltol=reltol, maxiters=maxiters, batch_axis=batch_axis)


def torch_least_squares(f: Callable, u0: Any, *args: Any, solver: Any = None, abstol: Optional[float] = None,
                        reltol: Optional[float] = None, maxiters: int = 1000, batch_axis: Optional[int] = None,
                        lb: Any = None, ub: Any = None):
    """``(u*, sol)``: the least-squares minimiser of ``f(u, *args)`` from ``u0``, differentiable with
    respect to the tensors in ``args`` (implicit function theorem, exact Hessian), and the core's
    ``Solution`` (codes, ``resid``, ``stats.objective``).

    ``f(u, *args)`` returns ``m >= n`` residuals; ``solver`` is ``None`` (Levenberg-Marquardt) or a
    least-squares algorithm (``"gauss_newton"``, ``"trust_region"``, an instance); the other keywords
    are ``solve``'s; ``lb`` / ``ub`` bound ``u`` (as on the problem; a variable on a bound at the answer has a
    zero derivative, the others that of the minimiser over the free variables). See the guide "Nonlinear
    least squares".

    Examples
    --------
    >>> import torch
    >>> from steadysolve.adapters.torch import least_squares
    >>> t = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    >>> y = torch.tensor([1.0, 3.0, 2.0, 4.0], dtype=torch.float64, requires_grad=True)
    >>> u, sol = least_squares(lambda u, y: u[0] + u[1] * t - y, torch.zeros(2, dtype=torch.float64), y)
    >>> u[1].backward()               # the fitted slope's sensitivity to each data point
    >>> sol.retcode.name, [round(v, 6) for v in u.tolist()], [round(v, 6) for v in y.grad.tolist()]
    ('LeastSquaresMinimum', [1.3, 0.8], [-0.3, -0.1, 0.1, 0.3])
    """
    import torch

    if not all(isinstance(a, torch.Tensor) for a in args):
        raise TypeError("least_squares: the extra arguments must be tensors (close over anything else in f)")
    with torch.no_grad():
        sol = _forward(f, u0.detach(), [a.detach() for a in args], solver,
                       _options(abstol, reltol, maxiters, batch_axis), lb, ub)

    class _Attach(torch.autograd.Function):  # u* itself forward; the implicit function theorem backward
        @staticmethod
        def forward(ctx, u, *params):
            ctx.save_for_backward(u, *params)
            return u.clone()

        @staticmethod
        def backward(ctx, gu):
            u, *params = ctx.saved_tensors
            with torch.enable_grad():
                uu = u.detach().requires_grad_(True)
                ps = [p.detach().requires_grad_(p.requires_grad) for p in params]
                F = f(uu, *ps)
                G = torch.autograd.grad(0.5 * torch.sum(F * F), uu, create_graph=True)[0].reshape(-1)
                N = G.shape[0]
                rows = [torch.autograd.grad(G[i], uu, retain_graph=True, allow_unused=True)[0] for i in range(N)]
                H = torch.stack([torch.zeros_like(uu).reshape(-1) if r is None else r.reshape(-1) for r in rows])
                held = _held(torch.where, sol)
                H, gr = _reduced(None if held is None else held.to(H.dtype), H, gu.reshape(N),
                                 torch.eye(N, dtype=H.dtype, device=H.device))
                w = torch.linalg.solve(H, gr.reshape(N, 1)).reshape(N)
                want = [p for p in ps if p.requires_grad]
                got = iter(torch.autograd.grad(G, want, -w, allow_unused=True) if want else ())
            return (None, *[next(got) if p.requires_grad else None for p in ps])

    return _Attach.apply(sol.u.detach(), *args), sol


def jax_least_squares(f: Callable, u0: Any, *args: Any, solver: Any = None, abstol: Optional[float] = None,
                      reltol: Optional[float] = None, maxiters: int = 1000, batch_axis: Optional[int] = None,
                      lb: Any = None, ub: Any = None):
    """``(u*, sol)``: the least-squares minimiser of ``f(u, *args)`` from ``u0``, differentiable with
    respect to ``args`` (pytrees of arrays; ``jax.custom_vjp`` with the implicit function theorem and the
    exact Hessian), under ``jit`` and ``grad``; and the core's ``Solution``.

    Arguments as :func:`steadysolve.adapters.torch.least_squares`.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from steadysolve.adapters.jax import least_squares
    >>> jax.config.update("jax_enable_x64", True)
    >>> t = jnp.array([0.0, 1.0, 2.0, 3.0])
    >>> slope = lambda y: least_squares(lambda u, y: u[0] + u[1] * t - y, jnp.zeros(2), y)[0][1]
    >>> [round(float(v), 6) for v in jax.grad(slope)(jnp.array([1.0, 3.0, 2.0, 4.0]))]
    [-0.3, -0.1, 0.1, 0.3]
    """
    import jax
    import jax.numpy as jnp

    stop = jax.lax.stop_gradient
    sol = _forward(f, stop(u0), [stop(a) for a in args], solver, _options(abstol, reltol, maxiters, batch_axis),
                   lb, ub)

    def stationarity(u, params):
        return jax.grad(lambda v: 0.5 * jnp.sum(f(v, *params) ** 2))(u)

    held = _held(jnp.where, sol)
    bounded = held is not None
    held = stop(held).astype(sol.u.dtype) if bounded else jnp.zeros(())

    @jax.custom_vjp
    def attach(u, params, held):  # u* itself forward; the implicit function theorem backward
        return u

    def fwd(u, params, held):
        return u, (u, params, held)

    def bwd(res, gu):
        u, params, held = res
        N = u.size
        H = jnp.reshape(jax.jacfwd(lambda v: stationarity(v, params))(u), (N, N))
        H, gr = _reduced(held if bounded else None, H, jnp.reshape(gu, (N,)), jnp.eye(N, dtype=H.dtype))
        w = jnp.reshape(jnp.linalg.solve(H, gr), u.shape)
        _, pull = jax.vjp(lambda ps: stationarity(u, ps), params)
        (gp,) = pull(-w)
        return jnp.zeros_like(u), gp, jnp.zeros_like(held)

    attach.defvjp(fwd, bwd)
    return attach(stop(sol.u), tuple(args), held), sol
