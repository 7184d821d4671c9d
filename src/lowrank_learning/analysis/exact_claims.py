"""Verdicts for the claims of the linear and structural chapters (E1, E2, E3, E5, performance).

Claims such as "the damped oscillation has the predicted frequency", "the metric has the stated
structure" or "relearning the first task is faster" as functions returning
:class:`~lowrank_learning.analysis.verdicts.Verdict`; the generic agreement checks are in
:mod:`~lowrank_learning.analysis.agreement`.
"""

from __future__ import annotations

__all__: list[str] = []
