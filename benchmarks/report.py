"""Benchmark report: ``benchmarks/results.json`` -> PNG bar charts and the tables of docs/benchmarks.md.

    python benchmarks/report.py [--json benchmarks/results.json] [--img-dir docs/img/benchmarks]
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

One chart per benchmark (``<img-dir>/<benchmark>.png``: a bar per case and peer, the target as
a dashed line, bars that meet it in one colour and the others in another) and, in the
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
    records = [r for r in (raw or []) if _is_record(r)]
    if raw is None and isinstance(data.get("benchmarks"), dict):  # _common.write_results layout
        for name, block in data["benchmarks"].items():
            for row in (block or {}).get("rows", []) if isinstance(block, dict) else []:
                if isinstance(row, dict) and _number(row.get("ratio")) is not None:
                    records.append({"benchmark": name, "case": row.get("case", row.get("method", "?")), **row})
    if "date" not in header and isinstance(header.get("machine"), dict) and "date" in header["machine"]:
        header["date"] = header["machine"]["date"]
    return header, [normalise(r) for r in records]


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
    """One horizontal bar chart of the ratios of one benchmark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['case']}" + (f"  [{r['metric']}]" if r["metric"] else "") + (f"\nvs {r['peer']}" if r["peer"] else "")
              for r in records]
    ratios = [r["ratio"] for r in records]
    colours = ["#2e7d32" if r["met"] else "#c62828" if r["met"] is False else "#607d8b" for r in records]
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.55 * len(records)))
    y = list(range(len(records)))[::-1]
    ax.barh(y, ratios, color=colours)
    for yi, r in zip(y, records):
        ax.text(r["ratio"], yi, f" {r['ratio']:.2f}", va="center", fontsize=8)
        if r["target"] is not None:
            ax.plot([r["target"]] * 2, [yi - 0.4, yi + 0.4], "k--", lw=1)
    ax.axvline(1.0, color="0.5", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("ratio steadysolve / peer (dashed: target; green: met, red: not met)")
    ax.set_title(name)
    ax.set_xlim(0, max(ratios + [r["target"] or 0 for r in records] + [1.0]) * 1.15)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
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
    text = open(md_path, encoding="utf-8").read() if os.path.exists(md_path) else "# Benchmarks\n\n"
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
