"""The remote runtime: our batching and preprocessing in front of a TF Serving-compatible Predict API.

The remote end is a second tfic server (it speaks TensorFlow Serving's PredictionService and
ModelService), so the test needs no tensorflow_model_server binary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from grpc import aio

from inference_svc.server import InferenceServer
from tests.inference_svc.support import MODEL, encode, make_settings, random_image, wait_until
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2


async def test_remote_runtime_answers_like_the_in_process_one(server: InferenceServer, base_path: Path) -> None:
    settings = make_settings(base_path, runtime="tfserving", tfserving_target=f"127.0.0.1:{server.port}")
    front = await InferenceServer(settings).start()
    try:
        await wait_until(lambda: front.repository.available(MODEL), what="the remote version")
        images = [encode(random_image(seed)) for seed in range(6)]
        request = classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL), images=images)
        answers = []
        for port in (server.port, front.port):
            async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                response = await classifier_pb2_grpc.ClassifierStub(channel).Classify(request)
                answers.append(np.array([list(r.probabilities) for r in response.results]))
        np.testing.assert_allclose(answers[1], answers[0], atol=1e-6)
        # The back end saw padded batches from the front's batcher (Predict on predict_images).
        assert server.metrics.requests.labels(MODEL, "Predict", "OK")._value.get() >= 1
    finally:
        await front.stop(grace=1.0)
