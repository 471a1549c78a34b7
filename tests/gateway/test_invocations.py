"""POST /invocations and /models/{name}[/versions/{v}]/invocations against the real inference service.

The oracle is a direct gRPC Classify on the same server: the gateway must return exactly its numbers,
in exactly the documented bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any

import grpc
import httpx
import pytest

from gateway.settings import GatewaySettings
from tests.gateway.servers import LABELS, MODEL, SECOND_MODEL, RunningInference, run_gateway
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

CONTENT_TYPES = ("application/x-image", "image/jpeg", "image/png")


def direct(
    inference: RunningInference, image: bytes, top_k: int = 0, model: str = MODEL, version: int | None = None
) -> Any:
    with grpc.insecure_channel(inference.target) as channel:
        spec = common_pb2.ModelSpec(name=model)
        if version is not None:
            spec.version = version
        request = classifier_pb2.ClassifyRequest(model=spec, images=[image], top_k=top_k)
        return classifier_pb2_grpc.ClassifierStub(channel).Classify(request, timeout=30)


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def expected_bodies(result: Any) -> dict[str, bytes]:
    probs = list(result.probabilities)
    labels = list(result.labels)
    verbose = {"probabilities": probs, "labels": labels, "predicted_label": result.predicted_label}
    return {
        "application/json": compact(probs),
        "application/json;verbose": compact(verbose),
        "application/jsonlines": compact({"prediction": probs}) + b"\n",
        "application/jsonlines;verbose": compact(
            {"prediction": probs, **{k: verbose[k] for k in ("labels", "predicted_label")}}
        )
        + b"\n",
    }


ACCEPTS = {
    # Accept header → the representation it must produce (the gateway's default is application/json).
    None: "application/json",
    "*/*": "application/json",
    "application/*": "application/json",
    "application/json": "application/json",
    "application/json; charset=utf-8": "application/json",
    "application/json;verbose": "application/json;verbose",
    "application/json; verbose=true": "application/json;verbose",
    "application/jsonlines": "application/jsonlines",
    "application/jsonlines;verbose": "application/jsonlines;verbose",
    "text/html;q=0.9, application/jsonlines;q=0.5": "application/jsonlines",
    "application/json;q=0.1, application/json;verbose;q=0.8, */*;q=0.05": "application/json;verbose",
    "application/jsonlines;q=0, */*": "application/json",
}


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@pytest.mark.parametrize("accept", list(ACCEPTS))
def test_every_content_type_and_accept(
    client: httpx.Client,
    inference: RunningInference,
    images: dict[str, bytes],
    content_type: str,
    accept: str | None,
) -> None:
    image = images["jpeg"] if content_type == "image/jpeg" else images["png"]
    headers = {"Content-Type": content_type}
    if accept is not None:
        headers["Accept"] = accept
    response = client.post("/invocations", content=image, headers=headers)
    assert response.status_code == 200, response.text
    produced = ACCEPTS[accept]
    assert response.content == expected_bodies(direct(inference, image).results[0])[produced]
    assert response.headers["content-type"] == produced.split(";")[0]
    assert response.headers["x-tfic-model"] == MODEL
    assert response.headers["x-tfic-model-version"] == "2"
    assert response.headers["vary"] == "Accept"


def test_shapes(client: httpx.Client, images: dict[str, bytes]) -> None:
    headers = {"Content-Type": "image/png"}
    bare = client.post("/invocations", content=images["png"], headers={**headers, "Accept": "application/json"}).json()
    assert isinstance(bare, list) and len(bare) == len(LABELS)
    assert sum(bare) == pytest.approx(1.0, abs=1e-5)
    verbose = client.post(
        "/invocations", content=images["png"], headers={**headers, "Accept": "application/json;verbose"}
    ).json()
    assert list(verbose) == ["probabilities", "labels", "predicted_label"]
    assert verbose["probabilities"] == bare
    assert verbose["labels"] == list(LABELS)
    assert verbose["predicted_label"] == LABELS[max(range(len(bare)), key=bare.__getitem__)]
    lines = client.post(
        "/invocations", content=images["png"], headers={**headers, "Accept": "application/jsonlines"}
    ).content
    assert lines.endswith(b"\n") and lines.count(b"\n") == 1
    assert json.loads(lines) == {"prediction": bare}


@pytest.mark.parametrize("k", [1, 2, 3, 10])
def test_top_k_trims_and_orders(
    client: httpx.Client, inference: RunningInference, images: dict[str, bytes], k: int
) -> None:
    response = client.post(
        "/invocations",
        params={"top_k": k},
        content=images["png"],
        headers={"Content-Type": "image/png", "Accept": "application/json;verbose"},
    )
    assert response.status_code == 200
    body = response.json()
    full = direct(inference, images["png"]).results[0]
    order = sorted(range(len(LABELS)), key=lambda i: -full.probabilities[i])[: min(k, len(LABELS))]
    assert body["labels"] == [LABELS[i] for i in order]
    assert body["probabilities"] == [full.probabilities[i] for i in order]
    assert body["probabilities"] == sorted(body["probabilities"], reverse=True)
    assert body["predicted_label"] == LABELS[order[0]]
    assert (
        response.content
        == expected_bodies(direct(inference, images["png"], top_k=k).results[0])["application/json;verbose"]
    )


def test_top_k_zero_is_every_class_in_label_order(client: httpx.Client, images: dict[str, bytes]) -> None:
    headers = {"Content-Type": "image/png", "Accept": "application/json;verbose"}
    with_zero = client.post("/invocations", params={"top_k": 0}, content=images["png"], headers=headers)
    without = client.post("/invocations", content=images["png"], headers=headers)
    assert with_zero.content == without.content
    assert with_zero.json()["labels"] == list(LABELS)


@pytest.mark.parametrize(
    ("path", "headers", "model", "version"),
    [
        ("/invocations", {}, MODEL, 2),
        ("/invocations", {"X-Tfic-Model": SECOND_MODEL}, SECOND_MODEL, 1),
        ("/invocations", {"X-Amzn-SageMaker-Target-Model": f"{SECOND_MODEL}.tar.gz"}, SECOND_MODEL, 1),
        ("/invocations", {"X-Tfic-Model": SECOND_MODEL, "X-Amzn-SageMaker-Target-Model": "nope"}, SECOND_MODEL, 1),
        (f"/models/{SECOND_MODEL}/invocations", {"X-Tfic-Model": MODEL}, SECOND_MODEL, 1),
        (f"/models/{MODEL}/invocations", {}, MODEL, 2),
        (f"/models/{MODEL}/versions/1/invocations", {}, MODEL, 1),
        (f"/models/{MODEL}/versions/2/invocations", {}, MODEL, 2),
    ],
)
def test_model_selection(
    client: httpx.Client,
    inference: RunningInference,
    images: dict[str, bytes],
    path: str,
    headers: dict[str, str],
    model: str,
    version: int,
) -> None:
    response = client.post(path, content=images["other_png"], headers={"Content-Type": "image/png", **headers})
    assert response.status_code == 200, response.text
    assert response.headers["x-tfic-model"] == model
    assert response.headers["x-tfic-model-version"] == str(version)
    oracle = direct(inference, images["other_png"], model=model, version=version).results[0]
    assert response.content == compact(list(oracle.probabilities))


def test_request_id_passes_through(client: httpx.Client, images: dict[str, bytes]) -> None:
    given = client.post(
        "/invocations", content=images["png"], headers={"Content-Type": "image/png", "X-Request-Id": "abc-123"}
    )
    assert given.headers["x-request-id"] == "abc-123"
    generated = client.post("/invocations", content=images["png"], headers={"Content-Type": "image/png"})
    assert len(generated.headers["x-request-id"]) == 32
    invalid = client.post(
        "/invocations", content=images["png"], headers={"Content-Type": "image/png", "X-Request-Id": "x" * 200}
    )
    assert invalid.headers["x-request-id"] != "x" * 200
    error = client.post("/invocations", content=b"", headers={"Content-Type": "text/plain", "X-Request-Id": "err-1"})
    assert error.status_code == 415
    assert error.headers["x-request-id"] == "err-1"


def test_chunked_body(client: httpx.Client, images: dict[str, bytes]) -> None:
    image = images["png"]

    def chunks() -> Any:
        for start in range(0, len(image), 100):
            yield image[start : start + 100]

    response = client.post("/invocations", content=chunks(), headers={"Content-Type": "image/png"})
    assert response.status_code == 200
    plain = client.post("/invocations", content=image, headers={"Content-Type": "image/png"})
    assert response.content == plain.content


def _upstream_calls(client: httpx.Client, method: str) -> float:
    text = client.get("/metrics").text
    pattern = rf'^tfic_gateway_upstream_duration_seconds_count{{[^}}]*method="{method}"[^}}]*}} (\S+)$'
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def test_labels_are_fetched_once_per_model_and_bodies_stay_byte_identical(
    inference: RunningInference, images: dict[str, bytes]
) -> None:
    # The gateway asks Classify for no label strings and fills them in from one GetModel per model (every
    # version's labels at once); the bodies are exactly those built from a labelled direct answer.
    with run_gateway(GatewaySettings(inference=inference.target, default_model=MODEL)) as fresh, fresh.client() as c:
        for version in (1, 2, 1, 2):
            for accept in ("application/json", "application/json;verbose"):
                response = c.post(
                    f"/models/{MODEL}/versions/{version}/invocations",
                    content=images["png"],
                    headers={"content-type": "image/png", "accept": accept},
                )
                assert response.status_code == 200, response.text
                expected = expected_bodies(direct(inference, images["png"], version=version).results[0])
                assert response.content == expected[accept]
        assert _upstream_calls(c, "Classify") == 8
        assert _upstream_calls(c, "GetModel") == 1
