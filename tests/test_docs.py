"""Every ``python`` code block of the README and of ``docs/`` runs, top to bottom, as written.

The blocks of one page run in order in one namespace (a page is one session, as a reader
would type it), in a temporary working directory, with matplotlib's non-interactive backend.
Listings that are not meant to run are fenced as ``text``.
"""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def _pages():
    pages = [os.path.join(ROOT, "README.md")]
    for dirpath, _, files in os.walk(os.path.join(ROOT, "docs")):
        pages += [os.path.join(dirpath, f) for f in sorted(files) if f.endswith(".md")]
    return sorted(pages)


def python_blocks(path):
    text = open(path, encoding="utf-8").read()
    return [body for lang, body in FENCE.findall(text) if lang.lower() in ("python", "py", "python3")]


PAGES = [p for p in _pages() if python_blocks(p)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
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


def test_internal_links_resolve():
    """Every relative link of a page points at a file that exists (anchors not checked here)."""
    link = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")
    broken = []
    for page in _pages():
        for target, _ in link.findall(open(page, encoding="utf-8").read()):
            if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
                continue
            if not os.path.exists(os.path.normpath(os.path.join(os.path.dirname(page), target))):
                broken.append(f"{os.path.relpath(page, ROOT)} -> {target}")
    assert not broken, broken
