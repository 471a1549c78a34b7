"""A remote TensorFlow Serving behind our preprocessing and batching.

The remote server must serve the same model directories (same names and versions); this side
reads each version's metadata from the shared directory and sends already-decoded, padded
batches to its ``predict_images`` signature with ``PredictionService/Predict``. One blocking
gRPC channel is shared by every version; gRPC channels are thread-safe, so ``predict`` needs
no lock.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from inference_svc.runtime.base import Runtime
from tfic import modeldir
from tfic.errors import IncompatibleModel, Unavailable
from tfic.modeldir import ModelMetadata

log = logging.getLogger(__name__)


class TFServingRuntime(Runtime):
    def __init__(self, client: TFServingClient, model: str, version: int, metadata: ModelMetadata) -> None:
        self._client = client
        self._model = model
        self._version = version
        self._num_classes = len(metadata.columns)
        self._wait_until_available()

    def _wait_until_available(self) -> None:
        """Poll the remote ModelService until this version is AVAILABLE (it loads on its own schedule)."""
        from tensorflow_serving.apis import get_model_status_pb2

        deadline = time.monotonic() + self._client.load_timeout
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self._model
        request.model_spec.version.value = self._version
        last = "no answer yet"
        while True:
            try:
                response = self._client.model_service.GetModelStatus(request, timeout=self._client.timeout)
                states = {s.version: s.state for s in response.model_version_status}
                if states.get(self._version) == get_model_status_pb2.ModelVersionStatus.AVAILABLE:
                    return
                last = f"state {states.get(self._version, 'unknown')}"
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"TensorFlow Serving at {self._client.target} did not make {self._model} version "
                    f"{self._version} available in {self._client.load_timeout:.0f} s ({last})"
                )
            self._client.closed.wait(0.5)  # a loader thread waiting for a remote load, not a test sync
            if self._client.closed.is_set():
                raise Unavailable("shutting down")

    def predict(self, images: np.ndarray) -> np.ndarray:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self._model
        request.model_spec.version.value = self._version
        request.model_spec.signature_name = modeldir.SIGNATURE_IMAGES
        request.inputs[modeldir.INPUT_IMAGES].CopyFrom(tf.make_tensor_proto(np.asarray(images, dtype=np.float32)))
        request.output_filter.append(modeldir.OUTPUT_PROBABILITIES)
        try:
            response = self._client.prediction_service.Predict(request, timeout=self._client.timeout)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                raise Unavailable(f"TensorFlow Serving at {self._client.target}: {exc.details()}") from None
            raise RuntimeError(f"TensorFlow Serving Predict failed: {exc.code().name}: {exc.details()}") from None
        probabilities: np.ndarray = np.asarray(
            tf.make_ndarray(response.outputs[modeldir.OUTPUT_PROBABILITIES]), dtype=np.float32
        )
        if probabilities.shape != (len(images), self._num_classes):
            raise IncompatibleModel(
                f"TensorFlow Serving returned probabilities of shape {probabilities.shape}; "
                f"expected {(len(images), self._num_classes)}"
            )
        return probabilities


class TFServingClient:
    """One channel and its stubs, shared by all versions; the factory the repository calls."""

    def __init__(self, target: str, timeout: float, load_timeout: float, max_message_bytes: int) -> None:
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.target = target
        self.timeout = timeout
        self.load_timeout = load_timeout
        self.closed = threading.Event()
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.keepalive_time_ms", 30_000),
            ],
        )
        self.prediction_service = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self.model_service = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def __call__(self, model: str, version: int, path: Path, metadata: ModelMetadata) -> Runtime:
        return TFServingRuntime(self, model, version, metadata)

    def close(self) -> None:
        self.closed.set()
        self._channel.close()
