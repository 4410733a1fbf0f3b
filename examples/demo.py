"""steadysolve demo: one problem API, six algorithms, three array libraries, one DEQ.

    python examples/demo.py            # about a minute on 2 CPU cores, no downloads
    python examples/demo.py --quick    # smaller problems and a shorter training (~20 s)
    python examples/demo.py --out DIR  # where demo_trajectory.png goes (default: here)

1. Solves Chandrasekhar's H-equation (c = 0.9, n = 100) and the 75 x 75 nonlinear
   Laplace problem with every algorithm, chosen by name, and prints return codes,
   function evaluations and the error against the known answer.
2. Runs the same Anderson solve on NumPy, PyTorch and JAX arrays (jitted).
3. Finds a steady state by time stepping (DynamicSS over adaptive Tsit5) and keeps the
   trajectory (``ss.integrate``).
4. Trains a PyTorch Deep Equilibrium regressor on y = 2x with implicit gradients and
   predicts x = -5.

Writes ``demo_trajectory.png`` into ``--out`` when matplotlib is installed.
"""

from __future__ import annotations

import os
import time

import numpy as np
from _common import out_path, parse, script_parser

import steadysolve as ss


def h_equation(n=100, c=0.9):
    """Chandrasekhar's H-equation as a root problem F(H) = 1 / (1 - c/(2n) M H) - H.

    Written as G(H) - H (not H - G(H)) so that du/dt = F(u) is stable at the solution:
    the time-stepping and plain fixed-point methods then converge too."""
    mu = (np.arange(1, n + 1) - 0.5) / n
    M = c / (2 * n) * mu[:, None] / (mu[:, None] + mu[None, :])

    def F(u, M):
        return 1.0 / (1.0 - M @ u) - u

    return ss.NonlinearProblem(F, np.ones(n), M)


def laplace(n=75, coef=-10.0):
    """SciPy's 2-D nonlinear Laplace problem (the ``scipy.optimize.root`` docstring variant)."""
    h = 1.0 / (n - 1)

    def F(P, p):
        Pl = np.concatenate([np.zeros((1, n)), P[:-1]])    # P_left=0 on x=0
        Pr = np.concatenate([P[1:], np.zeros((1, n))])
        Pd = np.concatenate([np.ones((n, 1)), P[:, :-1]], axis=1)  # P_bottom=1 (axis 1, y=0)
        Pu = np.concatenate([P[:, 1:], np.zeros((n, 1))], axis=1)
        d2x = (Pr - 2 * P + Pl) / h ** 2
        d2y = (Pu - 2 * P + Pd) / h ** 2
        return d2x + d2y + coef * np.cosh(P).mean() ** 2

    return ss.NonlinearProblem(F, np.zeros((n, n)))


def section(title):
    print(f"\n== {title} " + "=" * max(0, 70 - len(title)))


def algorithms_table(quick=False):
    section("1. every algorithm by name")
    n = 40 if quick else 100
    prob = h_equation(n)
    ref = ss.solve(prob, "newton", abstol=1e-13, reltol=0.0).u
    print(f"H-equation, c = 0.9, n = {n} (max H* = {ref.max():.10f})")
    print(f"{'algorithm':<16}{'retcode':<12}{'nf':>6}{'njvp':>7}{'iters':>7}{'|u - u*|max':>14}{'ms':>9}")
    for name in ss.available():
        t = time.perf_counter()
        sol = ss.solve(prob, name, abstol=1e-10, reltol=0.0, maxiters=5000)
        ms = 1e3 * (time.perf_counter() - t)
        err = np.abs(sol.u - ref).max()
        print(f"{name:<16}{sol.retcode.name:<12}{sol.stats.nf:>6}{sol.stats.njvp:>7}{sol.stats.niter:>7}"
              f"{err:>14.2e}{ms:>9.1f}")

    m = 25 if quick else 75
    print(f"\nLaplace {m} x {m} (cosh coefficient -10), abstol 6e-6 as in the SciPy docstring")
    prob = laplace(m)
    for alg in (ss.NewtonKrylov(), ss.Anderson(memory=10)):
        sol = ss.solve(prob, alg, abstol=6e-6, reltol=0.0, maxiters=2000)
        print(f"  {type(alg).__name__:<14}{sol.retcode.name:<10} nf={sol.stats.nf:<5} "
              f"max|F(u)|={np.abs(sol.resid).max():.1e}  mean(u)={sol.u.mean():.6f}")

    print("\nBad input is refused before any work:")
    for bad in (lambda: ss.solve(prob, "andersen"),
                lambda: ss.solve(prob, "anderson", tolerance=1e-6),
                lambda: ss.solve(ss.NonlinearProblem(lambda u, p: u[:-1], np.zeros(3)), "anderson")):
        try:
            bad()
        except (TypeError, ValueError) as e:
            print(f"  {type(e).__name__}: {e}")


