"""The inference service's port is closed without the bearer token, and speaks TLS and mutual TLS when told to;
health checks and reflection stay open, deliberately (tfic/grpc_security.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from inference_svc.server import InferenceServer
from inference_svc.settings import Settings
from tests.certs import Pki, make_pki
from tests.inference_svc.support import MODEL, encode, make_settings, random_image, wait_until
from tfic.errors import InvalidArgument
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

TOKEN = "s3cret-token"
GOOD = (("authorization", f"Bearer {TOKEN}"),)
WRONG = (("authorization", "Bearer nope"),)

Start = Callable[..., Any]


@pytest.fixture
async def start(base_path: Path) -> AsyncIterator[Start]:
    servers: list[InferenceServer] = []

    async def start(**overrides: Any) -> InferenceServer:
        server = await InferenceServer(make_settings(base_path, **overrides)).start()
        servers.append(server)
        await wait_until(lambda: server.repository.available(MODEL), what="tiny/1 to load")
        return server

    yield start
    for server in servers:
        await server.stop(grace=1.0)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _classify(channel: aio.Channel, metadata: Any = None) -> Any:
    request = classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL), images=[encode(random_image(1))])
    return classifier_pb2_grpc.ClassifierStub(channel).Classify(request, metadata=metadata, timeout=30)


def _predict(channel: aio.Channel, metadata: Any = None) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    tensor = request.inputs["image_bytes"]
    tensor.dtype = 7  # DT_STRING
    tensor.tensor_shape.dim.add(size=1)
    tensor.string_val.append(encode(random_image(2)))
    return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, metadata=metadata, timeout=30)


def _list_models(channel: aio.Channel, metadata: Any = None) -> Any:
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    return stub.ListModels(classifier_pb2.ListModelsRequest(), metadata=metadata, timeout=30)


async def _code(call: Any) -> grpc.StatusCode:
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    return caught.value.code()


async def _health(channel: aio.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return int((await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)).status)


async def test_every_model_call_needs_the_token_but_health_and_reflection(start: Start) -> None:
    server = await start(auth_token=TOKEN)
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        for call in (_classify, _predict, _list_models):
            for metadata in (None, WRONG):
                assert await _code(call(channel, metadata)) == grpc.StatusCode.UNAUTHENTICATED, call.__name__
        with pytest.raises(aio.AioRpcError) as caught:
            await _classify(channel)
        failed: Any = caught.value  # an AioRpcError is also the call grpcio-status reads
        status = rpc_status.from_call(failed)
        assert status is not None  # the same google.rpc.Status as any error
        info = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(info) and info.reason == "unauthenticated"
        assert "authorization: Bearer" in (caught.value.details() or "")

        assert (await _classify(channel, GOOD)).model_version == 1
        assert (await _predict(channel, GOOD)).model_spec.version.value == 1
        assert [m.name for m in (await _list_models(channel, GOOD)).models] == [MODEL]

        serving = health_pb2.HealthCheckResponse.SERVING
        assert await _health(channel) == serving
        assert await _health(channel, "tfic.v1.Classifier") == serving

        async def list_services() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        names: set[str] = set()
        async for response in reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(list_services()):
            names |= {s.name for s in response.list_services_response.service}
        assert "tfic.v1.Classifier" in names


async def test_tls_serves_only_tls(start: Start, pki: Pki) -> None:
    server = await start(tls_cert=pki.server_cert, tls_key=pki.server_key)
    async with aio.secure_channel(f"localhost:{server.port}", pki.channel_credentials()) as channel:
        assert (await _classify(channel)).model_version == 1
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as plain:
        assert await _code(_list_models(plain)) in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def test_mutual_tls_refuses_a_client_without_a_certificate(start: Start, pki: Pki) -> None:
    server = await start(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca, auth_token=TOKEN)
    target = f"localhost:{server.port}"
    async with aio.secure_channel(target, pki.channel_credentials()) as anonymous:
        assert await _code(_list_models(anonymous, GOOD)) == grpc.StatusCode.UNAVAILABLE
    async with aio.secure_channel(target, pki.channel_credentials(client_cert=True)) as gateway:
        assert (await _classify(gateway, GOOD)).model_version == 1
        assert await _code(_classify(gateway)) == grpc.StatusCode.UNAUTHENTICATED  # both, not either


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tls_cert": Path("a.crt")}, "TLS needs both --tls-cert and --tls-key"),
        ({"tls_key": Path("a.key")}, "TLS needs both --tls-cert and --tls-key"),
        ({"tls_client_ca": Path("ca.crt")}, "--tls-client-ca needs TLS"),
        ({"auth_token": "  "}, "--auth-token must not be blank"),
    ],
)
def test_half_configured_security_is_refused(tmp_path: Path, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Settings(model_base_path=tmp_path, **overrides)
