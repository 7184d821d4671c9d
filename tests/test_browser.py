"""Open every page of the built book in headless Chromium and check what a reader would see.

Needs a built site (``lowrank-learning book``; default ``_build/html``, or
``$LOWRANK_LEARNING_BUILDDIR/html``), Playwright for Python and a Chromium: one on ``PATH``, or
Playwright's own, as chosen by ``LOWRANK_BROWSER`` (see ``tests/_browser_helpers.py``; ``make
browser`` installs one where that is safe). Without a browser the tests skip and say what to
install, except under ``CI``, where they fail. Run with ``pytest -m browser``. Per page: HTTP
200, every image decoded, every math element typeset by MathJax with no raw TeX left, no console
errors, no failed requests and no request leaving 127.0.0.1 (the book must work offline), no
code line cut off at the page's edge, cells tagged hide-input collapsed, and on every result
page the links to its source notebook, Binder and Colab (present, never followed). The page's
shape at 1280 x 900 (``bh.layout_problems``): no figure shrunk by more than 1.5x (natural width
<= column x devicePixelRatio x 1.5), no table, code block or other element wider than the
content column (the intro's claims table included), and on every result page the first figure
within two screen heights of the title.
Writes ``<builddir>/screenshots/index.png``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _browser_helpers as bh  # noqa: E402

from lowrank_learning.reproduce.launch import release_ref  # noqa: E402

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
REF = release_ref(ROOT)  # the launch links point at the release the book was built from
BUILD = Path(os.environ.get("LOWRANK_LEARNING_BUILDDIR", ROOT / "_build"))
HTML = BUILD / "html"
MISSING = "<no built site>"
RESULTS = "book/results/"
# The longest wait for one page to load and settle: typesetting the theory page's equations can
# take over 30 s (Playwright's default) on a two-core machine that runs other work.
PAGE_TIMEOUT_MS = 120_000
# Playwright's network-idle wait is tried this long; if it has not fired by then, the page counts
# as settled once none of the requests it made is still in flight (tracked by the test itself),
# and requests still open at PAGE_TIMEOUT_MS are reported by URL.
SETTLE_MS = 30_000
PAGES = bh.html_pages(HTML) if (HTML / "index.html").is_file() else [MISSING]


def _require(site):
    """Fail (not skip, not error) when there is no site: CI builds it before this test."""
    if site is None:
        pytest.fail(f"no built site at {HTML}: build it first with `lowrank-learning book` "
                    "(after `lowrank-learning reproduce`)", pytrace=False)


def _unavailable(reason: str):
    """No browser: skip with what to install; fail under CI, where the browser test must run."""
    if os.environ.get("CI"):
        pytest.fail(f"browser test: {reason}", pytrace=False)
    pytest.skip(f"browser test: {reason}")


@pytest.fixture(scope="module")
def site():
    if not (HTML / "index.html").is_file():
        yield None
        return
    with bh.serve(HTML) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def browser(site):
    if site is None:
        yield None
        return
    try:
        chosen = bh.find_browser()
    except bh.BrowserUnavailable as e:
        _unavailable(str(e))
    import playwright.sync_api as playwright  # find_browser checked that it is installed

    with playwright.sync_playwright() as p:
        try:
            b = p.chromium.launch(**chosen.launch_kwargs())
        except playwright.Error as e:
            _unavailable(f"could not launch {chosen}: {e}")
        yield b
        b.close()


def _settle(page, inflight: dict, problems: list[str]) -> None:
    """Wait until the page has no request in flight: Playwright's network-idle state, or, when
    that has not fired within SETTLE_MS, the requests the test saw start all finished."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_load_state("networkidle", timeout=SETTLE_MS)
        return
    except PlaywrightTimeout:
        pass
    deadline = time.monotonic() + (PAGE_TIMEOUT_MS - SETTLE_MS) / 1000
    while inflight and time.monotonic() < deadline:
        page.wait_for_timeout(250)  # lets the request events arrive
    if inflight:
        problems.append(f"requests still in flight after {PAGE_TIMEOUT_MS / 1000:.0f} s: "
                        f"{sorted(set(inflight.values()))[:5]}")