def backends():
    section("2. the same solve on NumPy, PyTorch and JAX")
    rng = np.random.default_rng(0)
    W = rng.standard_normal((64, 64)) * 0.5 / 8.0
    x = rng.standard_normal((16, 64))

    def cell_np(z, p):
        W, x = p
        return np.tanh(z @ W + x)

    sol = ss.solve(ss.FixedPointProblem(cell_np, np.zeros_like(x), (W, x)), "anderson", batch_axis=0)
    print(f"  numpy : {sol.retcode.name}, iterations per element {sol.stats.niter_per_element[:6]}...")
    z_ref = sol.u
    try:
        import torch
        Wt, xt = torch.from_numpy(W), torch.from_numpy(x)
        sol = ss.solve(ss.FixedPointProblem(lambda z, p: torch.tanh(z @ p[0] + p[1]), torch.zeros_like(xt),
                                            (Wt, xt)), "anderson", batch_axis=0)
        print(f"  torch : {sol.retcode.name}, max |z - z_numpy| = {np.abs(sol.u.numpy() - z_ref).max():.1e}")
    except ImportError:
        print("  torch : not installed")
    try:
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        @jax.jit
        def run(W, x):
            prob = ss.FixedPointProblem(lambda z, p: jnp.tanh(z @ p[0] + p[1]), jnp.zeros_like(x), (W, x))
            s = ss.solve(prob, ss.Anderson(), batch_axis=0)
            return s.u, s.retcode_array
        z, codes = run(jnp.asarray(W), jnp.asarray(x))
        print(f"  jax   : jitted, all elements Success: {bool(np.all(np.asarray(codes) == 0))}, "
              f"max |z - z_numpy| = {np.abs(np.asarray(z) - z_ref).max():.1e}")
    except ImportError:
        print("  jax   : not installed")


def steady_state(out):
    section("3. steady state by time stepping (DynamicSS, adaptive Tsit5)")
    A = np.array([[-1.0, 0.5], [-0.5, -1.0]])
    b = np.array([1.0, 2.0])

    def f(u, p, t):
        return A @ u + b - 0.1 * u ** 3

    prob = ss.SteadyStateProblem(f, np.zeros(2))
    sol = ss.solve(prob, "dynamic_ss", abstol=1e-10, reltol=0.0)
    print(f"  {sol.retcode.name}: u* = {sol.u}, |f(u*)| = {np.abs(f(sol.u, None, 0)).max():.1e}, "
          f"nf = {sol.stats.nf}, accepted/rejected steps = {sol.stats.naccept}/{sol.stats.nreject}, "
          f"t = {float(sol.stats.t):.1f}")
    traj = ss.integrate(f, np.zeros(2), (0.0, 8.0), ss.Tsit5(), saveat=np.linspace(0, 8, 81))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        ax.plot(traj.ts, traj.us[:, 0], label="u1")
        ax.plot(traj.ts, traj.us[:, 1], label="u2")
        ax.axhline(sol.u[0], ls=":", c="C0", label="steady state (DynamicSS)")
        ax.axhline(sol.u[1], ls=":", c="C1")
        ax.set(xlabel="time t", ylabel="state u(t)",
               title="Tsit5 trajectory and DynamicSS steady state")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_path(out, "demo_trajectory.png")
        fig.savefig(path, dpi=100)
        print(f"  trajectory plot: {path}")
    except ImportError:
        print(f"  trajectory: {len(traj.ts)} saved states (install matplotlib for the plot)")


def torch_deq(quick=False):
    section("4. a PyTorch DEQ learns y = 2x (implicit gradients)")
    try:
        import torch
        from torch import nn

        from steadysolve.adapters.torch import DEQ, Implicit
    except ImportError:
        print("  torch not installed: pip install 'steadysolve[torch]'")
        return
    torch.manual_seed(0)

    class Cell(nn.Module):
        """f(z, x) = W z + U x + b, W scaled to a contraction at the start."""

        def __init__(self, width=8):
            super().__init__()
            self.W = nn.Linear(width, width, bias=False)
            self.U = nn.Linear(width, width)
            with torch.no_grad():
                self.W.weight.mul_(0.3 / torch.linalg.matrix_norm(self.W.weight, 2))

        def forward(self, z, x):
            return self.W(z) + self.U(x)

    # Training drives W's spectral radius towards 1 here, where the layers' default adjoint (a Neumann
    # series capped like the forward solve, robust when forward solves stop at their cap) converges slowly;
    # this fit converges its forward solves, so the exact GMRES adjoint is the better choice.
    deq = DEQ(Cell(), solver="anderson", abstol=1e-6, reltol=1e-6, maxiters=100, backward=Implicit(solver="gmres"))
    model = nn.Sequential(nn.Linear(1, 8), deq, nn.Linear(8, 1)).double()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x = torch.arange(1.0, 11.0, dtype=torch.float64).reshape(-1, 1)
    y = 2 * x
    steps = 60 if quick else 150
    for step in range(steps):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            fs, bs = deq.forward_stats, deq.backward_stats
            print(f"  step {step:3d}  loss {loss.item():9.5f}  forward {fs.retcode.name} in {fs.niter} iters"
                  f"  backward ({bs.solver}) {bs.retcode.name} in {bs.niter} iters")
    with torch.no_grad():
        pred = model(torch.tensor([[-5.0]], dtype=torch.float64)).item()
    print(f"  prediction at x = -5: {pred:.3f} (target -10)")


def main(argv=None):
    ap = script_parser(__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller problems (H-equation n = 40, Laplace 25 x 25) "
                                                         "and 60 training steps instead of 150")
    args = parse(ap, argv)
    t0 = time.perf_counter()
    algorithms_table(args.quick)
    backends()
    steady_state(args)
    torch_deq(args.quick)
    print(f"\ndone in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
