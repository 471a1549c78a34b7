"""A small real ``tfic.v1.Classifier`` gRPC server for the gateway's transport tests: outages (stopped and
started again on the same port) and credentials (a required bearer token, TLS, client certificates).

It answers ``Classify`` with fixed probabilities and reports health, and starts in milliseconds, where the
real inference service loads TensorFlow; the gateway's behaviour towards its upstream (reconnecting,
presenting its credential) is what these tests look at, not classification.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.gateway.servers import LoopThread
from tfic.grpc_typing import ServerInterceptor
from tfic.v1 import classifier_pb2, classifier_pb2_grpc

SERVICE = "tfic.v1.Classifier"
MODEL = "stub"
LABELS = ("cat", "dog")


class StubClassifier(classifier_pb2_grpc.ClassifierServicer):
    def __init__(self) -> None:
        self.seen_metadata: list[dict[str, str]] = []

    async def Classify(  # noqa: N802 - gRPC method names
        self, request: classifier_pb2.ClassifyRequest, context: aio.ServicerContext[Any, Any]
    ) -> classifier_pb2.ClassifyResponse:
        self.seen_metadata.append({k: str(v) for k, v in context.invocation_metadata() or ()})
        result = classifier_pb2.Classification(
            probabilities=[0.25, 0.75], labels=LABELS, label_indices=[0, 1], predicted_label="dog", predicted_index=1
        )
        return classifier_pb2.ClassifyResponse(
            model_name=request.model.name, model_version=1, results=[result] * len(request.images)
        )

    async def ListModels(  # noqa: N802 - gRPC method names
        self, request: classifier_pb2.ListModelsRequest, context: aio.ServicerContext[Any, Any]
    ) -> classifier_pb2.ListModelsResponse:
        return classifier_pb2.ListModelsResponse(models=[classifier_pb2.ModelInfo(name=MODEL)])

    async def GetModel(  # noqa: N802 - gRPC method names
        self, request: classifier_pb2.GetModelRequest, context: aio.ServicerContext[Any, Any]
    ) -> classifier_pb2.ModelInfo:
        return classifier_pb2.ModelInfo(name=request.name)


class RequireToken(ServerInterceptor):
    """UNAUTHENTICATED for every call but health checks without ``authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self.expected = f"Bearer {token}"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        metadata = dict(details.invocation_metadata or ())
        if details.method.startswith("/grpc.health.v1.Health/") or metadata.get("authorization") == self.expected:
            return handler

        async def deny(request: Any, context: aio.ServicerContext[Any, Any]) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        return grpc.unary_unary_rpc_method_handler(deny, handler.request_deserializer, handler.response_serializer)


@dataclass
class ClassifierServer:
    """Start and stop a stub Classifier on one port, as often as a test likes."""

    loop: LoopThread
    port: int = 0
    token: str | None = None
    credentials: grpc.ServerCredentials | None = None
    server: aio.Server | None = None
    servicer: StubClassifier | None = None

    def start(self) -> int:
        async def start() -> int:
            interceptors = [RequireToken(self.token)] if self.token else []
            server = aio.server(interceptors=interceptors)
            self.servicer = StubClassifier()
            classifier_pb2_grpc.add_ClassifierServicer_to_server(self.servicer, server)
            health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]  # grpc-stubs lack health.aio
            await health_servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
            address = f"127.0.0.1:{self.port}"
            if self.credentials is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, self.credentials)
            await server.start()
            self.server = server
            return port

        self.port = self.loop.run(start())
        return self.port

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            self.loop.run(server.stop(0))
