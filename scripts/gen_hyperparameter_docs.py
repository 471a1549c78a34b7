"""Rewrite docs/training.md's hyperparameter table from its one declaration (trainer_svc/training/hyperparameters.py).

.venv/bin/python scripts/gen_hyperparameter_docs.py
"""

from __future__ import annotations

from pathlib import Path

from trainer_svc.training.hyperparameters import markdown_table

DOC = Path(__file__).resolve().parents[1] / "docs" / "training.md"
HEADER = "| name | aliases | default | allowed | what it does |"


def main() -> None:
    text = DOC.read_text()
    start = text.index(HEADER)
    lines = text[start:].split("\n")
    length = next(i for i, line in enumerate(lines) if not line.startswith("|"))
    end = start + len("\n".join(lines[:length]))
    DOC.write_text(text[:start] + markdown_table() + text[end:])


if __name__ == "__main__":
    main()
