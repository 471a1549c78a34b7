"""The frozen-backbone fast path: compute the backbone's features once, then train the head on them.

With the backbone frozen and no augmentation that changes pixels, every epoch would run the same
backbone forward pass on the same pixels again; that pass is almost all of an epoch's cost. Here it
runs once per image; the head (dropout → dense → softmax, the classifier's own layers, so the weights
learnt here are the ones exported) then trains on the stored features in milliseconds per epoch.

The head sees the same batches in the same order as the uncached path would whenever the uncached
path holds its decoded pixels in memory (up to ``DEFAULT_CACHE_BYTES``): the same seeded ``shuffle``
over the same number of elements, applied to row indices instead of images. (Above that the pixel
pipeline shuffles encoded images in a bounded buffer, and the orders differ; the learning does not.)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from trainer_svc.data.source import DataSource
from trainer_svc.training.pipeline import DEFAULT_CACHE_BYTES, InputSpec, label_array, targets

log = logging.getLogger(__name__)


def feature_extractor(model: keras.Model) -> keras.Model:
    """Pixels → the backbone's pooled features, sharing the classifier's layers (preprocessing included)."""
    return keras.Model(model.inputs, model.get_layer("head_dropout").input, name="feature_extractor")


def head_model(model: keras.Model) -> keras.Model:
    """Features → probabilities through the classifier's own head layers (training it trains them)."""
    dim = int(model.get_layer("head_dropout").input.shape[-1])
    inputs = keras.Input((dim,), dtype=tf.float32, name="features")
    x = model.get_layer("head_dropout")(inputs)
    x = model.get_layer("head")(x)
    outputs = model.get_layer("probabilities")(x)
    return keras.Model(inputs, outputs, name="head")


@dataclass
class Features:
    """One split's features (in memory, or a memory-mapped file when large) and labels."""

    values: np.ndarray  # float32 [N, D]
    labels: np.ndarray  # the pipeline's label_array: int32 [N], or float32 [N, C] / [N, 1]
    seconds: float

    def dataset(self, batch_size: int, spec: InputSpec, shuffle_seed: int | None) -> tf.data.Dataset:
        """Batches of (features, targets); ``shuffle_seed`` reshuffles every epoch like the pixel pipeline."""
        n = len(self.labels)
        values, labels = self.values, self.labels
        indices = tf.data.Dataset.range(n)
        if shuffle_seed is not None:
            indices = indices.shuffle(n, seed=shuffle_seed, reshuffle_each_iteration=True)

        def rows(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return np.ascontiguousarray(values[idx], dtype=np.float32), labels[idx]

        def gather(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            x, y = tf.numpy_function(rows, [idx], (tf.float32, tf.as_dtype(labels.dtype)), stateful=False)
            x.set_shape([None, values.shape[1]])
            y.set_shape([None, *labels.shape[1:]])
            return x, targets(y, spec)

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return (
            indices.batch(batch_size)
            .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .with_options(options)
            .prefetch(tf.data.AUTOTUNE)
        )


def extract(
    extractor: keras.Model,
    pixels: tf.data.Dataset,
    source: DataSource,
    spec: InputSpec,
    spill_dir: Path | None = None,
    memory_bytes: int = DEFAULT_CACHE_BYTES,
) -> Features:
    """Run ``extractor`` once over ``pixels`` (unshuffled, unaugmented batches of ``source``)."""
    start = time.perf_counter()
    n = len(source.samples)
    dim = int(extractor.output_shape[-1])
    values: np.ndarray
    if n * dim * 4 > memory_bytes and spill_dir is not None:
        spill_dir.mkdir(parents=True, exist_ok=True)
        path = spill_dir / f"features-{n}x{dim}.npy"
        log.info("backbone features (%d x %d) spill to %s", n, dim, path)
        values = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    else:
        values = np.empty((n, dim), dtype=np.float32)
    offset = 0
    for images, _ in pixels:
        batch = np.asarray(extractor.predict_on_batch(images), dtype=np.float32)
        values[offset : offset + len(batch)] = batch
        offset += len(batch)
    if offset != n:
        raise RuntimeError(f"feature extraction produced {offset} rows for {n} images")
    return Features(values, label_array(source, spec.output, spec.num_classes), time.perf_counter() - start)
