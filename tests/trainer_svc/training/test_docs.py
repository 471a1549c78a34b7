from __future__ import annotations

from pathlib import Path

from trainer_svc.training.hyperparameters import SPECS

DOC = Path(__file__).resolve().parents[3] / "docs" / "training.md"


def test_every_hyperparameter_is_documented() -> None:
    text = DOC.read_text()
    missing = [s.name for s in SPECS if f"| `{s.name}` |" not in text]
    assert missing == []


def test_documented_defaults_are_the_real_ones() -> None:
    text = DOC.read_text()
    wrong = [s.name for s in SPECS if f"| `{s.name}` |" in text and f"| `{s.default_text}` |" not in _row(text, s.name)]
    assert wrong == []


def _row(text: str, name: str) -> str:
    table = text[text.index("## Hyperparameters") :]
    return next(line for line in table.splitlines() if line.startswith(f"| `{name}` |"))
