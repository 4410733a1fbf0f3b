"""Depth trajectories of the trained ``y = 2x`` DEQ: discrete depth and continuous time.

    python examples/trajectories.py [--quick] [--out DIR]

Trains the regression DEQ of ``regression.py`` (torch), then for 10 inputs drawn from U(0, 10):
(1) iterates the trained cell ``z <- NN(z + x)`` from ``z = 0`` to convergence (max depth 100,
tolerance 1e-3) and plots value vs depth (``trajectories_depth.png``); (2) integrates the same
cell as the vector field ``du/dt = NN(u + x) - u`` with ``steadysolve.integrate(..., Tsit5())``
and plots value vs time (``trajectories_time.png``).
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import parse, script_parser  # noqa: E402
from regression import train_torch  # noqa: E402

import steadysolve as ss  # noqa: E402


def depth_trajectories(cell, xs, max_depth=100, tol=1e-3):
    import torch
    with torch.no_grad():
        z = torch.zeros_like(xs)
        path = [z.clone()]
        for _ in range(max_depth):
            z_new = cell(z, xs)
            path.append(z_new.clone())
            done = float((z_new - z).abs().max()) <= tol
            z = z_new
            if done:
                break
    return np.stack([p.numpy()[:, 0] for p in path])  # (depth + 1, 10)


def time_trajectories(cell, xs, t1=30.0, n=121):
    import torch
    with torch.no_grad():
        sol = ss.integrate(lambda u, p, t: cell(u, xs) - u, torch.zeros_like(xs), (0.0, t1), ss.Tsit5(),
                           saveat=list(np.linspace(0.0, t1, n)), abstol=1e-6, reltol=1e-6)
    return np.asarray(sol.ts), np.asarray(sol.us)[:, :, 0], sol


def plot(x_axis, ys, xs, xlabel, title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for j in range(ys.shape[1]):
        ax.plot(x_axis, ys[:, j], lw=1.2, label=f"x = {xs[j]:.1f}")
    ax.set(xlabel=xlabel, ylabel="DEQ state z", title=title)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    ap = script_parser(__doc__)
    ap.add_argument("--quick", action="store_true", help="150 training steps instead of 300")
    args = parse(ap, argv)
    import torch
    os.makedirs(args.out, exist_ok=True)
    cell, losses, pred = train_torch(150 if args.quick else 300)
    torch.manual_seed(1)
    xs = torch.rand(10, 1) * 10
    depth = depth_trajectories(cell, xs)
    print(f"trained (prediction at -5: {pred:.3f}); fixed-point iteration converged at depth {len(depth) - 1} "
          f"(max 100, tol 1e-3)")
    p1 = os.path.join(args.out, "trajectories_depth.png")
    plot(np.arange(len(depth)), depth, xs[:, 0].numpy(), "depth (iterations of the cell)",
         "DEQ state vs depth", p1)
    ts, us, sol = time_trajectories(cell, xs)
    print(f"integrate(..., Tsit5()) to t = {ts[-1]:.0f}: {sol.retcode.name}, {sol.stats['nf']} evaluations; "
          f"max |z(T) - z_depth| = {np.abs(us[-1] - depth[-1]).max():.2e}")
    p2 = os.path.join(args.out, "trajectories_time.png")
    plot(ts, us, xs[:, 0].numpy(), "time t", "DEQ state vs time (du/dt = NN(u + x) - u)", p2)
    print(f"wrote {p1}\nwrote {p2}")
    return depth, us, (p1, p2)


if __name__ == "__main__":
    main()
