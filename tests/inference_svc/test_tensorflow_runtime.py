"""The in-process TensorFlow runtime answers what the SavedModel's signature answers: as is, with XLA, in bfloat16."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc import aio

from inference_svc.runtime.tensorflow import TensorFlowOptions, TensorFlowRuntime, cpu_has_bfloat16
from inference_svc.server import InferenceServer
from tests.inference_svc.support import (
    LABELS,
    MODEL,
    SIZE,
    encode,
    make_settings,
    random_image,
    run_entry_point,
    wait_serving,
    wait_until,
)
from tfic import modeldir
from tfic.errors import IncompatibleModel
from tfic.imaging import decode_resize
from tfic.modeldir import ModelMetadata, read_metadata
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2


def pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3)).astype(np.float32)


def signature_probabilities(version_dir: Path, images: np.ndarray) -> np.ndarray:
    loaded = tf.saved_model.load(str(version_dir))
    outputs = loaded.signatures[modeldir.SIGNATURE_IMAGES](**{modeldir.INPUT_IMAGES: tf.constant(images)})
    return np.asarray(outputs[modeldir.OUTPUT_PROBABILITIES].numpy())


@pytest.mark.parametrize("xla", [False, True], ids=["graph", "xla"])
def test_runtime_matches_the_signature_at_every_batch_size(model_store: Path, xla: bool) -> None:
    path = model_store / MODEL / "1"
    runtime = TensorFlowRuntime(path, read_metadata(path), TensorFlowOptions(xla=xla))
    try:
        for n in (1, 3, 8):
            batch = pixels(n, seed=n)
            got = runtime.predict(batch)
            assert got.dtype == np.float32 and got.shape == (n, len(LABELS))
            np.testing.assert_allclose(got, signature_probabilities(path, batch), atol=1e-5)
        assert not np.allclose(got[0], got[1], atol=1e-3), "the test images should be classified differently"
    finally:
        runtime.close()


def test_uint8_pixels_give_exactly_the_float32_answers(model_store: Path) -> None:
    # Decoded images reach the runtime as uint8 and are cast inside its graph: the same numbers as float32.
    path = model_store / MODEL / "1"
    runtime = TensorFlowRuntime(path, read_metadata(path))
    try:
        batch = pixels(5, seed=7)
        as_uint8 = runtime.predict(batch.astype(np.uint8))
        np.testing.assert_array_equal(as_uint8, runtime.predict(batch))
        np.testing.assert_allclose(as_uint8, signature_probabilities(path, batch), atol=1e-6)
    finally:
        runtime.close()


class _SignatureOnly(tf.Module):  # type: ignore[misc]  # TensorFlow ships no type information
    """A SavedModel with tfic's image signature but no tracked Keras model (as other exporters write)."""

    def __init__(self) -> None:
        super().__init__()
        self.labels = tf.constant(list(LABELS))
        self.serve = tf.function(
            self._serve, input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32, name="images")]
        )

    def _serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = tf.nn.softmax(tf.reduce_mean(images, axis=[1, 2]))
        classes = tf.tile(tf.expand_dims(self.labels, 0), tf.stack([tf.shape(images)[0], 1]))
        return {modeldir.OUTPUT_PROBABILITIES: probabilities, modeldir.OUTPUT_CLASSES: classes}


def test_xla_without_a_tracked_model_is_refused_with_the_reason(tmp_path: Path) -> None:
    module = _SignatureOnly()
    tf.saved_model.save(module, str(tmp_path), signatures={modeldir.SIGNATURE_IMAGES: module.serve})
    meta = ModelMetadata(labels=LABELS, image_shape=(SIZE, SIZE, 3))
    plain = TensorFlowRuntime(tmp_path, meta)  # without XLA it serves
    assert plain.predict(pixels(2)).shape == (2, len(LABELS))
    with pytest.raises(IncompatibleModel, match="--xla needs the probabilities function"):
        TensorFlowRuntime(tmp_path, meta, TensorFlowOptions(xla=True))


def test_xla_serves_a_version_exported_before_the_probabilities_function(tmp_path: Path) -> None:
    """Older versions carry no ``probabilities``, only the Keras model's own saved call (Keras's layer traces)."""
    from tf_keras.src.saving.legacy.saved_model.utils import keras_option_scope

    from trainer_svc.training import architectures
    from trainer_svc.training.export import ServingModule
    from trainer_svc.training.model import build_classifier

    shape = (SIZE, SIZE, 3)
    model = build_classifier(architectures.small_cnn(shape), len(LABELS), shape, modeldir.Preprocessing(), 0, 0, 3)
    module = ServingModule(model, LABELS, shape, "bilinear")
    del module.probabilities  # what the exporter wrote until it saved the function
    with keras_option_scope(save_traces=True, in_tf_saved_model_scope=True):
        tf.saved_model.save(module, str(tmp_path), signatures={modeldir.SIGNATURE_IMAGES: module.serve_images})
    assert not hasattr(tf.saved_model.load(str(tmp_path)), "probabilities")
    meta = ModelMetadata(labels=LABELS, image_shape=shape)
    compiled = TensorFlowRuntime(tmp_path, meta, TensorFlowOptions(xla=True))
    np.testing.assert_allclose(compiled.predict(pixels(3)), signature_probabilities(tmp_path, pixels(3)), atol=1e-5)


async def test_server_with_xla_classifies_like_the_saved_model(base_path: Path) -> None:
    server = await InferenceServer(make_settings(base_path, xla=True)).start()
    try:
        await wait_until(lambda: server.repository.available(MODEL), what="tiny/1 to load with XLA")
        images = [encode(random_image(seed)) for seed in range(4)]
        async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            response = await classifier_pb2_grpc.ClassifierStub(channel).Classify(
                classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL), images=images)
            )
        served = np.array([list(r.probabilities) for r in response.results])
        decoded = np.stack([decode_resize(b, (SIZE, SIZE), "bilinear") for b in images]).astype(np.float32)
        np.testing.assert_allclose(served, signature_probabilities(base_path / MODEL / "1", decoded), atol=1e-5)
    finally:
        await server.stop(grace=1.0)


def test_bfloat16_mixed_precision_serves_close_to_float32(base_path: Path) -> None:
    """In its own process: the graph rewrite is process-wide, and float32 tests must stay exact."""
    images = [encode(random_image(seed)) for seed in range(6)]
    decoded = np.stack([decode_resize(b, (SIZE, SIZE), "bilinear") for b in images]).astype(np.float32)
    expected = signature_probabilities(base_path / MODEL / "1", decoded)
    with run_entry_point(base_path, "--mixed-precision", "bfloat16") as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            wait_serving(channel, MODEL)
            reply = classifier_pb2_grpc.ClassifierStub(channel).Classify(
                classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL), images=images), timeout=60
            )
        server.process.terminate()
        assert server.process.wait(timeout=60) == 0 and server.process.stderr is not None
        assert "mixed precision: bfloat16" in "".join(server.log) + server.process.stderr.read()
    served = np.array([list(r.probabilities) for r in reply.results], dtype=np.float32)
    assert served.shape == expected.shape
    np.testing.assert_allclose(served, expected, atol=0.02)  # bfloat16 keeps ~3 significant digits
    assert [r.predicted_index for r in reply.results] == list(expected.argmax(axis=1))
    if cpu_has_bfloat16():  # the rewrite really ran: not bit-identical to float32
        assert not np.array_equal(served, expected)
