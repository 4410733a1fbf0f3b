"""Every ``python`` code block of the README and of ``docs/`` runs, top to bottom, as written.

The blocks of one page run in order in one namespace (a page is one session, as a reader
would type it), in a temporary working directory, with matplotlib's non-interactive backend.
Listings that are not meant to run are fenced as ``text``.
"""

import os
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def _pages():
    pages = [os.path.join(ROOT, "README.md")]
    for dirpath, _, files in os.walk(os.path.join(ROOT, "docs")):
        pages += [os.path.join(dirpath, f) for f in sorted(files) if f.endswith(".md")]
    return sorted(pages)


def python_blocks(path):
    text = Path(path).read_text(encoding="utf-8")
    return [body for lang, body in FENCE.findall(text) if lang.lower() in ("python", "py", "python3")]


PAGES = [p for p in _pages() if python_blocks(p)]
SLOW_PAGES = ("docs/jax.md", "docs/migration/jax.md", "docs/getting-started.md")  # pages that run for seconds


# A page's own NumPy arithmetic may overflow, as a reader's would (a method that diverges on a hard
# problem); warnings from the package still fail the page.
@pytest.mark.filterwarnings("ignore::RuntimeWarning:__docs__")
@pytest.mark.parametrize("page", [pytest.param(p, marks=pytest.mark.slow) if os.path.relpath(p, ROOT) in SLOW_PAGES
                                  else p for p in PAGES], ids=lambda p: os.path.relpath(p, ROOT))
