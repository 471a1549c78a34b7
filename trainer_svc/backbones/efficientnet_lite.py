"""EfficientNet-Lite0 in tf_keras, laid out to take Google's ImageNet weights.

The Lite variants (Google's ``efficientnet/lite/efficientnet_lite_builder.py``) differ from
EfficientNet-B0 in three ways: no squeeze-and-excitation, ReLU6 instead of swish, and a stem (32
filters) and head (1280) that are never scaled. Everything else follows the TF reference, which the
PyTorch port ``efficientnet-lite-pytorch`` mirrors:

* batch norm with momentum 0.99 and epsilon 1e-3;
* TF "SAME" padding: total padding ``max((ceil(i/s) - 1)·s + k - i, 0)``, the smaller half before,
  which is exactly what Keras ``padding="same"`` does (the PyTorch port precomputes the same pads
  for a 224×224 input);
* stochastic depth (drop connect) on the residual branches, rate 0.2 scaled by block index over
  the number of blocks, and dropout 0.2 before the classifier; both are inactive at inference.

Layer names map one to one onto the PyTorch state-dict prefixes (:data:`TORCH_PREFIXES`), which is
what :mod:`trainer_svc.backbones.efficientnet_lite_weights` relies on. This module is the architecture
only and imports neither the weights conversion nor the backbone built from both
(:mod:`trainer_svc.backbones.efficientnet_lite_backbone`), so the three import in one direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf
import tf_keras as keras
from tf_keras import layers

from tfic.modeldir import Preprocessing

NAME = "efficientnet_lite0"
INPUT_SIZE = (224, 224)
FEATURE_DIM = 1280
NUM_CLASSES = 1000
# The TF EfficientNet-Lite checkpoints were trained on (x - 127) / 128 of 0..255 RGB
# (efficientnet/lite/efficientnet_lite_builder.py: MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3).
PREPROCESSING = Preprocessing(scale=1.0 / 128.0, offset=-127.0 / 128.0, interpolation="bilinear")

BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
STEM_FILTERS = 32
HEAD_FILTERS = 1280
DROPOUT_RATE = 0.2
DROP_CONNECT_RATE = 0.2


@dataclass(frozen=True)
class Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


# efficientnet_lite_builder.py, width and depth coefficients 1.0 for Lite0.
STAGES: tuple[Stage, ...] = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)
NUM_BLOCKS = sum(stage.repeats for stage in STAGES)


def _torch_prefixes() -> dict[str, str]:
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head", "head_bn": "_bn1"}
    for i in range(NUM_BLOCKS):
        names[f"block{i}_expand_conv"] = f"_blocks.{i}._expand_conv"
        names[f"block{i}_expand_bn"] = f"_blocks.{i}._bn0"
        names[f"block{i}_dwconv"] = f"_blocks.{i}._depthwise_conv"
        names[f"block{i}_dwconv_bn"] = f"_blocks.{i}._bn1"
        names[f"block{i}_project_conv"] = f"_blocks.{i}._project_conv"
        names[f"block{i}_project_bn"] = f"_blocks.{i}._bn2"
    names["predictions"] = "_fc"
    return names


# Keras layer name → PyTorch state-dict prefix (block 0 has no expansion layers).
TORCH_PREFIXES: dict[str, str] = _torch_prefixes()


def _bn(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def _relu6(name: str) -> layers.ReLU:
    return layers.ReLU(max_value=6.0, name=name)


def _mbconv(x: tf.Tensor, *, index: int, stage: Stage, filters_in: int, stride: int, drop_rate: float) -> tf.Tensor:
    """Mobile inverted bottleneck without squeeze-excite: expand 1×1, depthwise k×k, project 1×1."""
    prefix = f"block{index}_"
    inputs = x
    expanded = filters_in * stage.expand
    if stage.expand != 1:
        x = layers.Conv2D(expanded, 1, padding="same", use_bias=False, name=prefix + "expand_conv")(x)
        x = _bn(prefix + "expand_bn")(x)
        x = _relu6(prefix + "expand_relu")(x)
    x = layers.DepthwiseConv2D(stage.kernel, strides=stride, padding="same", use_bias=False, name=prefix + "dwconv")(x)
    x = _bn(prefix + "dwconv_bn")(x)
    x = _relu6(prefix + "dwconv_relu")(x)
    x = layers.Conv2D(stage.filters_out, 1, padding="same", use_bias=False, name=prefix + "project_conv")(x)
    x = _bn(prefix + "project_bn")(x)
    if stride == 1 and filters_in == stage.filters_out:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=prefix + "drop")(x)
        x = layers.Add(name=prefix + "add")([x, inputs])
    return x


def build_model(
    input_shape: tuple[int, int, int] = (*INPUT_SIZE, 3),
    *,
    include_top: bool = False,
    dropout_rate: float = DROPOUT_RATE,
    drop_connect_rate: float = DROP_CONNECT_RATE,
    classifier_activation: str | None = None,
    name: str = NAME,
) -> keras.Model:
    """EfficientNet-Lite0 with random weights.

    Input: float32 ``[N, H, W, 3]`` already scaled per :data:`PREPROCESSING`. Output: pooled
    features ``[N, 1280]``, or with ``include_top`` the 1000 ImageNet logits (or probabilities with
    ``classifier_activation="softmax"``).
    """
    inputs = keras.Input(shape=input_shape, name="images")
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _bn("stem_bn")(x)
    x = _relu6("stem_relu")(x)
    index = 0
    for stage in STAGES:
        for repeat in range(stage.repeats):
            filters_in = stage.filters_in if repeat == 0 else stage.filters_out
            stride = stage.stride if repeat == 0 else 1
            drop = drop_connect_rate * index / NUM_BLOCKS
            x = _mbconv(x, index=index, stage=stage, filters_in=filters_in, stride=stride, drop_rate=drop)
            index += 1
    x = layers.Conv2D(HEAD_FILTERS, 1, padding="same", use_bias=False, name="head_conv")(x)
    x = _bn("head_bn")(x)
    x = _relu6("head_relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        x = layers.Dense(NUM_CLASSES, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def features_model(classifier: keras.Model, name: str = NAME) -> keras.Model:
    """The feature extractor inside a classifier built by :func:`build_model` (shares its layers)."""
    return keras.Model(classifier.inputs, classifier.get_layer("avg_pool").output, name=name)
