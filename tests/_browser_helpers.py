"""Helpers for the browser test of the built book (tests/test_browser.py) and for CI.

``python tests/_browser_helpers.py`` makes sure Debian's Chromium is installed (``apt-get``, as
root) and prints its path. Playwright drives that binary; no browser is ever downloaded.
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
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
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


def ensure_chromium(path: str = CHROMIUM) -> str:
    """Path of a Chromium binary; installs Debian's ``chromium`` with apt-get if it is missing."""
    if os.access(path, os.X_OK):
        return path
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise RuntimeError(
            f"Chromium not found at {path}; install it (Debian/Ubuntu: `apt-get install -y chromium`, as root)"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run([apt, "update", "-q"], check=True, env=env)
    subprocess.run([apt, "install", "-y", "-q", "--no-install-recommends", "chromium"], check=True, env=env)
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"apt-get installed chromium but {path} is still missing")
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
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


if __name__ == "__main__":
    print(ensure_chromium())
    sys.exit(0)
