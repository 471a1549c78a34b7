"""Networks for full training (random initialisation): the ResNet family and a small CNN.

Each builder returns a Keras model from a preprocessed float image to pooled features; the
classification head is added by :mod:`trainer_svc.training.model`.
"""

from __future__ import annotations

import tf_keras as keras
from tf_keras import layers

# ImageNet-style ResNets (He et al. 2015): depth → (block type, blocks per stage).
_IMAGENET: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
# CIFAR-style ResNets (depth = 6n + 2), three stages of 16/32/64 filters, for small images.
_CIFAR = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}

_BN = {"momentum": 0.9, "epsilon": 1e-5}


def _conv(filters: int, kernel: int, strides: int = 1, name: str = "") -> layers.Conv2D:
    return layers.Conv2D(
        filters, kernel, strides=strides, padding="same", use_bias=False, kernel_initializer="he_normal", name=name
    )


def _basic(x: object, filters: int, strides: int, name: str) -> object:
    shortcut = x
    y = _conv(filters, 3, strides, f"{name}_conv1")(x)
    y = layers.BatchNormalization(**_BN, name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(filters, 3, 1, f"{name}_conv2")(y)
    y = layers.BatchNormalization(**_BN, gamma_initializer="zeros", name=f"{name}_bn2")(y)
    if strides != 1 or shortcut.shape[-1] != filters:  # type: ignore[attr-defined]
        shortcut = _conv(filters, 1, strides, f"{name}_proj")(shortcut)
        shortcut = layers.BatchNormalization(**_BN, name=f"{name}_proj_bn")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def _bottleneck(x: object, filters: int, strides: int, name: str) -> object:
    shortcut = x
    y = _conv(filters, 1, 1, f"{name}_conv1")(x)
    y = layers.BatchNormalization(**_BN, name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(filters, 3, strides, f"{name}_conv2")(y)
    y = layers.BatchNormalization(**_BN, name=f"{name}_bn2")(y)
    y = layers.ReLU(name=f"{name}_relu2")(y)
    y = _conv(filters * 4, 1, 1, f"{name}_conv3")(y)
    y = layers.BatchNormalization(**_BN, gamma_initializer="zeros", name=f"{name}_bn3")(y)
    if strides != 1 or shortcut.shape[-1] != filters * 4:  # type: ignore[attr-defined]
        shortcut = _conv(filters * 4, 1, strides, f"{name}_proj")(shortcut)
        shortcut = layers.BatchNormalization(**_BN, name=f"{name}_proj_bn")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def resnet(num_layers: int, input_shape: tuple[int, int, int]) -> keras.Model:
    inputs = keras.Input(input_shape, name="features_input")
    if num_layers in _CIFAR:
        n = _CIFAR[num_layers]
        x = _conv(16, 3, 1, "stem_conv")(inputs)
        x = layers.ReLU(name="stem_relu")(layers.BatchNormalization(**_BN, name="stem_bn")(x))
        for stage, filters in enumerate((16, 32, 64)):
            for block in range(n):
                strides = 2 if stage > 0 and block == 0 else 1
                x = _basic(x, filters, strides, f"stage{stage + 1}_block{block + 1}")
    elif num_layers in _IMAGENET:
        kind, blocks = _IMAGENET[num_layers]
        block_fn = _basic if kind == "basic" else _bottleneck
        x = _conv(64, 7, 2, "stem_conv")(inputs)
        x = layers.ReLU(name="stem_relu")(layers.BatchNormalization(**_BN, name="stem_bn")(x))
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
        for stage, count in enumerate(blocks):
            for block in range(count):
                strides = 2 if stage > 0 and block == 0 else 1
                x = block_fn(x, 64 * 2**stage, strides, f"stage{stage + 1}_block{block + 1}")
    else:
        raise ValueError(f"unsupported ResNet depth {num_layers}")
    outputs = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, outputs, name=f"resnet{num_layers}")


def small_cnn(input_shape: tuple[int, int, int]) -> keras.Model:
    """Four 3×3 conv layers in two pooled stages: quick to train on tiny images (digits, CIFAR)."""
    inputs = keras.Input(input_shape, name="features_input")
    x = inputs
    for stage, filters in enumerate((32, 64)):
        for i in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{stage + 1}_{i + 1}")(x)
            # Faster-moving BN statistics: small datasets have few steps per epoch.
            x = layers.BatchNormalization(momentum=0.9, name=f"bn{stage + 1}_{i + 1}")(x)
            x = layers.ReLU(name=f"relu{stage + 1}_{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{stage + 1}")(x)
    x = layers.Conv2D(128, 3, padding="same", activation="relu", name="conv3")(x)
    outputs = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def default_input_size(model: str, num_layers: int) -> int:
    if model == "small_cnn" or num_layers in _CIFAR:
        return 32
    return 224
