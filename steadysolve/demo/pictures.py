"""What the trained MNIST DEQ does: its hidden state along the solver's path, every solver on it, plots."""

from __future__ import annotations

import copy
import time

import numpy as np

from .mnist import require as _require

__all__ = ["hidden_path", "compare_solvers", "plot_trajectories", "plot_clusters", "plot_solvers", "format_table"]

def hidden_path(model, X, solver="dynamic_ss", abstol=1e-3, maxiters=100):
    """Hidden states along the solver's trajectory: array (n_iter + 1, n, 100) (converged rows frozen)."""
    torch, _, _, _ = _require()
    import steadysolve as ss
    cell = model[2].f
    with torch.no_grad():
        x = model[1](torch.as_tensor(X).reshape(len(X), -1))
        frames = [torch.zeros_like(x).numpy()]
        prob = ss.FixedPointProblem(lambda u, p: cell(u, x), torch.zeros_like(x))
        ss.solve(prob, solver, abstol=abstol, reltol=0.0, maxiters=maxiters, batch_axis=0,
                 callback=lambda k, u, r: frames.append(u.detach().clone().numpy()))
    return np.stack(frames)


def compare_solvers(model, X, y, names=None, maxiters=100, abstol=1e-3, dtype="float32"):
    """Every registered algorithm on the trained DEQ: list of dicts (name, nfe, njvp, nvjp, cost, seconds,
    accuracy, trace, retcode); ``cost = nfe + njvp + nvjp`` counts a Jacobian-vector product (and each
    column of a dense Jacobian) as one evaluation of the cell, which forward-mode AD roughly costs.

    Solved in ``dtype`` (the model's float32 by default; JVPs are forward-mode AD either way). The
    max-norm ``abstol`` must stay well above float32's resolution of the hidden state (about 1e-6
    here): 1e-3 gives the same iterations and accuracies in float32 and float64.
    """
    torch, _, _, _ = _require()
    import steadysolve as ss
    dt = getattr(torch, dtype)
    eps = float(torch.finfo(dt).eps)
    if abstol < 100 * eps:
        raise ValueError(f"compare_solvers: abstol={abstol:g} is below what {dtype} resolves (~{100 * eps:.0e}); "
                         "raise it or pass dtype='float64'")
    model = copy.deepcopy(model).to(dt)
    cell, head = model[2].f, model[3]
    rows = []
    with torch.no_grad():
        x = model[1](torch.as_tensor(X, dtype=dt).reshape(len(X), -1))
        for name in names or ss.available():
            prob = ss.FixedPointProblem(lambda u, p: cell(u, x), torch.zeros_like(x))
            t0 = time.perf_counter()
            try:
                sol = ss.solve(prob, name, abstol=abstol, reltol=0.0, maxiters=maxiters, batch_axis=0,
                               store_trace=True)
            except Exception as e:  # an algorithm that cannot run this problem is reported, not fatal
                rows.append(dict(name=name, nfe=float("nan"), njvp=float("nan"), nvjp=float("nan"), cost=float("nan"),
                                 seconds=float("nan"), accuracy=float("nan"), trace=None,
                                 retcode=f"error: {type(e).__name__}: {e}"[:80]))
                continue
            dt = time.perf_counter() - t0
            acc = float((head(sol.u).argmax(1) == torch.as_tensor(y)).float().mean())
            tr = None if sol.trace is None else np.asarray(torch.as_tensor(sol.trace).numpy())
            if tr is not None and tr.ndim == 2:
                tr = tr.max(axis=1)
            st = sol.stats
            rows.append(dict(name=name, nfe=int(st.nf), njvp=int(st.njvp), nvjp=int(st.nvjp),
                             cost=int(st.nf) + int(st.njvp) + int(st.nvjp), seconds=dt, accuracy=acc, trace=tr,
                             retcode=str(getattr(sol.retcode, "name", sol.retcode))))
    return rows


def _pca(frames):
    final = frames[-1]
    mean = final.mean(0)
    _, _, vt = np.linalg.svd(final - mean, full_matrices=False)
    return (frames - mean) @ vt[:2].T  # (T, n, 2)


def plot_trajectories(frames, path, n=10):
    _, _, plt, _ = _require()
    proj = _pca(frames)[:, :n, 0]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(len(proj)), proj, marker=".", lw=1)
    ax.set(xlabel="depth (solver iteration)", ylabel="hidden state, 1st principal component",
           title="DEQ hidden state vs depth (10 test digits)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_clusters(frames, labels, png, gif, max_frames=30):
    _, _, plt, _ = _require()
    from matplotlib.animation import FuncAnimation, PillowWriter
    proj = _pca(frames)
    markers = "o^sDv<>pPX"
    cmap = plt.get_cmap("tab10")
    lim = np.abs(proj[-1]).max() * 1.1

    def draw(ax, pts, title):
        ax.clear()
        for d in range(10):
            m = labels == d
            ax.scatter(pts[m, 0], pts[m, 1], s=12, color=cmap(d), marker=markers[d], label=str(d))
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="PC 1", ylabel="PC 2", title=title)
        ax.legend(loc="upper right", fontsize=6, ncol=2, markerscale=0.8)

    fig, ax = plt.subplots(figsize=(5, 5))
    draw(ax, proj[-1], "DEQ feature clusters (fixed point)")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    steps = np.unique(np.linspace(0, len(proj) - 1, min(max_frames, len(proj))).astype(int))
    anim = FuncAnimation(fig, lambda k: draw(ax, proj[steps[k]], f"DEQ feature clusters, depth {steps[k]}"),
                         frames=len(steps))
    anim.save(gif, writer=PillowWriter(fps=4), dpi=60)
    plt.close(fig)


def plot_solvers(rows, path):
    _, _, plt, _ = _require()
    ok = [r for r in rows if r["trace"] is not None]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    names = [r["name"] for r in ok]
    nfe = np.array([r["nfe"] for r in ok], dtype=float)
    prods = np.array([r.get("njvp", 0) + r.get("nvjp", 0) for r in ok], dtype=float)
    axes[0].bar(names, nfe, color="tab:blue", label="evaluations of f")
    axes[0].bar(names, prods, bottom=nfe, color="tab:orange", label="JVPs / VJPs (Jacobians: one per column)")
    axes[0].set_title("cost in evaluations of f")
    axes[0].legend(fontsize=6)
    for ax, key, lab in zip(axes[1:3], ("seconds", "accuracy"), ("time (s)", "test accuracy")):
        ax.bar(names, [r[key] for r in ok], color="tab:blue")
        ax.set_title(lab)
    for ax in axes[:3]:
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    for r in ok:
        axes[3].semilogy(np.maximum(r["trace"], 1e-12), label=r["name"])
    axes[3].set(xlabel="iteration", ylabel="max residual", title="residual vs iteration")
    axes[3].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def format_table(rows):
    lines = ["| solver | NFE | JVPs + VJPs | time (s) | accuracy | retcode |", "|---|---|---|---|---|---|"]
    for r in rows:
        prods = r.get("njvp", 0) + r.get("nvjp", 0)
        lines.append(f"| {r['name']} | {r['nfe']} | {prods} | {r['seconds']:.3f} | {r['accuracy']:.3f} | "
                     f"{r['retcode']} |")
    return "\n".join(lines)

