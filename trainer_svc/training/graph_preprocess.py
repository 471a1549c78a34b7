"""Decode and resize inside the TensorFlow graph: used by the training pipeline and the export.

Antialiased resizing (like Pillow's) followed by rounding to whole pixel values, so that the
inference service's Pillow path, the exported ``serving_default`` signature and training agree.
"""

from __future__ import annotations

import tensorflow as tf

# SageMaker's image_resize_interpolation names → tf.image.ResizeMethod values.
TF_METHODS = {
    "bilinear": "bilinear",
    "nearest": "nearest",
    "bicubic": "bicubic",
    "area": "area",
    "lanczos3": "lanczos3",
    "lanczos5": "lanczos5",
    "gaussian": "gaussian",
    "mitchellcubic": "mitchellcubic",
}


def decode_and_resize(data: tf.Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> tf.Tensor:
    """Encoded bytes (scalar string) → float32 [H, W, 3] with whole values in 0..255."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return resize(image, size, interpolation)


def resize(image: tf.Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> tf.Tensor:
    method = TF_METHODS[interpolation]
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.constant(size)))
    resized = tf.cond(
        same,
        lambda: tf.cast(image, tf.float32),
        lambda: tf.image.resize(tf.cast(image, tf.float32), size, method=method, antialias=method != "nearest"),
    )
    resized = tf.clip_by_value(tf.round(resized), 0.0, 255.0)
    return tf.ensure_shape(resized, [size[0], size[1], 3])
