"""Health checking (readiness on load, NOT_SERVING on shutdown), reflection, metrics, and the CLI entry point."""

from __future__ import annotations

import argparse
import asyncio
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from inference_svc import main
from inference_svc.server import READINESS_SERVICES, InferenceServer
from inference_svc.settings import Settings, with_batching_config
from tests.inference_svc.support import MODEL, encode, make_settings, publish_copy, random_image, wait_until
from tfic.errors import InvalidArgument
from tfic.settings import add_arguments, from_args
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

METRIC_NAMES = (
    "tfic_inference_requests_total",
    "tfic_inference_request_duration_seconds",
    "tfic_inference_decode_seconds",
    "tfic_inference_queue_wait_seconds",
    "tfic_inference_model_seconds",
    "tfic_inference_batch_size",
    "tfic_inference_batch_padding",
    "tfic_inference_queue_depth",
    "tfic_inference_in_flight_requests",
    "tfic_inference_model_loads_total",
    "tfic_inference_loaded_versions",
)


async def health_status(stub: health_pb2_grpc.HealthStub, service: str) -> int:
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
    return int(response.status)


async def test_health_flips_on_load_and_on_shutdown(tmp_path: Path, model_store: Path) -> None:
    base = tmp_path / "models"
    base.mkdir()
    server = await InferenceServer(make_settings(base)).start()
    stopped = False
    try:
        async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            assert await health_status(stub, "") == SERVING
            for service in READINESS_SERVICES:
                assert await health_status(stub, service) == NOT_SERVING
            # Watch streams the change, as a Kubernetes gRPC probe or a client would see it.
            watch = stub.Watch(health_pb2.HealthCheckRequest(service="tfic.v1.Classifier"))
            assert (await watch.read()).status == NOT_SERVING
            publish_copy(model_store / MODEL / "1", base / MODEL, 1)
            assert (await asyncio.wait_for(watch.read(), timeout=60)).status == SERVING
            watch.cancel()
            assert await health_status(stub, MODEL) == SERVING
            for service in READINESS_SERVICES:
                assert await health_status(stub, service) == SERVING

            # Shutdown: everything turns NOT_SERVING during the drain, while calls are still answered.
            stopping = asyncio.ensure_future(server.stop(grace=1.0, drain=0.5))
            await wait_until(lambda: _all_not_serving(stub), what="NOT_SERVING everywhere")
            classify = classifier_pb2_grpc.ClassifierStub(channel)
            spec = common_pb2.ModelSpec(name=MODEL)
            response = await classify.Classify(
                classifier_pb2.ClassifyRequest(model=spec, images=[encode(random_image(1))])
            )
            assert response.model_version == 1
            await stopping
            stopped = True
            with pytest.raises(grpc.RpcError) as info:
                await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        if not stopped:
            await server.stop(grace=1.0)


async def _all_not_serving(stub: health_pb2_grpc.HealthStub) -> bool:
    statuses = [await health_status(stub, s) for s in ("", *READINESS_SERVICES, MODEL)]
    return all(s == NOT_SERVING for s in statuses)


async def test_reflection_lists_the_services(channel: aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def requests() -> object:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names: set[str] = set()
    async for response in stub.ServerReflectionInfo(requests()):
        names |= {s.name for s in response.list_services_response.service}
    assert {
        "tfic.v1.Classifier",
        "tensorflow.serving.PredictionService",
        "tensorflow.serving.ModelService",
        "grpc.health.v1.Health",
    } <= names


async def test_metrics_endpoint_exposes_the_contract_names(server: InferenceServer, channel: aio.Channel) -> None:
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    spec = common_pb2.ModelSpec(name=MODEL)
    await stub.Classify(classifier_pb2.ClassifyRequest(model=spec, images=[encode(random_image(2))] * 3))
    with pytest.raises(grpc.RpcError):
        await stub.Classify(classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name="x" * 50), images=[b"1"]))
    assert server.metrics_port
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    text = (await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())).decode()
    for name in METRIC_NAMES:
        assert f"\n{name}" in text or text.startswith(name), name
    assert f'tfic_inference_requests_total{{code="OK",method="Classify",model="{MODEL}"}} 1.0' in text
    assert 'tfic_inference_requests_total{code="NOT_FOUND",method="Classify",model="_unknown"} 1.0' in text
    assert f'tfic_inference_batch_size_sum{{model="{MODEL}"}} 3.0' in text
    assert "tfic_inference_decode_seconds_count 3.0" in text
    assert f'tfic_inference_loaded_versions{{model="{MODEL}"}} 1.0' in text
    assert f'tfic_inference_model_loads_total{{model="{MODEL}",outcome="success"}} 1.0' in text
    assert "tfic_inference_in_flight_requests 0.0" in text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_arguments(parser, main.SETTINGS)
    return parser


def test_flags_and_environment_build_the_settings(tmp_path: Path) -> None:
    environ = {
        "TFIC_MODEL_BASE_PATH": str(tmp_path),
        "TFIC_INFERENCE_PORT": "9000",
        "TFIC_INFERENCE_MAX_BATCH_SIZE": "16",
        "TFIC_INFERENCE_ENABLE_BATCHING": "false",
    }
    batching = tmp_path / "batching.yaml"
    batching.write_text(
        "batch_timeout_micros: 500\nmodels:\n  big: {max_batch_size: 4, allowed_batch_sizes: [2, 4], adaptive: false}\n"
    )
    parser = _parser()
    args = parser.parse_args(["--metrics-port", "9999", "--batching-config", str(batching), "--version-policy", "all"])
    settings = with_batching_config(from_args(Settings, args, environ))
    assert settings.model_base_path == tmp_path
    assert (settings.port, settings.metrics_port) == (9000, 9999)
    assert settings.batching.max_batch_size == 16 and not settings.batching.enabled
    assert settings.batching.batch_timeout_micros == 500
    assert settings.batching_for("big").batch_sizes == (1,)  # batching is off globally
    assert settings.batching_for("big").max_batch_size == 4
    assert settings.batching.adaptive and not settings.batching_for("big").adaptive  # per-model override
    assert settings.batching_for("other") == settings.batching
    assert str(settings.version_policy) == "all"
    assert "TFIC_INFERENCE_DECODE_WORKERS" in parser.format_help()


def test_runtime_flags_are_validated(tmp_path: Path) -> None:
    parser = _parser()
    base = ["--model-base-path", str(tmp_path)]
    settings = from_args(
        Settings, parser.parse_args([*base, "--mixed-precision", "bfloat16", "--event-loop", "asyncio"]), {}
    )
    assert (settings.mixed_precision, settings.event_loop) == ("bfloat16", "asyncio")
    with pytest.raises(InvalidArgument, match=r"^--xla and --mixed-precision do not combine.*choose one$"):
        from_args(Settings, parser.parse_args([*base, "--xla", "--mixed-precision", "float16"]), {})
    # A value from the environment is named by its variable too.
    with pytest.raises(InvalidArgument, match=r"\(--xla was set by TFIC_INFERENCE_XLA\)$"):
        from_args(Settings, parser.parse_args([*base, "--mixed-precision", "float16"]), {"TFIC_INFERENCE_XLA": "1"})
    with pytest.raises(InvalidArgument, match="--event-loop must be one of uvloop, asyncio; got 'tokio'"):
        Settings(model_base_path=tmp_path, event_loop="tokio")
