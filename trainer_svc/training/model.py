"""The classifier every tfic model is: preprocessing → feature extractor → dropout → dense softmax (or sigmoids).

Inputs are float32 RGB pixels in 0..255 at the model's image size, so the preprocessing a
backbone needs (scale, offset, mean/std) lives inside the graph and travels with the export.
Layer names are part of the contract incremental training relies on: ``preprocess``,
``features``, ``head_dropout``, ``head``, ``probabilities``.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras
from tf_keras import layers

from tfic.modeldir import Preprocessing


@keras.utils.register_keras_serializable(package="tfic")
class Preprocess(layers.Layer):  # type: ignore[misc]
    """``(x * scale + offset - mean) / std`` per channel, computed in float32."""

    def __init__(
        self,
        scale: float = 1.0 / 255.0,
        offset: float = 0.0,
        mean: tuple[float, ...] = (0.0, 0.0, 0.0),
        std: tuple[float, ...] = (1.0, 1.0, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.offset = float(offset)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        x = tf.cast(inputs, tf.float32) * self.scale + self.offset
        x = (x - tf.constant(self.mean, tf.float32)) / tf.constant(self.std, tf.float32)
        return tf.cast(x, self.compute_dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset, "mean": self.mean, "std": self.std}


class TficClassifier(keras.Model):  # type: ignore[misc]  # Keras ships no type information
    """A functional classifier whose backbone may learn more slowly than its head.

    With ``backbone_learning_rate_multiplier`` < 1 (fine-tuning a pretrained network), the
    feature extractor's gradients go to a second optimizer with the scaled learning rate. Scaling
    gradients instead would do nothing for Adam-family optimizers, which are scale invariant.
    """

    backbone_optimizer: keras.optimizers.Optimizer | None = None

    def set_backbone_optimizer(self, optimizer: keras.optimizers.Optimizer | None) -> None:
        self.backbone_optimizer = optimizer

    def _trackable_children(self, save_type: str = "checkpoint", **kwargs: Any) -> dict[str, Any]:
        children: dict[str, Any] = super()._trackable_children(save_type, **kwargs)
        if save_type == "savedmodel":
            # A published version is for serving and for restoring weights; optimizer slots would
            # more than double its size, and restored into a later run they would override that
            # run's own learning rate (deferred restoration), wrecking incremental fine-tuning.
            children.pop("optimizer", None)
            children.pop("backbone_optimizer", None)
        return children

    def train_step(self, data: Any) -> dict[str, Any]:
        if self.backbone_optimizer is None:
            return super().train_step(data)  # type: ignore[no-any-return]
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight)
        variables = self.trainable_variables
        grads = tape.gradient(loss, variables)
        backbone_ids = {id(v) for v in self.get_layer("features").trainable_variables}
        head = [(g, v) for g, v in zip(grads, variables, strict=True) if id(v) not in backbone_ids and g is not None]
        body = [(g, v) for g, v in zip(grads, variables, strict=True) if id(v) in backbone_ids and g is not None]
        self.optimizer.apply_gradients(head)
        if body:
            self.backbone_optimizer.apply_gradients(body)
        return self.compute_metrics(x, y, y_pred, sample_weight)  # type: ignore[no-any-return]


def build_classifier(
    features: keras.Model,
    num_classes: int,
    image_shape: tuple[int, int, int],
    preprocessing: Preprocessing,
    dropout_rate: float,
    regularizers_l2: float,
    seed: int,
    backbone_inference_mode: bool = False,
    output: str = "multi_class",
) -> keras.Model:
    """Wrap a feature extractor with the preprocessing layer and a new classification head.

    ``backbone_inference_mode`` keeps BatchNorm statistics frozen while fine-tuning a
    pretrained network (small batches would otherwise wreck them). ``output``: ``multi_class``
    (softmax over ``num_classes``), ``multi_label`` (a sigmoid per class) or ``binary`` (one
    sigmoid: the probability of class index 1).
    """
    inputs = keras.Input(image_shape, dtype=tf.float32, name="images")
    x = Preprocess(preprocessing.scale, preprocessing.offset, preprocessing.mean, preprocessing.std, name="preprocess")(
        inputs
    )
    features._name = "features"
    x = features(x, training=False) if backbone_inference_mode else features(x)
    x = layers.Dropout(dropout_rate, seed=seed, name="head_dropout")(x)
    logits = layers.Dense(
        1 if output == "binary" else num_classes,
        kernel_regularizer=keras.regularizers.l2(regularizers_l2) if regularizers_l2 > 0 else None,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        name="head",
    )(x)
    # In float32 so mixed-precision training still exports float32 probabilities.
    activation = "softmax" if output == "multi_class" else "sigmoid"
    outputs = layers.Activation(activation, dtype="float32", name="probabilities")(logits)
    return TficClassifier(inputs, outputs, name="tfic_classifier")


def features_of(model: keras.Model) -> keras.Model:
    return model.get_layer("features")


def head_of(model: keras.Model) -> layers.Dense:
    return model.get_layer("head")
