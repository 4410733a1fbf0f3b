"""Shared benchmark helpers: call counting, median timing, the ratio table, results files.

Every benchmark script imports this module and the problem sets of ``benchmarks.problems``
(shared with the tests), and nothing from another script, so the scripts form no import cycle.
Scripts run as modules from the repository root (``python -m benchmarks.robustness``), which is
how they find this package without any change to ``sys.path``. Timings are medians over repeats measured in one process,
ours and the peer's side by side; a ratio is ``ours / peer`` (below 1: we are faster).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Iterable, Optional


__all__ = ["Counted", "timed", "median_time", "print_table", "ratio_rows", "write_results", "machine_info",
           "single_thread"]


def single_thread() -> None:
    """One BLAS / torch thread (the benchmarks' documented setting); call before importing NumPy users."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


class Counted:
    """Wraps a function and counts its calls (``.n``)."""

    def __init__(self, f: Callable):
        self.f = f
        self.n = 0

    def __call__(self, *a, **k):
        self.n += 1
        return self.f(*a, **k)


def timed(run: Callable, repeats: int = 5, warmup: int = 1):
    """Median wall time of ``run()`` over ``repeats`` calls (after ``warmup`` calls), and its last result."""
    out = None
    for _ in range(warmup):
        out = run()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def median_time(run: Callable, repeats: int = 5, warmup: int = 1) -> float:
    return timed(run, repeats, warmup)[0]


def print_table(rows: list, columns: Iterable[tuple], title: Optional[str] = None) -> None:
    """Print ``rows`` (dicts) as a fixed-width table; ``columns`` are ``(key, header, format)``."""
    columns = list(columns)
    if title:
        print(f"\n{title}")
    cells = [[("" if r.get(k) is None else format(r[k], fmt)) for k, _, fmt in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h, _) in enumerate(columns)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, ((_, h, _), w) in enumerate(zip(columns, widths)))
    print(line)
    print("-" * len(line))
    for c in cells:
        print("  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(c, widths))))


def ratio_rows(rows: list) -> list:
    """Add ``ratio = time / peer_time`` to rows that have both."""
    for r in rows:
        if r.get("time") is not None and r.get("peer_time"):
            r["ratio"] = r["time"] / r["peer_time"]
    return rows


def machine_info() -> dict:
    import numpy as np

    info = {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "numpy": np.__version__, "date": time.strftime("%Y-%m-%d")}
    for mod in ("scipy", "torch", "jax", "steadysolve", "torchdeq", "jaxopt", "optimistix", "diffrax"):
        if mod in sys.modules:
            info[mod] = getattr(sys.modules[mod], "__version__", "?")
    return info


def write_results(path: str, name: str, rows: list, extra: Optional[dict] = None) -> None:
    """Merge ``rows`` under ``name`` into the JSON file ``path`` (created if missing)."""
    data = {}
    if os.path.exists(path):
        with open(path) as fh:
            data = json.load(fh)
    data.setdefault("benchmarks", {})[name] = {"rows": rows, **(extra or {})}
    data["machine"] = machine_info()
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2, default=float)
