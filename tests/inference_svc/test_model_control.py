"""tfic.v1.ModelControl on a real server: unload a model or a version without touching its files, load it back;
and fleet version labels read from the model's folder (routing, fallbacks, a damaged file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from inference_svc.server import InferenceServer
from inference_svc.settings import VersionPolicy
from tests.inference_svc.support import MODEL, encode, make_settings, publish_copy, random_image, wait_until
from tfic import version_labels
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2, model_control_pb2, model_control_pb2_grpc

TOKEN = "control-token"
GOOD = (("authorization", f"Bearer {TOKEN}"),)
IMAGE = encode(random_image(3))


async def classify(channel: aio.Channel, version: int | None = None, label: str = "") -> int:
    spec = common_pb2.ModelSpec(name=MODEL, version=version, version_label=label)
    request = classifier_pb2.ClassifyRequest(model=spec, images=[IMAGE])
    response = await classifier_pb2_grpc.ClassifierStub(channel).Classify(request, timeout=30, metadata=GOOD)
    return int(response.model_version)


async def rpc_error(call: Any) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    return caught.value


@pytest.fixture
async def secured(base_path: Path) -> Any:
    publish_copy(base_path / MODEL / "1", base_path / MODEL, 2)
    server = await InferenceServer(
        make_settings(base_path, auth_token=TOKEN, version_policy=VersionPolicy("all"))
    ).start()
    await wait_until(
        lambda: (
            [(v.version, v.state.value) for v in server.repository.model(MODEL).versions]
            == [(1, "available"), (2, "available")]
        ),
        what="versions 1 and 2",
    )
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield server, channel
    await server.stop(grace=1.0)


async def test_unload_and_load_a_model(secured: Any, base_path: Path) -> None:
    server, channel = secured
    control = model_control_pb2_grpc.ModelControlStub(channel)
    info = await control.UnloadModel(
        model_control_pb2.UnloadModelRequest(name=MODEL, reason="maintenance"), metadata=GOOD, timeout=60
    )
    assert [(v.version, v.state, v.error) for v in info.versions] == [
        (1, classifier_pb2.VERSION_STATE_END, "unloaded: maintenance"),
        (2, classifier_pb2.VERSION_STATE_END, "unloaded: maintenance"),
    ]
    assert (base_path / MODEL / "1" / "saved_model.pb").is_file()  # nothing on disk changed
    error = await rpc_error(classify(channel))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == f"model {MODEL!r} is unloaded (maintenance); load it again to serve it"
    error = await rpc_error(classify(channel, version=1))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    # TensorFlow Serving's own status API says END with the reason too, and a poll does not bring it back.
    await server.repository.poll()
    status = await model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": MODEL}), metadata=GOOD, timeout=10
    )
    assert {s.state for s in status.model_version_status} == {get_model_status_pb2.ModelVersionStatus.END}
    assert {(s.status.error_code, s.status.error_message) for s in status.model_version_status} == {
        (0, "unloaded: maintenance")
    }
    assert not server.repository.available(MODEL)
    # The model's health is NOT_SERVING; the server's readiness stays SERVING, so LoadModel can still reach it.
    health = health_pb2_grpc.HealthStub(channel)
    check = await health.Check(health_pb2.HealthCheckRequest(service=MODEL), timeout=10)
    assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
    check = await health.Check(health_pb2.HealthCheckRequest(service="tfic.v1.Classifier"), timeout=10)
    assert check.status == health_pb2.HealthCheckResponse.SERVING

    info = await control.LoadModel(model_control_pb2.LoadModelRequest(name=MODEL), metadata=GOOD, timeout=60)
    assert [(v.version, v.state, v.error) for v in info.versions] == [
        (1, classifier_pb2.VERSION_STATE_AVAILABLE, ""),
        (2, classifier_pb2.VERSION_STATE_AVAILABLE, ""),
    ]
    assert await classify(channel) == 2
    assert await classify(channel, version=1) == 1


async def test_unload_one_version(secured: Any) -> None:
    _, channel = secured
    control = model_control_pb2_grpc.ModelControlStub(channel)
    info = await control.UnloadModel(
        model_control_pb2.UnloadModelRequest(name=MODEL, version=2), metadata=GOOD, timeout=60
    )
    assert [(v.version, v.state) for v in info.versions] == [
        (1, classifier_pb2.VERSION_STATE_AVAILABLE),
        (2, classifier_pb2.VERSION_STATE_END),
    ]
    assert info.versions[1].error == "unloaded: by an operator"
    assert await classify(channel) == 1  # the default request moves to what is still served
    error = await rpc_error(classify(channel, version=2))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "version 2 is unloaded (by an operator)" in (error.details() or "")
    info = await control.LoadModel(model_control_pb2.LoadModelRequest(name=MODEL, version=2), metadata=GOOD, timeout=60)
    assert [(v.version, v.state) for v in info.versions][1] == (2, classifier_pb2.VERSION_STATE_AVAILABLE)
    assert await classify(channel, version=2) == 2


async def test_control_errors_and_auth(secured: Any) -> None:
    _, channel = secured
    control = model_control_pb2_grpc.ModelControlStub(channel)
    error = await rpc_error(control.UnloadModel(model_control_pb2.UnloadModelRequest(name=MODEL), timeout=10))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    error = await rpc_error(
        control.UnloadModel(
            model_control_pb2.UnloadModelRequest(name=MODEL), metadata=(("authorization", "Bearer no"),), timeout=10
        )
    )
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert await classify(channel) == 2  # refused calls changed nothing
    error = await rpc_error(
        control.UnloadModel(model_control_pb2.UnloadModelRequest(name="nope"), metadata=GOOD, timeout=10)
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
    error = await rpc_error(
        control.UnloadModel(model_control_pb2.UnloadModelRequest(name=MODEL, version=9), metadata=GOOD, timeout=10)
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
    await control.UnloadModel(model_control_pb2.UnloadModelRequest(name=MODEL), metadata=GOOD, timeout=60)
    error = await rpc_error(
        control.LoadModel(model_control_pb2.LoadModelRequest(name=MODEL, version=1), metadata=GOOD, timeout=10)
    )
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "unloaded as a whole" in (error.details() or "")


# ----------------------------------------------------------------------------- fleet labels, one server
def write_labels(model_dir: Path, labels: dict[str, int], share: float | None = None) -> None:
    version_labels.write(model_dir, version_labels.VersionLabels(labels, share))


async def test_labels_route_default_requests_and_canary_share(server: InferenceServer, channel: aio.Channel) -> None:
    assert server.settings.model_base_path is not None
    model_dir = server.settings.model_base_path / MODEL
    write_labels(model_dir, {"stable": 1})
    publish_copy(model_dir / "1", model_dir, 2)
    await server.repository.poll()
    assert [v.version for v in server.repository.model(MODEL).versions] == [1]  # labels, not latest:1, decide
    write_labels(model_dir, {"stable": 1, "canary": 2}, share=0.5)
    await server.repository.poll()
    await wait_until(lambda: server.repository.available(MODEL) and len(server.repository.model(MODEL).versions) == 2)
    await wait_until(lambda: all(v.state.value == "available" for v in server.repository.model(MODEL).versions))
    answers = [await classify(channel) for _ in range(20)]
    assert answers.count(2) == 10 and answers[:4] in ([1, 2, 1, 2], [2, 1, 2, 1])  # evenly spread
    assert await classify(channel, label="canary") == 2
    assert await classify(channel, label="stable") == 1
    status = {v.version: v.version_labels for v in server.repository.model(MODEL).versions}
    assert status == {1: ("stable",), 2: ("canary",)}


async def test_labels_naming_a_missing_version_and_a_damaged_file(
    server: InferenceServer, channel: aio.Channel
) -> None:
    assert server.settings.model_base_path is not None
    model_dir = server.settings.model_base_path / MODEL
    write_labels(model_dir, {"stable": 7})  # not on disk: the policy's version keeps serving
    await server.repository.poll()
    assert await classify(channel) == 1
    write_labels(model_dir, {"stable": 1})
    await server.repository.poll()
    publish_copy(model_dir / "1", model_dir, 2)
    (model_dir / version_labels.FILE_NAME).write_text("{not json")  # damaged: the previous labels stay
    await server.repository.poll()
    assert [v.version for v in server.repository.model(MODEL).versions] == [1]
    assert await classify(channel) == 1
    (model_dir / version_labels.FILE_NAME).unlink()  # no file: exactly the version policy again (latest:1)
    await server.repository.poll()
    await wait_until(lambda: [v.version for v in server.repository.model(MODEL).versions] == [2], what="v2 alone")
    assert await classify(channel) == 2


def test_labels_file_format(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="format 2"):
        version_labels.parse(json.dumps({"format": 2, "labels": {}}))
    with pytest.raises(Exception, match="positive version"):
        version_labels.parse(json.dumps({"labels": {"stable": 0}}))
    with pytest.raises(Exception, match="canary share"):
        version_labels.parse(json.dumps({"labels": {}, "canary_share": 1.5}))
    labels = version_labels.moved(version_labels.VersionLabels({"stable": 1}), "stable", 2, "test")
    assert version_labels.previous_version(labels, "stable") == 1
    version_labels.write(tmp_path, labels)
    assert version_labels.read(tmp_path) == labels
    assert [p.name for p in tmp_path.iterdir()] == [version_labels.FILE_NAME]  # no temporary file left
