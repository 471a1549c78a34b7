"""The Trainer gRPC servicer: protobuf in, the runner, protobuf out. Errors are tfic exceptions that
:class:`tfic.grpc_errors.ErrorInterceptor` turns into status codes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from tfic.errors import InvalidArgument, Unavailable
from tfic.v1 import trainer_pb2 as pb
from tfic.v1 import trainer_pb2_grpc
from trainer_svc.service import proto_mapping
from trainer_svc.service.jobs import Job
from trainer_svc.service.runner import JobRunner


def _ref(job: str) -> str:
    if not job.strip():
        raise InvalidArgument("give a job id or name")
    return job.strip()


class TrainerServicer(trainer_pb2_grpc.TrainerServicer):
    """Serves once :attr:`runner` is set (the store is open); UNAVAILABLE before."""

    def __init__(self) -> None:
        self.runner: JobRunner | None = None

    def _job_pb(self, job: Job) -> pb.TrainingJob:
        return proto_mapping.job_to_pb(job, self._runner().settings.tensorboard_dir(job.job_id))

    def _runner(self) -> JobRunner:
        if self.runner is None:
            raise Unavailable("the trainer is starting; retry shortly")
        return self.runner

    async def CreateTrainingJob(  # noqa: N802 - gRPC method names
        self, request: pb.CreateTrainingJobRequest, context: aio.ServicerContext[Any, Any]
    ) -> pb.TrainingJob:
        spec = proto_mapping.spec_from_pb(request.spec)
        job = await self._runner().create(request.name, spec, request.request_id or None)
        return self._job_pb(job)

    async def GetTrainingJob(  # noqa: N802
        self, request: pb.GetTrainingJobRequest, context: aio.ServicerContext[Any, Any]
    ) -> pb.TrainingJob:
        return self._job_pb(await self._runner().get(_ref(request.job)))

    async def ListTrainingJobs(  # noqa: N802
        self, request: pb.ListTrainingJobsRequest, context: aio.ServicerContext[Any, Any]
    ) -> pb.ListTrainingJobsResponse:
        states = proto_mapping.states_from_pb(request.states)
        jobs, token = await self._runner().list_jobs(states, request.page_size, request.page_token)
        return pb.ListTrainingJobsResponse(jobs=[self._job_pb(j) for j in jobs], next_page_token=token)

    async def StopTrainingJob(  # noqa: N802
        self, request: pb.StopTrainingJobRequest, context: aio.ServicerContext[Any, Any]
    ) -> pb.TrainingJob:
        return self._job_pb(await self._runner().stop(_ref(request.job)))

    async def WatchTrainingJob(  # noqa: N802
        self, request: pb.WatchTrainingJobRequest, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.TrainingEvent]:
        async for event in self._runner().watch(_ref(request.job)):
            yield proto_mapping.event_to_pb(event)
