"""``tfic.v1.ModelControl``: an operator's unload and load of a model or a version, files untouched."""

from __future__ import annotations

from typing import Any

from grpc import aio

from inference_svc.repository import ModelRepository
from inference_svc.servicers.classifier import model_to_pb
from tfic.v1 import classifier_pb2, model_control_pb2, model_control_pb2_grpc

SERVICE_NAME = "tfic.v1.ModelControl"


class ModelControlServicer(model_control_pb2_grpc.ModelControlServicer):
    def __init__(self, repository: ModelRepository) -> None:
        self._repository = repository

    async def UnloadModel(  # noqa: N802 - gRPC method names
        self, request: model_control_pb2.UnloadModelRequest, context: aio.ServicerContext[Any, Any]
    ) -> classifier_pb2.ModelInfo:
        version = request.version if request.HasField("version") else None
        status = await self._repository.unload(request.name, version, request.reason)
        return model_to_pb(status)

    async def LoadModel(  # noqa: N802 - gRPC method names
        self, request: model_control_pb2.LoadModelRequest, context: aio.ServicerContext[Any, Any]
    ) -> classifier_pb2.ModelInfo:
        version = request.version if request.HasField("version") else None
        return model_to_pb(await self._repository.load(request.name, version))
