"""A Sphinx extension that numbers figures, tables and code blocks per page.

With ``numfig`` and a table of contents that is not numbered, Sphinx counts figures across the
whole book, so the first figure of the tenth chapter is "Fig. 38". A reader looks a figure up on
its own page, so this extension renumbers, after Sphinx has assigned its numbers, every figure
type on every page from 1 in the order Sphinx numbered them (document order): "Fig. 1" is the
first figure of each chapter. Cross-references (``{numref}``) use the same numbers.

Listed in ``_config.yml`` under ``sphinx.extra_extensions`` and ``sphinx.config.extensions``.
"""

from __future__ import annotations


def per_page_numbers(fignumbers: dict) -> dict:
    """``{figtype: {id: (n,)}}`` of one page, renumbered 1, 2, ... per figure type in the order of
    the numbers Sphinx assigned (``fignumbers``: ``{figtype: {id: tuple of ints}}``)."""
    out = {}
    for figtype, ids in fignumbers.items():
        ordered = sorted(ids, key=lambda i: tuple(ids[i]))
        out[figtype] = {i: (k + 1,) for k, i in enumerate(ordered)}
    return out


def _renumber(app, env):
    env.toc_fignumbers = {doc: per_page_numbers(nums) for doc, nums in env.toc_fignumbers.items()}
    return []


def setup(app):
    # after Sphinx's own numbering (TocTreeCollector, env-get-updated at the default priority 500)
    app.connect("env-get-updated", _renumber, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
