"""MathJax shipped with the book (``book/_static/mathjax``), so math renders offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from .layout import ReproduceError

MATHJAX_VERSION = "3.2.2"
# What tex-chtml.js needs at run time: the component itself, its fonts, the TeX extensions it
# autoloads (\boldsymbol, \color, ...), and the assistive-MathML piece its menu can load.
MATHJAX_FILES = ("tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions",
                 "a11y/assistive-mml.js")


def ensure_mathjax(static_dir: Path) -> Path:
    """``static_dir/mathjax`` with MathJax's ``tex-chtml`` component, fetched with npm if missing."""
    dest = Path(static_dir) / "mathjax"
    if (dest / "tex-chtml.js").is_file():
        return dest
    npm = shutil.which("npm")
    if npm is None:
        raise ReproduceError(
            f"MathJax is missing from {dest} and npm is not installed to fetch it; install Node.js/npm "
            f"(e.g. apt-get install npm) or copy the es5/ files of the npm package mathjax@{MATHJAX_VERSION} there"
        )
    with tempfile.TemporaryDirectory(prefix="mathjax-") as tmp:
        r = subprocess.run([npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--silent"], cwd=tmp,
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise ReproduceError(f"npm pack mathjax@{MATHJAX_VERSION} failed:\n{r.stderr.strip()}")

        tgz = next(Path(tmp).glob("mathjax-*.tgz"))
        with tarfile.open(tgz) as tf:
            try:
                tf.extractall(tmp, filter="data")
            except TypeError:  # Python without extraction filters
                tf.extractall(tmp)
        es5 = Path(tmp) / "package" / "es5"
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".mathjax-"))
        try:
            for rel in MATHJAX_FILES:
                src, dst = es5 / rel, staging / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
            shutil.copy2(Path(tmp) / "package" / "LICENSE", staging / "LICENSE")
            (staging / "VERSION").write_text(
                f"mathjax {MATHJAX_VERSION} (npm), es5 subset: {', '.join(MATHJAX_FILES)}\n")
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(staging, 0o777 & ~mask)  # mkdtemp creates 0700
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return dest
