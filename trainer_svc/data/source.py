"""What every dataset reader produces: a list of samples with labels, and a way to read bytes.

Readers (``folders``, ``lst``, ``recordio``, ``tfrecord``) parse and validate their format and
return a :class:`DataSource`. The training pipeline only ever sees this type, so all four formats
share one decode/augment/batch pipeline.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    """One labelled image.

    ``key`` names it in messages (a file path, or ``train.rec#12@4096`` for a record).
    ``path`` is set for samples stored as their own file (read with ``tf.io.read_file``);
    ``offset`` locates a record inside the source's container file otherwise.
    """

    key: str
    labels: tuple[int, ...]
    path: str | None = None
    offset: int = -1

    @property
    def label(self) -> int:
        return self.labels[0]


@dataclass
class SkippedSample:
    key: str
    reason: str


@dataclass
class DataSource(ABC):
    """A parsed dataset. Subclasses implement :meth:`read` for samples without a ``path``."""

    samples: list[Sample]
    class_names: tuple[str, ...]
    description: str = ""
    multi_label: bool = False
    skipped: list[SkippedSample] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def file_backed(self) -> bool:
        return all(s.path is not None for s in self.samples)

    @abstractmethod
    def read(self, sample: Sample) -> bytes:
        """The encoded image bytes of ``sample``."""

    def fingerprint(self) -> str:
        """A stable digest of what was trained on: class names, keys and labels (not pixels)."""
        h = hashlib.sha256()
        h.update("\x1f".join(self.class_names).encode())
        for s in self.samples:
            h.update(f"\x1e{s.key}\x1f{','.join(map(str, s.labels))}".encode())
        return h.hexdigest()[:16]

    def with_samples(self, samples: list[Sample]) -> DataSource:
        """A view of this source restricted to ``samples`` (same reader, same classes)."""
        clone = _Subset(samples=samples, class_names=self.class_names, parent=self)
        clone.description = self.description
        clone.multi_label = self.multi_label
        return clone


@dataclass
class _Subset(DataSource):
    parent: DataSource | None = None

    def read(self, sample: Sample) -> bytes:
        assert self.parent is not None
        return self.parent.read(sample)


class FileSource(DataSource):
    """Samples that are each a file on disk (folders and .lst)."""

    def read(self, sample: Sample) -> bytes:
        assert sample.path is not None
        with open(sample.path, "rb") as f:
            return f.read()
