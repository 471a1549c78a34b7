"""The server around the API: health, bearer token, TLS, metrics, and recovery of a previous server's jobs."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from trainer_harness import StartTrainer, make_settings, rpc_error, spec

from tests.certs import self_signed
from tfic.errors import FailedPrecondition
from tfic.v1 import trainer_pb2 as pb
from tfic.v1 import trainer_pb2_grpc
from trainer_svc.service.jobs import MODEL, Channel, Job, JobSpec, JobState
from trainer_svc.service.runner import new_job_id
from trainer_svc.service.server import SERVICE_NAME, TrainerServer
from trainer_svc.service.store import NewEvent, SqliteJobStore

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _health(channel: grpc.aio.Channel) -> list[int]:
    stub = health_pb2_grpc.HealthStub(channel)
    return [(await stub.Check(health_pb2.HealthCheckRequest(service=name))).status for name in ("", SERVICE_NAME)]


async def test_health_serves_only_while_the_store_is_open(tmp_path: Path, data_root: Path) -> None:
    server = TrainerServer(make_settings(tmp_path, data_root, max_concurrent_jobs=0))
    port = await server.listen()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        assert await _health(channel) == [NOT_SERVING, NOT_SERVING]
        error = await rpc_error(trainer_pb2_grpc.TrainerStub(channel).ListTrainingJobs(pb.ListTrainingJobsRequest()))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        await server.open()
        assert await _health(channel) == [SERVING, SERVING]
        await server.drain()
        assert await _health(channel) == [NOT_SERVING, NOT_SERVING]
    await server.stop()


async def test_bearer_token_is_required_except_for_health(start_trainer: StartTrainer) -> None:
    trainer = await start_trainer(max_concurrent_jobs=0, auth_token="s3cret")
    error = await rpc_error(trainer.stub.ListTrainingJobs(pb.ListTrainingJobsRequest()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    wrong = (("authorization", "Bearer nope"),)
    error = await rpc_error(trainer.stub.ListTrainingJobs(pb.ListTrainingJobsRequest(), metadata=wrong))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    status = rpc_status.from_call(error)
    assert status is not None  # the token check sends the same google.rpc.Status as any error
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "unauthenticated"
    watch = trainer.stub.WatchTrainingJob(pb.WatchTrainingJobRequest(job="x"))
    error = await rpc_error(watch.read())
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    good = (("authorization", "Bearer s3cret"),)
    assert (await trainer.stub.ListTrainingJobs(pb.ListTrainingJobsRequest(), metadata=good)).jobs == []
    assert await _health(trainer.channel) == [SERVING, SERVING]


async def test_tls(start_trainer: StartTrainer, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "localhost")
    trainer = await start_trainer(max_concurrent_jobs=0, tls_cert=cert, tls_key=key)
    credentials = grpc.ssl_channel_credentials(cert.read_bytes())
    async with grpc.aio.secure_channel(f"localhost:{trainer.port}", credentials) as channel:
        page = await trainer_pb2_grpc.TrainerStub(channel).ListTrainingJobs(pb.ListTrainingJobsRequest())
        assert page.jobs == []
    plain = await rpc_error(trainer.stub.ListTrainingJobs(pb.ListTrainingJobsRequest(), timeout=5))
    assert plain.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def test_metrics_are_exposed_on_the_side_port(start_trainer: StartTrainer) -> None:
    trainer = await start_trainer(max_concurrent_jobs=0, metrics_port=0)
    await trainer.create("counted", spec())
    url = f"http://127.0.0.1:{trainer.server.metrics_port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
    for name in (
        "tfic_trainer_jobs",
        "tfic_trainer_job_duration_seconds",
        "tfic_trainer_epoch_duration_seconds",
        "tfic_trainer_images_per_second",
        "tfic_trainer_queue_length",
    ):
        assert f"# TYPE {name} " in text, name
    assert 'tfic_trainer_jobs{state="Pending"} 1.0' in text
    assert "tfic_trainer_queue_length 1.0" in text


async def test_a_restarted_server_settles_the_jobs_it_finds(
    start_trainer: StartTrainer, tmp_path: Path, data_root: Path
) -> None:
    """Jobs a previous server left InProgress: published → Completed, out of attempts → Failed, Stopping → Stopped,
    others resume (queued here, as the queue is paused); Pending ones stay queued; staging leftovers are removed."""
    settings = make_settings(tmp_path, data_root)
    store = SqliteJobStore(settings.database)
    job_spec = JobSpec((Channel("train", "digits"),), {}, "digits")

    def make(name: str, state: JobState, attempt: int, events: tuple[NewEvent, ...] = ()) -> None:
        job = Job(new_job_id(), name, JobState.PENDING, job_spec, time.time())
        store.create(job)
        store.update(job.job_id, attempt=attempt, state=state, start_time=time.time())
        for event in events:
            store.append_event(job.job_id, event, attempt)

    version = NewEvent(
        MODEL, {"model_name": "digits", "version": 1, "path": str(settings.model_base_path / "digits/1")}
    )
    make("published", JobState.IN_PROGRESS, 1, (version,))
    make("exhausted", JobState.IN_PROGRESS, 2)
    make("stopping", JobState.STOPPING, 1)
    make("interrupted", JobState.IN_PROGRESS, 1)
    make("waiting", JobState.PENDING, 0)
    store.close()
    staging = settings.model_base_path / "digits" / ".tmp-left-by-a-killed-worker"
    staging.mkdir(parents=True)

    trainer = await start_trainer(max_concurrent_jobs=0, max_attempts=2)
    published = await trainer.get("published")
    assert published.state == pb.JOB_STATE_COMPLETED
    assert published.output.version == 1
    exhausted = await trainer.get("exhausted")
    assert exhausted.state == pb.JOB_STATE_FAILED
    assert "interrupted 2 times" in exhausted.failure_reason
    assert "--max-attempts=2" in exhausted.failure_reason
    assert (await trainer.get("stopping")).state == pb.JOB_STATE_STOPPED
    assert (await trainer.get("interrupted")).state == pb.JOB_STATE_IN_PROGRESS
    assert (await trainer.get("waiting")).state == pb.JOB_STATE_PENDING
    assert not staging.exists()


async def test_a_symlink_out_of_a_dataset_fails_the_job_before_training(
    start_trainer: StartTrainer, data_root: Path, tmp_path: Path
) -> None:
    leaky = data_root / f"leaky-{tmp_path.name}"
    for label in ("a", "b"):
        (leaky / label).mkdir(parents=True)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not for you")
    (leaky / "a" / "secret.png").symlink_to(secret)
    trainer = await start_trainer()
    job = await trainer.create("leaky", spec(leaky.name))
    events = await trainer.watch(job.job_id)
    final = await trainer.get(job.job_id)
    assert final.state == pb.JOB_STATE_FAILED
    assert "a symlink that leads outside the data roots" in final.failure_reason
    assert events[-1].state == pb.JOB_STATE_FAILED
    assert events[-1].failure_reason == final.failure_reason


async def test_one_server_per_state_directory(start_trainer: StartTrainer) -> None:
    trainer = await start_trainer(max_concurrent_jobs=0)
    second = TrainerServer(replace(trainer.settings))
    with pytest.raises(FailedPrecondition, match="another trainer is already using the state directory"):
        await second.open()
    await second.stop()


async def test_mutual_tls_refuses_a_client_without_a_certificate(start_trainer: StartTrainer, tmp_path: Path) -> None:
    from tests.certs import make_pki

    pki = make_pki(tmp_path / "pki")
    trainer = await start_trainer(
        max_concurrent_jobs=0, tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca
    )
    request = pb.ListTrainingJobsRequest()
    async with grpc.aio.secure_channel(f"localhost:{trainer.port}", pki.channel_credentials()) as anonymous:
        error = await rpc_error(trainer_pb2_grpc.TrainerStub(anonymous).ListTrainingJobs(request, timeout=10))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
    credentials = pki.channel_credentials(client_cert=True)
    async with grpc.aio.secure_channel(f"localhost:{trainer.port}", credentials) as channel:
        assert (await trainer_pb2_grpc.TrainerStub(channel).ListTrainingJobs(request, timeout=10)).jobs == []
