"""Array operations issued per iteration by each algorithm (driver included, the user's ``f`` excluded).

    python -m benchmarks.op_counts [--n 100] [--batch 1] [--json PATH]

Every dispatch of a small array operation costs microseconds whatever the size of the array,
so on the eager NumPy and PyTorch paths the count of operations per ``step`` is the fixed
cost of an iteration. Counted here:

* NumPy: every ufunc call (arithmetic, comparisons, ``matmul``, reductions), every NumPy
  function that dispatches through ``__array_function__`` (``where``, ``stack``,
  ``linalg.solve``, ...) and every ``__getitem__`` / ``__setitem__`` on an array, through an
  ``ndarray`` subclass that the solve runs on;
* PyTorch: every call seen by a ``TorchFunctionMode`` (operators, indexing, ``torch.*``).

Calls made inside the user's function are not counted (they are the floor, not overhead).
The problem is the H-equation fixed point (``n`` unknowns, ``--batch`` independent copies);
each algorithm runs to ``abstol=1e-10``; the table shows operations per iteration.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks._common import print_table, single_thread, write_results  # noqa: E402

single_thread()

import numpy as np  # noqa: E402
from benchmarks.problems.honesty import h_matrix  # noqa: E402

import steadysolve as ss  # noqa: E402

ALGS = ["fixed_point", "anderson", "broyden", "newton_krylov", "newton", "trust_region", "levenberg_marquardt",
        "dynamic_ss"]


class _Count:
    n = 0
    on = False


class Counted(np.ndarray):
    """An ndarray that counts the operations applied to it (while ``_Count.on``)."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if _Count.on:
            _Count.n += 1
        args = [x.view(np.ndarray) if isinstance(x, Counted) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, Counted) else o for o in kwargs["out"])
        out = getattr(ufunc, method)(*args, **kwargs)
        return _wrap(out)

    def __array_function__(self, func, types, args, kwargs):
        if _Count.on:
            _Count.n += 1
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __getitem__(self, key):
        if _Count.on:
            _Count.n += 1
        return _wrap(np.ndarray.__getitem__(self.view(np.ndarray), key))

    def __setitem__(self, key, value):
        if _Count.on:
            _Count.n += 1
        np.ndarray.__setitem__(self.view(np.ndarray), key, _unwrap(value))


def _wrap(x):
    if isinstance(x, np.ndarray) and not isinstance(x, Counted):
        return x.view(Counted)
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _unwrap(x):
    if isinstance(x, Counted):
        return x.view(np.ndarray)
    if isinstance(x, tuple):
        return tuple(_unwrap(v) for v in x)
    if isinstance(x, list):
        return [_unwrap(v) for v in x]
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def count(alg, n, batch, lib):
    if lib == "numpy":
        import contextlib

        @contextlib.contextmanager
        def untracked():
            on, _Count.on = _Count.on, False
            try:
                yield
            finally:
                _Count.on = on

        to_b = lambda a: np.asarray(a).view(Counted)  # noqa: E731
        start = lambda: setattr(_Count, "on", True)  # noqa: E731
        stop = lambda: setattr(_Count, "on", False)  # noqa: E731
        reset = lambda: setattr(_Count, "n", 0)  # noqa: E731
        get = lambda: _Count.n  # noqa: E731
        mode = contextlib.nullcontext()
    else:
        import torch
        from torch.overrides import TorchFunctionMode

        torch.set_num_threads(1)

        class Mode(TorchFunctionMode):
            n = 0
            on = True

            def __torch_function__(self, func, types, args=(), kwargs=None):
                if Mode.on:
                    Mode.n += 1
                return func(*args, **(kwargs or {}))

        import contextlib

        @contextlib.contextmanager
        def untracked():
            on, Mode.on = Mode.on, False
            try:
                yield
            finally:
                Mode.on = on

        to_b = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
        start = lambda: setattr(Mode, "on", True)  # noqa: E731
        stop = lambda: setattr(Mode, "on", False)  # noqa: E731
        reset = lambda: setattr(Mode, "n", 0)  # noqa: E731
        get = lambda: Mode.n  # noqa: E731
        mode = Mode()
    Mt = to_b(h_matrix(n, 0.9).T)

    def g(u, p):  # the H-equation map, in the array's own library (so that PyTorch AD works)
        with untracked():
            return 1.0 / (1.0 - u @ Mt)

    u0 = to_b(np.ones((batch, n)) if batch > 1 else np.ones(n))
    kw = dict(abstol=1e-10, reltol=0.0, maxiters=500)
    if batch > 1:
        kw["batch_axis"] = 0
    prob = ss.FixedPointProblem(g, u0)
    stop()
    with mode:
        stop()
        ss.solve(prob, alg, **kw)  # warm-up (caches, imports)
        # a solve of 0 iterations would not exist: count a 1-iteration solve and a full one, and
        # report the difference per extra iteration (setup excluded)
        reset()
        start()
        one = ss.solve(prob, alg, **{**kw, "maxiters": 1})
        stop()
        n1 = get()
        reset()
        start()
        sol = ss.solve(prob, alg, **kw)
        stop()
        nall = get()
    it = int(np.max(np.asarray(sol.stats.niter)))
    per_it = (nall - n1) / max(it - int(np.max(np.asarray(one.stats.niter))), 1)
    return dict(benchmark="op_counts", case=f"{alg} {lib} B={batch}", algorithm=alg, library=lib, batch=batch,
                niter=it, setup_ops=n1, ops_per_iter=per_it, time=None, peer=None, peer_time=None, ratio=None,
                target=None, met=None)


COLUMNS = [("algorithm", "algorithm", "s"), ("library", "library", "s"), ("batch", "B", "d"), ("niter", "iters", "d"),
           ("setup_ops", "ops (solve of 1 iter)", "d"), ("ops_per_iter", "ops / iter", ".1f")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--batch", type=int, nargs="*", default=[1, 4])
    ap.add_argument("--algs", nargs="*", default=ALGS)
    ap.add_argument("--libs", nargs="*", default=["numpy", "torch"])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.quick:  # the cheap algorithms on NumPy, unbatched
        args.libs, args.batch = ["numpy"], [1]
        args.algs = [a for a in args.algs if a in ("fixed_point", "anderson", "broyden", "newton_krylov")]
    rows = []
    for lib in args.libs:
        for batch in args.batch:
            for alg in args.algs:
                try:
                    rows.append(count(alg, args.n, batch, lib))
                except Exception as e:  # an algorithm a tree does not have, or a failure: say so
                    print(f"{alg} {lib} B={batch}: {type(e).__name__}: {e}", file=sys.stderr)
    print_table(rows, COLUMNS, f"array operations per iteration (H-equation n={args.n}; f excluded)")
    if args.json:
        write_results(args.json, "op_counts", rows)
    return rows


if __name__ == "__main__":
    main()
