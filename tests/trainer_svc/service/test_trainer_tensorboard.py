"""A Trainer job keeps its TensorBoard event files and names them; its output carries the confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from trainer_harness import StartTrainer, spec

from tfic.v1 import trainer_pb2 as pb
from trainer_svc.training import tensorboard as tb


async def test_a_finished_job_keeps_its_event_files_and_reports_its_confusion_matrix(
    start_trainer: StartTrainer,
) -> None:
    trainer = await start_trainer()
    job = await trainer.create("board", spec(epochs=2))
    done = await trainer.wait_state(job.job_id, pb.JOB_STATE_COMPLETED, timeout=300)

    log_dir = Path(done.tensorboard_dir)
    assert log_dir == trainer.settings.jobs_dir / job.job_id / "tensorboard"
    assert not (log_dir.parent / "work").exists()  # the work directory went; the event files stay
    train = EventAccumulator(str(log_dir / tb.TRAIN), size_guidance={"tensors": 0})
    train.Reload()
    assert [e.step for e in train.Tensors("epoch_loss")] == [1, 2]
    assert len(train.Tensors(tb.IMAGES_TAG)) == 1

    cm = done.output.confusion_matrix
    assert list(cm.labels) == [f"digit_{d}" for d in range(10)]
    counts = np.asarray(cm.counts).reshape(10, 10)
    assert counts.sum() == 80  # the 0.2 validation split of 400 digits
    assert np.trace(counts) / 80 == pytest.approx(done.output.metrics["validation:accuracy"], abs=1e-6)
