"""``tfic models``: promote validates before a label moves, rollback needs a history, labels prints the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.inference_svc.support import MODEL, SIZE, export_model, publish_broken, publish_copy
from tfic import version_labels
from tfic_cli.main import main as tfic


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("labels-store")
    export_model(store, MODEL, SIZE, seed=4)
    return store


@pytest.fixture
def model_dir(tmp_path: Path, store: Path) -> Path:
    target = tmp_path / "models" / MODEL
    publish_copy(store / MODEL / "1", target, 1)
    publish_copy(store / MODEL / "1", target, 2)
    return target


def test_a_broken_version_is_not_promoted(model_dir: Path, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tfic(["models", "promote", str(model_dir), "1"]) == 0
    publish_broken(store / MODEL / "1", model_dir, 3)
    assert tfic(["models", "promote", str(model_dir), "3", "--label", "canary"]) == 2
    assert "does not load" in capsys.readouterr().err
    labels = version_labels.read(model_dir)
    assert labels is not None and dict(labels.labels) == {"stable": 1}  # nothing moved
    assert tfic(["models", "promote", str(model_dir), "3", "--label", "canary", "--skip-validation"]) == 0
    labels = version_labels.read(model_dir)
    assert labels is not None and labels.validated[3]["checks"] == ["skipped (--skip-validation)"]


def test_promote_with_a_sample_and_an_accuracy_floor(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.inference_svc.support import encode, random_image

    data = tmp_path / "data"
    for i, label in enumerate(("cat", "dog", "fish") * 2):
        (data / label).mkdir(parents=True, exist_ok=True)
        (data / label / f"{i}.png").write_bytes(encode(random_image(i, SIZE, SIZE)))
    # An untrained 3-class model cannot reach 100 %: refused, with the score.
    code = tfic(["models", "promote", str(model_dir), "2", "--validation-data", str(data), "--min-accuracy", "1.0"])
    assert code == 2
    assert "below the required 1.0000" in capsys.readouterr().err
    assert version_labels.read(model_dir) is None
    code = tfic(
        [
            "models",
            "promote",
            str(model_dir),
            "2",
            "--sample",
            str(data / "cat"),
            "--validation-data",
            str(data),
            "--min-accuracy",
            "0",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "validated: predicts 2 sample image(s) (twice, identical)" in out
    assert "validated: accuracy " in out


def test_rollback_unlabel_and_labels(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tfic(["models", "rollback", str(model_dir)]) == 2  # no label yet
    assert "no 'stable' label" in capsys.readouterr().err
    assert tfic(["models", "promote", str(model_dir), "1", "--skip-validation"]) == 0
    assert tfic(["models", "rollback", str(model_dir)]) == 2  # no earlier version in the history
    assert tfic(["models", "promote", str(model_dir), "2", "--label", "canary", "--skip-validation"]) == 0
    assert tfic(["models", "unlabel", str(model_dir)]) == 0
    assert tfic(["models", "unlabel", str(model_dir), "--label", "stable"]) == 2
    assert tfic(["models", "promote", str(model_dir), "9"]) == 2  # not on disk
    assert tfic(["models", "promote", str(model_dir), "2", "--label", "9x"]) == 2  # not a label
    capsys.readouterr()
    assert tfic(["models", "labels", str(model_dir)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["labels"] == {"stable": 1}
    assert [(m["label"], m["to"], m["by"]) for m in printed["history"]] == [
        ("stable", 1, "promote"),
        ("canary", 2, "promote"),
        ("canary", None, "unlabel"),
    ]
