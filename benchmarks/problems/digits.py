"""scikit-learn's 1,797 8x8 handwritten digits, split for the DEQ training benchmarks (``deq_torch --data
digits``, ``deq_jax --capped``): 1,400 to train, the rest to test, pixels scaled to [0, 1]."""

from __future__ import annotations

import numpy as np


def load_digits(seed: int = 0, ntrain: int = 1400):
    """``(Xtr, ytr, Xte, yte)`` as float32 / int64 NumPy arrays, shuffled by ``seed``."""
    from sklearn.datasets import load_digits as digits

    X, y = digits(return_X_y=True)
    idx = np.random.default_rng(seed).permutation(len(X))
    X, y = (X[idx] / 16.0).astype(np.float32), y[idx].astype(np.int64)
    return X[:ntrain], y[:ntrain], X[ntrain:], y[ntrain:]
