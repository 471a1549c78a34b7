"""Publish a pretrained backbone's own ImageNet classifier as a tfic model version, unchanged.

So the pretrained network can be deployed as is (e.g. to check a serving set-up before any
training): preprocessing, the 1000-class head and a float32 softmax inside the graph, ImageNet
class names as labels.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
import tf_keras as keras

from tfic.modeldir import ModelMetadata, Preprocessing
from trainer_svc.backbones.registry import get_backbone
from trainer_svc.training.export import export_version
from trainer_svc.training.model import Preprocess


def export_pretrained(name: str, model_base_path: str | Path, model_name: str) -> tuple[int, Path]:
    backbone = get_backbone(name)
    shape = backbone.image_shape
    pre = backbone.preprocessing
    inputs = keras.Input(shape, dtype=tf.float32, name="images")
    x = Preprocess(pre.scale, pre.offset, pre.mean, pre.std, name="preprocess")(inputs)
    logits = backbone.build_classifier(shape)(x, training=False)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    model = keras.Model(inputs, outputs, name=f"{backbone.name}_imagenet")
    meta = ModelMetadata(
        labels=backbone.class_names,
        image_shape=shape,
        preprocessing=Preprocessing(pre.scale, pre.offset, pre.mean, pre.std, pre.interpolation, pre.resize_mode),
        architecture=f"pretrained:{backbone.name}",
        hyperparameters={},
        metrics={},
    )
    return export_version(model_base_path, model_name, model, meta)
