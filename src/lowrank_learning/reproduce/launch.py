"""Sphinx extension: every result page links to its source notebook, Binder and Colab.

The pages under ``book/results/`` are executed copies that are not in the repository, so
jupyter-book's own launch buttons would point nowhere. This extension puts plain links (nothing
is loaded from elsewhere when the page is viewed) under the title of each result page:

- the source ``notebooks/<name>.ipynb`` on GitHub,
- Binder (``https://mybinder.org/v2/gh/<owner>/<repo>/<branch>?labpath=notebooks/<name>.ipynb``;
  the environment comes from the repository's ``binder/`` folder),
- Colab (``https://colab.research.google.com/github/<owner>/<repo>/blob/<branch>/notebooks/<name>.ipynb``;
  the notebook's first cell installs the package there).

Configuration (``_config.yml``, ``sphinx.config``): ``lowrank_repository`` (the GitHub URL) and
``lowrank_branch`` (default ``main``).
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote

RESULTS_PREFIX = "book/results/"


def launch_links(repository: str, branch: str, name: str) -> dict[str, str]:
    """``{"source": url, "binder": url, "colab": url}`` for ``notebooks/<name>.ipynb``."""
    repo = repository.rstrip("/")
    if repo.endswith(".git"):
        repo = repo[:-4]
    m = re.match(r"^https://github\.com/([^/]+)/([^/]+)$", repo)
    if m is None:
        raise ValueError(f"lowrank_repository must be https://github.com/OWNER/REPO, got {repository!r}")
    owner, name_ = m.groups()
    path = f"notebooks/{name}.ipynb"
    return {
        "source": f"{repo}/blob/{branch}/{path}",
        "binder": f"https://mybinder.org/v2/gh/{owner}/{name_}/{branch}?labpath={quote(path, safe='')}",
        "colab": f"https://colab.research.google.com/github/{owner}/{name_}/blob/{branch}/{path}",
    }


def _links_html(links: dict[str, str], name: str) -> str:
    a = {k: html.escape(v, quote=True) for k, v in links.items()}
    return (
        '<p class="lowrank-launch">'
        f'<a class="lowrank-launch-source reference external" href="{a["source"]}">source notebook '
        f'<code>notebooks/{html.escape(name)}.ipynb</code></a> · '
        f'<a class="lowrank-launch-binder reference external" href="{a["binder"]}">launch on Binder</a> · '
        f'<a class="lowrank-launch-colab reference external" href="{a["colab"]}">open in Colab</a>'
        "</p>\n"
    )


def _add_links(app, pagename, templatename, context, doctree):
    if not pagename.startswith(RESULTS_PREFIX) or "body" not in context or not app.config.lowrank_repository:
        return
    name = pagename[len(RESULTS_PREFIX):]
    if "/" in name or not name.isidentifier():
        return
    block = _links_html(launch_links(app.config.lowrank_repository, app.config.lowrank_branch, name), name)
    body = context["body"]
    end = body.find("</h1>")
    context["body"] = body[: end + 5] + "\n" + block + body[end + 5:] if end >= 0 else block + body


def setup(app):
    app.add_config_value("lowrank_repository", "", "html")
    app.add_config_value("lowrank_branch", "main", "html")
    app.connect("html-page-context", _add_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
