"""Helpers for the browser test of the built book (tests/test_browser.py) and for CI.

Which Chromium the test drives (through Playwright) is chosen by the environment variable
``LOWRANK_BROWSER``:

- ``auto`` (default): the first working Chromium on ``PATH`` (``chromium``, ``chromium-browser``,
  ``google-chrome``, ``google-chrome-stable``), else Playwright's own Chromium if it has been
  downloaded (``python -m playwright install chromium``);
- ``system``: a Chromium on ``PATH`` only;
- ``playwright``: Playwright's own Chromium only;
- anything else: the path (or command name) of a Chromium or Chrome binary.

A binary counts as working when ``<binary> --version`` names Chromium or Chrome (Ubuntu's
``chromium-browser`` without the snap is a stub that does not).

``python tests/_browser_helpers.py`` (run by ``make browser`` before the test) prints the browser
that will be used, after installing what is missing where that is safe: Debian's ``chromium``
with ``apt-get`` only when running as root on Debian with ``CI`` set (a CI container), and
Playwright's Chromium (a download) only when ``LOWRANK_BROWSER=playwright``. When no browser can
be found it explains what to install and exits 0 (the browser test then skips with the same
message), or 1 when ``CI`` is set (in CI the browser test must run).

``python tests/_browser_helpers.py --measure [HTML_DIR]`` (default ``_build/html``) opens every
page of a built site at 1280 x 900 and prints, per page, where its first figure starts below the
title, its widest element against the content column, and the size in points at which the
figures' labels are shown (:func:`print_measurements`), with the layout problems the browser test
reports (:func:`layout_problems`).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

BROWSER_ENV = "LOWRANK_BROWSER"
SYSTEM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Flags that work headless as root in a container without network. Playwright adds --headless
# and a fresh temporary --user-data-dir itself (launch() refuses a user-data-dir argument).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
HOW_TO_INSTALL = (
    "install Chromium (Debian: `apt-get install chromium`; Fedora: `dnf install chromium`; "
    "macOS: `brew install --cask chromium`) or Google Chrome and put it on PATH, "
    f"or download Playwright's own: `python -m playwright install chromium` and set {BROWSER_ENV}=playwright"
)


class BrowserUnavailable(RuntimeError):
    """No usable Chromium: the message says what was looked for and what to install."""


@dataclass(frozen=True)
class Browser:
    """The Chromium the browser test drives: a binary, or Playwright's own (``executable`` None)."""

    source: str  # "system", "playwright" or "path"
    executable: str | None
    version: str = ""

    def launch_kwargs(self) -> dict:
        """Keyword arguments for Playwright's ``chromium.launch``."""
        kw = {"headless": True, "args": list(CHROMIUM_ARGS)}
        if self.executable is not None:
            kw["executable_path"] = self.executable
        return kw

    def __str__(self) -> str:
        where = self.executable or "Playwright's own Chromium"
        return f"{where} ({self.source}{', ' + self.version if self.version else ''})"


def _version(exe: str) -> str | None:
    """``exe --version`` when it names Chromium or Chrome, else None (missing, a stub, broken)."""
    try:
        r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    out = (r.stdout or "").strip()
    if r.returncode != 0 or not any(w in out.lower() for w in ("chromium", "chrome")):
        return None
    return out


def _system() -> Browser | None:
    """The first working Chromium or Chrome on PATH."""
    for name in SYSTEM_NAMES:
        exe = shutil.which(name)
        if exe and (v := _version(exe)):
            return Browser("system", exe, v)
    return None


