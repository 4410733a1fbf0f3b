"""The ``steadysolve demo`` package: the command (:mod:`steadysolve.demo.cli`, whose docstring is its
``--help``), and the MNIST data, model, training and plotting helpers reused by ``examples/``."""

from __future__ import annotations

from .cli import add_mnist_arguments, check_mnist_args, main, parse_mnist_args, trained_model
from .mnist import build_model, evaluate, load_checkpoint, load_mnist, save_checkpoint, train
from .pictures import compare_solvers, format_table, hidden_path, plot_clusters, plot_solvers, plot_trajectories

__all__ = ["main", "add_mnist_arguments", "parse_mnist_args", "check_mnist_args", "trained_model", "load_mnist",
           "build_model", "evaluate", "train", "save_checkpoint", "load_checkpoint", "hidden_path", "compare_solvers",
           "plot_trajectories", "plot_clusters", "plot_solvers", "format_table"]
