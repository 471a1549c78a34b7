"""EfficientNet-Lite0 as a :class:`~trainer_svc.backbones.base.Backbone`: the architecture
(:mod:`~trainer_svc.backbones.efficientnet_lite`) with weights chosen by name or file, the ImageNet ones
converted and cached by :mod:`~trainer_svc.backbones.efficientnet_lite_weights`.
"""

from __future__ import annotations

from pathlib import Path

import tf_keras as keras

from tfic.errors import InvalidArgument
from trainer_svc.backbones import efficientnet_lite_weights
from trainer_svc.backbones.base import WEIGHTS_IMAGENET, WEIGHTS_RANDOM, Backbone, parse_weights
from trainer_svc.backbones.efficientnet_lite import (
    FEATURE_DIM,
    INPUT_SIZE,
    NAME,
    PREPROCESSING,
    build_model,
    features_model,
)
from trainer_svc.backbones.imagenet import imagenet_labels

_TORCH_SUFFIXES = (".pth", ".pt", ".bin")


def backbone(weights: str | None = None, *, cache_dir: Path | None = None) -> Backbone:
    """EfficientNet-Lite0 as a :class:`Backbone`.

    ``weights``: ``None`` or ``"imagenet"`` for the packaged ImageNet weights (offline, converted
    once into the cache), ``"random"``, a PyTorch EfficientNet-Lite0 state dict (``.pth``/``.pt``/
    ``.bin``, converted and cached like the packaged one) or a Keras weights file of the classifier
    graph (as the cache holds).
    """
    spec = parse_weights(weights)
    source: Path | None = None
    keras_file: Path | None = None
    if spec is None or spec == WEIGHTS_IMAGENET:
        source = efficientnet_lite_weights.packaged_checkpoint()  # fails now, not at build time, when it is missing
        label = WEIGHTS_IMAGENET
    elif spec == WEIGHTS_RANDOM:
        label = WEIGHTS_RANDOM
    else:
        path = Path(spec)
        if path.suffix.lower() in _TORCH_SUFFIXES:
            source = path
        else:
            keras_file = path
        label = str(path)
    pretrained = label != WEIGHTS_RANDOM

    def build_classifier(input_shape: tuple[int, int, int]) -> keras.Model:
        model = build_model(input_shape, include_top=True)
        if source is not None:
            efficientnet_lite_weights.load_pretrained(model, source=source, cache_dir=cache_dir)
        elif keras_file is not None:
            try:
                model.load_weights(str(keras_file))
            except (OSError, ValueError) as exc:
                raise InvalidArgument(
                    f"{keras_file} is not a Keras weights file of EfficientNet-Lite0 with its 1000-class top: {exc}"
                ) from exc
        return model

    def build(input_shape: tuple[int, int, int]) -> keras.Model:
        return features_model(build_classifier(input_shape))

    return Backbone(
        name=NAME,
        input_size=INPUT_SIZE,
        preprocessing=PREPROCESSING,
        feature_dim=FEATURE_DIM,
        pretrained=pretrained,
        builder=build,
        description="EfficientNet-Lite0 (no SE, ReLU6), ImageNet-1k top-1 75.1%",
        weights=label,
        classifier_builder=build_classifier if pretrained else None,
        class_names=imagenet_labels() if pretrained else (),
    )