def _playwright_chromium(install: bool) -> Browser | None:
    """Playwright's own Chromium when it has been downloaded (downloads it when ``install``)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise BrowserUnavailable(
            "Playwright is not installed: pip install 'lowrank-learning[book]' (or pip install playwright)") from e

    def path() -> str:
        try:
            with sync_playwright() as p:
                return p.chromium.executable_path
        except Exception as e:  # the driver did not start: report it as unavailable, with the reason
            raise BrowserUnavailable(f"Playwright could not start: {e}") from e

    if not Path(path()).is_file():
        if not install:
            return None
        subprocess.run([sys.executable, "-m", "playwright", "install", "chromium"], check=True)
        if not Path(path()).is_file():
            raise BrowserUnavailable("`python -m playwright install chromium` ran but Playwright's Chromium is still missing")
    return Browser("playwright", None)


def apt_allowed() -> bool:
    """Whether installing Debian's chromium with apt-get is allowed: root, Debian, ``CI`` set."""
    if not os.environ.get("CI") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    if shutil.which("apt-get") is None:
        return False
    try:
        release = Path("/etc/os-release").read_text(encoding="utf-8")
    except OSError:
        return False
    return any(line.strip() in ("ID=debian", 'ID="debian"') for line in release.splitlines())


def _apt_install() -> Browser:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"], check=True, env=env)
    found = _system()
    if found is None:
        raise BrowserUnavailable("apt-get installed chromium but no working chromium is on PATH")
    return found


def find_browser(choice: str | None = None, *, install: bool = False) -> Browser:
    """The Chromium to drive, as chosen by ``choice`` (default: ``$LOWRANK_BROWSER``, else auto).

    With ``install``, missing browsers are installed where that is safe (see the module
    docstring). Raises :class:`BrowserUnavailable` with what to install when none is usable.
    """
    if choice is None:
        choice = os.environ.get(BROWSER_ENV, "").strip() or "auto"
    if choice in ("auto", "system"):
        found = _system()
        if found is None and choice == "auto":
            with contextlib.suppress(BrowserUnavailable):
                found = _playwright_chromium(install=False)
        if found is None and install and apt_allowed():
            found = _apt_install()
        if found is None:
            looked = "on PATH" + (" or among Playwright's browsers" if choice == "auto" else "")
            raise BrowserUnavailable(f"no working Chromium {looked} (looked for {', '.join(SYSTEM_NAMES)}): "
                                     + HOW_TO_INSTALL)
        return found
    if choice == "playwright":
        found = _playwright_chromium(install=install)
        if found is None:
            raise BrowserUnavailable(f"{BROWSER_ENV}=playwright but Playwright's Chromium is not downloaded: "
                                     "run `python -m playwright install chromium`")
        return found
    exe = choice if os.sep in choice else (shutil.which(choice) or choice)
    v = _version(exe)
    if v is None:
        raise BrowserUnavailable(f"{BROWSER_ENV}={choice!r} is not a working Chromium or Chrome binary "
                                 f"(`{exe} --version` failed or does not name Chromium/Chrome)")
    return Browser("path", exe, v)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # signature from the base class
        pass


@contextlib.contextmanager
def serve(directory: Path):
    """Serve ``directory`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def html_pages(html_dir: Path) -> list[str]:
    """Every page of the site (relative POSIX paths), without the theme's static files."""
    return sorted(p.relative_to(html_dir).as_posix() for p in html_dir.rglob("*.html")
                  if p.relative_to(html_dir).parts[0] not in ("_static", "_sources", "_images"))


# Run in the page after load: force lazy images to load and report those that did not.
JS_BROKEN_IMAGES = """
async () => {
  const imgs = Array.from(document.images);
  for (const i of imgs) { if (i.loading === 'lazy') i.loading = 'eager'; }
  await Promise.all(imgs.map(i => i.complete ? null :
      new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); })));
  return imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.currentSrc || i.src);
}
"""

# Wait for MathJax to finish typesetting (if the page loads it).
JS_MATHJAX_DONE = """
async () => {
  if (!window.MathJax) return 'absent';
  for (let k = 0; k < 200 && !(MathJax.startup && MathJax.startup.promise); k++)
    await new Promise(r => setTimeout(r, 50));
  if (!(MathJax.startup && MathJax.startup.promise)) return 'not started';
  await MathJax.startup.promise;
  if (MathJax.typesetPromise) await MathJax.typesetPromise();
  return 'done';
}
"""

