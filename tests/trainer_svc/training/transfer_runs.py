"""Transfer-learning runs on the real EfficientNet-Lite0 weights at a tiny input size, shared by the tests.

Training one costs tens of seconds on two cores, so the tests that only need *a* trained transfer
model (to look at its weights, its files, or to train on from it) share the session fixtures in
``conftest.py`` instead of each training its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer_svc.training import hyperparameters
from trainer_svc.training.train import Channel, TrainRequest, TrainResult, run

# The default recipe (a cached warm-up of the head, then fine-tuning), small enough for a test.
RECIPE_HP = {"image_shape": "3,32,32", "head_epochs": "3", "epochs": "2", "batch_size": "32", "seed": "5"}
# The backbone frozen, the head trained on cached features, the last epoch published whatever its accuracy.
FROZEN_HP = {"image_shape": "3,32,32", "train_only_top_layer": "true", "epochs": "4", "batch_size": "32", "seed": "5",
             "dropout_rate": "0", "export_epoch": "last"}  # fmt: skip


def run_transfer(
    data: Path, base: Path, name: str, hp: dict[str, str], events: list[dict[str, Any]] | None = None, **kw: Any
) -> TrainResult:
    return run(
        TrainRequest(
            train=Channel(str(data)),
            model_base_path=base,
            model_name=name,
            base_model=kw.pop("base_model", "efficientnet_lite0"),
            hyperparameters=hyperparameters.parse(hp),
            **kw,
        ),
        events.append if events is not None else (lambda e: None),
    )


@dataclass(frozen=True)
class Trained:
    """A published version and the events of the run that trained it. Read-only: copy the directory to change it."""

    path: Path
    events: tuple[dict[str, Any], ...]

    def epochs(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "epoch"]


def digest(version: Path) -> str:
    """Every file's path and bytes, so a test that wrote into a shared version is caught at teardown."""
    h = hashlib.sha256()
    for path in sorted(p for p in version.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(version)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()
