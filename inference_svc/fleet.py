"""Fleet version labels applied to one model on one server: which versions to load, which answers a request.

The labels come from the model's ``version_labels.json`` (:mod:`tfic.version_labels`), shared by every server
reading the repository. Pure logic over version numbers; :class:`inference_svc.repository.ModelRepository` owns
the state and calls these on the event loop.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from tfic.version_labels import VersionLabels


def aspired_versions(labels: VersionLabels, on_disk: Collection[int], by_policy: Iterable[int]) -> set[int]:
    """The labelled versions on disk (as a ``specific`` policy listing them), plus the policy's own when the
    stable label names nothing on disk: a label file naming nothing servable must not take the model down."""
    aspired = {v for v in labels.labels.values() if v in on_disk}
    if labels.stable not in on_disk:
        aspired |= set(by_policy)
    return aspired


class CanaryRouter:
    """Per model: the version a request naming no version or label goes to.

    Stable when it is AVAILABLE; while a newly labelled stable loads, the version that last answered as stable;
    else the newest available that is not the canary. The canary takes ``share`` of those requests by a running
    credit, not a random draw: exactly the share, evenly spread, on every server.
    """

    __slots__ = ("credit", "last_stable")

    def __init__(self) -> None:
        self.last_stable: int | None = None
        self.credit = 0.0

    def choose(self, labels: VersionLabels, available: Collection[int], default_share: float) -> int:
        assert available, "route only when some version is AVAILABLE"
        stable, canary, last = labels.stable, labels.canary, self.last_stable
        chosen: int
        if stable is not None and stable in available:
            self.last_stable = chosen = stable
        elif last is not None and last in available:
            chosen = last
        else:
            chosen = max((v for v in available if v != canary), default=max(available))
        if canary is not None and canary in available and canary != chosen:
            self.credit += labels.canary_share if labels.canary_share is not None else default_share
            if self.credit >= 1.0:
                self.credit -= 1.0
                chosen = canary
        return chosen
