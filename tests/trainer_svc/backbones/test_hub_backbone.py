"""Any SavedModel directory as a backbone: small SavedModels are made here, in the test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfic.errors import InvalidArgument, NotFound
from tfic.modeldir import ModelMetadata, Preprocessing, write_metadata
from trainer_svc.backbones import get_backbone


class FeatureVector(tf.Module):  # type: ignore[misc]  # TensorFlow ships no type information
    """TF Hub's image feature-vector shape: [N, 16, 16, 3] in [0, 1] → [N, 8]."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel = tf.Variable(tf.random.stateless_normal([3, 8], seed=[1, 2]), name="kernel")
        self.bias = tf.Variable(tf.fill([8], 0.5), trainable=False, name="bias")

    @tf.function(input_signature=[tf.TensorSpec([None, 16, 16, 3], tf.float32)])  # type: ignore[untyped-decorator]
    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(tf.tensordot(images, self.kernel, 1), axis=[1, 2]) + self.bias


class WithTraining(tf.Module):  # type: ignore[misc]  # TensorFlow ships no type information
    """A reusable SavedModel: any input size, ``training`` argument, spatial [N, h, w, 4] output."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel = tf.Variable(tf.ones([3, 4]), name="kernel")

    @tf.function  # type: ignore[untyped-decorator]
    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        y = tf.tensordot(images, self.kernel, 1)
        return y * 10.0 if training else y


def _save_feature_vector(path: Path) -> FeatureVector:
    module = FeatureVector()
    tf.saved_model.save(module, str(path))
    return module


@pytest.fixture(scope="module")
def feature_vector_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hub") / "feature_vector"
    _save_feature_vector(path)
    return path


def _images(n: int, size: int, seed: int = 0) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)).astype(np.float32)


def test_feature_vector_savedmodel(feature_vector_dir: Path) -> None:
    backbone = get_backbone(str(feature_vector_dir))
    assert backbone.input_size == (16, 16)  # from the signature
    assert backbone.feature_dim == 8
    assert backbone.preprocessing == Preprocessing(scale=1.0 / 255.0)  # TF Hub: inputs in [0, 1]
    assert backbone.pretrained
    model = backbone.build()
    x = _images(3, 16)
    reference = tf.saved_model.load(str(feature_vector_dir))
    np.testing.assert_allclose(np.asarray(model(x)), reference(tf.constant(x)).numpy(), rtol=1e-6)
    layer = model.get_layer("saved_model")
    assert layer.trainable
    assert [w.shape for w in layer.trainable_weights] == [(3, 8)]
    assert [w.shape for w in layer.non_trainable_weights] == [(8,)]
    with pytest.raises(InvalidArgument, match="16x16"):
        backbone.build((32, 32, 3))


def test_fine_tuning_updates_the_savedmodel_variables_and_exports(feature_vector_dir: Path, tmp_path: Path) -> None:
    backbone = get_backbone(str(feature_vector_dir))
    features = backbone.build()
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Dense(2, activation="softmax")(features(inputs))
    model = keras.Model(inputs, outputs)
    layer = features.get_layer("saved_model")
    before = [w.numpy().copy() for w in layer.weights]
    x, y = _images(8, 16, seed=1), np.arange(8) % 2
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    keras.optimizers.SGD(0.5).apply_gradients(zip(grads, model.trainable_variables, strict=True))
    after = [w.numpy() for w in layer.weights]
    assert not np.allclose(before[0], after[0])  # trainable kernel moved
    np.testing.assert_array_equal(before[1], after[1])  # non-trainable bias did not

    # The trained model exports as a SavedModel carrying the wrapped one along.
    serve = tf.function(lambda images: model(images, training=False))
    concrete = serve.get_concrete_function(tf.TensorSpec([None, 16, 16, 3], tf.float32))
    export = tmp_path / "export"
    tf.saved_model.save(model, str(export), signatures={"serving_default": concrete})
    reloaded = tf.saved_model.load(str(export))
    got = reloaded.signatures["serving_default"](tf.constant(x))
    np.testing.assert_allclose(next(iter(got.values())).numpy(), np.asarray(model(x)), rtol=1e-5, atol=1e-6)


def test_training_argument_and_spatial_output(tmp_path: Path) -> None:
    path = tmp_path / "with_training"
    module = WithTraining()
    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    module.__call__.get_concrete_function(spec, training=True)
    module.__call__.get_concrete_function(spec, training=False)
    tf.saved_model.save(module, str(path))
    backbone = get_backbone(str(path))
    assert backbone.input_size == (224, 224)  # any size: the TF Hub default
    assert backbone.feature_dim == 4
    model = backbone.build((8, 8, 3))
    x = _images(2, 8)
    inference = np.asarray(model(x, training=False))
    np.testing.assert_allclose(inference, np.repeat(x.sum(-1).mean((1, 2))[:, None], 4, 1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(model(x, training=True)), 10 * inference, rtol=1e-5)
    layer = model.get_layer("saved_model")
    layer.trainable = False  # frozen: training=True runs the inference path
    np.testing.assert_allclose(np.asarray(model(x, training=True)), inference, rtol=1e-5)


def test_signature_only_classifier_with_sidecar(tmp_path: Path) -> None:
    """A classification model exported with a signature only; its scores are the features."""
    path = tmp_path / "classifier"
    module = tf.Module()
    module.kernel = tf.Variable(tf.ones([3, 5]))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="pixels")])  # type: ignore[untyped-decorator]
    def classify(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = tf.reduce_mean(tf.tensordot(pixels, module.kernel, 1), axis=[1, 2])
        return {"logits": logits, "probabilities": tf.nn.softmax(logits), "label": tf.argmax(logits, -1)}

    tf.saved_model.save(module, str(path), signatures={"serving_default": classify})
    default = get_backbone(str(path))  # two float outputs: "logits" is preferred
    x = _images(2, 6)
    np.testing.assert_allclose(
        np.asarray(default.build((6, 6, 3))(x)), np.repeat(x.sum(-1).mean((1, 2))[:, None], 5, 1), rtol=1e-5
    )
    (path / "tfic_backbone.json").write_text(
        json.dumps(
            {
                "name": "tiny_classifier",
                "input_size": [12, 10],
                "output_key": "probabilities",
                "preprocessing": {"scale": 1 / 127.5, "offset": -1.0},
            }
        )
    )
    backbone = get_backbone(str(path))
    assert (backbone.name, backbone.input_size, backbone.feature_dim) == ("tiny_classifier", (12, 10), 5)
    assert backbone.preprocessing.offset == -1.0
    model = backbone.build()
    assert model.input_shape == (None, 12, 10, 3)
    np.testing.assert_allclose(np.asarray(model(np.zeros((1, 12, 10, 3), np.float32))), np.full((1, 5), 0.2))
    (path / "tfic_backbone.json").write_text(json.dumps({"output_key": "nope"}))
    with pytest.raises(InvalidArgument, match="no output 'nope'"):
        get_backbone(str(path))


def test_tfic_export_is_used_through_predict_images(tmp_path: Path) -> None:
    path = tmp_path / "tfic_model"
    module = tf.Module()
    module.kernel = tf.Variable(tf.ones([3, 2]) / 255.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])  # type: ignore[untyped-decorator]
    def serve_bytes(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probabilities": tf.zeros([tf.size(image_bytes), 2])}

    @tf.function(input_signature=[tf.TensorSpec([None, 20, 20, 3], tf.float32, name="images")])  # type: ignore[untyped-decorator]
    def predict_images(images: tf.Tensor) -> dict[str, tf.Tensor]:
        probs = tf.nn.softmax(tf.reduce_mean(tf.tensordot(images, module.kernel, 1), axis=[1, 2]))
        return {"probabilities": probs, "classes": tf.fill(tf.shape(probs), "x")}

    tf.saved_model.save(
        module, str(path), signatures={"serving_default": serve_bytes, "predict_images": predict_images}
    )
    write_metadata(path, ModelMetadata(labels=("a", "b"), image_shape=(20, 20, 3)))
    backbone = get_backbone(str(path))
    assert (backbone.input_size, backbone.feature_dim) == ((20, 20), 2)
    assert backbone.preprocessing == Preprocessing(scale=1.0, offset=0.0)  # it takes 0..255 pixels
    out = np.asarray(backbone.build()(np.full((1, 20, 20, 3), 255.0, np.float32)))
    np.testing.assert_allclose(out, [[0.5, 0.5]], rtol=1e-6)


def test_bad_paths(tmp_path: Path, feature_vector_dir: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        get_backbone(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgument, match="not a SavedModel"):
        get_backbone(str(tmp_path / "empty"))
    with pytest.raises(InvalidArgument, match="carries its own"):
        get_backbone(str(feature_vector_dir), weights="imagenet")


def test_layer_requires_an_image_function(tmp_path: Path) -> None:
    path = tmp_path / "text"
    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])  # type: ignore[untyped-decorator]
    def length(text: tf.Tensor) -> tf.Tensor:
        return tf.strings.length(text)

    tf.saved_model.save(module, str(path), signatures={"serving_default": length})
    with pytest.raises(InvalidArgument, match=r"float32 images \[N, H, W, 3\]"):
        get_backbone(str(path))
