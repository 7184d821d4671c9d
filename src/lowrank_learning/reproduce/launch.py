"""Where the project lives, and a Sphinx extension linking every result page to its notebook.

Where the project lives is configured once, in ``pyproject.toml`` (``[project.urls] Repository``),
and read here by :func:`repository_url`: the book's launch links, the notebooks' Colab install
cell (:mod:`.colab`) and the tests all use it. :func:`release_ref` (``v<version>``, the release
tag of ``[project] version``) pins the links and the Colab install to what the book was built from.

The pages under ``book/results/`` are executed copies that are not in the repository, so
jupyter-book's own launch buttons would point nowhere. The extension puts plain links (nothing
is loaded from elsewhere when the page is viewed) under the title of each result page:

- the source ``notebooks/<name>.ipynb`` on GitHub,
- Binder (``https://mybinder.org/v2/gh/<owner>/<repo>/<ref>?labpath=notebooks/<name>.ipynb``;
  the environment comes from the repository's ``binder/`` folder),
- Colab (``https://colab.research.google.com/github/<owner>/<repo>/blob/<ref>/notebooks/<name>.ipynb``;
  the notebook's first cell installs the package there).

Configuration (``_config.yml``, ``sphinx.config``), both optional: ``lowrank_repository`` (a
GitHub URL; default: ``pyproject.toml``'s Repository) and ``lowrank_ref`` (the branch, tag or
commit the links open; default: :func:`release_ref`). ``pyproject.toml`` is looked up in the
book's source folder and its parents.
"""

from __future__ import annotations

import html
import re
import tomllib
from pathlib import Path
from urllib.parse import quote

from .layout import ReproduceError

RESULTS_PREFIX = "book/results/"
PYPROJECT = "pyproject.toml"


# --------------------------------------------------------------------------- where the project lives
def _project(root) -> dict:
    """The ``[project]`` table of ``<root>/pyproject.toml``."""
    path = Path(root) / PYPROJECT
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReproduceError(f"{path} not found: pass the repository root") from None
    except tomllib.TOMLDecodeError as exc:
        raise ReproduceError(f"{path} is not valid TOML: {exc}") from None
    project = data.get("project")
    if not isinstance(project, dict):
        raise ReproduceError(f"{path} has no [project] table")
    return project


def project_name(root) -> str:
    """``[project] name`` of ``<root>/pyproject.toml`` (the distribution name pip installs)."""
    name = _project(root).get("name")
    if not isinstance(name, str) or not name:
        raise ReproduceError(f"{Path(root) / PYPROJECT} has no [project] name")
    return name


def project_version(root) -> str:
    """``[project] version`` of ``<root>/pyproject.toml``."""
    version = _project(root).get("version")
    if not isinstance(version, str) or not version:
        raise ReproduceError(f"{Path(root) / PYPROJECT} has no static [project] version")
    return version


def repository_url(root) -> str:
    """Where the project lives: ``[project.urls] Repository`` of ``<root>/pyproject.toml``."""
    url = _project(root).get("urls", {}).get("Repository")
    if not isinstance(url, str) or not url.startswith("https://"):
        raise ReproduceError(
            f"{Path(root) / PYPROJECT} must set [project.urls] Repository = \"https://...\", got {url!r}"
        )
    return url.rstrip("/")


def release_ref(root) -> str:
    """The release tag of the current version, ``v<version>``: the git ref the book's launch
    links and the notebooks' Colab install point to."""
    return f"v{project_version(root)}"


def find_project_root(start) -> Path:
    """The first of ``start`` and its parents that holds ``pyproject.toml``."""
    here = Path(start).resolve()
    for d in (here, *here.parents):
        if (d / PYPROJECT).is_file():
            return d
    raise ReproduceError(f"no {PYPROJECT} in {here} or its parents: cannot tell where the project lives")


# --------------------------------------------------------------------------- launch links
def launch_links(repository: str, ref: str, name: str) -> dict[str, str]:
    """``{"source": url, "binder": url, "colab": url}`` for ``notebooks/<name>.ipynb`` at git ``ref``."""
    repo = repository.rstrip("/")
    repo = repo.removesuffix(".git")
    m = re.match(r"^https://github\.com/([^/]+)/([^/]+)$", repo)
    if m is None:
        raise ValueError(f"lowrank_repository must be https://github.com/OWNER/REPO, got {repository!r}")
    if not ref or any(c.isspace() for c in ref):
        raise ValueError(f"lowrank_ref must be a git branch, tag or commit, got {ref!r}")
    owner, name_ = m.groups()
    path = f"notebooks/{name}.ipynb"
    return {
        "source": f"{repo}/blob/{ref}/{path}",
        "binder": f"https://mybinder.org/v2/gh/{owner}/{name_}/{quote(ref, safe='')}?labpath={quote(path, safe='')}",
        "colab": f"https://colab.research.google.com/github/{owner}/{name_}/blob/{ref}/{path}",
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


# --------------------------------------------------------------------------- Sphinx extension
def _fill_config(app, config) -> None:
    """``config-inited``: default ``lowrank_repository``/``lowrank_ref`` from ``pyproject.toml``."""
    if config.lowrank_repository and config.lowrank_ref:
        return
    root = find_project_root(app.srcdir)
    if not config.lowrank_repository:
        config.lowrank_repository = repository_url(root)
    if not config.lowrank_ref:
        config.lowrank_ref = release_ref(root)


def _add_links(app, pagename, templatename, context, doctree):
    if not pagename.startswith(RESULTS_PREFIX) or "body" not in context:
        return
    name = pagename[len(RESULTS_PREFIX):]
    if "/" in name or not name.isidentifier():
        return
    block = _links_html(launch_links(app.config.lowrank_repository, app.config.lowrank_ref, name), name)
    body = context["body"]
    end = body.find("</h1>")
    context["body"] = body[: end + 5] + "\n" + block + body[end + 5:] if end >= 0 else block + body


def setup(app):
    app.add_config_value("lowrank_repository", "", "html")
    app.add_config_value("lowrank_ref", "", "html")
    app.connect("config-inited", _fill_config)
    app.connect("html-page-context", _add_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