def _visit(browser, base_url: str, rel: str, screenshot: Path | None = None) -> list[str]:
    """Load ``rel`` and return the problems found (empty when the page is fine)."""
    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    context.set_default_timeout(PAGE_TIMEOUT_MS)

    def route(r):
        if r.request.url.startswith(base_url) or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            problems.append(f"request leaves the site (needs network): {r.request.url}")
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"uncaught exception: {e}"))
    page.on("requestfailed", lambda r: r.url.startswith(base_url)
            and problems.append(f"request failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
    inflight: dict = {}
    page.on("request", lambda r: inflight.__setitem__(id(r), r.url))
    page.on("requestfinished", lambda r: inflight.pop(id(r), None))
    page.on("requestfailed", lambda r: inflight.pop(id(r), None))
    try:
        response = page.goto(base_url + rel, wait_until="load")
        if response is None or response.status != 200:
            problems.append(f"page did not load: HTTP {None if response is None else response.status}")
            return problems
        if page.locator('meta[http-equiv="refresh" i]').count():  # index.html redirects to the root page
            page.wait_for_url(lambda u: u != base_url + rel, timeout=10_000)
            page.wait_for_load_state("load")
        _settle(page, inflight, problems)
        state = page.evaluate(bh.JS_MATHJAX_DONE)
        broken = page.evaluate(bh.JS_BROKEN_IMAGES)
        problems += [f"image not loaded: {src}" for src in broken]
        math = page.evaluate(bh.JS_MATH_REPORT)
        if math["n_math"] and state != "done":
            problems.append(f"page has {math['n_math']} math elements but MathJax is {state}")
        problems += [f"math not typeset: {t!r}" for t in math["untypeset"][:5]]
        problems += [f"MathJax error: {t!r}" for t in math["errors"][:5]]
        problems += [f"raw TeX in visible text: {t!r}" for t in math["raw"][:5]]
        if math["n_math"] and not math["n_rendered"]:
            problems.append("math on the page but no mjx-container")
        # the page's shape at 1280 x 900: figures not shrunk by more than 1.5x, nothing wider than
        # the content column, and on a chapter page the first figure within two screens of the title
        problems += bh.layout_problems(page.evaluate(bh.JS_PAGE_LAYOUT), chapter=rel.startswith(RESULTS))
        layout = page.evaluate(bh.JS_CODE_LAYOUT)
        problems += [f"code line cut off at the page's edge: {t!r}" for t in layout["cut"][:5]]
        if layout["n_collapsed"] != layout["n_hide_input"]:
            problems.append(f"{layout['n_hide_input'] - layout['n_collapsed']} of {layout['n_hide_input']} "
                            "hide-input cells are not collapsed")
        if rel.startswith(RESULTS):
            name = rel[len(RESULTS):].removesuffix(".html")
            links = page.evaluate(bh.JS_LAUNCH_LINKS)
            expected = {"source": f"/blob/{REF}/notebooks/{name}.ipynb",
                        "binder": "https://mybinder.org/v2/gh/", "colab": "https://colab.research.google.com/github/"}
            for kind, text in expected.items():
                href = links.get(kind)
                if not href or text not in href or (kind != "source" and f"{name}.ipynb" not in href.replace("%2F", "/")):
                    problems.append(f"{kind} link missing or wrong: {href!r}")
        _settle(page, inflight, problems)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
    finally:
        context.close()
    return problems


@pytest.mark.parametrize("rel", PAGES)
def test_page(site, browser, rel):
    _require(site)
    problems = _visit(browser, site, rel)
    assert not problems, f"{rel}:\n  " + "\n  ".join(problems)


def test_book_has_rendered_math_and_figures(site, browser):
    """The site as a whole: some page has typeset math, some page has a figure."""
    import re

    _require(site)

    html = {p: (HTML / p).read_text(encoding="utf-8", errors="replace") for p in PAGES}
    assert any('class="math' in t for t in html.values()), "no page of the book contains math"
    assert any(re.search(r"<img[^>]+src=", t) for p, t in html.items() if p.startswith(RESULTS)), \
        "no result page contains a figure"
    results = [p for p in PAGES if p.startswith(RESULTS)]
    assert results, "the site has no result pages"
    assert any("tag_hide-input" in html[p] for p in results), "no result page has a collapsed drawing cell"
    # the intro's results table: one row per headline number, chapters that have not run say so
    index = html.get("book/intro.html", "")
    assert "results-at-a-glance" in index and "<table" in index, "the intro has no results table"
    assert 'id="claims-table"' in index, "the intro's claims table has no label (claims-table)"


def test_cut_off_code_is_detected(site, browser):
    """Control for the layout check: without the book's wrapping CSS, long code lines overflow."""
    _require(site)
    results = [p for p in PAGES if p.startswith(RESULTS)]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(site) else r.abort())
    page = context.new_page()
    try:
        found = []
        for rel in results:
            page.goto(site + rel, wait_until="load")
            page.add_style_tag(content="pre { white-space: pre !important; overflow: hidden !important; }")
            found += page.evaluate(bh.JS_CODE_LAYOUT)["cut"]
        assert found, "no code line would be cut off even without the wrapping CSS: the check is vacuous"
    finally:
        context.close()


def test_layout_checks_detect_problems(site, browser):
    """Control for the layout checks: a figure drawn twice as wide as the column, a wide table and
    three screens of text between the title and the first figure are each reported."""
    _require(site)
    results = [p for p in PAGES if p.startswith(RESULTS)]
    rel = RESULTS + "e1_framework.html" if RESULTS + "e1_framework.html" in results else results[0]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(site) else r.abort())
    page = context.new_page()
    try:
        page.goto(site + rel, wait_until="load")
        page.evaluate(bh.JS_BROKEN_IMAGES)
        before = page.evaluate(bh.JS_PAGE_LAYOUT)
        assert any(f["visible"] for f in before["figures"]), f"{rel} shows no figure to measure"
        page.evaluate("""() => {
          const a = document.querySelector('article.bd-article');
          const pad = document.createElement('div'); pad.style.height = '3000px'; a.querySelector('h1').after(pad);
          const t = document.createElement('table'); t.innerHTML = '<tr><td>' + 'planted'.repeat(80) + '</td></tr>';
          t.style.whiteSpace = 'nowrap'; a.appendChild(t);
        }""")
        after = page.evaluate(bh.JS_PAGE_LAYOUT)
        after["figures"].append({"src": "planted", "natural": int(2 * after["column"] * after["dpr"]),
                                 "shown": after["column"], "top": 0.0, "visible": False})
        problems = bh.layout_problems(after, chapter=True)
        assert any("planted" in p and "shrunk" in p for p in problems), problems
        assert any("horizontal overflow" in p and "planted" in p for p in problems), problems
        first = [f for f in after["figures"] if f["visible"]][0]
        assert first["top"] > 2 * 900 and any("below the title" in p for p in problems), problems
    finally:
        context.close()


def test_index_screenshot(site, browser):
    _require(site)
    shot = BUILD / "screenshots" / "index.png"
    if shot.exists():
        shot.unlink()
    problems = _visit(browser, site, "index.html", screenshot=shot)
    assert not problems, "index.html:\n  " + "\n  ".join(problems)
    assert shot.is_file() and shot.stat().st_size > 10_000, f"screenshot {shot} missing or empty"
