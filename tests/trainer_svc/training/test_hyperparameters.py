from __future__ import annotations

import json
from pathlib import Path

import pytest

from tfic.errors import InvalidHyperparameter
from trainer_svc.training.hyperparameters import Hyperparameters, load_json, parse


def test_strings_from_sagemaker_are_typed() -> None:
    hp = parse({"epochs": "5", "learning_rate": "0.01", "early_stopping": "True", "lr_scheduler_step": "2,4"})
    assert hp.epochs == 5
    assert hp.learning_rate == pytest.approx(0.01)
    assert hp.early_stopping is True
    assert hp.lr_scheduler_step == (2, 4)


def test_defaults_follow_the_tensorflow_algorithm() -> None:
    hp = parse({})
    assert hp == Hyperparameters()
    assert (hp.optimizer, hp.learning_rate, hp.dropout_rate, hp.label_smoothing) == ("adam", 0.001, 0.2, 0.1)
    # epochs is the recipe's to choose (3 under recipe=sagemaker, as in SageMaker; see test_recipe.py).
    assert hp.epochs is None


def test_mxnet_aliases_are_accepted() -> None:
    hp = parse({"mini_batch_size": 16, "eps": "1e-8", "weight_decay": "0.001", "gamma": 0.8, "optimizer": "nag"})
    assert (hp.batch_size, hp.epsilon, hp.regularizers_l2, hp.rho) == (16, 1e-8, 0.001, 0.8)
    assert hp.canonical_optimizer == "nesterov"


def test_hyphenated_validation_split_ratio_is_accepted() -> None:
    assert parse({"validation-split-ratio": "0.3"}).validation_split_ratio == pytest.approx(0.3)


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(
        InvalidHyperparameter, match=r"unknown hyperparameter 'learning_rat'; did you mean 'learning_rate'"
    ):
        parse({"learning_rat": "0.1"})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"learning_rate": "0"}, r"learning_rate=0 is out of range: must be > 0 and <= 10"),
        ({"epochs": "2.5"}, r"epochs: expected an integer, got '2.5'"),
        ({"batch_size": "abc"}, r"batch_size: expected a number, got 'abc'"),
        ({"optimizer": "lbfgs"}, r"optimizer='lbfgs' is not allowed: must be one of adam, sgd"),
        ({"num_layers": "19"}, r"num_layers='19' is not allowed: must be one of 18, 34, 50, 101, 152"),
        ({"early_stopping": "maybe"}, r"early_stopping: expected true or false"),
        ({"dropout_rate": "1"}, r"dropout_rate=1 is out of range: must be >= 0 and < 1"),
        ({"image_shape": "1,28,28"}, r"image_shape='1,28,28': expected \"3,H,W\""),
        ({"lr_scheduler_step": "5,3"}, r"expected increasing positive epoch numbers"),
        ({"lr_scheduler_step": "10", "epochs": "3"}, r"steps beyond epochs=3"),
        ({"momentum": "nan"}, r"momentum: expected a finite number"),
        ({"label_format": "multi-hot"}, r"label_format=multi-hot applies to multi-label training: set multi_label=1"),
        ({"kv_store": "dist_sync"}, r"use --strategy multi-worker"),
        ({"epsilon": "1e-8", "eps": "1e-7"}, r"epsilon is given twice"),
    ],
)
def test_bad_values_name_what_is_allowed(values: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidHyperparameter, match=message):
        parse(values)


@pytest.mark.parametrize(("raw", "shape"), [("3,224,224", (224, 224, 3)), ("32", (32, 32, 3)), ("64,48", (64, 48, 3))])
def test_image_shape_forms(raw: str, shape: tuple[int, int, int]) -> None:
    assert parse({"image_shape": raw}).image_shape == shape


def test_json_file(tmp_path: Path) -> None:
    path = tmp_path / "hp.json"
    path.write_text(json.dumps({"epochs": "4", "optimizer": "sgd"}))
    assert parse(load_json(path)).epochs == 4
    path.write_text("[1, 2]")
    with pytest.raises(InvalidHyperparameter, match="must hold a JSON object"):
        load_json(path)
    path.write_text("{nope")
    with pytest.raises(InvalidHyperparameter, match="is not valid JSON"):
        load_json(path)


def test_mxnet_augmentation_names_are_accepted_with_their_ranges() -> None:
    hp = parse(
        {
            "max_random_aspect_ratio": "0.25",
            "max_random_h": "36",
            "max_random_s": "50",
            "max_random_l": "50",
            "max_random_rotate_angle": "10",
            "max_random_shear_ratio": "0.1",
            "min_random_scale": "0.9",
            "max_random_scale": "1.2",
            "early_stopping_tolerance": "0.01",
        }
    )
    assert (hp.max_random_h, hp.max_random_s, hp.max_random_l, hp.max_random_rotate_angle) == (36, 50, 50, 10)
    assert (hp.min_random_scale, hp.max_random_scale, hp.early_stopping_tolerance) == (0.9, 1.2, 0.01)
    for values, message in [
        ({"max_random_h": "181"}, r"max_random_h=181 is out of range: must be auto, or >= 0 and <= 180"),
        ({"max_random_l": "256"}, r"max_random_l=256 is out of range"),
        ({"max_random_rotate_angle": "2.5"}, r"max_random_rotate_angle: expected an integer"),
        ({"max_random_aspect_ratio": "1"}, r"max_random_aspect_ratio=1 is out of range: must be auto, or >= 0 and < 1"),
        ({"min_random_scale": "0"}, r"min_random_scale=0 is out of range"),
        ({"min_random_scale": "1.5"}, r"min_random_scale=1.5 is above max_random_scale=1 \(the default 1\)"),
        ({"min_random_scale": "0.9", "max_random_scale": "0.8"}, r"min_random_scale=0.9 is above max_random_scale"),
        ({"early_stopping_tolerance": "1.5"}, r"early_stopping_tolerance=1.5 is out of range"),
        ({"early_stopping_tolerance": "0.1", "early_stopping_min_delta": "0.01"}, r"give one"),
    ]:
        with pytest.raises(InvalidHyperparameter, match=message):
            parse(values)


@pytest.mark.parametrize(
    ("typo", "suggested"),
    [
        ("min_random_scal", "'min_random_scale'"),
        ("max_random_rotation", "'max_random_rotate_angle'"),
        ("max_random_hue", "'max_random_h'"),
        ("max_random_shear", "'max_random_shear_ratio'"),
        ("max_rotate_angle", "'max_random_rotate_angle'"),
        ("augmentation_random_rotate", "'augmentation_random_rotation'"),
        ("early_stoping_tolerance", "'early_stopping_tolerance'"),
    ],
)
def test_did_you_mean_suggests_the_names_own_family_first(typo: str, suggested: str) -> None:
    with pytest.raises(InvalidHyperparameter) as info:
        parse({typo: "1"})
    hint = info.value.message.split("did you mean ", 1)[1].split("?")[0]
    assert hint.startswith(suggested)
    # A misspelt MXNet augmentation name is never pointed at the TF algorithm's augmentation_* family.
    if typo.startswith(("max_random", "min_random")):
        assert "augmentation" not in hint
