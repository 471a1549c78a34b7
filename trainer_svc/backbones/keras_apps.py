"""Backbones from ``tf_keras.applications`` (``include_top=False, pooling="avg"``).

Each declares the preprocessing its ``preprocess_input`` does, in :class:`Preprocessing` terms:

* MobileNetV2: ``x / 127.5 - 1``.
* MobileNetV3: the same, which tf_keras puts *inside* the model as a ``Rescaling`` layer; it is
  built with ``include_preprocessing=False`` so the scaling lives in one place, ours.
* EfficientNetB0–B3: ``preprocess_input`` is a pass-through; the model holds ``Rescaling(1/255)``
  and ImageNet mean/std normalisation itself, so the declared preprocessing is the identity.
  tf_keras only applies the std correction when ``weights="imagenet"``; with a weights file the
  normalisation statistics are set here to ImageNet's mean and variance (std²) so both agree.
* ResNet50 ("caffe" mode): RGB→BGR, then minus the ImageNet mean in BGR order, no scaling. The
  declared preprocessing subtracts the mean in RGB order; the model built here flips the channels
  first, which gives exactly ``preprocess_input``.

``weights``: ``None``/``"random"`` for random initialisation, a local weights file (the
``*_notop.h5`` files Keras publishes, or any ``save_weights`` file of the same architecture), or
``"imagenet"``, which downloads through ``keras.utils.get_file`` (cached in ``~/.keras/models``)
and fails with :class:`WeightsUnavailable` when there is no network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tf_keras as keras

from tfic.errors import InvalidArgument
from tfic.modeldir import Preprocessing
from trainer_svc.backbones.base import (
    WEIGHTS_IMAGENET,
    WEIGHTS_RANDOM,
    Backbone,
    WeightsUnavailable,
    parse_weights,
)

_MINUS_ONE_TO_ONE = Preprocessing(scale=1.0 / 127.5, offset=-1.0)
_IDENTITY = Preprocessing(scale=1.0, offset=0.0)
_CAFFE_RGB = Preprocessing(scale=1.0, offset=0.0, mean=(123.68, 116.779, 103.939))
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AppSpec:
    name: str
    constructor: str  # attribute of tf_keras.applications
    input_size: int
    feature_dim: int
    preprocessing: Preprocessing
    kwargs: dict[str, Any] = field(default_factory=dict)
    bgr: bool = False  # flip RGB→BGR inside the model (caffe-style weights)
    efficientnet_normalization: bool = False  # fix up tf_keras EfficientNet's built-in normalisation


SPECS: dict[str, AppSpec] = {
    spec.name: spec
    for spec in (
        AppSpec("mobilenet_v2", "MobileNetV2", 224, 1280, _MINUS_ONE_TO_ONE),
        AppSpec(
            "mobilenet_v3_small", "MobileNetV3Small", 224, 576, _MINUS_ONE_TO_ONE, {"include_preprocessing": False}
        ),
        AppSpec(
            "mobilenet_v3_large", "MobileNetV3Large", 224, 960, _MINUS_ONE_TO_ONE, {"include_preprocessing": False}
        ),
        AppSpec("efficientnet_b0", "EfficientNetB0", 224, 1280, _IDENTITY, efficientnet_normalization=True),
        AppSpec("efficientnet_b1", "EfficientNetB1", 240, 1280, _IDENTITY, efficientnet_normalization=True),
        AppSpec("efficientnet_b2", "EfficientNetB2", 260, 1408, _IDENTITY, efficientnet_normalization=True),
        AppSpec("efficientnet_b3", "EfficientNetB3", 300, 1536, _IDENTITY, efficientnet_normalization=True),
        AppSpec("resnet50", "ResNet50", 224, 2048, _CAFFE_RGB, bgr=True),
    )
}


def _set_efficientnet_normalization(model: keras.Model) -> None:
    """Make the built-in Normalization layer compute ``(x/255 - mean) / std`` (see the module docstring)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            values = layer.get_weights()  # mean, variance, count
            mean = np.asarray(IMAGENET_MEAN_RGB, dtype=np.float32).reshape(values[0].shape)
            variance = np.square(np.asarray(IMAGENET_STD_RGB, dtype=np.float32)).reshape(values[1].shape)
            layer.set_weights([mean, variance, *values[2:]])
            return
    raise AssertionError("EfficientNet without a Normalization layer")


def _build(spec: AppSpec, weights: str | Path | None, input_shape: tuple[int, int, int]) -> keras.Model:
    constructor = getattr(keras.applications, spec.constructor)
    keras_weights = None if weights is None else str(weights)
    try:
        app = constructor(
            include_top=False, pooling="avg", weights=keras_weights, input_shape=input_shape, **spec.kwargs
        )
    except ValueError as exc:
        if isinstance(weights, Path):
            raise InvalidArgument(f"weights file {weights} does not fit {spec.constructor}: {exc}") from exc
        raise InvalidArgument(f"{spec.name} cannot be built for input shape {input_shape}: {exc}") from exc
    except Exception as exc:
        if weights == WEIGHTS_IMAGENET:
            raise WeightsUnavailable(
                f"could not fetch the ImageNet weights of {spec.name} ({type(exc).__name__}: {exc}); without network "
                f"access, put Keras' {spec.constructor} *_notop.h5 file on disk and pass weights=/path/to/file.h5, "
                "or use efficientnet_lite0, whose ImageNet weights are installed with tfic"
            ) from exc
        raise
    if spec.efficientnet_normalization and isinstance(weights, Path):
        _set_efficientnet_normalization(app)
    if not spec.bgr:
        return app
    inputs = keras.Input(shape=input_shape, name="images")
    return keras.Model(inputs, app(rgb_to_bgr()(inputs)), name=spec.name)


def rgb_to_bgr() -> keras.layers.Layer:
    """Channel reversal as a fixed 1×1 convolution (exact: one weight of 1 per output channel)
    rather than a Lambda, so models save and reload with plain Keras layers."""
    flip = keras.layers.Conv2D(3, 1, use_bias=False, trainable=False, name="rgb_to_bgr")
    flip.build((None, None, None, 3))
    flip.set_weights([np.eye(3, dtype=np.float32)[::-1].reshape(1, 1, 3, 3)])
    return flip


def backbone(name: str, weights: str | None = None) -> Backbone:
    spec = SPECS[name]
    parsed = parse_weights(weights)
    resolved: str | Path | None = None if parsed in (None, WEIGHTS_RANDOM) else parsed

    def build(input_shape: tuple[int, int, int]) -> keras.Model:
        return _build(spec, resolved, input_shape)

    return Backbone(
        name=spec.name,
        input_size=(spec.input_size, spec.input_size),
        preprocessing=spec.preprocessing,
        feature_dim=spec.feature_dim,
        pretrained=resolved is not None,
        builder=build,
        description=f"tf_keras.applications.{spec.constructor}",
        weights=WEIGHTS_RANDOM if resolved is None else str(resolved),
    )
