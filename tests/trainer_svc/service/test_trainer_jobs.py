"""Real training in real worker processes: the queue, stopping a running job, completing one, late watchers."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from trainer_harness import StartTrainer, model_versions, spec, states_of

from tfic import version_labels
from tfic.modeldir import read_metadata
from tfic.v1 import trainer_pb2 as pb


def _is_epoch(event: pb.TrainingEvent) -> bool:
    return bool(event.WhichOneof("event") == "epoch")


async def test_a_queued_job_waits_for_a_stopped_one_then_completes(start_trainer: StartTrainer) -> None:
    trainer = await start_trainer(max_concurrent_jobs=1)
    models = trainer.settings.model_base_path
    long = await trainer.create("long", spec(epochs=500, model_name="long-model"))
    short = await trainer.create("short", spec(epochs=2, model_name="digits"))
    live = asyncio.create_task(trainer.watch("short"))  # joined before it started: every event arrives live

    await trainer.wait_state("long", pb.JOB_STATE_IN_PROGRESS)
    await trainer.watch("long", until=_is_epoch)  # training for real
    assert (await trainer.get("short")).state == pb.JOB_STATE_PENDING  # one at a time

    stopping = await trainer.stub.StopTrainingJob(pb.StopTrainingJobRequest(job="long"))
    assert stopping.state == pb.JOB_STATE_STOPPING
    long_events = await trainer.watch("long")  # a late watcher: the whole history, then the end
    assert states_of(long_events) == [
        pb.JOB_STATE_PENDING,
        pb.JOB_STATE_IN_PROGRESS,
        pb.JOB_STATE_STOPPING,
        pb.JOB_STATE_STOPPED,
    ]
    assert [e.sequence for e in long_events] == list(range(1, len(long_events) + 1))
    stopped = await trainer.get("long")
    assert stopped.state == pb.JOB_STATE_STOPPED
    assert model_versions(models / "long-model") == []  # nothing published, no staging left
    assert not (trainer.settings.jobs_dir / long.job_id / "work").exists()  # checkpoints removed

    short_events = await asyncio.wait_for(live, timeout=180)
    assert states_of(short_events) == [pb.JOB_STATE_PENDING, pb.JOB_STATE_IN_PROGRESS, pb.JOB_STATE_COMPLETED]
    assert [e.epoch.epoch for e in short_events if _is_epoch(e)] == [1, 2]
    published = [e.model for e in short_events if e.WhichOneof("event") == "model"]
    assert [(m.model_name, m.version) for m in published] == [("digits", 1)]

    done = await trainer.get(short.job_id)
    assert done.state == pb.JOB_STATE_COMPLETED
    assert done.attempt == 1
    assert done.output.version == 1
    assert done.last_metrics.epoch == 2
    assert "val_accuracy" in done.last_metrics.values
    assert done.start_time.ToNanoseconds() >= stopped.end_time.ToNanoseconds()
    assert model_versions(models / "digits") == ["1"]
    assert (models / "digits" / "1" / "saved_model.pb").is_file()
    assert not (trainer.settings.jobs_dir / short.job_id / "work").exists()

    assert await trainer.watch("short") == short_events  # joining after the end replays the same stream


async def test_a_multi_label_job_trains_sigmoids_and_reports_per_class(start_trainer: StartTrainer) -> None:
    """multi_label=1 passes through the service: a multi-hot .lst of the digits' attributes (even, has a loop)."""
    trainer = await start_trainer(max_concurrent_jobs=1)
    root = trainer.settings.data_roots[0]
    lists = root / "attribute-lists"
    lists.mkdir(exist_ok=True)
    rows = []
    for i, path in enumerate(sorted((root / "digits").rglob("*.png"))):
        digit = int(path.parent.name.split("_")[1])
        hot = [int(digit < 5), int(digit >= 5), int(digit % 2 == 0), int(digit in (0, 6, 8, 9))]
        rows.append("\t".join([str(i), *map(str, hot), str(path.relative_to(root / "digits"))]))
    (lists / "attributes.lst").write_text("\n".join(rows) + "\n")
    (lists / "labels.json").write_text(json.dumps({"labels": ["small", "big", "even", "loop"]}))
    job = spec(uri="attribute-lists/attributes.lst", epochs=1, model_name="attributes", multi_label="1")
    job.channels[0].image_root = "digits"
    await trainer.create("attributes", job)
    events = await asyncio.wait_for(trainer.watch("attributes"), timeout=180)
    assert states_of(events)[-1] == pb.JOB_STATE_COMPLETED
    assert any(
        e.WhichOneof("event") == "message" and "multi-label" in e.message and "mAP=" in e.message for e in events
    )
    (output,) = [e.model for e in events if e.WhichOneof("event") == "model"]
    meta = read_metadata(trainer.settings.model_base_path / "attributes" / str(output.version))
    assert meta.output == "multi_label" and meta.labels == ("small", "big", "even", "loop")


async def test_a_job_with_promote_labels_its_version_after_validating_it(start_trainer: StartTrainer) -> None:
    """promote: "canary" moves the fleet label once the version is published and validated; a bad label is refused."""
    trainer = await start_trainer(max_concurrent_jobs=1)
    job = spec(epochs=1, model_name="promoted")
    job.promote = "canary"
    await trainer.create("promoted", job)
    events = await asyncio.wait_for(trainer.watch("promoted"), timeout=180)
    assert states_of(events)[-1] == pb.JOB_STATE_COMPLETED
    (output,) = [e.model for e in events if e.WhichOneof("event") == "model"]
    (said,) = [e.message for e in events if e.WhichOneof("event") == "message" and e.message.startswith("label ")]
    assert said.startswith(f"label canary -> version {output.version} (loads, predicts 8 random images")
    labels = version_labels.read(trainer.settings.model_base_path / "promoted")
    assert labels is not None and dict(labels.labels) == {"canary": output.version}
    assert labels.history[-1].by.startswith("trainer job ")
    assert (await trainer.get("promoted")).spec.promote == "canary"  # stored with the job

    bad = spec(epochs=1, model_name="promoted")
    bad.promote = "not a label"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await trainer.create("bad-label", bad)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
