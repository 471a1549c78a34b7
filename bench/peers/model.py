"""The model as the peer servers run it: tfic's SavedModel, tfic's decode, TensorFlow's concrete function.

Imported by the BentoML and LitServe services in their own virtualenv (``make bench-peers-venv``); it needs
only TensorFlow, Pillow, NumPy and tfic's core modules (``tfic.imaging``, ``tfic.modeldir``), so every
server decodes with the same definition (Pillow with ``draft``) and runs the same graph tfic runs.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import numpy as np

from tfic import modeldir
from tfic.imaging import decode_resize


class PeerModel:
    def __init__(self, version_dir: Path) -> None:
        import tensorflow as tf

        self.metadata = modeldir.read_metadata(version_dir)
        height, width, _ = self.metadata.image_shape
        self.size = (height, width)
        self.interpolation = self.metadata.preprocessing.interpolation
        loaded = tf.saved_model.load(str(version_dir))
        signature = loaded.signatures[modeldir.SIGNATURE_IMAGES]
        spec = tf.TensorSpec([None, height, width, 3], tf.uint8)

        def run(images: Any) -> Any:  # the cast inside the graph, as tfic's runtime does
            return signature(**{modeldir.INPUT_IMAGES: tf.cast(images, tf.float32)})[modeldir.OUTPUT_PROBABILITIES]

        self._loaded = loaded
        self._fn = tf.function(run, input_signature=[spec]).get_concrete_function()
        self._tf = tf
        for n in (1, 2, 4, 8, 16, 32):  # every shape once, as tfic's warm-up does
            self.predict(np.zeros((n, height, width, 3), np.uint8))

    def decode(self, data: bytes) -> np.ndarray:
        return decode_resize(data, self.size, self.interpolation)

    def decode_b64(self, text: str) -> np.ndarray:
        return self.decode(base64.b64decode(text))

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self._fn(self._tf.constant(images)).numpy())


def from_env() -> PeerModel:
    return PeerModel(Path(os.environ["PEER_MODEL_DIR"]))
