"""Tests of agreement between the full network and the overlap theory, and of learning success.

Chapter claims such as "the remaining differences come from finite N" or "every learner solves the
task" as functions returning :class:`~lowrank_learning.analysis.verdicts.Verdict`.
"""

from __future__ import annotations

__all__: list[str] = []
