"""EfficientNet-Lite0: the converted ImageNet weights classify real photos like the reference does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from trainer_svc.backbones import efficientnet_lite, efficientnet_lite_weights, get_backbone, torch_legacy
from trainer_svc.backbones.base import Backbone
from trainer_svc.backbones.imagenet import imagenet_class_names, imagenet_labels

skimage_data = pytest.importorskip("skimage.data")


def _prepare(image: np.ndarray[Any, Any], size: tuple[int, int] = (224, 224)) -> np.ndarray[Any, Any]:
    """Bilinear resize to ``size`` and ``(x - 127) / 128``, as the reference outputs were made."""
    resized = tf.image.resize(image[None].astype(np.float32), size, method="bilinear").numpy()
    return np.asarray((resized - 127.0) / 128.0, dtype=np.float32)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private, initially empty weights cache ($TFIC_CACHE_DIR) for this module."""
    path = tmp_path_factory.mktemp("tfic-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(efficientnet_lite_weights.CACHE_ENV, str(path))
        yield path


@pytest.fixture(scope="module")
def backbone(cache_dir: Path) -> Backbone:
    return get_backbone("efficientnet_lite0")


@pytest.fixture(scope="module")
def classifier(backbone: Backbone) -> keras.Model:
    """Converts the packaged PyTorch weights (the cache starts empty) and writes the cache."""
    return backbone.build_classifier()


@pytest.fixture(scope="module")
def odd_model() -> keras.Model:
    """A classifier graph at an odd input size; tests load whatever weights they need into it."""
    return efficientnet_lite.build_model((195, 257, 3), include_top=True)


@pytest.fixture
def no_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(path: object) -> None:
        raise AssertionError("converted again although the cache exists")

    monkeypatch.setattr(torch_legacy, "load_state_dict", fail)


@pytest.fixture(scope="module")
def images() -> np.ndarray[Any, Any]:
    return np.concatenate([_prepare(skimage_data.chelsea()), _prepare(skimage_data.coffee())])


@pytest.fixture(scope="module")
def logits(classifier: keras.Model, images: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.asarray(classifier(images, training=False))


def test_backbone_description(backbone: Backbone) -> None:
    assert backbone.name == "efficientnet_lite0"
    assert backbone.input_size == (224, 224)
    assert backbone.feature_dim == 1280
    assert backbone.pretrained and backbone.weights == "imagenet"
    pre = backbone.preprocessing
    assert (255 * pre.scale + pre.offset, 127 * pre.scale + pre.offset) == (1.0, 0.0)
    assert len(backbone.class_names) == 1000 and backbone.class_names[285] == "Egyptian cat"


def test_chelsea_is_an_egyptian_cat(logits: np.ndarray[Any, Any]) -> None:
    probs = tf.nn.softmax(logits[0]).numpy()
    top5 = list(np.argsort(-probs)[:5])
    assert top5[0] == 285, [imagenet_class_names()[i] for i in top5]
    assert probs[285] == pytest.approx(0.79, abs=0.01)
    assert {282, 281} <= set(top5)


def test_coffee_is_an_espresso(logits: np.ndarray[Any, Any]) -> None:
    probs = tf.nn.softmax(logits[1]).numpy()
    assert int(np.argmax(probs)) == 967
    assert imagenet_class_names()[967] == "espresso"
    assert probs[967] == pytest.approx(0.90, abs=0.02)


def test_features_are_the_classifier_pooled_features(
    backbone: Backbone, classifier: keras.Model, images: np.ndarray[Any, Any]
) -> None:
    features = backbone.build()
    assert features.output_shape == (None, 1280)
    assert not any(layer.name == "predictions" for layer in features.layers)
    got = np.asarray(features(images, training=False))
    # The classifier's head applied to the features gives its logits back.
    dense = classifier.get_layer("predictions")
    np.testing.assert_allclose(np.asarray(dense(got)), np.asarray(classifier(images, training=False)), atol=1e-4)
    assert len(Backbone.bn_layers(features)) == 49


def test_logits_match_the_pytorch_reference(logits: np.ndarray[Any, Any], images: np.ndarray[Any, Any]) -> None:
    torch = pytest.importorskip("torch")
    reference = pytest.importorskip("efficientnet_lite_pytorch")
    model = reference.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(efficientnet_lite_weights.packaged_checkpoint())
    )
    model.eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()
    assert np.abs(expected - logits).max() < 1e-3


def test_padding_matches_the_reference_at_odd_sizes(
    cache_dir: Path, classifier: keras.Model, odd_model: keras.Model, no_conversion: None
) -> None:
    """TF "SAME" padding (smaller half first) must agree with the reference's dynamic padding.

    The model loads the cached weights: no second conversion.
    """
    torch = pytest.importorskip("torch")
    reference = pytest.importorskip("efficientnet_lite_pytorch")
    model = reference.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(efficientnet_lite_weights.packaged_checkpoint()), image_size=None
    )
    model.eval()
    x = _prepare(skimage_data.astronaut(), (195, 257))
    efficientnet_lite_weights.load_pretrained(odd_model)
    with torch.no_grad():
        expected = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    assert np.abs(expected - np.asarray(odd_model(x, training=False))).max() < 1e-3


