"""The model behind BentoML's adaptive batching: ``bentoml serve bench.peers.bentoml_service:Classifier``.

A batchable API (``max_batch_size`` as tfic's, 32; ``max_latency_ms`` a generous 10 s so the latency
limit never rejects): BentoML's dispatcher merges concurrent requests into one call of ``classify``.
Requests are JSON ``{"images": ["<base64 JPEG>"]}`` (BentoML's batchable APIs take JSON lists; the
base64 costs the server ~0.1 ms per 60 KB image), answers one list of probabilities per image.
"""

from __future__ import annotations

import os

import bentoml
import numpy as np

from bench.peers.model import from_env

MAX_BATCH = int(os.environ.get("PEER_MAX_BATCH", "32"))


@bentoml.service(workers=1, traffic={"timeout": 60})
class Classifier:
    def __init__(self) -> None:
        self.model = from_env()

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=10_000)
    def classify(self, images: list[str]) -> list[list[float]]:
        pixels = np.stack([self.model.decode_b64(image) for image in images])
        probabilities: list[list[float]] = self.model.predict(pixels).tolist()
        return probabilities