# Math left raw: math elements without a rendered container, MathJax errors, and TeX
# delimiters in the visible text outside code.
JS_MATH_REPORT = r"""
() => {
  const math = Array.from(document.querySelectorAll('span.math, div.math'));
  const untypeset = math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80));
  const errors = Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent.slice(0, 80));
  const body = document.body.cloneNode(true);
  body.querySelectorAll('pre, code, script, style, textarea, .highlight, mjx-container, .MathJax')
      .forEach(e => e.remove());
  const holder = document.createElement('div');
  holder.style.position = 'absolute'; holder.style.left = '-99999px';
  holder.appendChild(body);
  document.documentElement.appendChild(holder);
  const text = body.innerText;
  holder.remove();
  const raw = [];
  for (const re of [/\$\$/g, /\\\(/g, /\\\)/g, /\\\[/g, /\\\]/g, /\\begin\{/g, /\$[^$\n]*\\[A-Za-z]+[^$\n]*\$/g]) {
    const m = text.match(re);
    if (m) raw.push(...m.slice(0, 3));
  }
  return {n_math: math.length, n_rendered: document.querySelectorAll('mjx-container').length,
          untypeset, errors, raw};
}
"""

# Code that does not fit its box: a <pre> wider than its box that cannot be scrolled is cut off
# at the page's edge (the book's CSS wraps code, so none should be wider at all). Also reports
# whether the cells tagged hide-input are collapsed behind their toggle.
JS_CODE_LAYOUT = r"""
async () => {
  const toggled = Array.from(document.querySelectorAll('.cell.tag_hide-input'));
  const collapsed = toggled.filter(c => {
    const input = c.querySelector('.cell_input');
    const details = input && input.closest('details');
    return details !== null && c.contains(details) && !details.open;
  });
  // open every toggle, as a reader would, so that hidden code is checked too
  const closed = Array.from(document.querySelectorAll('details:not([open])'));
  closed.forEach(d => { d.open = true; });
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const cut = [];
  for (const pre of document.querySelectorAll('pre')) {
    if (!pre.checkVisibility()) continue;
    const ox = getComputedStyle(pre).overflowX;
    if (pre.scrollWidth > pre.clientWidth + 1 && !(ox === 'auto' || ox === 'scroll'))
      cut.push(pre.textContent.trim().split('\n')[0].slice(0, 80));
  }
  closed.forEach(d => { d.open = false; });
  return {cut, n_hide_input: toggled.length, n_collapsed: collapsed.length};
}
"""

# The launch links under a result page's title (lowrank_learning.reproduce.launch).
JS_LAUNCH_LINKS = r"""
() => Object.fromEntries(['source', 'binder', 'colab'].map(k => {
  const a = document.querySelector('p.lowrank-launch a.lowrank-launch-' + k);
  return [k, a ? a.href : null];
}))
"""


