"""Which phases a run goes through: tfic's recipe, SageMaker's literal one, and explicit choices winning."""

from __future__ import annotations

import pytest

from tfic.errors import InvalidHyperparameter
from trainer_svc.training.hyperparameters import parse
from trainer_svc.training.recipe import LIGHT, NONE, resolve

TRANSFER = {"pretrained": True, "new_head": True, "incremental": False}


def test_tfic_transfer_warms_the_head_on_cached_features_then_fine_tunes_with_decay() -> None:
    recipe = resolve(parse({}), **TRANSFER)
    head, tune = recipe.phases
    assert (head.name, head.epochs, head.frozen_backbone, head.cache_features) == ("head", 10, True, True)
    assert head.augmentation == NONE and head.learning_rate == 0.001 and head.backbone_learning_rate is None
    assert (tune.name, tune.epochs, tune.frozen_backbone, tune.cache_features) == ("fine_tune", 5, False, False)
    assert tune.learning_rate == 0.001 and tune.backbone_learning_rate == pytest.approx(0.0001)
    assert tune.schedule == "cosine" and tune.augmentation == LIGHT
    assert recipe.export_epoch == "best" and recipe.total_epochs == 15 and recipe.first_epoch_of(1) == 10
    assert not recipe.evaluate_base


def test_sagemaker_recipe_is_one_literal_phase_and_publishes_the_last_epoch() -> None:
    recipe = resolve(parse({"recipe": "sagemaker"}), **TRANSFER)
    (tune,) = recipe.phases
    assert tune.name == "fine_tune" and tune.epochs == 3  # SageMaker's TF algorithm's default
    assert tune.learning_rate == 0.001 and tune.backbone_learning_rate is None
    assert tune.schedule == "constant" and tune.augmentation == NONE
    assert recipe.export_epoch == "last"


def test_explicit_hyperparameters_win_over_the_recipe() -> None:
    hp = parse(
        {
            "head_epochs": "2",
            "backbone_learning_rate_multiplier": "1",
            "lr_schedule": "constant",
            "augmentation": "true",
            "export_epoch": "last",
        }
    )
    recipe = resolve(hp, **TRANSFER)
    head, tune = recipe.phases
    assert head.epochs == 2
    # SageMaker's augmentation settings when augmentation=true, in the fine-tune; the warm-up stays cached.
    assert tune.augmentation.flip == "horizontal_and_vertical" and tune.augmentation.rotation == 0.2
    assert head.augmentation == NONE and head.cache_features
    assert tune.backbone_learning_rate is None and tune.schedule == "constant"
    assert recipe.export_epoch == "last"
    assert resolve(parse({"augmentation": "false"}), **TRANSFER).phases[1].augmentation == NONE
    stepped = resolve(parse({"lr_scheduler_step": "2", "epochs": "4"}), **TRANSFER).phases[1]
    assert stepped.schedule == "step"


def test_frozen_backbone_is_one_cached_head_phase_unless_pixels_change() -> None:
    (default,) = resolve(parse({"train_only_top_layer": "true"}), **TRANSFER).phases
    assert default.epochs == 10
    (head,) = resolve(parse({"train_only_top_layer": "true", "epochs": "6"}), **TRANSFER).phases
    assert (head.name, head.epochs, head.frozen_backbone, head.cache_features) == ("head", 6, True, True)
    (augmented,) = resolve(parse({"train_only_top_layer": "true", "augmentation_type": "crop"}), **TRANSFER).phases
    assert not augmented.cache_features
    (off,) = resolve(parse({"train_only_top_layer": "true", "cache_backbone_features": "false"}), **TRANSFER).phases
    assert not off.cache_features
    (workers,) = resolve(parse({"train_only_top_layer": "true"}), **TRANSFER, can_cache=False).phases
    assert not workers.cache_features


def test_incremental_training_that_keeps_the_head_starts_from_the_base_version() -> None:
    recipe = resolve(parse({}), pretrained=True, new_head=False, incremental=True)
    (tune,) = recipe.phases
    assert tune.name == "fine_tune" and recipe.evaluate_base
    new_head = resolve(parse({}), pretrained=True, new_head=True, incremental=True)
    assert [p.name for p in new_head.phases] == ["head", "fine_tune"] and not new_head.evaluate_base
    assert not resolve(parse({"export_epoch": "last"}), pretrained=True, new_head=False, incremental=True).evaluate_base