@pytest.mark.slow
def test_code_blocks_run(page, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for i, block in enumerate(python_blocks(page)):
        try:
            exec(compile(block, f"{os.path.relpath(page, ROOT)}[block {i + 1}]", "exec"), namespace)
        except Exception as e:  # name the block in the failure
            raise AssertionError(f"{os.path.relpath(page, ROOT)}, code block {i + 1} failed: "
                                 f"{type(e).__name__}: {e}\n---\n{block}") from e


def test_the_runner_finds_blocks_and_ignores_text_listings(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("x\n```python\na = 1\n```\n\n```text\nnot python\n```\n```py\nb = a + 1\n```\n")
    assert python_blocks(str(page)) == ["a = 1\n", "b = a + 1\n"]


LINK = re.compile(r"\]\(([^)#\s]*)(#[^)\s]*)?\)")
CODE = re.compile(r"^```.*?^```|`[^`\n]*`", re.S | re.M)


def _links(text):
    """The (target, anchor) pairs of the markdown links of ``text``, outside code."""
    return LINK.findall(CODE.sub("", text))


def slugify(heading: str) -> str:
    """The anchor Python-Markdown's ``toc`` gives a heading (code spans lose their backticks)."""
    text = unicodedata.normalize("NFKD", heading.replace("`", "")).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(path):
    """Heading anchors of a markdown page (fenced code skipped)."""
    text = FENCE.sub("", Path(path).read_text(encoding="utf-8"))
    return {slugify(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def _api_anchor_ok(anchor):
    """An API-reference anchor is the dotted path of a public object (what mkdocstrings uses)."""
    import importlib

    parts = anchor.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_internal_links_resolve():
    """Every relative link of a page points at a file that exists, and its ``#anchor`` at a
    heading of that page (or, on the API reference pages, at a public object)."""
    broken = []
    for page in _pages():
        for target, anchor in _links(Path(page).read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(page), target)) if target else page
            where = f"{os.path.relpath(page, ROOT)} -> {target}{anchor}"
            if not os.path.exists(path):
                broken.append(where)
            elif anchor and path.endswith(".md"):
                name = anchor[1:]
                if os.path.relpath(path, DOCS).startswith("api" + os.sep):
                    ok = _api_anchor_ok(name) or name in _anchors(path)
                else:
                    ok = name in _anchors(path)
                if not ok:
                    broken.append(where + " (no such anchor)")
    assert not broken, broken


def test_the_link_checker_catches_broken_links_and_anchors(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## The `solve` keywords\n\n[x](b.md) [y](#the-solve-keywords) [z](#nope)\n")
    assert _anchors(str(tmp_path / "a.md")) == {"title", "the-solve-keywords"}
    found = _links((tmp_path / "a.md").read_text() + "\n`m[i](z_i)` and\n```\n[c](nope.md)\n```\n")
    assert found == [("b.md", ""), ("", "#the-solve-keywords"), ("", "#nope")]
    assert slugify("Benchmark (`python benchmarks/_rows_newton.py [repeats]`)") == \
        "benchmark-python-benchmarks_rows_newtonpy-repeats"
    assert _api_anchor_ok("steadysolve.NewtonKrylov") and not _api_anchor_ok("steadysolve.NoSuchThing")


def _nav_pages():
    text = Path(ROOT, "mkdocs.yml").read_text(encoding="utf-8")
    nav = text[text.index("\nnav:"):]
    return re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?([\w./-]+\.md)\s*$", nav, re.M)


def test_every_docs_page_is_in_the_site_nav():
    nav = _nav_pages()
    assert len(nav) == len(set(nav)), "a page is listed twice in mkdocs.yml's nav"
    pages = {os.path.relpath(p, DOCS).replace(os.sep, "/") for p in _pages() if p.startswith(DOCS + os.sep)}
    assert pages - set(nav) == set(), f"pages missing from mkdocs.yml's nav: {sorted(pages - set(nav))}"
    assert set(nav) - pages == set(), f"nav entries without a page: {sorted(set(nav) - pages)}"
    for required in ("index.md", "core.md", "faq.md", "diagnostics.md", "changelog.md",
                     "getting-started.md", "concepts.md", "choosing.md", "benchmarks.md", "api/core.md",
                     "api/adapters.md", "migration/scipy.md", "migration/torchdeq.md", "migration/jax.md",
                     "torch.md", "jax.md"):
        assert required in nav, required


def test_api_reference_covers_every_public_name():
    import importlib

    text = "".join(Path(DOCS, "api", f).read_text(encoding="utf-8") for f in ("core.md", "adapters.md"))
    directives = set(re.findall(r"^::: ([\w.]+)", text, re.M))
    missing = []
    for modname in ("steadysolve", "steadysolve.adapters", "steadysolve.adapters.backward", "steadysolve.adapters.torch",
                    "steadysolve.adapters.jax"):
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if name == "__version__":
                continue
            # re-exports (Implicit, Phantom, SolveStats) are documented once, under any module that exports them
            homes = [m for m in ("steadysolve", "steadysolve.adapters", "steadysolve.adapters.torch",
                                 "steadysolve.adapters.jax") if getattr(importlib.import_module(m), name, None) is obj]
            homes.append(getattr(obj, "__module__", ""))  # e.g. steadysolve.solve.solve: the module shares its name
            if not any(f"{h}.{name}" in directives for h in homes):
                missing.append(f"{modname}.{name}")
    assert not missing, f"add '::: name' to docs/api/*.md for {missing}"


PEER = re.compile(r"^```\{\.python \.peer\}\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("page", ["migration/scipy.md", "migration/torchdeq.md", "migration/jax.md"])
def test_migration_pages_pair_peer_code_with_running_code(page):
    """Each peer listing (shown, not run: the peers are not test dependencies) is valid Python
    and is followed by a steadysolve block, which test_code_blocks_run executes."""
    path = os.path.join(DOCS, page)
    text = Path(path).read_text(encoding="utf-8")
    peers = PEER.findall(text)
    assert len(peers) >= 2, "a migration page shows peer code side by side with steadysolve code"
    for block in peers:
        compile(block, page, "exec")
    assert len(python_blocks(path)) >= len(peers)


def test_scipy_migration_listings_run_and_the_steady_state_event_fires():
    """The SciPy side of migration/scipy.md runs as written (SciPy is a test dependency), in one
    namespace like the page's own blocks; its solve_ivp listing stops at the steady-state event."""
    pytest.importorskip("scipy")
    text = Path(DOCS, "migration", "scipy.md").read_text(encoding="utf-8")
    namespace = {"__name__": "__docs__"}
    for i, block in enumerate(PEER.findall(text)):
        exec(compile(block, f"migration/scipy.md[peer {i + 1}]", "exec"), namespace)
    res = namespace["res"]  # the last listing's: solve_ivp with the terminal event
    assert res.status == 1 and len(res.t_events[0]) == 1 and res.t[-1] < 1e3, (res.status, res.t[-1], res.nfev)
    assert res.nfev < 5000
    import numpy as np

    np.testing.assert_allclose(res.y[:, -1], [0.5, 1.0], atol=1e-6)  # the steady state u = (1/2, 1)


def test_the_changelog_is_in_the_site():
    assert Path(DOCS, "changelog.md").read_text(encoding="utf-8").strip() == '--8<-- "CHANGELOG.md"'
    assert "pymdownx.snippets" in Path(ROOT, "mkdocs.yml").read_text(encoding="utf-8")


def test_readme_links_the_site_and_says_how_to_build_it():
    text = Path(ROOT, "README.md").read_text(encoding="utf-8")
    for page in ("docs/getting-started.md", "docs/concepts.md", "docs/choosing.md", "docs/api/core.md",
                 "docs/migration/scipy.md", "docs/benchmarks.md"):
        assert f"]({page}" in text, page
    assert "mkdocs serve" in text


# --- the benchmark report -------------------------------------------------------------------

def _report():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_report", os.path.join(ROOT, "benchmarks", "report.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_report_reads_every_layout_and_writes_charts_and_tables(tmp_path):
    import json

    import matplotlib

    matplotlib.use("Agg")
    report = _report()
    recs = [{"benchmark": "speed", "case": "H n=100", "peer": "scipy", "ratio": 0.4, "target": 0.5, "met": True,
             "extra_field": [1, 2]},
            {"benchmark": "speed", "case": "Laplace", "peer": "scipy", "ratio": 2.5, "target": 0.5},   # met derived
            {"benchmark": "robust", "case": "MGH", "peer": "hybr", "ratio": 1.05, "target": 1.0, "higher_is_better": True},
            {"benchmark": "speed", "case": "no ratio"}]                                               # skipped
    (tmp_path / "r.json").write_text(json.dumps({"date": "2026-12-03", "machine": {"cpus": 2},
                                                 "versions": {"numpy": "2.0"}, "records": recs}))
    md = tmp_path / "bench.md"
    md.write_text("# B\n\nintro\n\n<!-- results:start -->\nold\n<!-- results:end -->\n\noutro\n")
    assert report.main(["--json", str(tmp_path / "r.json"), "--img-dir", str(tmp_path / "img"), "--md", str(md)]) == 0
    text = md.read_text()
    assert "intro" in text and "outro" in text and "old" not in text
    assert "| Laplace | scipy |  | 2.5 | ≤ 0.5 | **no** |" in text and "| MGH | hybr |  | 1.05 | ≥ 1 | yes |" in text
    assert "2026-12-03" in text and "numpy 2.0" in text and "1 of 2 targets met." in text
    assert "![speed](img/speed.png)" in text
    for name in ("speed", "robust"):
        assert (tmp_path / "img" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    # a bare list, and the per-script layout of benchmarks/_common.write_results
    (tmp_path / "list.json").write_text(json.dumps(recs))
    assert len(report.load(str(tmp_path / "list.json"))[1]) == 3
    (tmp_path / "common.json").write_text(json.dumps(
        {"machine": {"date": "2026-12-01"}, "benchmarks": {"many_small": {"rows": [{"case": "1000", "ratio": 0.2},
                                                                                   {"case": "x"}]}}}))
    header, got = report.load(str(tmp_path / "common.json"))
    assert header["date"] == "2026-12-01" and [(r["benchmark"], r["ratio"]) for r in got] == [("many_small", 0.2)]
    # benchmarks/run_all.py's schema 1: a "rows" list next to the header
    (tmp_path / "run_all.json").write_text(json.dumps({"schema": 1, "date": "2026-12-03T07:30:00Z", "rows": recs}))
    header, got = report.load(str(tmp_path / "run_all.json"))
    assert header["schema"] == 1 and "rows" not in header and len(got) == 3


def test_benchmarks_page_matches_results_json():
    """docs/benchmarks.md shows what benchmarks/results.json holds (re-run benchmarks/report.py)."""
    report = _report()
    header, records = report.load(os.path.join(ROOT, "benchmarks", "results.json"))
    groups = report.by_benchmark(records)
    assert records, "benchmarks/results.json has no records"
    block = report.markdown(header, groups, "img/benchmarks")
    page = Path(DOCS, "benchmarks.md").read_text(encoding="utf-8")
    assert block in page, "docs/benchmarks.md is out of date: run python benchmarks/report.py"
    for name in groups:
        assert os.path.exists(os.path.join(DOCS, "img", "benchmarks", report.slug(name) + ".png")), name
    committed = sorted(f for f in os.listdir(os.path.join(DOCS, "img", "benchmarks")) if f.endswith(".png"))
    shown = sorted(re.findall(r"!\[[^\]]*\]\(img/benchmarks/([\w.]+\.png)\)", page))
    assert shown == committed, "every committed chart is on the page, and every chart on it is committed"


def test_report_reads_ratios_from_counts_and_printed_tables():
    report = _report()
    rows = [{"benchmark": "robustness", "case": c, "ratio": None, "extra": {"nsolved": n}}
            for c, n in (("default", 22), ("newton", 19), ("scipy:hybr", 19), ("scipy:lm", 20))]
    rows.append({"benchmark": "deq_torch", "case": "(no machine-readable rows)", "ratio": None, "extra": repr(
        {"stdout_tail": ["matched settings: time per step ratio steadysolve / torchdeq = 0.53 (target <= 0.5); x",
                         "  anderson         time  0.46x  acc +0.002  overhead 3.42"]})})
    got = {(r["benchmark"], r["case"]): r for r in report.derived(rows)}
    assert got["robustness", "problems solved, default"]["ratio"] == 22 / 19
    assert got["robustness", "problems solved, default"]["higher_is_better"] is True
    assert ("robustness", "problems solved, scipy:lm") not in got
    assert got["deq_torch", "training step, matched settings"]["ratio"] == 0.53
    assert got["deq_torch", "training step, anderson"]["target"] == 0.5
