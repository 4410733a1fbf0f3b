"""The small-system engine's GMRES (one NumPy system, Python floats) against the generic GMRES.

Same systems, same options: identical return codes and counts (matvecs, Krylov steps, cycles),
iterates equal to rounding, alone and with the system inside a batch of the generic driver.
"""


import numpy as np
import pytest

import steadysolve as ss
from steadysolve import _backend as backend
from steadysolve import _small
from steadysolve._small.gmres import gmres_one
from steadysolve.linear.gmres import gmres_2d

from benchmarks.problems import mgh

XP = backend.namespace(("b", np.zeros(1)))


def _jacobian(F, x, h=1e-6):
    n = x.size
    J = np.empty((n, n))
    for i in range(n):
        e = np.zeros(n)
        e[i] = h * max(abs(x[i]), 1.0)
        J[:, i] = (F(x + e) - F(x - e)) / (2 * e[i])
    return J


def _others(A, b):
    """Two more systems for the batch: a shifted operator and a scaled right-hand side."""
    n = b.size
    return [A + 2.0 * np.eye(n), A], [b[::-1].copy(), -3.0 * b]


def _agree(A, b, x0=None, aug=None, **kw):
    """Runs the engine, the generic driver on the system alone and inside a batch of three; asserts
    they agree and returns the engine's result."""
    n = b.size
    one = gmres_one(XP, lambda v: v @ A.T, b[None, :], None if x0 is None else x0[None, :],
                    aug=None if aug is None else aug[None], **kw)
    alone = gmres_2d(XP, lambda v: v @ A.T, b[None, :], None if x0 is None else x0[None, :],
                     aug=None if aug is None else aug[None], **kw)
    As, bs = _others(A, b)
    As, bs = np.stack([A] + As), np.stack([b] + bs)
    X0 = None if x0 is None else np.stack([x0] * 3)
    Aug = None if aug is None else np.stack([aug] * 3)
    batch = gmres_2d(XP, lambda V: np.einsum("bij,bj->bi", As, V), bs, X0, aug=Aug, **kw)
    counts = (int(one.codes[0]), one.nmatvec, one.niter, one.ncycle)
    assert counts == (int(alone.codes[0]), alone.nmatvec, alone.niter, alone.ncycle)
    assert int(batch.codes[0]) == counts[0]
    # the rounding differs (dot products, the order of the rotations): by a small multiple of
    # cond(A) eps relative to x, which grows over the restarts of a stagnating run (Watson: 600x)
    with np.errstate(all="ignore"):
        cond = np.linalg.cond(A) if np.all(np.isfinite(A)) else 1.0
    atol = max(float(np.max(np.abs(alone.x))), 1.0) * min(max(1e-12, 1e4 * cond * np.finfo(float).eps), 1e-3)
    np.testing.assert_allclose(one.x, alone.x, rtol=0, atol=atol)
    np.testing.assert_allclose(one.x[0], batch.x[0], rtol=0, atol=atol)
    np.testing.assert_allclose(float(one.resid[0]), float(alone.resid[0]), rtol=1e-6, atol=atol)
    assert one.x.shape == (1, n) and one.x.dtype == b.dtype
    return one


def test_the_predicate():
    assert _small.applies(XP, 1) and not _small.applies(XP, 2)
    torch = pytest.importorskip("torch")
    assert not _small.applies(backend.namespace(("b", torch.zeros(1))), 1)


@pytest.mark.parametrize("name", [p.name for p in mgh.PROBLEMS if p.n > 1])
def test_mgh_jacobians(name):
    # the Newton systems J d = -F of the MGH problems at their standard starts: exact (restart n),
    # restarted, with a start, and capped
    p = mgh.by_name(name)
    A, b = _jacobian(p, p.x0), -p(p.x0)
    n = b.size
    res = _agree(A, b, restart=n, reltol=1e-10, maxiters=2 * n)
    assert res.codes[0] in (0, 3, 5)
    _agree(A, b, restart=2, reltol=1e-8, maxiters=6 * n)
    _agree(A, b, x0=np.ones(n), restart=3, reltol=1e-8, maxiters=6 * n)
    _agree(A, b, restart=n, reltol=np.array([1e-3]), maxiters=n)


def test_augmentation_vectors():
    # recycled directions as Newton-Krylov passes them: unit rows, a zero row (skipped) and a row
    # dependent on an earlier one (skipped after orthogonalisation)
    rng = np.random.default_rng(3)
    n = 12
    A = np.eye(n) * 2 + rng.normal(size=(n, n)) / np.sqrt(n)
    b = rng.normal(size=n)
    u = rng.normal(size=(3, n))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    aug = np.stack([u[0], np.zeros(n), u[1], u[0], u[2]])
    res = _agree(A, b, aug=aug, restart=4, reltol=1e-10, maxiters=60)
    assert res.codes[0] == 0 and res.ncycle > 1
    _agree(A, b, aug=aug, restart=n, reltol=1e-12, maxiters=n + 5)
    _agree(A, b, aug=aug[:2], restart=3, reltol=1e-10, maxiters=2)  # the cap inside the augmentation steps


def test_failures_and_caps():
    rng = np.random.default_rng(0)
    n = 10
    A = np.eye(n) * 3 + rng.normal(size=(n, n)) / np.sqrt(n)
    b = rng.normal(size=n)
    assert _agree(0.0 * A, b, restart=5, reltol=1e-5).codes[0] == ss.ReturnCode.LinearSolveFailed.code
    assert _agree(np.full((n, n), np.nan), b, restart=5, reltol=1e-5).codes[0] == ss.ReturnCode.LinearSolveFailed.code
    P = np.diag([1.0] * (n - 1) + [0.0])  # b has a component outside the range
    assert _agree(P, b, restart=n, reltol=1e-10, maxiters=50).codes[0] != 0
    assert _agree(A, b, restart=3, reltol=1e-14, maxiters=4).codes[0] == ss.ReturnCode.MaxIters.code
    assert _agree(A, np.zeros(n), restart=3, reltol=1e-5).nmatvec == 0  # b = 0: x = 0 at once
    _agree(A, b, x0=np.full(n, np.nan), restart=3, reltol=1e-8)  # a non-finite start fails at once