# Page layout as a reader at 1280 x 900 sees it (tests/test_browser.py, and `--measure`):
# - column: the content column's inner width (article.bd-article, CSS px); dpr: devicePixelRatio;
# - figures: every image in the column that belongs to a figure or a cell's output, with its
#   natural width (image px), shown width (CSS px) and top relative to the page title (CSS px),
#   measured as the page loads (toggles closed);
# - widest: the elements of the column, toggles opened, that are wider than the column (their
#   box reaches past its right edge, or they scroll horizontally): tag, class, width.
JS_PAGE_LAYOUT = r"""
async () => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const cs = getComputedStyle(article);
  const box = article.getBoundingClientRect();
  const left = box.left + parseFloat(cs.paddingLeft), right = box.right - parseFloat(cs.paddingRight);
  const column = right - left;
  const title = article.querySelector('h1');
  const titleTop = title ? title.getBoundingClientRect().top + window.scrollY : 0;
  const imgs = Array.from(article.querySelectorAll('img')).filter(
      i => i.closest('figure, .cell_output, .output, .figure') !== null && i.naturalWidth > 0);
  const figures = imgs.map(i => {
    const r = i.getBoundingClientRect();
    return {src: (i.currentSrc || i.src).split('/').pop().slice(0, 16), natural: i.naturalWidth,
            shown: r.width, top: r.top + window.scrollY - titleTop, visible: i.checkVisibility()};
  });
  // open every toggle as a reader would: <details> and sphinx-togglebutton's dropdowns
  const closed = Array.from(document.querySelectorAll('details:not([open])'));
  closed.forEach(d => { d.open = true; });
  const folded = Array.from(document.querySelectorAll('.toggle.toggle-hidden'));
  folded.forEach(t => t.classList.remove('toggle-hidden'));
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const wide = [], wideEls = [];
  let widest = {width: 0, what: ''};
  for (const e of article.querySelectorAll('*')) {
    // MathJax's assistive MathML is clipped to nothing; a heading's link icon shows on hover only
    if (!e.checkVisibility({opacityProperty: true}) || e.closest('mjx-assistive-mml, .headerlink')) continue;
    const r = e.getBoundingClientRect();
    if (r.width === 0) continue;
    const ox = getComputedStyle(e).overflowX;
    const scrolls = (ox === 'auto' || ox === 'scroll') && e.scrollWidth > e.clientWidth + 1;
    const width = Math.max(r.width, scrolls ? e.scrollWidth : 0);
    const what = e.tagName.toLowerCase() + (e.className && typeof e.className === 'string'
        ? '.' + e.className.trim().split(/\s+/).slice(0, 2).join('.') : '');
    if (width > widest.width) widest = {width, what};
    if ((r.right > right + 1 || scrolls) && !wideEls.some(w => w.contains(e))) {
      wideEls.push(e);
      wide.push({what, width, text: (e.textContent || '').trim().slice(0, 60)});
    }
  }
  closed.forEach(d => { d.open = false; });
  folded.forEach(t => t.classList.add('toggle-hidden'));
  return {column, dpr: window.devicePixelRatio, has_title: title !== null, figures, wide, widest};
}
"""

# The checks on JS_PAGE_LAYOUT's report (thresholds of the book's page shape).
MAX_SHRINK = 1.5          # a figure's natural width <= column x devicePixelRatio x MAX_SHRINK
FIRST_FIGURE_SCREENS = 2  # the first figure's top within this many screen heights of the title
SCREEN = (1280, 900)


def layout_problems(report: dict, chapter: bool) -> list[str]:
    """Problems in a page's layout report (:data:`JS_PAGE_LAYOUT`); ``chapter``: a result page,
    where the first figure must come early."""
    problems = []
    limit = report["column"] * report["dpr"] * MAX_SHRINK
    for f in report["figures"]:
        if f["natural"] > limit + 0.5:
            problems.append(f"figure {f['src']} is {f['natural']} px wide, shrunk more than {MAX_SHRINK}x into "
                            f"the {report['column']:.0f} px column (at most {limit:.0f} px)")
    # the outermost of each nest of too-wide elements (JS_PAGE_LAYOUT reports each nest once)
    for w in report["wide"][:5]:
        problems.append(f"{w['what']} is {w['width']:.0f} px wide, the column {report['column']:.0f} px "
                        f"(horizontal overflow): {w['text']!r}")
    if chapter:
        shown = [f for f in report["figures"] if f["visible"]]
        if not shown:
            problems.append("a chapter page without a figure")
        elif shown[0]["top"] > FIRST_FIGURE_SCREENS * SCREEN[1]:
            problems.append(f"the first figure starts {shown[0]['top']:.0f} px below the title "
                            f"(more than {FIRST_FIGURE_SCREENS} screens of {SCREEN[1]} px)")
    return problems


def label_points(figure: dict, font_pt: float, dpi: float) -> float:
    """The size on the page, in points (1/72 in at 96 CSS px per inch), of a label drawn at
    ``font_pt`` in a figure rendered at ``dpi`` and shown at ``figure['shown']`` CSS px for
    ``figure['natural']`` image px: ``font_pt x (dpi / 96) x shown / natural``."""
    return font_pt * dpi / 96.0 * figure["shown"] / figure["natural"]


