"""The documentation site as a reader gets it: ``mkdocs build --strict``, then every page's links,
anchors and images resolve, no API section is empty, the search index finds the peers' names; and,
where a Chromium is installed, a headless browser opens the landing page, the API reference and the
benchmarks page without a console error (screenshots go to ``$STEADYSOLVE_SCREENSHOTS`` when set).
"""

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from urllib.parse import unquote, urljoin, urlparse

import pytest

pytest.importorskip("mkdocs", reason="the site needs the docs extra: pip install -e '.[docs]'")

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = os.environ.get("STEADYSOLVE_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return str(out)


class Page(HTMLParser):
    """The ids, links, images and mkdocstrings sections of one HTML page."""

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.images = set(), [], []
        self.sections, self._depth, self._open = [], 0, []  # [heading id, text] of each doc-contents

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        if tag == "div":
            self._depth += 1
            if "doc-contents" in (a.get("class") or "").split():
                self._open.append((self._depth, len(self.sections)))
                self.sections.append(["", ""])

    def handle_endtag(self, tag):
        if tag == "div":
            if self._open and self._open[-1][0] == self._depth:
                self._open.pop()
            self._depth -= 1

    def handle_data(self, data):
        for _, i in self._open:
            self.sections[i][1] += data


@functools.lru_cache(maxsize=None)
def _parse(path):
    page = Page()
    page.feed(open(path, encoding="utf-8").read())
    return page


def _pages(site):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(site) for f in fs if f.endswith(".html"))


def _target(site, page_path, href):
    """The file and fragment an internal ``href`` of ``page_path`` points at (None for external links)."""
    url = urlparse(href)
    if url.scheme or url.netloc or href.startswith("mailto:"):
        return None
    rel = os.path.relpath(page_path, site).replace(os.sep, "/")
    joined = urlparse(urljoin("http://site/" + rel, href))
    path = unquote(joined.path).lstrip("/")
    full = os.path.join(site, path)
    if path == "" or path.endswith("/") or os.path.isdir(full):
        full = os.path.join(full, "index.html")
    return full, unquote(joined.fragment)


def test_every_link_anchor_and_image_resolves(site):
    pages = _pages(site)
    assert len(pages) >= 25
    broken, counts = [], dict(pages=len(pages), links=0, anchors=0, images=0)
    for path in pages:
        page = _parse(path)
        for href in page.links:
            target = _target(site, path, href)
            if target is None:
                continue
            counts["links"] += 1
            file, frag = target
            if not os.path.exists(file):
                broken.append(f"{os.path.relpath(path, site)}: {href} (no such page)")
            elif frag and file.endswith(".html"):
                counts["anchors"] += 1
                if frag not in _parse(file).ids:
                    broken.append(f"{os.path.relpath(path, site)}: {href} (no such anchor)")
        for src in page.images:
            target = _target(site, path, src)
            if target is None:
                continue
            counts["images"] += 1
            if not os.path.exists(target[0]) or os.path.getsize(target[0]) == 0:
                broken.append(f"{os.path.relpath(path, site)}: image {src}")
    print(f"site check: {counts['pages']} pages, {counts['links']} internal links, {counts['anchors']} anchors, "
          f"{counts['images']} images")
    assert not broken, broken
    assert counts["links"] > 500 and counts["anchors"] > 50 and counts["images"] >= 10


def test_no_api_section_is_empty_and_solve_is_the_function(site):
    empty, total = [], 0
    for name in ("core", "adapters"):
        path = os.path.join(site, "api", name, "index.html")
        page = _parse(path)
        assert len(page.sections) >= (25 if name == "core" else 10)
        for _, text in page.sections:
            total += 1
            if len(" ".join(text.split())) < 40:
                empty.append(f"api/{name}: {' '.join(text.split())[:60]!r}")
    print(f"API sections: {total}")
    assert not empty, empty
    core = open(os.path.join(site, "api", "core", "index.html"), encoding="utf-8").read()
    assert 'id="steadysolve.solve.solve"' in core and "build_context" not in core
    for name in ("Result", "ReturnCode", "ConvergenceWarning", "Solution"):
        assert f'id="steadysolve.{name}"' in core, name
    assert "docstring-rewriting" not in open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8").read()
    assert not os.path.exists(os.path.join(ROOT, "docs", "_griffe_ext.py"))


def test_landing_benchmarks_changelog_and_search(site):
    home = open(os.path.join(site, "index.html"), encoding="utf-8").read()
    for peer in ("SciPy", "torchdeq", "optimistix", "NonlinearSolve.jl"):
        assert f"<th>{peer}" in home or f">{peer}<" in home, peer
    bench = _parse(os.path.join(site, "benchmarks", "index.html"))
    charts = sorted(f for f in os.listdir(os.path.join(ROOT, "docs", "img", "benchmarks")) if f.endswith(".png"))
    assert sorted(os.path.basename(s) for s in bench.images if "benchmarks/" in s) == charts
    assert "Unreleased" in open(os.path.join(site, "changelog", "index.html"), encoding="utf-8").read()
    index = json.load(open(os.path.join(site, "search", "search_index.json"), encoding="utf-8"))
    text = " ".join(d["text"] + " " + d["title"] for d in index["docs"])
    for name in ("fsolve", "xtol", "maxiter", "f_max_iter", "root_find", "newton_krylov", "AndersonAcceleration"):
        assert re.search(rf"\b{name}\b", text), name


def _browser_or_skip():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set STEADYSOLVE_CHROMIUM): "
                    "the browser smoke test did not run")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the python package playwright is missing (pip install -e '.[docs]')")
    return sync_playwright


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=site)
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("page, expect", [("", "Compared with the libraries you may know"),
                                          ("api/core/", "steadysolve.solve.solve"),
                                          ("benchmarks/", "core_vs_scipy")])
def test_pages_open_in_a_browser_without_console_errors(server, page, expect, tmp_path):
    sync_playwright = _browser_or_skip()
    shots = os.environ.get("STEADYSOLVE_SCREENSHOTS") or str(tmp_path)
    os.makedirs(shots, exist_ok=True)
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            tab.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            response = tab.goto(server + page, wait_until="networkidle")
            assert response is not None and response.ok, page
            assert expect in tab.content()
            images = tab.eval_on_selector_all("img", "els => els.filter(e => !e.complete || e.naturalWidth === 0)"
                                                     ".map(e => e.src)")
            assert images == [], images  # every image loaded and decoded
            name = (page.strip("/").replace("/", "_") or "home") + ".png"
            tab.screenshot(path=os.path.join(shots, name), full_page=False)
        finally:
            browser.close()
    assert errors == [], errors
