"""The Trainer API against a real server whose queue is paused: validation, idempotency, lookups, paging."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from trainer_harness import Running, rpc_error, spec, states_of

from tfic.v1 import trainer_pb2 as pb


async def test_unknown_hyperparameter_is_invalid_argument_with_a_suggestion(idle_trainer: Running) -> None:
    bad = spec(learning_rat="0.1")
    error = await rpc_error(idle_trainer.create("typo", bad))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown hyperparameter 'learning_rat'; did you mean 'learning_rate'" in (error.details() or "")
    assert violations(error) == [("hyperparameters.learning_rat", error.details())]


def violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """The BadRequest field violations of a failed call, read with grpcio-status alone (no tfic code)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    found: list[tuple[str, str]] = []
    for packed in status.details:
        if packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            found.extend((v.field, v.description) for v in bad.field_violations)
        elif packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            assert (info.reason, info.domain) == ("invalid_hyperparameter", "tfic.dev")
    return found


async def test_typed_hyperparameters_are_validated_like_the_cli(idle_trainer: Running) -> None:
    error = await rpc_error(idle_trainer.create("zero-epochs", spec(epochs=0)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "epochs=0 is out of range" in (error.details() or "")
    assert [field for field, _ in violations(error)] == ["hyperparameters.epochs"]

    twice = spec()
    twice.hyperparameters.extra["epochs"] = "3"
    error = await rpc_error(idle_trainer.create("twice", twice))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "epochs is given twice" in (error.details() or "")


async def test_missing_data_is_not_found(idle_trainer: Running) -> None:
    error = await rpc_error(idle_trainer.create("missing", spec("no-such-folder")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "'no-such-folder' does not exist" in (error.details() or "")


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink", "image_root", "base_model"])
async def test_paths_outside_the_data_roots_are_permission_denied(
    idle_trainer: Running, data_root: Path, tmp_path: Path, how: str
) -> None:
    outside = tmp_path / "outside"
    (outside / "a").mkdir(parents=True)
    request = spec()
    given = str(outside)
    if how == "absolute":
        request.channels[0].uri = given
    elif how == "dotdot":
        given = "digits/../../" + os.path.relpath(outside, data_root.parent)
        request.channels[0].uri = given
    elif how == "symlink":
        link = data_root / f"link-{tmp_path.name}"
        link.symlink_to(outside, target_is_directory=True)
        given = link.name
        request.channels[0].uri = given
    elif how == "image_root":
        request.channels[0].image_root = given
    else:
        request.base_model = given
    error = await rpc_error(idle_trainer.create(f"outside-{how.replace('_', '-')}", request))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
    assert repr(given) in (error.details() or "")
    assert "outside the data roots" in (error.details() or "")


@pytest.mark.parametrize(
    ("name", "channels", "message"),
    [
        ("bad_name", [("train", "digits")], "invalid job name 'bad_name'"),
        ("x" * 64, [("train", "digits")], "invalid job name"),
        ("test-channel", [("train", "digits"), ("test", "digits")], "unknown channel 'test'"),
        ("no-train", [("validation", "digits")], "a 'train' channel is required"),
        ("two-trains", [("train", "digits"), ("training", "digits")], "channel 'train' is given more than once"),
        ("ftp", [("train", "ftp://host/data")], "only local paths and s3:// URIs"),
    ],
)
async def test_bad_names_and_channels_are_invalid_argument(
    idle_trainer: Running, name: str, channels: list[tuple[str, str]], message: str
) -> None:
    request = spec()
    del request.channels[:]
    request.channels.extend(pb.InputChannel(name=n, uri=u) for n, u in channels)
    error = await rpc_error(idle_trainer.create(name, request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (error.details() or "")


async def test_duplicate_name_is_already_exists(idle_trainer: Running) -> None:
    await idle_trainer.create("once", spec())
    error = await rpc_error(idle_trainer.create("once", spec()))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "'once' already exists" in (error.details() or "")


async def test_same_request_id_returns_the_same_job(idle_trainer: Running) -> None:
    first = await idle_trainer.create("idem", spec(), request_id="req-1")
    again = await idle_trainer.create("idem", spec(), request_id="req-1")
    assert again.job_id == first.job_id
    error = await rpc_error(idle_trainer.create("other-name", spec(), request_id="req-1"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id 'req-1' was already used" in (error.details() or "")


async def test_get_by_id_or_name_and_the_spec_as_given(idle_trainer: Running) -> None:
    request = spec(epochs=4)
    request.channels[0].name = "training"
    request.model_name = ""
    created = await idle_trainer.create("lookup", request)
    assert created.state == pb.JOB_STATE_PENDING
    by_name = await idle_trainer.get("lookup")
    by_id = await idle_trainer.get(created.job_id)
    assert by_name == by_id
    assert by_id.spec.channels[0].name == "train"
    assert by_id.spec.model_name == "lookup"  # defaults to the job name
    assert by_id.spec.hyperparameters.epochs == 4
    assert by_id.spec.hyperparameters.model == "small_cnn"  # string values of typed names come back typed
    assert dict(by_id.spec.hyperparameters.extra)["learning_rate"] == "0.003"
    error = await rpc_error(idle_trainer.get("nobody"))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_list_pages_newest_first_and_filters_by_state(idle_trainer: Running) -> None:
    names = [f"job-{i}" for i in range(5)]
    for name in names:
        await idle_trainer.create(name, spec())
    await idle_trainer.stub.StopTrainingJob(pb.StopTrainingJobRequest(job="job-0"))
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await idle_trainer.stub.ListTrainingJobs(pb.ListTrainingJobsRequest(page_size=2, page_token=token))
        seen += [j.name for j in page.jobs]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == names[::-1]
    assert pages == 3
    stopped = await idle_trainer.stub.ListTrainingJobs(pb.ListTrainingJobsRequest(states=[pb.JOB_STATE_STOPPED]))
    assert [j.name for j in stopped.jobs] == ["job-0"]
    error = await rpc_error(idle_trainer.stub.ListTrainingJobs(pb.ListTrainingJobsRequest(page_token="garbage!")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_stopping_a_pending_job_stops_it_at_once(idle_trainer: Running) -> None:
    job = await idle_trainer.create("queued", spec())
    stopped = await idle_trainer.stub.StopTrainingJob(pb.StopTrainingJobRequest(job=job.job_id))
    assert stopped.state == pb.JOB_STATE_STOPPED
    again = await idle_trainer.stub.StopTrainingJob(pb.StopTrainingJobRequest(job="queued"))
    assert again.state == pb.JOB_STATE_STOPPED
    events = await idle_trainer.watch("queued")  # a late watcher gets the history, then the stream ends
    assert states_of(events) == [pb.JOB_STATE_PENDING, pb.JOB_STATE_STOPPED]
    assert [e.sequence for e in events] == [1, 2]


async def test_a_manifest_naming_images_outside_the_data_roots_is_refused(
    idle_trainer: Running, tmp_path: Path
) -> None:
    root = idle_trainer.settings.data_roots[0]
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"not really")
    folder = root / "manifests"
    folder.mkdir(exist_ok=True)
    (folder / "escape.manifest").write_text(
        f'{{"source-ref": "../digits/digit_0/0000.png", "class": 0}}\n{{"source-ref": "{outside}", "class": 1}}\n'
    )
    error = await rpc_error(idle_trainer.create("escape", spec("manifests/escape.manifest")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "escape.manifest, line 2: image" in (error.details() or "") and "outside the data roots" in (
        error.details() or ""
    )
    job = spec("manifests/escape.manifest")
    job.channels[0].attribute_names.extend(["source-ref"])
    error = await rpc_error(idle_trainer.create("one-name", job))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "give two, the image's then the label's" in (error.details() or "")


@pytest.mark.parametrize("how", ["uri", "glob", "image_root", "base_model", "s3"])
async def test_a_nul_byte_in_a_path_is_invalid_argument(idle_trainer: Running, how: str) -> None:
    """``realpath`` raises ValueError("embedded null byte") on one: the caller's mistake, not an INTERNAL."""
    request = spec()
    given = "digits\x00/../etc"
    if how == "uri":
        request.channels[0].uri = given
    elif how == "glob":
        given = "records/*\x00.tfrecord"
        request.channels[0].uri = given
    elif how == "image_root":
        request.channels[0].image_root = given
    elif how == "s3":
        given = "s3://bucket/train\x00"
        request.channels[0].uri = given
    else:
        given = "./models/\x00flowers"
        request.base_model = given
    error = await rpc_error(idle_trainer.create(f"nul-{how.replace('_', '-')}", request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert f"{given!r} contains a NUL byte" in (error.details() or "")
    assert (await idle_trainer.stub.ListTrainingJobs(pb.ListTrainingJobsRequest())).jobs == []
