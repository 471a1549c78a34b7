"""The training recipe: the phases a run goes through, with their learning rates, schedule and augmentation.

Hyperparameters keep SageMaker's names and meaning; what SageMaker leaves to the user (how to fine-tune
a pretrained network without wrecking it) is decided here, once, from the hyperparameters and the model
plan, and recorded in the run's ``recipe`` event so a user sees exactly what ran.

``recipe=tfic`` (the default), when a new head is trained on a pretrained backbone:

1. ``head``: ``head_epochs`` (10) epochs train only the head on the frozen backbone, at
   ``learning_rate``, without augmentation: the backbone's features are computed once and the head
   trains on them (:mod:`trainer_svc.training.feature_cache`), so these epochs cost almost nothing.
2. ``fine_tune``: ``epochs`` (5) epochs train the whole network, BatchNorm kept in inference mode, the
   head at ``learning_rate`` and the backbone at ``learning_rate × backbone_learning_rate_multiplier``
   (0.1), both with cosine decay to zero, light augmentation (horizontal flip, ±10 % zoom).

Every epoch's validation accuracy is a candidate, and the best one is published (``export_epoch=best``).
Incremental training that keeps the base version's head skips the head phase and counts the base
version itself as epoch 0, so the published version is never worse on validation than its base.

``recipe=sagemaker`` is SageMaker's literal behaviour: one phase over the whole network at
``learning_rate``, constant (or MXNet's step schedule), no augmentation unless asked, last epoch published.
Any hyperparameter given explicitly wins over either recipe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tfic.errors import InvalidHyperparameter
from trainer_svc.training.hyperparameters import Hyperparameters, check_scheduler_steps

TFIC_HEAD_EPOCHS = 10
TFIC_FINE_TUNE_EPOCHS = 5
TFIC_FROZEN_EPOCHS = 10  # cheap: the head trains on cached features
SAGEMAKER_EPOCHS = 3
TFIC_BACKBONE_LR_MULTIPLIER = 0.1


# The margin MXNet's random crop has in its usual set-up (images resized to 256, crops of 224): tfic resizes
# whole images to image_shape, so augmentation_type=crop first scales by up to this much to have a margin.
CROP_MARGIN_SCALE = 256 / 224


@dataclass(frozen=True)
class MXNetAugmentation:
    """MXNet's ImageRecordIter augmenter (``src/io/image_aug_default.cc``), as SageMaker's MXNet algorithm sets it.

    One affine warp (rotation, shear, aspect ratio, scale about the centre) of the image at the model's size,
    a crop back to that size (random with ``random_crop``, else centred; padded with MXNet's white fill when
    the image was scaled below 1), a random horizontal mirror, then one random shift of hue, lightness and
    saturation per image in OpenCV's 8-bit HLS units. ``augmentation_type`` sets MXNet's levels
    (``crop``: random crop and mirror; ``crop_color``: + HSL ±36/±50/±50; ``crop_color_transform``: + rotation
    ≤ 10°, shear ≤ 0.1, aspect ±0.25); each ``max_random_*`` given overrides its level.
    """

    random_crop: bool = False
    random_mirror: bool = False
    max_rotate_angle: int = 0  # degrees
    max_shear_ratio: float = 0.0
    max_aspect_ratio: float = 0.0
    min_scale: float = 1.0
    max_scale: float = 1.0
    random_h: int = 0  # OpenCV's hue units (half degrees: 0..180)
    random_s: int = 0  # 0..255
    random_l: int = 0  # 0..255

    @property
    def warps(self) -> bool:
        return (
            self.max_rotate_angle > 0
            or self.max_shear_ratio > 0
            or self.max_aspect_ratio > 0
            or self.min_scale != 1.0
            or self.max_scale != 1.0
        )

    @property
    def colours(self) -> bool:
        return self.random_h > 0 or self.random_s > 0 or self.random_l > 0

    @property
    def changes_pixels(self) -> bool:
        return self.warps or self.colours or self.random_mirror


@dataclass(frozen=True)
class Augmentation:
    """Random transforms applied to training batches (pixels 0..255)."""

    flip: str = "none"  # none, horizontal, vertical, horizontal_and_vertical
    rotation: float = 0.0  # fraction of 2π
    zoom: float = 0.0  # fraction
    mxnet: MXNetAugmentation = MXNetAugmentation()

    @property
    def changes_pixels(self) -> bool:
        return self.flip != "none" or self.rotation > 0 or self.zoom > 0 or self.mxnet.changes_pixels


NONE = Augmentation()
# Light enough not to move photos off their class (no vertical flip, no rotation), strong enough to
# regularise a fine-tune on a few thousand images.
LIGHT = Augmentation(flip="horizontal", zoom=0.1)


@dataclass(frozen=True)
class Phase:
    name: str  # "head" (frozen backbone), "fine_tune" (pretrained network), "train" (from random weights)
    epochs: int
    learning_rate: float  # the head's, or the whole network's when backbone_learning_rate is None
    backbone_learning_rate: float | None  # a second optimizer for the backbone; None: one optimizer for all
    schedule: str  # constant, cosine, step
    augmentation: Augmentation
    frozen_backbone: bool
    cache_features: bool
    early_stopping: bool


@dataclass(frozen=True)
class Recipe:
    phases: tuple[Phase, ...]
    export_epoch: str  # best, last
    # Incremental training that keeps the head: the base version is epoch 0, a candidate for "best".
    evaluate_base: bool

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    def first_epoch_of(self, index: int) -> int:
        return sum(p.epochs for p in self.phases[:index])

    def to_dict(self) -> dict[str, Any]:
        return {
            "phases": [asdict(p) for p in self.phases],
            "export_epoch": self.export_epoch,
            "evaluate_base": self.evaluate_base,
        }


def resolve(
    hp: Hyperparameters, *, pretrained: bool, new_head: bool, incremental: bool, can_cache: bool = True
) -> Recipe:
    """The phases of one run.

    ``pretrained``: the feature extractor starts from trained weights (a pretrained backbone or a
    previous tfic version). ``new_head``: the head starts from random weights. ``incremental``: the
    weights come from a previous tfic version. ``can_cache``: feature caching is possible here (it is
    not across several workers).
    """
    tfic = hp.recipe == "tfic"
    export_epoch = hp.export_epoch or ("best" if tfic else "last")
    stepped = "step" if hp.lr_scheduler_step else None
    explicit_aug = _explicit_augmentation(hp)

    def augmentation(auto: Augmentation) -> Augmentation:
        return explicit_aug if explicit_aug is not None else auto

    def epochs(tfic_default: int) -> int:
        value = hp.epochs if hp.epochs is not None else (tfic_default if tfic else SAGEMAKER_EPOCHS)
        check_scheduler_steps(hp, value)
        return value

    if hp.head_epochs and (hp.train_only_top_layer or not pretrained):  # 0 (no warm-up) is true of them anyway
        what = (
            "train_only_top_layer=true trains only the head: use epochs"
            if hp.train_only_top_layer
            else ("there is no pretrained backbone to warm a head up on (full training)")
        )
        raise InvalidHyperparameter(f"head_epochs={hp.head_epochs} does not apply: {what}", name="head_epochs")

    if hp.train_only_top_layer:
        aug = augmentation(NONE)
        head = Phase(
            "head",
            epochs(TFIC_FROZEN_EPOCHS),
            hp.learning_rate,
            None,
            hp.lr_schedule or stepped or "constant",
            aug,
            frozen_backbone=True,
            cache_features=_cacheable(hp, aug, can_cache),
            early_stopping=hp.early_stopping,
        )
        return Recipe((head,), export_epoch, evaluate_base=incremental and not new_head and export_epoch == "best")

    if not pretrained:
        train = Phase(
            "train",
            epochs(SAGEMAKER_EPOCHS),
            hp.learning_rate,
            None,
            hp.lr_schedule or stepped or "constant",
            augmentation(NONE),
            frozen_backbone=False,
            cache_features=False,
            early_stopping=hp.early_stopping,
        )
        return Recipe((train,), export_epoch, evaluate_base=False)

    head_epochs = hp.head_epochs if hp.head_epochs is not None else (TFIC_HEAD_EPOCHS if tfic and new_head else 0)
    multiplier = hp.backbone_learning_rate_multiplier
    lr = hp.learning_rate
    backbone_lr: float | None
    if multiplier is None:
        multiplier = TFIC_BACKBONE_LR_MULTIPLIER if tfic else 1.0
        if hp.precision_dtype == "float16" and multiplier < 1.0:
            # Two optimizers do not combine with float16 loss scaling: one optimizer, at the backbone's rate.
            lr, multiplier = lr * multiplier, 1.0
    backbone_lr = None if multiplier == 1.0 else lr * multiplier
    phases: list[Phase] = []
    if head_epochs > 0:
        # The warm-up only has to bring a random head to where fine-tuning will not wreck the backbone:
        # no augmentation (even when asked for: it applies to the fine-tune), so its epochs run on cached features.
        phases.append(
            Phase(
                "head",
                head_epochs,
                hp.learning_rate,
                None,
                "constant",
                NONE,
                frozen_backbone=True,
                cache_features=_cacheable(hp, NONE, can_cache),
                early_stopping=False,
            )
        )
    phases.append(
        Phase(
            "fine_tune",
            epochs(TFIC_FINE_TUNE_EPOCHS),
            lr,
            backbone_lr,
            hp.lr_schedule or stepped or ("cosine" if tfic else "constant"),
            augmentation(LIGHT if tfic else NONE),
            frozen_backbone=False,
            cache_features=False,
            early_stopping=hp.early_stopping,
        )
    )
    evaluate_base = incremental and not new_head and export_epoch == "best"
    return Recipe(tuple(phases), export_epoch, evaluate_base)


def mxnet_augmentation(hp: Hyperparameters) -> MXNetAugmentation:
    """``augmentation_type``'s level (MXNet's ``set_data_aug_level``), overridden by each ``max_random_*`` given."""
    level = ("none", "crop", "crop_color", "crop_color_transform").index(hp.augmentation_type)
    crop, colour, transform = level >= 1, level >= 2, level >= 3

    def given(value: float | None, default: float) -> float:
        return default if value is None else value

    return MXNetAugmentation(
        random_crop=crop,
        random_mirror=crop,
        max_rotate_angle=int(given(hp.max_random_rotate_angle, 10 if transform else 0)),
        max_shear_ratio=given(hp.max_random_shear_ratio, 0.1 if transform else 0.0),
        max_aspect_ratio=given(hp.max_random_aspect_ratio, 0.25 if transform else 0.0),
        min_scale=given(hp.min_random_scale, 1.0),
        max_scale=given(hp.max_random_scale, max(CROP_MARGIN_SCALE, hp.min_random_scale or 1.0) if crop else 1.0),
        random_h=int(given(hp.max_random_h, 36 if colour else 0)),
        random_s=int(given(hp.max_random_s, 50 if colour else 0)),
        random_l=int(given(hp.max_random_l, 50 if colour else 0)),
    )


def _explicit_augmentation(hp: Hyperparameters) -> Augmentation | None:
    """The augmentation the user asked for (SageMaker's settings), or None for "auto"."""
    mxnet = mxnet_augmentation(hp)
    if hp.augmentation is None and hp.augmentation_type == "none" and not mxnet.changes_pixels:
        return None
    if not hp.augmentation:
        return Augmentation(mxnet=mxnet)
    return Augmentation(
        flip=hp.augmentation_random_flip,
        rotation=hp.augmentation_random_rotation,
        zoom=hp.augmentation_random_zoom,
        mxnet=mxnet,
    )


def _cacheable(hp: Hyperparameters, aug: Augmentation, can_cache: bool) -> bool:
    return hp.cache_backbone_features and can_cache and not aug.changes_pixels
