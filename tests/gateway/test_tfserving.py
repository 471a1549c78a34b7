"""TensorFlow Serving's REST API through the gateway: predict (row and columnar), classify, status, metadata.

The predict answer must equal what TF Serving would send for the exported ``serving_default`` signature,
whose outputs are ``probabilities`` and ``classes`` (the labels in index order).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import grpc
import httpx
import pytest

from tests.gateway.servers import LABELS, MODEL, RunningInference
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def oracle(inference: RunningInference, images: list[bytes], version: int | None = None) -> list[list[float]]:
    with grpc.insecure_channel(inference.target) as channel:
        spec = common_pb2.ModelSpec(name=MODEL)
        if version is not None:
            spec.version = version
        response = classifier_pb2_grpc.ClassifierStub(channel).Classify(
            classifier_pb2.ClassifyRequest(model=spec, images=images), timeout=30
        )
    return [list(r.probabilities) for r in response.results]


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize(
    "path",
    [f"/v1/models/{MODEL}:predict", f"/v1/models/{MODEL}/versions/1:predict", f"/v1/models/{MODEL}/versions/2:predict"],
)
def test_predict_rows(client: httpx.Client, inference: RunningInference, images: dict[str, bytes], path: str) -> None:
    batch = [images["png"], images["jpeg"], images["other_png"]]
    response = client.post(path, json={"instances": [b64(i) for i in batch]})
    assert response.status_code == 200, response.text
    expected = [{"probabilities": p, "classes": list(LABELS)} for p in oracle(inference, batch)]
    assert response.content == compact({"predictions": expected})


def test_predict_named_input_and_signature(
    client: httpx.Client, inference: RunningInference, images: dict[str, bytes]
) -> None:
    body = {"signature_name": "serving_default", "instances": [{"image_bytes": b64(images["png"])}]}
    response = client.post(f"/v1/models/{MODEL}:predict", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "predictions": [{"probabilities": oracle(inference, [images["png"]])[0], "classes": list(LABELS)}]
    }


@pytest.mark.parametrize("named", [False, True])
def test_predict_columnar(
    client: httpx.Client, inference: RunningInference, images: dict[str, bytes], named: bool
) -> None:
    batch = [images["png"], images["other_png"]]
    items = [b64(i) for i in batch]
    response = client.post(f"/v1/models/{MODEL}:predict", json={"inputs": {"image_bytes": items} if named else items})
    assert response.status_code == 200, response.text
    expected = {"outputs": {"probabilities": oracle(inference, batch), "classes": [list(LABELS)] * 2}}
    assert response.content == compact(expected)


def test_predict_url_safe_and_unpadded_base64(client: httpx.Client, images: dict[str, bytes]) -> None:
    standard = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [b64(images["png"])]})
    url_safe = base64.urlsafe_b64encode(images["png"]).decode().rstrip("=")
    response = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"b64": url_safe}]})
    assert response.status_code == 200
    assert response.content == standard.content


def test_classify(client: httpx.Client, inference: RunningInference, images: dict[str, bytes]) -> None:
    batch = [images["png"], images["jpeg"]]
    body = {"examples": [{"image_bytes": b64(i)} for i in batch]}
    response = client.post(f"/v1/models/{MODEL}:classify", json=body)
    assert response.status_code == 200, response.text
    expected = {
        "results": [[[label, p] for label, p in zip(LABELS, probs, strict=True)] for probs in oracle(inference, batch)]
    }
    assert response.content == compact(expected)
    # Context features are merged into each example; any single b64 feature is the image.
    shared = {"context": {"photo": b64(images["png"])}, "examples": [{}, {}]}
    response = client.post(f"/v1/models/{MODEL}:classify", json=shared)
    assert response.status_code == 200
    assert len(response.json()["results"]) == 2


def test_classify_top_k(client: httpx.Client, images: dict[str, bytes]) -> None:
    body = {"examples": [{"image_bytes": b64(images["png"])}]}
    results = client.post(f"/v1/models/{MODEL}:classify", params={"top_k": 2}, json=body).json()["results"][0]
    assert len(results) == 2
    assert results[0][1] >= results[1][1]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"{}", "exactly one of"),
        (b'{"instances": [], "inputs": []}', "exactly one of"),
        (b'{"instances": []}', "non-empty list"),
        (b'{"instances": ["aGVsbG8="]}', '{"b64"'),
        (b'{"instances": [{"b64": "!!!"}]}', "not valid base64"),
        (b'{"instances": [{"pixels": {"b64": "AAAA"}}]}', "image_bytes"),
        (b'{"inputs": {"b64": "AAAA"}}', "non-empty list"),
        (b'{"signature_name": "predict_images", "instances": [{"b64": "AAAA"}]}', "over gRPC"),
        (b'{"signature_name": "other", "instances": [{"b64": "AAAA"}]}', "unknown signature_name"),
    ],
)
def test_predict_bad_requests(client: httpx.Client, body: bytes, message: str) -> None:
    response = client.post(f"/v1/models/{MODEL}:predict", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert message in error["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"examples": []}', "non-empty list"),
        (b'{"examples": [1]}', "object of features"),
        (b'{"examples": [{"a": 1}]}', "image_bytes"),
        (b'{"context": [], "examples": [{}]}', "context"),
    ],
)
def test_classify_bad_requests(client: httpx.Client, body: bytes, message: str) -> None:
    response = client.post(f"/v1/models/{MODEL}:classify", content=body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_predict_errors_from_the_inference_service(client: httpx.Client, images: dict[str, bytes]) -> None:
    response = client.post(
        f"/v1/models/{MODEL}:predict", json={"instances": [b64(images["png"]), b64(images["truncated_png"])]}
    )
    assert response.status_code == 400
    assert response.json()["error"]["reason"] == "invalid_image"
    response = client.post("/v1/models/nope:predict", json={"instances": [b64(images["png"])]})
    assert response.status_code == 404
    response = client.post(f"/v1/models/{MODEL}:predict", content=b"{}", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415


def test_a_json_body_under_curls_default_type_or_none_is_json(client: httpx.Client, images: dict[str, bytes]) -> None:
    """``curl -d @body.json URL`` sends application/x-www-form-urlencoded; TF Serving reads the JSON regardless."""
    body = json.dumps({"instances": [b64(images["png"])]}).encode()
    for headers in ({"Content-Type": "application/x-www-form-urlencoded"}, {}):
        response = client.post(f"/v1/models/{MODEL}:predict", content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == 1


def test_large_body_is_parsed_off_the_loop(
    client: httpx.Client, inference: RunningInference, images: dict[str, bytes]
) -> None:
    batch = [images["big_png"], images["png"]]  # > 64 KiB of JSON
    response = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [b64(i) for i in batch]})
    assert response.status_code == 200
    assert [p["probabilities"] for p in response.json()["predictions"]] == oracle(inference, batch)


def test_model_status(client: httpx.Client) -> None:
    expected_version = {"state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    response = client.get(f"/v1/models/{MODEL}")
    assert response.status_code == 200
    assert response.json() == {
        "model_version_status": [{"version": "1", **expected_version}, {"version": "2", **expected_version}]
    }
    assert client.get(f"/v1/models/{MODEL}/versions/2").json() == {
        "model_version_status": [{"version": "2", **expected_version}]
    }
    assert client.get(f"/v1/models/{MODEL}/versions/9").status_code == 404
    assert client.get(f"/v1/models/{MODEL}/labels/stable").status_code == 404
    assert client.get("/v1/models/nope").status_code == 404


def test_model_metadata(client: httpx.Client) -> None:
    response = client.get(f"/v1/models/{MODEL}/metadata")
    assert response.status_code == 200
    body = response.json()
    assert body["model_spec"] == {"name": MODEL, "signature_name": "", "version": "2"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    default = signatures["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert default["outputs"]["probabilities"]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""},
        {"size": "3", "name": ""},
    ]
    images = signatures["predict_images"]["inputs"]["images"]["tensor_shape"]["dim"]
    assert [d["size"] for d in images] == ["-1", "16", "16", "3"]
    assert client.get(f"/v1/models/{MODEL}/versions/1/metadata").json()["model_spec"]["version"] == "1"
    assert client.get("/v1/models/nope/metadata").status_code == 404
