"""Validate a version and move a fleet label to it: what ``tfic models promote`` and a Trainer job's ``promote`` do.

The label file is :mod:`tfic.version_labels`; what "validated" means is :mod:`trainer_svc.training.validation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfic import version_labels as vl
from tfic.errors import NotFound
from tfic.modeldir import list_versions
from trainer_svc.training.validation import ValidationReport, validate_version


@dataclass(frozen=True)
class Promotion:
    label: str
    version: int
    labels: dict[str, int]
    checks: tuple[str, ...]


def promote_version(
    model_dir: Path,
    version: int,
    label: str = vl.STABLE,
    *,
    by: str = "promote",
    canary_share: float | None = None,
    samples: list[Path] | None = None,
    data: str | None = None,
    min_accuracy: float | None = None,
    image_root: str | None = None,
    skip_validation: bool = False,
) -> Promotion:
    """Validate ``model_dir/version`` (unless ``skip_validation``), then point ``label`` at it in one atomic write.

    Promoting the canary's version to stable removes the canary label: nothing is left to compare, and a later
    rollback must not leave the rolled-back version in traffic.
    """
    vl.check_label(label)
    share = vl.check_share(canary_share) if canary_share is not None else None
    if version not in list_versions(model_dir):
        raise NotFound(f"{model_dir} has no version {version}")
    record: dict[str, Any]
    if skip_validation:
        record = {"at": vl.now(), "checks": ["skipped (--skip-validation)"]}
        checks: tuple[str, ...] = ()
    else:
        report: ValidationReport = validate_version(model_dir / str(version), samples, data, min_accuracy, image_root)
        record = {"at": vl.now(), **report.to_json()}
        checks = report.checks
    with vl.locked(model_dir) as current:
        updated = vl.moved(current, label, version, by)
        if label == vl.STABLE and updated.canary == version:
            updated = vl.moved(updated, vl.CANARY, None, by)
        updated = vl.VersionLabels(
            updated.labels,
            share if share is not None else updated.canary_share,
            {**updated.validated, version: record},
            updated.history,
        )
        vl.write(model_dir, updated)
    return Promotion(label, version, dict(updated.labels), checks)
