"""The reproduction pipeline: run the companion's notebooks with papermill and build the book.

One job per module:

- :mod:`.layout`: where things live (:class:`Layout`, :func:`find_root`) and :class:`ReproduceError`;
- :mod:`.profiles`: the registry ``notebooks/profiles.yml``, notebook parameters, :func:`plan`;
- :mod:`.stamps`: what produced an executed notebook, and whether it is up to date;
- :mod:`.runner`: :func:`reproduce`, executing notebooks into ``book/results/`` and keeping the
  last good result when a run fails or is interrupted;
- :mod:`.book`: :func:`build_book` and the results table of the introduction;
- :mod:`.mathjax`: :func:`ensure_mathjax`, MathJax shipped with the book;
- :mod:`.launch`: a Sphinx extension linking each result page to its notebook, Binder and Colab.

``python -m lowrank_learning.reproduce`` is the per-notebook worker that :func:`reproduce` starts.
"""

from .book import build_book, results_table, write_results_table
from .layout import Layout, ReproduceError, find_root
from .mathjax import MATHJAX_VERSION, ensure_mathjax
from .profiles import Job, load_profiles, plan
from .runner import Outcome, _job_dict, execute_job, reproduce

__all__ = [
    "ReproduceError", "Layout", "Job", "Outcome", "find_root", "load_profiles", "plan",
    "reproduce", "build_book", "ensure_mathjax", "MATHJAX_VERSION", "execute_job",
    "results_table", "write_results_table",
]
