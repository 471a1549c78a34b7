"""docs/training.md's hyperparameter table is the one the code declares (scripts/gen_hyperparameter_docs.py)."""

from __future__ import annotations

from pathlib import Path

from trainer_svc.training.hyperparameters import SPECS, markdown_table

DOC = Path(__file__).resolve().parents[3] / "docs" / "training.md"


def test_every_hyperparameter_is_documented_as_declared() -> None:
    text = DOC.read_text()
    missing = [s.name for s in SPECS if f"| `{s.name}` |" not in text]
    assert missing == []
    assert markdown_table() in text, "run scripts/gen_hyperparameter_docs.py"
