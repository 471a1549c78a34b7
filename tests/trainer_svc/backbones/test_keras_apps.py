"""Keras Applications backbones: declared preprocessing, feature sizes, weights files, offline errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tf_keras as keras

from tfic.errors import InvalidArgument, NotFound
from tfic.modeldir import Preprocessing
from trainer_svc.backbones import WeightsUnavailable, get_backbone, keras_apps


def _apply(pre: Preprocessing, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """What the trainer's scaling layer computes."""
    mean = np.asarray(pre.mean, np.float32)
    std = np.asarray(pre.std, np.float32)
    return np.asarray((x * pre.scale + pre.offset - mean) / std, np.float32)


@pytest.fixture(scope="module")
def pixels() -> np.ndarray[Any, Any]:
    return np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"])
def test_mobilenet_preprocessing_matches_preprocess_input(name: str, pixels: np.ndarray[Any, Any]) -> None:
    # MobileNetV3's preprocess_input is a pass-through because its model rescales inside; the
    # backbone turns that layer off and declares the same x / 127.5 - 1 as MobileNetV2.
    expected = keras.applications.mobilenet_v2.preprocess_input(pixels.copy())
    np.testing.assert_allclose(_apply(get_backbone(name).preprocessing, pixels), expected, atol=1e-6)


def test_resnet50_preprocessing_with_its_channel_flip_matches_caffe_mode(pixels: np.ndarray[Any, Any]) -> None:
    backbone = get_backbone("resnet50")
    expected = keras.applications.resnet50.preprocess_input(pixels.copy())
    flip = keras_apps.rgb_to_bgr()
    np.testing.assert_array_equal(np.asarray(flip(_apply(backbone.preprocessing, pixels))), expected)
    assert not flip.trainable_weights


def test_efficientnet_declares_identity_because_the_model_normalises(pixels: np.ndarray[Any, Any]) -> None:
    backbone = get_backbone("efficientnet_b2")
    assert backbone.input_size == (260, 260)
    np.testing.assert_array_equal(_apply(backbone.preprocessing, pixels), pixels)


def test_defaults_are_random_weights() -> None:
    backbone = get_backbone("mobilenet_v3_small")
    assert not backbone.pretrained and backbone.weights == "random"
    assert (backbone.input_size, backbone.feature_dim) == ((224, 224), 576)


def test_weights_file_is_loaded_and_efficientnet_normalisation_fixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a weights file, the backbone loads it and sets ImageNet mean/std² in EfficientNet's
    Normalization layer (a tiny stand-in for EfficientNetB0 here; the real one in the slow test)."""

    def tiny_efficientnet(*, weights: str | None, input_shape: tuple[int, int, int], **_: object) -> keras.Model:
        inputs = keras.Input(input_shape)
        x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
        x = keras.layers.Normalization(axis=-1)(x)
        x = keras.layers.Conv2D(4, 3, name="conv")(x)
        model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
        if weights is not None:
            model.load_weights(weights)
        return model

    monkeypatch.setattr(keras.applications, "EfficientNetB0", tiny_efficientnet)
    source = get_backbone("efficientnet_b0").build((8, 8, 3))
    path = tmp_path / "b0_notop.h5"
    source.save_weights(str(path))
    backbone = get_backbone("efficientnet_b0", weights=str(path))
    assert backbone.pretrained and backbone.weights == str(path)
    model = backbone.build((8, 8, 3))
    _check_imagenet_normalisation(model)
    np.testing.assert_array_equal(model.get_layer("conv").get_weights()[0], source.get_layer("conv").get_weights()[0])


def _check_imagenet_normalisation(model: keras.Model) -> None:
    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    mean, variance = norm.get_weights()[:2]
    np.testing.assert_allclose(mean.ravel(), keras_apps.IMAGENET_MEAN_RGB, rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(variance.ravel()), keras_apps.IMAGENET_STD_RGB, rtol=1e-6)


@pytest.mark.slow
def test_weights_file_is_loaded_with_imagenet_normalisation(tmp_path: Path) -> None:
    """tf_keras EfficientNet divides by the ImageNet std only when weights="imagenet"; the backbone
    sets the same normalisation when the weights come from a file."""
    source = get_backbone("efficientnet_b0").build((64, 64, 3))
    path = tmp_path / "b0_notop.h5"
    source.save_weights(str(path))
    backbone = get_backbone("efficientnet_b0", weights=str(path))
    assert backbone.pretrained and backbone.weights == str(path)
    model = backbone.build((64, 64, 3))
    _check_imagenet_normalisation(model)
    # Everything else is the file's: with the same normalisation, the outputs agree.
    keras_apps._set_efficientnet_normalization(source)
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(source(x)), atol=1e-4)
    assert len(backbone.bn_layers(model)) > 10


def test_a_weights_file_of_another_architecture_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(str(path))
    with pytest.raises(InvalidArgument, match="does not fit"):
        get_backbone("mobilenet_v2", weights=str(path)).build((96, 96, 3))


def test_missing_weights_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="not found"):
        get_backbone("resnet50", weights=str(tmp_path / "nope.h5"))
    with pytest.raises(NotFound, match="did you mean 'imagenet'"):
        get_backbone("resnet50", weights="imagnet")


def test_imagenet_without_network_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from tf_keras.src.utils import data_utils

    def offline(*args: object, **kwargs: object) -> str:
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] no network")

    monkeypatch.setattr(data_utils, "get_file", offline)
    backbone = get_backbone("mobilenet_v3_small", weights="imagenet")
    assert backbone.pretrained
    with pytest.raises(WeightsUnavailable, match=r"weights=/path/to/file\.h5") as info:
        backbone.build()
    assert "URL fetch failure" in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(keras_apps.SPECS))
def test_every_declared_feature_dim(name: str) -> None:
    backbone = get_backbone(name)
    model = backbone.build()
    assert model.output_shape == (None, backbone.feature_dim)
    assert model.input_shape == (None, *backbone.input_size, 3)
    if name == "resnet50":
        assert model.layers[1].name == "rgb_to_bgr"
