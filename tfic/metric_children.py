"""Cached ``metric.labels(...)`` children for Prometheus metrics on hot paths.

``labels()`` takes a lock and builds a key on every call; the label values tfic uses are bounded
(model, method, code, route template, reason), so each child is looked up once and kept.
"""

from __future__ import annotations

from typing import Any


class LabelChildren:
    """``children(metric, *values)`` is ``metric.labels(*values)``, computed once per metric and values.

    Safe from several threads: at worst two threads both call ``labels()`` once, which returns the same child.
    """

    def __init__(self) -> None:
        self._children: dict[tuple[Any, ...], Any] = {}

    def __call__(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found
