"""Rewrite docs/training.md's two hyperparameter tables from their declarations: tfic's table
(trainer_svc/training/hyperparameters.py) and SageMaker's names with tfic's status of each
(trainer_svc/training/sagemaker_names.py).

.venv/bin/python scripts/gen_hyperparameter_docs.py
"""

from __future__ import annotations

from pathlib import Path

from trainer_svc.training import hyperparameters, sagemaker_names

DOC = Path(__file__).resolve().parents[1] / "docs" / "training.md"
HEADER = "| name | aliases | default | allowed | what it does |"


def replace_table(text: str, header: str, table: str) -> str:
    start = text.index(header)
    lines = text[start:].split("\n")
    length = next(i for i, line in enumerate(lines) if not line.startswith("|"))
    end = start + len("\n".join(lines[:length]))
    return text[:start] + table + text[end:]


def main() -> None:
    text = replace_table(DOC.read_text(), HEADER, hyperparameters.markdown_table())
    text = replace_table(text, sagemaker_names.HEADER, sagemaker_names.markdown_table())
    DOC.write_text(text)


if __name__ == "__main__":
    main()
