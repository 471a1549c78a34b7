"""A small client of the Trainer service (tfic.v1.Trainer) for the console's Jobs page: the protos only.

The gateway never imports trainer_svc; what it knows of jobs is the Trainer's gRPC API. Jobs travel to the
browser as the protobuf JSON mapping (``MessageToDict`` with the proto field names), so the page reads the same
field names as ``tfic jobs get --json`` prints.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.json_format import MessageToDict
from grpc import aio

from tfic.grpc_errors import exception_from_rpc
from tfic.v1 import trainer_pb2 as pb
from tfic.v1 import trainer_pb2_grpc

Json = dict[str, Any]


def to_json(message: Any) -> Json:
    data: Json = MessageToDict(message, preserving_proto_field_name=True)
    return data


class TrainerClient:
    """One ``grpc.aio`` channel to the Trainer; create it on the serving event loop."""

    def __init__(
        self, target: str, *, timeout: float, token: str | None = None, default_retry_after: float = 1.0
    ) -> None:
        self.target = target
        self._channel = aio.insecure_channel(target)
        self._stub = trainer_pb2_grpc.TrainerStub(self._channel)
        self._timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._retry_after = default_retry_after

    async def _unary(self, rpc: Any, request: Any) -> Any:
        try:
            return await rpc(request, timeout=self._timeout, metadata=self._metadata)
        except aio.AioRpcError as exc:
            raise exception_from_rpc(exc, self._retry_after) from None

    async def list_jobs(self, page_token: str = "", page_size: int = 100) -> Json:
        request = pb.ListTrainingJobsRequest(page_size=page_size, page_token=page_token)
        return to_json(await self._unary(self._stub.ListTrainingJobs, request))

    async def get_job(self, job: str) -> Json:
        return to_json(await self._unary(self._stub.GetTrainingJob, pb.GetTrainingJobRequest(job=job)))

    async def stop_job(self, job: str) -> Json:
        return to_json(await self._unary(self._stub.StopTrainingJob, pb.StopTrainingJobRequest(job=job)))

    async def watch(self, job: str) -> AsyncIterator[Json]:
        """The job's events from the first, then live ones; ends when the job ends (no deadline: jobs are long)."""
        call = self._stub.WatchTrainingJob(pb.WatchTrainingJobRequest(job=job), metadata=self._metadata)
        try:
            async for event in call:
                yield to_json(event)
        except aio.AioRpcError as exc:
            raise exception_from_rpc(exc, self._retry_after) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close(None)
