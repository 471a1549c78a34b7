from __future__ import annotations

from pathlib import Path

from trainer_svc.training.hyperparameters import SPECS

DOC = Path(__file__).resolve().parents[3] / "docs" / "training.md"


def test_every_hyperparameter_is_documented() -> None:
    text = DOC.read_text()
    missing = [s.name for s in SPECS if f"| `{s.name}` |" not in text]
    assert missing == []
