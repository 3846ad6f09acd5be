"""API server load from the audit stream: request series per client, anomalous windows,
the combination of attributes that explains them, slow and rejected requests.

The records that are not about Pods are read from their bytes only (:mod:`.scan`); the
analysis keeps bounded per-interval counts (:mod:`.series`), finds anomalous windows
against a seasonal baseline (:mod:`.anomaly`) and names what changed (:mod:`.drilldown`).
Only this module imports without the ``analyze`` extra (numpy, statsmodels, matplotlib).
"""

from typing import Final

DIMENSIONS: Final = ("user_agent", "user", "verb", "resource", "namespace", "scope", "code")
"""The attributes a request is counted by."""

MAX_INTERVALS: Final = 100_000
"""Intervals one analysis may span (its series and baseline are this long): a longer span
is refused with :class:`SpanTooLong`, naming the fix."""


class SpanTooLong(ValueError):
    """The input spans more intervals than :data:`MAX_INTERVALS`."""
