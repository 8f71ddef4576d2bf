"""Metrics over the reference libraries, one module per family; registered by name in
`harness.registry.METRICS`, with their leaderboard label and column order.

The registry fills itself on first lookup (importing the family modules), so importing this
package stays cheap and never imports torch.
"""

from __future__ import annotations

from harness.metrics.base import (
    METRICS,
    RESULT_DETAILS,
    SHARE,
    UNBOUNDED,
    Metric,
    MetricOptions,
    MetricScore,
    MetricUnavailable,
    References,
    compute_metrics,
    metric,
    parse_options,
)

__all__ = [
    "METRICS",
    "RESULT_DETAILS",
    "SHARE",
    "UNBOUNDED",
    "Metric",
    "MetricOptions",
    "MetricScore",
    "MetricUnavailable",
    "References",
    "compute_metrics",
    "metric",
    "parse_options",
]
