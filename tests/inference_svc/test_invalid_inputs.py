"""Bad images are INVALID_ARGUMENT with the reason in the message, and the server keeps serving."""

from __future__ import annotations

import io
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.rpc import error_details_pb2
from grpc import aio
from grpc_status import rpc_status
from PIL import Image
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from inference_svc.server import InferenceServer
from tests.inference_svc.support import MODEL, encode, random_image
from tests.tfic.hard_images import huge_png_header
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2


def _bomb_png(width: int, height: int) -> bytes:
    """A big single-colour PNG: few bytes, many pixels."""
    buf = io.BytesIO()
    Image.new("L", (width, height), 7).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _tga() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(random_image(1)).save(buf, "TGA")
    return buf.getvalue()


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


GOOD = encode(random_image(0))
CASES = {
    "empty": (b"", "empty"),
    "not an image": (b"hello, this is plain text and not a picture", "not an image in a supported format"),
    "truncated header": (encode(random_image(2, 300, 300), "JPEG")[:60], "cannot read image header"),
    "truncated pixels": (_half(encode(random_image(2, 300, 300), "PNG")), "corrupt or truncated"),
    "too many bytes": (b"\xff\xd8" + bytes(3 * 1024 * 1024), "the limit is 2097152 bytes"),
    "too many pixels": (_bomb_png(3000, 3000), "the limit is 4000000 pixels"),
    # Beyond Pillow's own bomb guard (2 x 89.5 MP): still tfic's limit and message, from the header alone.
    "far too many pixels": (huge_png_header(40_000, 40_000), "40000x40000 = 1600000000 pixels; the limit is 4000000"),
    "unsupported format": (_tga(), "not supported"),
}


def bad_fields(error: Any) -> list[str]:
    """The fields of the call's google.rpc.BadRequest, read with grpcio-status alone."""
    status = rpc_status.from_call(error)
    assert status is not None
    fields: list[str] = []
    for packed in status.details:
        if packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            fields.extend(v.field for v in bad.field_violations)
    return fields


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_image_is_invalid_argument_and_the_server_keeps_serving(
    channel: aio.Channel, server: InferenceServer, case: str
) -> None:
    data, reason = CASES[case]
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    spec = common_pb2.ModelSpec(name=MODEL)
    with pytest.raises(grpc.RpcError) as info:
        await stub.Classify(classifier_pb2.ClassifyRequest(model=spec, images=[data]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details() or ""
    assert reason in (info.value.details() or "")
    assert bad_fields(info.value) == ["images[0]"]
    # In a multi-image request the message names the image, and the BadRequest its field.
    with pytest.raises(grpc.RpcError) as info:
        await stub.Classify(classifier_pb2.ClassifyRequest(model=spec, images=[GOOD, data]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith("image 1: ")
    assert bad_fields(info.value) == ["images[1]"]
    # The same through TensorFlow Serving's API.
    tfs = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([data], dtype=tf.string))
    with pytest.raises(grpc.RpcError) as info:
        await tfs.Predict(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in (info.value.details() or "")
    # And the server still answers.
    response = await stub.Classify(classifier_pb2.ClassifyRequest(model=spec, images=[GOOD]))
    assert len(response.results) == 1
    assert server.metrics.requests.labels(MODEL, "Classify", "INVALID_ARGUMENT")._value.get() == 2


async def test_request_shape_errors(channel: aio.Channel) -> None:
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        await stub.Classify(classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no images" in (info.value.details() or "")
    assert bad_fields(info.value) == ["images"]
    with pytest.raises(grpc.RpcError) as info:
        await stub.Classify(classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name="absent"), images=[GOOD]))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "absent" in (info.value.details() or "")
    tfs = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.full((1, 16, 16, 3), np.nan, np.float32)))
    with pytest.raises(grpc.RpcError) as info:
        await tfs.Predict(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "NaN" in (info.value.details() or "")
