"""Shared fixtures: real data on disk and real (tiny) trained models, built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scikit-learn digits as class folders, 40 images per class (400 images, 8×8 PNG)."""
    from tfic_demo.digits import write_digits

    return write_digits(tmp_path_factory.mktemp("digits"), per_class=40)


TINY_HP = {
    "model": "small_cnn",
    "image_shape": "3,16,16",
    "epochs": "2",
    "batch_size": "32",
    "learning_rate": "0.003",
    "seed": "7",
}


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory, digits_dir: Path) -> Path:
    """A real small CNN trained for two epochs on the digits; returns BASE/NAME/1."""
    from trainer_svc.training import hyperparameters
    from trainer_svc.training.train import Channel, TrainRequest, run

    base = tmp_path_factory.mktemp("models")
    result = run(
        TrainRequest(
            train=Channel(str(digits_dir)),
            model_base_path=base,
            model_name="digits",
            hyperparameters=hyperparameters.parse(TINY_HP),
        )
    )
    assert result.path is not None
    return result.path