def measure(html_dir: Path, font_pt: float | None = None, dpi: float | None = None) -> list[dict]:
    """Open every page of the built site at 1280 x 900 and return, per page, its layout report
    (:data:`JS_PAGE_LAYOUT`) with ``page`` and ``problems`` (:func:`layout_problems`) added.

    ``font_pt`` and ``dpi``: the smallest label size and the resolution the figures are drawn
    with (default: the package's :data:`lowrank_learning.plotting.PAGE_RC`)."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    if font_pt is None or dpi is None:
        from lowrank_learning import plotting

        sizes = [v for k, v in plotting.PAGE_RC.items() if k.endswith("size") and isinstance(v, (int, float))
                 and k != "figure.figsize"]
        font_pt = min(sizes) if font_pt is None else font_pt
        dpi = plotting.DPI if dpi is None else dpi
    browser = find_browser()
    pages = html_pages(html_dir)
    out = []
    with serve(html_dir) as base, sync_playwright() as p:
        b = p.chromium.launch(**browser.launch_kwargs())
        try:
            context = b.new_context(viewport={"width": SCREEN[0], "height": SCREEN[1]}, service_workers="block")
            context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(base) else r.abort())
            page = context.new_page()
            for rel in pages:
                if 'http-equiv="refresh"' in (html_dir / rel).read_text(encoding="utf-8", errors="replace"):
                    continue  # a redirect (the site's index.html), measured at its target
                report = None
                for _ in range(2):  # a page that navigates on load (search, redirects) is measured once it settles
                    try:
                        page.goto(base + rel, wait_until="load")
                        page.wait_for_load_state("networkidle")
                        page.evaluate(JS_BROKEN_IMAGES)
                        page.evaluate(JS_MATHJAX_DONE)
                        report = page.evaluate(JS_PAGE_LAYOUT)
                        break
                    except PlaywrightError:
                        continue
                if report is None:
                    print(f"{rel}: could not be measured (it kept navigating)", file=sys.stderr)
                    continue
                report["page"] = rel
                report["problems"] = layout_problems(report, rel.startswith("book/results/"))
                report["label_pt"] = [label_points(f, font_pt, dpi) for f in report["figures"]]
                report["font_pt"], report["dpi"] = font_pt, dpi
                out.append(report)
        finally:
            b.close()
    return out


def print_measurements(reports: list[dict], file=None) -> None:
    """One line per page: first figure's position below the title, widest element against the
    column, the range of label sizes on the page (points) and the problems found."""
    file = file or sys.stdout
    print(f"{'page':<40} {'first figure':>13} {'widest / column (px)':>28} {'labels on the page (pt)':>24}",
          file=file)
    for r in reports:
        shown = [f for f in r["figures"] if f["visible"]]
        first = f"{shown[0]['top']:.0f} px" if shown else "-"
        widest = f"{r['widest']['width']:.0f} / {r['column']:.0f} ({r['widest']['what'][:14]})"
        pts = r["label_pt"]
        labels = f"{min(pts):.1f}-{max(pts):.1f}" if pts else "-"
        print(f"{r['page']:<40} {first:>13} {widest:>28} {labels:>24}", file=file)
        for problem in r["problems"]:
            print(f"    ! {problem}", file=file)
    print(f"label size = {reports[0]['font_pt'] if reports else '?'} pt (smallest font drawn) x "
          f"dpi / 96 x shown width / natural width; first figure: its top below the title's top", file=file)


def main() -> int:
    """Find (and where safe install) the browser; print it, or what to install. With
    ``--measure [HTML_DIR]`` (default ``_build/html``): print :func:`print_measurements` of the
    built site instead."""
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        html_dir = Path(sys.argv[2] if len(sys.argv) > 2 else "_build/html")
        if not (html_dir / "index.html").is_file():
            print(f"no built site at {html_dir}", file=sys.stderr)
            return 2
        print_measurements(measure(html_dir))
        return 0
    try:
        print(find_browser(install=True))
    except BrowserUnavailable as e:
        print(f"browser test: {e}", file=sys.stderr)
        return 1 if os.environ.get("CI") else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
