"""Hot versions: swaps under load, failed loads, version policies and TF Serving's model config file."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc import aio
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from inference_svc.modelconfig import parse_model_config
from inference_svc.repository import VersionState
from inference_svc.server import InferenceServer
from inference_svc.settings import VersionPolicy
from tests.inference_svc.support import (
    MODEL,
    encode,
    make_settings,
    publish_broken,
    publish_copy,
    random_image,
    wait_until,
)
from tfic.errors import InvalidArgument
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

IMAGE = encode(random_image(0))


def states(server: InferenceServer, name: str = MODEL) -> dict[int, VersionState]:
    return {v.version: v.state for v in server.repository.model(name).versions}


async def classify(stub: classifier_pb2_grpc.ClassifierAsyncStub, name: str = MODEL, **spec: object) -> int:
    response = await stub.Classify(
        classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=name, **spec), images=[IMAGE])  # type: ignore[arg-type]
    )
    return int(response.model_version)


async def test_version_swap_under_concurrent_load_fails_no_request(
    server: InferenceServer, channel: aio.Channel, base_path: Path, model_store: Path
) -> None:
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    answered: Counter[int] = Counter()
    failures: list[grpc.RpcError] = []
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set():
            try:
                answered[await classify(stub)] += 1
            except grpc.RpcError as exc:
                failures.append(exc)

    clients = [asyncio.create_task(client()) for _ in range(8)]
    try:
        await wait_until(lambda: answered[1] >= 20, what="traffic on version 1")
        publish_copy(model_store / MODEL / "1", base_path / MODEL, 2)
        await wait_until(lambda: answered[2] >= 20, what="traffic on version 2")
        await wait_until(lambda: states(server) == {2: VersionState.AVAILABLE}, what="version 1 to unload")
        after_unload = answered[1]
        await wait_until(lambda: answered[2] >= 40, what="more traffic on version 2")
    finally:
        stop.set()
        await asyncio.gather(*clients)
    assert failures == []
    assert answered[1] == after_unload  # nothing answered by version 1 once it was gone
    assert server.metrics.model_loads.labels(MODEL, "success")._value.get() == 2
    assert server.metrics.loaded_versions.labels(MODEL)._value.get() == 1


async def test_broken_new_version_leaves_the_old_one_serving(
    server: InferenceServer, channel: aio.Channel, base_path: Path, model_store: Path
) -> None:
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    publish_broken(model_store / MODEL / "1", base_path / MODEL, 2)
    await wait_until(lambda: states(server).get(2) is VersionState.FAILED, what="version 2 to fail")
    assert states(server) == {1: VersionState.AVAILABLE, 2: VersionState.FAILED}
    assert await classify(stub) == 1
    assert server.metrics.model_loads.labels(MODEL, "failure")._value.get() == 1

    info = await stub.GetModel(classifier_pb2.GetModelRequest(name=MODEL))
    failed = next(v for v in info.versions if v.version == 2)
    assert failed.state == classifier_pb2.VERSION_STATE_FAILED and failed.error
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = MODEL
    status = await model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_request)
    by_version = {s.version: s for s in status.model_version_status}
    assert by_version[2].state == get_model_status_pb2.ModelVersionStatus.END
    assert by_version[2].status.error_message == failed.error

    # A good version 3 replaces both.
    publish_copy(model_store / MODEL / "1", base_path / MODEL, 3)
    await wait_until(lambda: states(server) == {3: VersionState.AVAILABLE}, what="version 3 alone")
    assert await classify(stub) == 3


async def test_a_half_copied_version_is_retried_when_its_variables_arrive(
    server: InferenceServer, channel: aio.Channel, base_path: Path, model_store: Path
) -> None:
    """A non-atomic copy (``cp -r``, rsync without a staging folder) lands ``saved_model.pb`` before the
    variables: the version fails, says it will be retried, and loads once the rest of its files are there
    (copied with their old mtimes, as ``cp -p`` and shutil do) without anyone touching ``saved_model.pb``."""
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    source, target = model_store / MODEL / "1", base_path / MODEL / "2"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("variables"))
    await wait_until(lambda: states(server).get(2) is VersionState.FAILED, what="version 2 to fail")
    assert await classify(stub) == 1
    info = await stub.GetModel(classifier_pb2.GetModelRequest(name=MODEL))
    failed = next(v for v in info.versions if v.version == 2)
    assert failed.error.endswith("(retried when any file of the version changes)"), failed.error
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = MODEL
    status = await model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_request)
    assert {s.version: s.status.error_message for s in status.model_version_status}[2] == failed.error

    shutil.copytree(source / "variables", target / "variables")
    await wait_until(lambda: states(server) == {2: VersionState.AVAILABLE}, timeout=30, what="version 2 to load")
    assert await classify(stub) == 2
    assert server.metrics.model_loads.labels(MODEL, "failure")._value.get() == 1


async def test_removing_the_newest_version_falls_back(
    server: InferenceServer, channel: aio.Channel, base_path: Path, model_store: Path
) -> None:
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    publish_copy(model_store / MODEL / "1", base_path / MODEL, 2)
    await wait_until(lambda: states(server) == {2: VersionState.AVAILABLE}, what="the swap to version 2")
    shutil.rmtree(base_path / MODEL / "2")
    await wait_until(lambda: states(server) == {1: VersionState.AVAILABLE}, what="the fall-back to version 1")
    assert await classify(stub) == 1


async def test_all_versions_policy_new_models_and_ignored_directories(base_path: Path, model_store: Path) -> None:
    publish_copy(model_store / MODEL / "1", base_path / MODEL, 2)
    (base_path / ".work" / "x" / "5").mkdir(parents=True)  # dot-dirs are never models
    (base_path / MODEL / "notanumber").mkdir()
    server = await InferenceServer(make_settings(base_path, version_policy=VersionPolicy.parse("all"))).start()
    try:
        await wait_until(
            lambda: (
                server.repository.available(MODEL)
                and len(states(server)) == 2
                and all(s is VersionState.AVAILABLE for s in states(server).values())
            ),
            what="both versions",
        )
        async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            assert await classify(stub) == 2
            assert await classify(stub, version=1) == 1
            # A model directory appearing later is picked up by the watcher.
            publish_copy(model_store / "other" / "1", base_path / "other", 4)
            await wait_until(lambda: server.repository.available("other"), what="the new model")
            assert await classify(stub, name="other") == 4
        assert [m.name for m in server.repository.models()] == ["other", MODEL]
    finally:
        await server.stop(grace=1.0)


async def test_model_config_file_policies_labels_and_reload(tmp_path: Path, model_store: Path) -> None:
    for version in (1, 2, 3):
        publish_copy(model_store / MODEL / "1", tmp_path / "store" / MODEL, version)
    publish_copy(model_store / "other" / "1", tmp_path / "store" / "other", 1)
    config = tmp_path / "models.config"
    config.write_text(
        f"""
        model_config_list {{
          config {{
            name: "{MODEL}"
            base_path: "store/{MODEL}"
            model_platform: "tensorflow"
            model_version_policy {{ specific {{ versions: 1 versions: 3 }} }}
            version_labels {{ key: "stable" value: 1 }}
            version_labels {{ key: "canary" value: 3 }}
          }}
        }}
        """
    )
    settings = make_settings(tmp_path / "unused", model_base_path=None, model_config_file=config)
    server = await InferenceServer(settings).start()
    try:
        await wait_until(
            lambda: states(server) == {1: VersionState.AVAILABLE, 3: VersionState.AVAILABLE}, what="versions 1 and 3"
        )
        async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            assert await classify(stub) == 3
            assert await classify(stub, version_label="stable") == 1
            assert await classify(stub, version_label="canary") == 3
            with pytest.raises(grpc.RpcError) as info:
                await classify(stub, version_label="nightly")
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
            info_pb = await stub.GetModel(classifier_pb2.GetModelRequest(name=MODEL))
            assert {v.version: list(v.version_labels) for v in info_pb.versions} == {1: ["stable"], 3: ["canary"]}
            # Editing the file adds a model and changes the policy.
            config.write_text(
                f"""
                model_config_list {{
                  config {{ name: "{MODEL}" base_path: "store/{MODEL}" }}
                  config {{ name: "other" base_path: "{tmp_path / "store" / "other"}" }}
                }}
                """
            )
            await wait_until(
                lambda: server.repository.available("other") and states(server) == {3: VersionState.AVAILABLE},
                what="the new config",
            )
            assert await classify(stub, name="other") == 1
    finally:
        await server.stop(grace=1.0)


def test_model_config_parsing() -> None:
    (config,) = parse_model_config(
        'model_config_list { config { name: "m" base_path: "/m" model_version_policy { latest { num_versions: 2 } } } }'
    )
    assert config.policy == VersionPolicy("latest", num_versions=2)
    assert config.policy.select([1, 2, 5]) == [2, 5]
    (config,) = parse_model_config('model_config_list { config { name: "m" base_path: "/m" } }')
    assert config.policy == VersionPolicy("latest", num_versions=1)
    with pytest.raises(InvalidArgument, match="text proto"):
        parse_model_config("model_config_list { nonsense }")
    with pytest.raises(InvalidArgument, match="configured twice"):
        parse_model_config(
            'model_config_list { config { name: "m" base_path: "/a" } config { name: "m" base_path: "/b" } }'
        )
    with pytest.raises(InvalidArgument, match="platform"):
        parse_model_config('model_config_list { config { name: "m" base_path: "/a" model_platform: "onnx" } }')
    assert VersionPolicy.parse("specific:3,1").select([1, 2, 3]) == [1, 3]
    assert VersionPolicy.parse("all").select([2, 1]) == [1, 2]
    with pytest.raises(InvalidArgument):
        VersionPolicy.parse("newest")


async def test_a_version_trained_with_the_older_preprocessing_definition_is_served_with_a_warning(
    tmp_path: Path, model_store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json

    base = tmp_path / "models"
    version = publish_copy(model_store / MODEL / "1", base / MODEL, 1)
    meta_file = version / "assets.extra" / "tfic.json"
    meta = json.loads(meta_file.read_text())
    assert meta["preprocessing"].pop("definition") == 2  # what an export records now
    meta_file.write_text(json.dumps(meta))  # a version exported before issue 14
    caplog.set_level("WARNING", logger="inference_svc.repository")
    srv = await InferenceServer(make_settings(base)).start()
    try:
        await wait_until(lambda: srv.repository.available(MODEL), what="the old version to load")
    finally:
        await srv.stop(grace=1.0)
    assert "trained with preprocessing definition 1" in caplog.text
