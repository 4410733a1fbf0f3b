"""Run every benchmark script and collect its rows into one ``benchmarks/results.json``.

    python benchmarks/run_all.py --quick [--out benchmarks/results.json] [--only core_vs_scipy,many_small] [--merge]

Afterwards ``benchmarks/report.py`` turns the file into PNG bar charts (``docs/img/benchmarks/``)
and the tables of ``docs/benchmarks.md`` (``--no-report`` skips it). ``--quick`` runs each
script at its small size (its own ``--quick`` flag where it has one) under a per-script time
budget, so that the whole run stays under 4 minutes on an idle 2-core machine.
Scripts run one after another, each in its own process with ``OPENBLAS_NUM_THREADS=1``. CI does
not run this: the numbers are wall-clock ratios measured side by side in one process.

Schema of ``results.json`` (version 1), kept flat on purpose so that a plotting script needs
nothing but ``json``::

    {
      "schema": 1,
      "date": "2026-12-03T07:30:00Z",          # UTC, when the run started
      "quick": true,
      "machine": {"python": ..., "platform": ..., "cpus": ..., "numpy": ..., "scipy": ..., ...},
      "scripts": [{"script": "core_vs_scipy", "returncode": 0, "seconds": 41.2, "note": ""}, ...],
      "rows": [
        {
          "benchmark": "core_vs_scipy",          # the script
          "case": "H-equation n=100 | Anderson(m=5)",   # problem | our method
          "steadysolve_s": 0.0012,               # our time (seconds, median), or null
          "peer": "scipy anderson M=5",          # what we compare with, or null
          "peer_s": 0.0061,                      # the peer's time (seconds, median), or null
          "ratio": 0.2,                          # steadysolve_s / peer_s (lower is better), or null
          "target": 0.5,                         # the issue's bound, or null
          "target_kind": "ratio",                # "ratio" (ratio <= target), "ms" (ms <= target), ...
          "met": true,                           # null when the row has no target
          "extra": {...}                         # everything else the script reported for the row
        }, ...
      ]
    }

A script contributes rows when it accepts ``--json PATH`` (it writes ``{"benchmarks": {name:
{"rows": [...]}}}`` through ``_common.write_results``); a script without it is still run and
gets one row with ``extra.stdout_tail`` (its printed table) so nothing is silently dropped.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import machine_info  # noqa: E402

# script -> (quick arguments, full arguments, time budget in seconds for --quick)
SCRIPTS = {
    "core_vs_scipy": (["--quick"], [], 15),
    "many_small": (["--quick", "--n", "3000"], [], 40),  # (at 300 systems the fixed costs hid the batch's speed)
    "anderson_overhead": (["--quick", "--repeats", "3"], [], 15),
    "op_counts": (["--quick"], [], 5),
    "robustness": (["--quick"], [], 25),
    "dynamic_ss": (["--repeats", "2"], [], 25),
    "deq_jax": (["--repeats", "2", "--skip-dense"], [], 30),
    "deq_torch": (["--quick"], [], 25),
    "brusselator": (["--quick", "--repeats", "2"], [], 40),
    "bracketing": (["--quick"], [], 45),
    "stiff": (["--quick"], [], 60),
}  # the --quick budgets sum to 325 s: a script that needs longer is recorded as a timeout

# the targets for scripts that do not report their own (benchmark, case substring) -> target
TARGETS = {
    "many_small": ("ratio", 0.1),
    "dynamic_ss": ("ratio", 0.5),
    "deq_jax": ("ratio", 0.5),
    "deq_torch": ("ratio", 0.5),
    "anderson_overhead": ("ratio", 0.3),
}

_KNOWN = {"benchmark", "case", "time", "peer", "peer_time", "ratio", "target", "target_kind", "met"}


def _accepts_json(script: str) -> bool:
    with open(os.path.join(HERE, script + ".py")) as fh:
        return '"--json"' in fh.read()


def _case(row: dict) -> str:
    if row.get("case"):
        return str(row["case"])
    parts = [str(row[k]) for k in ("problem", "method", "alg", "algorithm", "name", "solver") if row.get(k) is not None]
    return " | ".join(parts) if parts else "?"


def _record(name: str, row: dict) -> dict:
    ratio = row.get("ratio")
    if ratio is None and row.get("time") is not None and row.get("peer_time"):
        ratio = row["time"] / row["peer_time"]
    target, kind, met = row.get("target"), row.get("target_kind"), row.get("met")
    reference = "scipy" in str(row.get("method", "")).lower()  # the peer's own row (ratio 1)
    if target is None and name in TARGETS and ratio is not None and not reference:
        kind, target = TARGETS[name]
    if kind is None and target is not None:
        kind = "ratio"
    if met is None and target is not None and kind == "ratio" and ratio is not None:
        met = bool(ratio <= target)
    extra = {k: v for k, v in row.items() if k not in _KNOWN}
    return {"benchmark": name, "case": _case(row), "steadysolve_s": row.get("time"), "peer": row.get("peer"),
            "peer_s": row.get("peer_time"), "ratio": ratio, "target": target, "target_kind": kind,
            "met": None if met is None else bool(met), "extra": extra}


def run_script(name: str, quick: bool, env: dict) -> tuple[list, dict]:
    quick_args, full_args, budget = SCRIPTS[name]
    args = list(quick_args if quick else full_args)
    tmp = None
    if _accepts_json(name):
        fd, tmp = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        os.unlink(tmp)
        args += ["--json", tmp]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, os.path.join(HERE, name + ".py"), *args], cwd=HERE, env=env,
                              capture_output=True, text=True, timeout=budget if quick else None)
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), ""
    seconds = time.perf_counter() - t0
    rows = []
    if tmp and os.path.exists(tmp):
        with open(tmp) as fh:
            data = json.load(fh)
        os.unlink(tmp)
        for bench, block in data.get("benchmarks", {}).items():
            rows += [_record(name, r) for r in block.get("rows", [])]
    note = "" if rc == 0 else f"exit {rc}: {err.strip().splitlines()[-1] if err.strip() else ''}"
    if not rows:
        rows = [{"benchmark": name, "case": "(no machine-readable rows)", "steadysolve_s": None, "peer": None,
                 "peer_s": None, "ratio": None, "target": None, "target_kind": None, "met": None,
                 "extra": {"stdout_tail": out.strip().splitlines()[-30:], "returncode": rc}}]
    return rows, {"script": name, "returncode": rc, "seconds": round(seconds, 2), "note": note}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, per-script time budgets (< 4 min in all)")
    ap.add_argument("--out", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--only", default=None, help="comma-separated script names")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other scripts' rows of an existing --out file (replace only the scripts run)")
    ap.add_argument("--no-report", action="store_true",
                    help="do not run benchmarks/report.py (PNG charts + docs/benchmarks.md tables) afterwards")
    args = ap.parse_args(argv)
    names = list(SCRIPTS) if not args.only else [s.strip() for s in args.only.split(",")]
    unknown = [s for s in names if s not in SCRIPTS]
    if unknown:
        raise SystemExit(f"unknown script(s) {unknown}; valid: {sorted(SCRIPTS)}")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows, scripts = [], []
    for name in names:
        r, info = run_script(name, args.quick, env)
        rows += r
        scripts.append(info)
        print(f"{name:20s} {info['seconds']:7.1f} s  rc={info['returncode']}  rows={len(r)}  {info['note']}", flush=True)
    import numpy  # noqa: F401 - machine_info reports the versions of loaded modules
    import scipy  # noqa: F401

    import steadysolve  # noqa: F401

    if args.merge and os.path.exists(args.out):  # the rows of the scripts not run now stay as they were
        with open(args.out) as fh:
            old = json.load(fh)
        rows = [r for r in old.get("rows", []) if r.get("benchmark") not in names] + rows
        scripts = ([s for s in old.get("scripts", []) if s.get("script") not in names]
                   + [dict(s, date=started) for s in scripts])  # the header's date stays the full run's
        started = old.get("date", started)
    result = {"schema": 1, "date": started, "quick": bool(args.quick), "machine": machine_info(), "scripts": scripts,
              "rows": rows}
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1, default=float)
    met = [r["met"] for r in rows if r["met"] is not None]
    print(f"wrote {args.out}: {len(rows)} rows, {sum(met)}/{len(met)} targets met, "
          f"{sum(s['seconds'] for s in scripts):.0f} s")
    if not args.no_report and os.path.abspath(args.out) == os.path.join(HERE, "results.json"):
        # benchmarks/report.py in its own process (scripts do not import one another): charts + tables
        subprocess.run([sys.executable, os.path.join(HERE, "report.py"), "--json", args.out], check=False)


if __name__ == "__main__":
    main()
