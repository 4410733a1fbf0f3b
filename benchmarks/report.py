"""Benchmark report: ``benchmarks/results.json`` -> PNG bar charts and the tables of docs/benchmarks.md.

    python -m benchmarks.report [--json benchmarks/results.json] [--img-dir docs/img/benchmarks]
        [--md docs/benchmarks.md]

``results.json`` (written by ``benchmarks/run_all.py``) holds a header and a list of records::

    {"date": "2026-12-03", "machine": {...} or "text", "versions": {"numpy": "2.4", ...},
     "records": [{"benchmark": "core_vs_scipy", "case": "H-equation n=1000", "peer": "scipy newton_krylov",
                  "ratio": 1.8, "target": 0.5, "met": false, ...}, ...]}

Only ``benchmark``, ``case`` and ``ratio`` are required per record; ``peer``, ``target``, ``met``,
``metric`` (what the ratio measures, e.g. ``"time"`` or ``"nfev"``), ``higher_is_better`` and
``note`` are used when present, and any other field is ignored. The records may also be
under ``"results"``, be the whole file (a bare list, header fields then absent), or come in
the per-script form of ``_common.write_results`` (``{"benchmarks": {name: {"rows": [...]}}}``,
rows with a ``ratio`` field). A ratio is steadysolve's value divided by the peer's (time or
evaluations: lower is better) unless the record says ``higher_is_better``.

One chart per benchmark (``<img-dir>/<benchmark>.png``: a bar per case and peer on a log-scaled
ratio axis, the target as a dashed line, bars that meet it in one colour and the others in another) and, in the
markdown file, the text between ``<!-- results:start -->`` and ``<!-- results:end -->`` is
replaced by the header, the tables and the chart links (the rest of the page is kept).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
START, END = "<!-- results:start -->", "<!-- results:end -->"


def load(path: str) -> tuple[dict, list]:
    """(header, records) from a results file in any of the accepted layouts."""
    with open(path) as fh:
        data = json.load(fh)
    if isinstance(data, list):
        return {}, [normalise(r) for r in data if _is_record(r)]
    header = {k: v for k, v in data.items() if k not in ("records", "results", "rows", "benchmarks")}
    raw = data.get("records", data.get("results", data.get("rows")))  # "rows": run_all.py's schema 1
    records = [r for r in (raw or []) if _is_record(r)] + derived(raw or [])
    if raw is None and isinstance(data.get("benchmarks"), dict):  # _common.write_results layout
        for name, block in data["benchmarks"].items():
            for row in (block or {}).get("rows", []) if isinstance(block, dict) else []:
                if isinstance(row, dict) and _number(row.get("ratio")) is not None:
                    records.append({"benchmark": name, "case": row.get("case", row.get("method", "?")), **row})
    if "date" not in header and isinstance(header.get("machine"), dict) and "date" in header["machine"]:
        header["date"] = header["machine"]["date"]
    return header, [normalise(r) for r in records]


def _extra(r: dict) -> dict:
    e = r.get("extra")
    if isinstance(e, str):  # run_all.py stores some extras as their repr
        import ast

        try:
            e = ast.literal_eval(e)
        except (ValueError, SyntaxError):
            e = None
    return e if isinstance(e, dict) else {}


def derived(rows: list) -> list:
    """Ratio records for the benchmarks whose rows hold counts or printed tables instead of ratios:
    robustness (problems solved, against SciPy's ``hybr``), dynamic_ss, deq_jax and deq_torch (the
    ratio lines of their printed tables, ``extra.stdout_tail``)."""
    out = []
    rows = [r for r in rows if isinstance(r, dict) and _number(r.get("ratio")) is None]
    solved = {r.get("case"): _extra(r).get("nsolved") for r in rows if r.get("benchmark") == "robustness"}
    ref = _number(solved.get("scipy:hybr"))
    for case, n in solved.items():
        if ref and not str(case).startswith("scipy:") and _number(n) is not None:
            out.append({"benchmark": "robustness", "case": f"problems solved, {case}", "peer": "scipy root(hybr)",
                        "ratio": n / ref, "higher_is_better": True, "metric": "solved",
                        "target": 1.0 if case == "default" else None})
    for r in rows:
        name, tail = r.get("benchmark"), _extra(r).get("stdout_tail")
        if isinstance(tail, list) and name in _TABLES:
            out += [{"benchmark": name, **rec} for rec in _TABLES[name]([str(t) for t in tail])]
    return out


def _ratio(case, peer, metric, ratio, target=None) -> dict:
    return {"case": case, "peer": peer, "metric": metric, "ratio": ratio, "target": target}


def _dynamic_ss_ratios(lines: list) -> list:
    out, header = [], None
    for line in lines:
        if line.startswith("problem") and "time ss/scipy" in line:
            header = line
            continue
        if header and line.strip() and not line.startswith("targets"):
            cells = re.split(r"\s{2,}", line.strip())
            if len(cells) >= 7 and all(_number(c) is not None for c in cells[1:7]):
                t_sp, nfe_sp, _, t_dx, nfe_dx = (float(c) for c in cells[1:6])
                out += [_ratio(cells[0], "scipy solve_ivp(RK45)", "time", t_sp, 0.5),
                        _ratio(cells[0], "scipy solve_ivp(RK45)", "nfev", nfe_sp),
                        _ratio(cells[0], "diffrax Tsit5", "time", t_dx, 1.0),
                        _ratio(cells[0], "diffrax Tsit5", "nfev", nfe_dx)]
        elif header and not line.strip():
            header = None
    return out


def _deq_jax_ratios(lines: list) -> list:
    out = []
    for line in lines:
        m = re.match(r"(steadysolve .+?)\s{2,}[\d.]+\s+[\d.]+\s+\d+\s+[\d.]+\s+\S+\s+([\d.]+)\s*$", line)
        if m:
            out.append(_ratio(f"forward + gradient, {m.group(1)}", "best of jaxopt / optimistix", "time",
                              float(m.group(2))))
    return out


def _deq_torch_ratios(lines: list) -> list:
    out = []
    for line in lines:
        m = re.search(r"time per step ratio steadysolve / torchdeq = ([\d.]+) \(target <= ([\d.]+)\)", line)
        if m:
            out.append(_ratio("training step, matched settings", "torchdeq", "time", float(m.group(1)),
                              float(m.group(2))))
        m = re.match(r"\s+(\w+)\s+time\s+([\d.]+)x", line)
        if m:
            out.append(_ratio(f"training step, {m.group(1)}", "torchdeq (rel 1e-3)", "time", float(m.group(2)),
                              0.5 if m.group(1) == "anderson" else 2.0))
    return out


_TABLES = {"dynamic_ss": _dynamic_ss_ratios, "deq_jax": _deq_jax_ratios, "deq_torch": _deq_torch_ratios}


def _is_record(r) -> bool:
    return isinstance(r, dict) and "benchmark" in r and _number(r.get("ratio")) is not None


def _number(x):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def normalise(r: dict) -> dict:
    """A record with every field the report reads (``met`` recomputed when absent)."""
    out = dict(r)
    out["case"] = str(r.get("case", ""))
    out["peer"] = str(r.get("peer", "") or "")
    out["ratio"] = _number(r.get("ratio"))
    out["target"] = _number(r.get("target"))
    out["higher_is_better"] = bool(r.get("higher_is_better", False))
    if r.get("met") is None and out["target"] is not None:
        hib = out["higher_is_better"]
        out["met"] = out["ratio"] >= out["target"] if hib else out["ratio"] <= out["target"]
    else:
        out["met"] = None if r.get("met") is None else bool(r.get("met"))
    out["metric"] = str(r.get("metric", "") or "")
    out["note"] = str(r.get("note", "") or "")
    return out


def by_benchmark(records: list) -> "OrderedDict[str, list]":
    groups: OrderedDict = OrderedDict()
    for r in records:
        groups.setdefault(str(r["benchmark"]), []).append(r)
    return groups


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "benchmark"


def chart(name: str, records: list, path: str) -> None:
    """One horizontal bar chart of the ratios of one benchmark, on a log axis (a ratio of 0.05 and one
    of 20 are equally far from parity): each bar runs from 1 (parity) to its ratio, the dashed tick
    on a bar is its target, green bars meet their target and red ones miss it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    labels = [f"{r['case']}" + (f"  [{r['metric']}]" if r["metric"] else "") + (f"\nvs {r['peer']}" if r["peer"] else "")
              for r in records]
    shown = [v for r in records for v in (r["ratio"], r["target"] if r.get("target_kind") != "ms" else None)
             if v is not None and v > 0] + [1.0]
    lo, hi = min(shown) / 2.5, max(shown) * 2.5
    colours = ["#2e7d32" if r["met"] else "#c62828" if r["met"] is False else "#607d8b" for r in records]
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.5 * len(records)))
    y = list(range(len(records)))[::-1]
    for yi, r, c in zip(y, records, colours):
        v = max(r["ratio"], lo * 1.2)  # a ratio of 0 (nothing solved) sits at the axis' left edge
        ax.barh(yi, v - 1.0, left=1.0, color=c, height=0.7)
        ax.text(v * (1.08 if v >= 1 else 1 / 1.08), yi, f"{r['ratio']:.3g}", va="center",
                ha="left" if v >= 1 else "right", fontsize=8)
        if r["target"] is not None and r.get("target_kind") != "ms":  # an absolute time bound is no ratio
            ax.plot([r["target"]] * 2, [yi - 0.45, yi + 0.45], "k--", lw=1.4)
    ax.axvline(1.0, color="0.4", lw=0.9)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ticks = [m * 10.0 ** k for k in range(-4, 5) for m in (1, 2, 5) if lo <= m * 10.0 ** k <= hi]
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    better = "higher" if all(r["higher_is_better"] for r in records) else \
        "lower" if not any(r["higher_is_better"] for r in records) else "see each row"
    ax.set_xlabel(f"ratio steadysolve / peer (log scale; 1 = parity; {better} is better)")
    ax.set_title(name + ("  (time-bound rows: green = one solve under the bound)"
                         if any(r.get("target_kind") == "ms" for r in records) else ""), fontsize=10)
    ax.legend(handles=[Patch(color="#2e7d32", label="meets its target"), Patch(color="#c62828", label="misses it"),
                       Patch(color="#607d8b", label="no target"), Line2D([], [], color="k", ls="--", label="target")],
              fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="x", which="both", alpha=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def _fmt_header(header: dict) -> list:
    lines = []
    if header.get("provenance"):
        lines.append(f"!!! note \"Provenance\"\n    {header['provenance']}\n")
    machine = header.get("machine")
    if isinstance(machine, dict):
        keys = ("platform", "machine", "cpus", "python")
        machine = ", ".join(f"{k} {machine[k]}" for k in keys if k in machine) or json.dumps(machine)
    versions = header.get("versions")
    if not versions and isinstance(header.get("machine"), dict):
        versions = {k: v for k, v in header["machine"].items() if k not in ("platform", "machine", "cpus", "python", "date")}
    if isinstance(versions, dict):
        versions = ", ".join(f"{k} {v}" for k, v in versions.items())
    lines.append("| | |\n|---|---|")
    lines.append(f"| date | {header.get('date', 'unknown')} |")
    lines.append(f"| machine | {machine or 'unknown'} |")
    lines.append(f"| versions | {versions or 'unknown'} |")
    if header.get("command"):
        lines.append(f"| command | `{header['command']}` |")
    return lines


def markdown(header: dict, groups: "OrderedDict[str, list]", img_rel: str) -> str:
    """The generated block: header table, then per benchmark a table and its chart."""
    out = [START, "", *_fmt_header(header), ""]
    if not groups:
        out += ["No records in the results file.", ""]
    for name, recs in groups.items():
        met = [r["met"] for r in recs if r["met"] is not None]
        out.append(f"### {name}")
        out.append("")
        if met:
            out.append(f"{sum(met)} of {len(met)} targets met.")
            out.append("")
        out.append("| case | peer | measures | ratio | target | met | note |")
        out.append("|---|---|---|---|---|---|---|")
        for r in recs:
            tgt = "" if r["target"] is None else (("≥ " if r["higher_is_better"] else "≤ ") + f"{r['target']:g}")
            if r.get("target_kind") == "ms" and tgt:  # an absolute time bound on steadysolve's time
                tgt += " ms (time)"
            ok = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
            metric = r["metric"]
            if not metric and _number(r.get("steadysolve_s")) is not None:
                metric = f"{1e3 * float(r['steadysolve_s']):.3g} ms"
            cells = [r["case"], r["peer"], metric, f"{r['ratio']:.3g}", tgt, ok, r["note"]]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        out.append("")
        out.append(f"![{name}]({img_rel}/{slug(name)}.png)")
        out.append("")
    out.append(END)
    return "\n".join(out)


def write_page(md_path: str, block: str) -> None:
    """Replace the generated block of ``md_path`` (appended when the markers are missing)."""
    text = "# Benchmarks\n\n"
    if os.path.exists(md_path):
        with open(md_path, encoding="utf-8") as fh:
            text = fh.read()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(md_path, "w", encoding="utf-8") as fh:
        fh.write(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--img-dir", default=os.path.join(ROOT, "docs", "img", "benchmarks"))
    ap.add_argument("--md", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    args = ap.parse_args(argv)
    header, records = load(args.json)
    groups = by_benchmark(records)
    os.makedirs(args.img_dir, exist_ok=True)
    for name, recs in groups.items():
        chart(name, recs, os.path.join(args.img_dir, slug(name) + ".png"))
    img_rel = os.path.relpath(args.img_dir, os.path.dirname(os.path.abspath(args.md))).replace(os.sep, "/")
    write_page(args.md, markdown(header, groups, img_rel))
    print(f"{len(records)} records in {len(groups)} benchmarks -> {args.md}, charts in {args.img_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
