"""Classify and TF Serving Predict answer exactly what the SavedModel answers for the same pixels."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc import aio
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from inference_svc.server import InferenceServer
from tests.inference_svc.support import LABELS, MODEL, SIZE, encode, random_image
from tfic.imaging import decode_resize
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2


def saved_model_outputs(version_dir: Path, signature: str, **inputs: tf.Tensor) -> dict[str, np.ndarray]:
    loaded = tf.saved_model.load(str(version_dir))
    return {k: v.numpy() for k, v in loaded.signatures[signature](**inputs).items()}


@pytest.fixture
def images() -> list[bytes]:
    return [encode(random_image(seed)) for seed in range(5)]


def pillow_pixels(images: list[bytes]) -> np.ndarray:
    return np.stack([decode_resize(b, (SIZE, SIZE), "bilinear") for b in images]).astype(np.float32)


async def test_classify_matches_the_saved_model(channel: aio.Channel, base_path: Path, images: list[bytes]) -> None:
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    response = await stub.Classify(
        classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL), images=images)
    )
    assert response.model_name == MODEL and response.model_version == 1
    served = np.array([list(r.probabilities) for r in response.results])
    expected = saved_model_outputs(base_path / MODEL / "1", "predict_images", images=tf.constant(pillow_pixels(images)))
    np.testing.assert_allclose(served, expected["probabilities"], atol=1e-5)
    assert not np.allclose(served[0], served[1], atol=1e-3), "the test images should be classified differently"
    for result, row in zip(response.results, expected["probabilities"], strict=True):
        assert list(result.labels) == list(LABELS)
        assert list(result.label_indices) == [0, 1, 2]
        assert result.predicted_index == int(row.argmax())
        assert result.predicted_label == LABELS[int(row.argmax())]
    # The service decodes what the serving_default signature decodes (tests/tfic/test_preprocessing_parity.py).
    in_graph = saved_model_outputs(base_path / MODEL / "1", "serving_default", image_bytes=tf.constant(images))
    np.testing.assert_allclose(served, in_graph["probabilities"], atol=1e-4)


async def test_classify_top_k_and_pinned_version(channel: aio.Channel, images: list[bytes]) -> None:
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    full = await stub.Classify(classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL), images=images))
    top = await stub.Classify(
        classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL, version=1), images=images, top_k=2)
    )
    for whole, best in zip(full.results, top.results, strict=True):
        order = np.argsort(-np.array(whole.probabilities), kind="stable")[:2]
        assert list(best.label_indices) == order.tolist()
        assert list(best.labels) == [LABELS[i] for i in order]
        np.testing.assert_allclose(best.probabilities, np.array(whole.probabilities)[order], atol=1e-7)
        assert best.predicted_index == whole.predicted_index


async def test_tfserving_predict_bytes_and_floats_match_the_saved_model(
    channel: aio.Channel, base_path: Path, images: list[bytes]
) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    pixels = pillow_pixels(images)
    expected = saved_model_outputs(base_path / MODEL / "1", "predict_images", images=tf.constant(pixels))

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "serving_default"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
    response = await stub.Predict(request)
    assert response.model_spec.version.value == 1
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), expected["probabilities"], atol=1e-5)
    classes = tf.make_ndarray(response.outputs["classes"])
    assert classes.shape == (len(images), len(LABELS)) and classes[0].tolist() == [c.encode() for c in LABELS]

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "predict_images"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(pixels))
    request.output_filter.append("probabilities")
    response = await stub.Predict(request)
    assert set(response.outputs) == {"probabilities"}
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), expected["probabilities"], atol=1e-5)


async def test_tfserving_predict_rejects_mismatched_inputs(channel: aio.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "predict_images"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, SIZE + 2, SIZE, 3), np.float32)))
    with pytest.raises(grpc.RpcError) as info:
        await stub.Predict(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"[N, {SIZE}, {SIZE}, 3]" in (info.value.details() or "")

    request.model_spec.signature_name = "serving_default"
    with pytest.raises(grpc.RpcError) as info:
        await stub.Predict(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "image_bytes" in (info.value.details() or "")


async def test_tfserving_classify_metadata_and_status(
    channel: aio.Channel, server: InferenceServer, images: list[bytes]
) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    for data in images[:2]:
        example = request.input.example_list.examples.add()
        example.features.feature["image_bytes"].bytes_list.value.append(data)
    response = await stub.Classify(request)
    assert len(response.result.classifications) == 2
    scores = [[c.score for c in item.classes] for item in response.result.classifications]
    classic = classifier_pb2_grpc.ClassifierStub(channel)
    ours = await classic.Classify(
        classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL), images=images[:2])
    )
    np.testing.assert_allclose(scores, [list(r.probabilities) for r in ours.results], atol=1e-6)
    assert [c.label for c in response.result.classifications[0].classes] == list(LABELS)

    meta_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta_request.model_spec.name = MODEL
    meta = await stub.GetModelMetadata(meta_request)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert meta.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def) >= {"serving_default", "predict_images"}
    assert set(signatures.signature_def["serving_default"].inputs) == {"image_bytes"}
    shape = signatures.signature_def["predict_images"].inputs["images"].tensor_shape
    assert [d.size for d in shape.dim] == [-1, SIZE, SIZE, 3]

    models = model_service_pb2_grpc.ModelServiceStub(channel)
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = MODEL
    status = await models.GetModelStatus(status_request)
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    ]
    status_request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as info:
        await models.GetModelStatus(status_request)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_and_get_models(channel: aio.Channel) -> None:
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    listed = await stub.ListModels(classifier_pb2.ListModelsRequest())
    assert [m.name for m in listed.models] == [MODEL]
    info = await stub.GetModel(classifier_pb2.GetModelRequest(name=MODEL))
    (version,) = info.versions
    assert version.version == 1 and version.state == classifier_pb2.VERSION_STATE_AVAILABLE
    assert list(version.labels) == list(LABELS)
    assert (version.input_shape.height, version.input_shape.width, version.input_shape.channels) == (SIZE, SIZE, 3)
    with pytest.raises(grpc.RpcError) as info_error:
        await stub.GetModel(classifier_pb2.GetModelRequest(name="missing"))
    assert info_error.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info_error:
        await stub.Classify(
            classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL, version=7), images=[b"x"])
        )
    assert info_error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_omit_labels_sends_the_numbers_without_the_strings(channel: aio.Channel, images: list[bytes]) -> None:
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    spec = common_pb2.ModelSpec(name=MODEL)
    for k in (0, 2):
        full = await stub.Classify(classifier_pb2.ClassifyRequest(model=spec, images=images, top_k=k))
        bare = await stub.Classify(classifier_pb2.ClassifyRequest(model=spec, images=images, top_k=k, omit_labels=True))
        assert bare.model_name == full.model_name and bare.model_version == full.model_version
        assert bare.ByteSize() < full.ByteSize()
        for b, f in zip(bare.results, full.results, strict=True):
            assert list(b.probabilities) == list(f.probabilities)
            assert not b.labels and not b.predicted_label
            assert b.predicted_index == f.predicted_index
            # top_k 0: the indices are 0..C-1, so they are left out too; top_k K: the ranking is kept.
            assert list(b.label_indices) == (list(f.label_indices) if k else [])
            assert LABELS[b.predicted_index] == f.predicted_label


async def test_decode_processes_answer_what_the_saved_model_answers(base_path: Path, images: list[bytes]) -> None:
    import os

    from tests.inference_svc.support import make_settings, wait_until

    server = await InferenceServer(make_settings(base_path, decode_pool="processes", decode_workers=2)).start()
    try:
        await wait_until(lambda: server.repository.available(MODEL), what="tiny/1 to load")
        pids = server.preprocessor.process_ids
        assert len(pids) == 2 and os.getpid() not in pids
        async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            request = classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL), images=images)
            response = await stub.Classify(request, timeout=30)
            served = np.array([list(r.probabilities) for r in response.results])
            pixels = tf.constant(pillow_pixels(images))
            expected = saved_model_outputs(base_path / MODEL / "1", "predict_images", images=pixels)
            np.testing.assert_allclose(served, expected["probabilities"], atol=1e-5)
            # A broken image gets the error the threads give, naming it, and the server keeps serving.
            request.images[1] = b"not an image"
            with pytest.raises(grpc.RpcError) as info:
                await stub.Classify(request, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (info.value.details() or "").startswith("image 1: ")
            again = await stub.Classify(classifier_pb2.ClassifyRequest(model=request.model, images=images), timeout=30)
            assert len(again.results) == len(images)
    finally:
        await server.stop(grace=1.0)
    for pid in pids:  # stopped with the server
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