def test_training_from_scratch_is_one_phase_as_before() -> None:
    (train,) = resolve(parse({"epochs": "7"}), pretrained=False, new_head=True, incremental=False).phases
    assert (train.name, train.epochs, train.schedule, train.augmentation) == ("train", 7, "constant", NONE)
    assert resolve(parse({}), pretrained=False, new_head=True, incremental=False).phases[0].epochs == 3
    assert train.backbone_learning_rate is None and not train.frozen_backbone


def test_float16_fine_tunes_with_one_optimizer_at_the_backbone_rate() -> None:
    (_, tune) = resolve(parse({"precision_dtype": "float16"}), **TRANSFER).phases
    assert tune.backbone_learning_rate is None and tune.learning_rate == pytest.approx(0.0001)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr_schedule": "step"}, "lr_schedule=step needs lr_scheduler_step"),
        ({"lr_scheduler_step": "5", "epochs": "3"}, "has steps beyond epochs=3"),
        ({"lr_schedule": "cosine", "lr_scheduler_step": "2", "epochs": "3"}, "use lr_schedule=step or omit it"),
        ({"head_epochs": "-1"}, r"head_epochs=-1 is out of range: must be auto, or >= 0"),
        ({"export_epoch": "first"}, "must be one of auto, best, last"),
        ({"augmentation": "sometimes"}, "augmentation: expected true or false"),
    ],
)
def test_recipe_hyperparameters_refuse_bad_values(values: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidHyperparameter, match=message):
        parse(values)


def test_auto_is_accepted_where_the_recipe_decides() -> None:
    hp = parse({"head_epochs": "auto", "augmentation": "AUTO", "export_epoch": "auto"})
    assert hp.head_epochs is None and hp.augmentation is None and hp.export_epoch is None


def test_scheduler_steps_beyond_the_recipe_s_epochs_are_refused() -> None:
    with pytest.raises(InvalidHyperparameter, match=r"steps beyond the recipe's 5 epochs \(epochs=auto\)"):
        resolve(parse({"lr_scheduler_step": "2,6"}), **TRANSFER)
    assert resolve(parse({"lr_scheduler_step": "2,4"}), **TRANSFER).phases[1].schedule == "step"


def test_head_epochs_where_there_is_no_head_warm_up_is_refused() -> None:
    with pytest.raises(InvalidHyperparameter, match="train_only_top_layer=true trains only the head: use epochs"):
        resolve(parse({"train_only_top_layer": "true", "head_epochs": "4"}), **TRANSFER)
    with pytest.raises(InvalidHyperparameter, match="no pretrained backbone"):
        resolve(parse({"head_epochs": "4"}), pretrained=False, new_head=True, incremental=False)


def test_augmentation_type_sets_mxnets_levels_and_max_random_names_override_them() -> None:
    from trainer_svc.training.recipe import CROP_MARGIN_SCALE, MXNetAugmentation

    def mxnet(values: dict[str, str]) -> MXNetAugmentation:
        return resolve(parse(values), pretrained=False, new_head=True, incremental=False).phases[0].augmentation.mxnet

    crop = mxnet({"augmentation_type": "crop"})
    assert crop.random_crop and crop.random_mirror and crop.max_scale == pytest.approx(CROP_MARGIN_SCALE)
    assert not crop.colours and crop.max_rotate_angle == 0
    colour = mxnet({"augmentation_type": "crop_color"})
    assert (colour.random_h, colour.random_s, colour.random_l) == (36, 50, 50) and colour.max_shear_ratio == 0
    transform = mxnet({"augmentation_type": "crop_color_transform"})
    assert (transform.max_rotate_angle, transform.max_shear_ratio, transform.max_aspect_ratio) == (10, 0.1, 0.25)
    overridden = mxnet({"augmentation_type": "crop_color_transform", "max_random_h": "0", "max_random_scale": "1.5"})
    assert overridden.random_h == 0 and overridden.random_s == 50 and overridden.max_scale == 1.5
    # Alone, a max_random_* name augments (without a random crop or mirror, as MXNet without rand_crop).
    alone = mxnet({"max_random_rotate_angle": "15"})
    assert alone == MXNetAugmentation(max_rotate_angle=15)
    (frozen,) = resolve(parse({"train_only_top_layer": "true", "max_random_l": "20"}), **TRANSFER).phases
    assert frozen.augmentation.mxnet.random_l == 20 and not frozen.cache_features
    assert resolve(parse({}), **TRANSFER).phases[1].augmentation.mxnet == MXNetAugmentation()
