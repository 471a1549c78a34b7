"""The tf.data input pipeline: one path from any DataSource to batches of (pixels, one-hot labels).

Decoding and resizing run tfic's one preprocessing definition (:func:`tfic.imaging.decode_resize`, the
code the inference service and ``tfic predict`` run), so a model sees identical pixels in training,
evaluation and serving; the exported ``serving_default`` signature computes the same pixels in TensorFlow
ops (see :mod:`trainer_svc.training.graph_preprocess`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfic import imaging
from trainer_svc.data.source import DataSource
from trainer_svc.training.hyperparameters import Hyperparameters
from trainer_svc.training.mxnet_augment import MXNetAugmenter
from trainer_svc.training.recipe import NONE as NO_AUGMENTATION
from trainer_svc.training.recipe import Augmentation

AUTOTUNE = tf.data.AUTOTUNE
# Decoded datasets up to this size are cached in memory after the first epoch.
DEFAULT_CACHE_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class InputSpec:
    image_shape: tuple[int, int, int]
    interpolation: str
    num_classes: int
    # multi_class: one-hot targets [C]; multi_label: multi-hot [C]; binary: [1], 1.0 for class index 1.
    output: str = "multi_class"


def label_array(source: DataSource, output: str, num_classes: int) -> np.ndarray:
    """Each sample's target before batching: int32 class indices [N] (one-hot later), or float32 [N, C] / [N, 1]."""
    if output == "multi_class":
        return np.asarray([s.label for s in source.samples], dtype=np.int32)
    if output == "binary":
        return np.asarray([[float(s.label)] for s in source.samples], dtype=np.float32).reshape(-1, 1)
    hot = np.zeros((len(source.samples), num_classes), dtype=np.float32)
    for i, sample in enumerate(source.samples):
        hot[i, list(sample.labels)] = 1.0
    return hot


def targets(labels: tf.Tensor, spec: InputSpec) -> tf.Tensor:
    """A batch of :func:`label_array` rows as the loss expects them."""
    return tf.one_hot(labels, spec.num_classes) if spec.output == "multi_class" else labels


def _encoded(source: DataSource, spec: InputSpec) -> tf.data.Dataset:
    labels = label_array(source, spec.output, spec.num_classes)
    if source.file_backed:
        paths = [s.path for s in source.samples]
        ds = tf.data.Dataset.from_tensor_slices((paths, labels))
        return ds.map(lambda p, y: (tf.io.read_file(p), y), num_parallel_calls=AUTOTUNE)

    def generate() -> Iterator[tuple[bytes, np.ndarray]]:
        for sample, label in zip(source.samples, labels, strict=True):
            yield source.read(sample), label

    return tf.data.Dataset.from_generator(
        generate,
        output_signature=(tf.TensorSpec([], tf.string), tf.TensorSpec(labels.shape[1:], tf.as_dtype(labels.dtype))),
    ).apply(tf.data.experimental.assert_cardinality(len(labels)))


def _augmenter(
    aug: Augmentation, seed: int, image_shape: tuple[int, int, int]
) -> Callable[[tf.Tensor], tf.Tensor] | None:
    """MXNet's augmenter (``augmentation_type``, ``max_random_*``), then the TF algorithm's Keras layers."""
    if not aug.changes_pixels:
        return None
    height, width, _ = image_shape
    mxnet = MXNetAugmenter(aug.mxnet, (height, width), seed) if aug.mxnet.changes_pixels else None
    steps: list[keras.layers.Layer] = []
    if aug.flip != "none":
        steps.append(keras.layers.RandomFlip(aug.flip, seed=seed))
    if aug.rotation > 0:
        steps.append(keras.layers.RandomRotation(aug.rotation, seed=seed, fill_mode="reflect"))
    if aug.zoom > 0:
        steps.append(keras.layers.RandomZoom(aug.zoom, seed=seed, fill_mode="reflect"))
    layers = keras.Sequential([keras.Input((height, width, 3)), *steps], name="augmentation") if steps else None

    def augment(images: tf.Tensor) -> tf.Tensor:
        if mxnet is not None:
            images = mxnet(images)
        if layers is not None:
            images = layers(images, training=True)
        return tf.clip_by_value(images, 0.0, 255.0)

    return augment


def decode_definition(data: tf.Tensor, size: tuple[int, int], interpolation: str) -> tf.Tensor:
    """tfic's preprocessing definition itself (:func:`tfic.imaging.decode_resize`) inside tf.data: uint8 [H, W, 3].

    The Python code the inference service runs, not a TensorFlow copy of it; Pillow releases the GIL while
    it decodes and resizes, so parallel map calls use every core.
    """

    def run(encoded: bytes) -> np.ndarray:
        return imaging.decode_resize(encoded, size, interpolation)

    image = tf.numpy_function(run, [data], tf.uint8, stateful=False)
    return tf.ensure_shape(image, [size[0], size[1], 3])


def make_dataset(
    source: DataSource,
    spec: InputSpec,
    batch_size: int,
    training: bool,
    hp: Hyperparameters,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    repeat: bool = False,
    augmentation: Augmentation = NO_AUGMENTATION,
) -> tf.data.Dataset:
    """Batches of (float32 [B, H, W, 3] pixels in 0..255, float32 targets: [B, C] one-/multi-hot or [B, 1]).

    ``training`` shuffles (seeded, reshuffled every epoch) and applies ``augmentation``; otherwise the
    order is the source's and the pixels are the definition's own.
    """
    height, width, _ = spec.image_shape
    n = len(source.samples)
    decoded_bytes = n * height * width * 3
    cache = decoded_bytes <= cache_bytes
    ds = _encoded(source, spec)
    if training and not cache:
        ds = ds.shuffle(min(n, 50_000), seed=hp.seed, reshuffle_each_iteration=True)

    def decode(data: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return decode_definition(data, (height, width), spec.interpolation), label

    ds = ds.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache()
        if training:
            ds = ds.shuffle(n, seed=hp.seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def to_float(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.cast(image, tf.float32), targets(label, spec)

    ds = ds.batch(batch_size, drop_remainder=False).map(to_float, num_parallel_calls=AUTOTUNE)
    augment = _augmenter(augmentation, hp.seed, spec.image_shape) if training else None
    if augment is not None:
        ds = ds.map(lambda x, y: (augment(x), y), num_parallel_calls=AUTOTUNE)
    options = tf.data.Options()
    options.experimental_deterministic = not training or augment is None
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(AUTOTUNE)


def class_weights(source: DataSource) -> dict[int, float]:
    """Inverse-frequency weights normalised to mean 1 (``use_weighted_loss``)."""
    counts = np.bincount([s.label for s in source.samples], minlength=source.num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
    return {i: float(w) for i, w in enumerate(weights)}
