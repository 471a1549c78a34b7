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


def test_every_sagemaker_name_of_both_algorithms_has_its_status_in_the_docs() -> None:
    from trainer_svc.training import sagemaker_names

    rows = sagemaker_names.statuses()  # raises for a SageMaker name tfic's table does not know
    assert {r.name for r in rows} == set(sagemaker_names.MXNET) | set(sagemaker_names.TENSORFLOW)
    assert {r.status for r in rows} == {"supported", "alias", "refused"}
    refused = {r.name for r in rows if r.status == "refused"}
    assert refused == {"resize", "kv_store"}
    assert sagemaker_names.markdown_table() in DOC.read_text(), "run scripts/gen_hyperparameter_docs.py"