def test_cache_is_written_once_and_reused(
    cache_dir: Path, classifier: keras.Model, no_conversion: None, capsys: pytest.CaptureFixture[str]
) -> None:
    files = list((cache_dir / "backbones").glob("efficientnet_lite0-*-v1.h5"))
    assert len(files) == 1
    assert not list((cache_dir / "backbones").glob(".tmp-*"))
    assert files[0] == efficientnet_lite_weights.cache_path(efficientnet_lite_weights.packaged_checkpoint(), cache_dir)
    assert files[0].stat().st_mode & 0o777 == 0o644
    stamp = files[0].stat().st_mtime_ns
    # `python -m trainer_svc.backbones.efficientnet_lite_weights`: a no-op now
    assert efficientnet_lite_weights.main([]) == 0
    assert capsys.readouterr().out.strip() == str(files[0])
    assert files[0].stat().st_mtime_ns == stamp


def test_damaged_cache_is_converted_again(tmp_path: Path, classifier: keras.Model, odd_model: keras.Model) -> None:
    path = efficientnet_lite_weights.cache_path(efficientnet_lite_weights.packaged_checkpoint(), tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an hdf5 file")
    assert efficientnet_lite_weights.load_pretrained(odd_model, cache_dir=tmp_path) == path
    for got, want in zip(odd_model.get_weights(), classifier.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    assert path.stat().st_size > 1_000_000


def test_random_weights_have_no_classifier() -> None:
    backbone = get_backbone("EfficientNet-Lite0", weights="random")
    assert not backbone.pretrained and not backbone.has_classifier
    with pytest.raises(Exception, match="no pretrained classifier"):
        backbone.build_classifier()


def test_weights_from_files(cache_dir: Path, classifier: keras.Model) -> None:
    """A PyTorch state dict is converted like the packaged one; a Keras file is loaded as is."""
    torch_file = get_backbone("efficientnet_lite0", weights=str(efficientnet_lite_weights.packaged_checkpoint()))
    cached = efficientnet_lite_weights.cache_path(efficientnet_lite_weights.packaged_checkpoint(), cache_dir)
    keras_file = get_backbone("efficientnet_lite0", weights=str(cached))
    for backbone in (torch_file, keras_file):
        assert backbone.pretrained and backbone.has_classifier and len(backbone.class_names) == 1000
    assert keras_file.weights == str(cached)
    with pytest.raises(ValueError, match="classifier graph"):
        efficientnet_lite_weights.load_pretrained(efficientnet_lite.features_model(classifier))


def test_conversion_rejects_a_mismatched_state_dict(odd_model: keras.Model) -> None:
    model = odd_model
    state = torch_legacy.load_state_dict(efficientnet_lite_weights.packaged_checkpoint())
    state["_blocks.3._depthwise_conv.weight"] = state["_blocks.3._depthwise_conv.weight"][:, :, :3, :3]
    with pytest.raises(torch_legacy.CheckpointError, match="block3_dwconv"):
        efficientnet_lite_weights.assign_state_dict(model, state)
    del state["_fc.bias"]
    state["_blocks.3._depthwise_conv.weight"] = np.zeros((144, 1, 5, 5), np.float32)
    with pytest.raises(torch_legacy.CheckpointError, match=r"_fc\.bias"):
        efficientnet_lite_weights.assign_state_dict(model, state)


def test_imagenet_labels_are_unique() -> None:
    names = imagenet_class_names()
    labels = imagenet_labels()
    assert len(names) == len(labels) == 1000
    assert (names[0], names[281], names[282]) == ("tench, Tinca tinca", "tabby, tabby cat", "tiger cat")
    assert len(set(labels)) == 1000
    assert labels[134] == "crane (134)" and labels[517] == "crane (517)"
