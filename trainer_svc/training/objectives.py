"""Loss and metrics for each output kind: multi-class softmax, multi-label sigmoids, one binary sigmoid.

* ``multi_class``: categorical cross-entropy (``label_smoothing``), accuracy and top-k accuracy.
* ``multi_label`` (the MXNet algorithm's ``multi_label=1``): binary cross-entropy per class; ``accuracy`` is
  the per-class accuracy at ``prediction_threshold`` averaged over classes (what MXNet logs for multi-label),
  with micro precision and recall. ``use_weighted_loss`` weights each class's positives by its ratio of
  negatives to positives in the training data (MXNet: "weights calculated based on the distribution of
  classes"; this is ``tf.nn.weighted_cross_entropy_with_logits``'s ``pos_weight``), so rare labels count as
  much as common ones.
* ``binary`` (the TF algorithm's ``binary_mode``): one sigmoid, binary cross-entropy, and the TF algorithm's
  ``eval_metric`` choices: accuracy, precision, recall, auc (ROC) and prc (precision-recall AUC).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from trainer_svc.data.source import DataSource
from trainer_svc.training.hyperparameters import Hyperparameters


def positive_weights(source: DataSource) -> np.ndarray:
    """Per class: negatives / positives among the training images (1 for a class with none of either)."""
    counts = np.zeros(source.num_classes, dtype=np.float64)
    for sample in source.samples:
        counts[list(sample.labels)] += 1
    n = len(source.samples)
    return np.where((counts > 0) & (counts < n), (n - counts) / np.maximum(counts, 1), 1.0).astype(np.float32)


@keras.utils.register_keras_serializable(package="tfic")
class WeightedBinaryCrossentropy(keras.losses.Loss):  # type: ignore[misc]
    """``-mean_c [w_c y log p + (1 - y) log (1 - p)]`` on probabilities, with Keras's label smoothing and clipping."""

    def __init__(
        self, pos_weight: tuple[float, ...] = (), label_smoothing: float = 0.0, name: str = "weighted_bce"
    ) -> None:
        super().__init__(name=name)
        self.pos_weight = tuple(float(w) for w in pos_weight)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        y_true = tf.cast(y_true, tf.float32)
        y_pred = tf.clip_by_value(tf.cast(y_pred, tf.float32), keras.backend.epsilon(), 1.0 - keras.backend.epsilon())
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        weight = tf.constant(self.pos_weight, tf.float32) if self.pos_weight else 1.0
        losses = -(weight * y_true * tf.math.log(y_pred) + (1.0 - y_true) * tf.math.log(1.0 - y_pred))
        return tf.reduce_mean(losses, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {"pos_weight": self.pos_weight, "label_smoothing": self.label_smoothing, "name": self.name}


def loss_for(hp: Hyperparameters, pos_weight: np.ndarray | None) -> keras.losses.Loss:
    if hp.output == "multi_class":
        return keras.losses.CategoricalCrossentropy(label_smoothing=hp.label_smoothing)
    if pos_weight is not None:
        return WeightedBinaryCrossentropy(tuple(pos_weight.tolist()), hp.label_smoothing)
    return keras.losses.BinaryCrossentropy(label_smoothing=hp.label_smoothing)


def metrics_for(hp: Hyperparameters, num_classes: int) -> list[keras.metrics.Metric]:
    threshold = hp.prediction_threshold
    if hp.output == "multi_class":
        return [
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(k=min(hp.top_k, num_classes), name="top_k_accuracy"),
        ]
    metrics = [
        keras.metrics.BinaryAccuracy(name="accuracy", threshold=threshold),
        keras.metrics.Precision(thresholds=threshold, name="precision"),
        keras.metrics.Recall(thresholds=threshold, name="recall"),
    ]
    if hp.output == "binary":
        metrics += [
            keras.metrics.AUC(curve="ROC", name="auc"),
            keras.metrics.AUC(curve="PR", name="prc"),
        ]
    return metrics
