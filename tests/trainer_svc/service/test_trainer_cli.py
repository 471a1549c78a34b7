"""``tfic jobs ...`` against a real server (queue paused, so no training runs)."""

from __future__ import annotations

import asyncio
import json

import pytest
from trainer_harness import Running

from tfic_cli.main import main as tfic


async def _tfic(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(tfic, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_submit_get_list_stop_watch(idle_trainer: Running, capsys: pytest.CaptureFixture[str]) -> None:
    server = ("--server", f"127.0.0.1:{idle_trainer.port}")
    code, out, _ = await _tfic(
        capsys, "jobs", "submit", "digits", "--model-name", "digits", "--name", "from-cli", "--epochs", "2",
        "--model", "small_cnn", "--image-shape", "3,16,16", "--json", *server,
    )  # fmt: skip
    assert code == 0
    job = json.loads(out)
    assert job["name"] == "from-cli"
    assert job["state"] == "JOB_STATE_PENDING"
    assert job["spec"]["hyperparameters"]["extra"]["epochs"] == "2"

    code, out, _ = await _tfic(capsys, "jobs", "get", "from-cli", *server)
    assert code == 0
    assert "state:    Pending" in out
    board = idle_trainer.settings.tensorboard_dir(job["job_id"])
    assert f"tensorboard: {board}  (tensorboard --logdir {board})" in out.splitlines()

    code, out, _ = await _tfic(capsys, "jobs", "list", "--state", "Pending", *server)
    assert code == 0
    assert out.split()[:2] == ["from-cli", "Pending"]

    code, out, _ = await _tfic(capsys, "jobs", "stop", "from-cli", "--json", *server)
    assert code == 0
    assert json.loads(out)["state"] == "JOB_STATE_STOPPED"

    code, out, _ = await _tfic(capsys, "jobs", "watch", "from-cli", "--json", *server)
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e.get("state") for e in lines[:-1]] == ["JOB_STATE_PENDING", "JOB_STATE_STOPPED"]
    assert lines[-1]["state"] == "JOB_STATE_STOPPED"
    assert code == 1  # it did not complete


async def test_errors_are_reported_with_the_servers_message(
    idle_trainer: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ("--server", f"127.0.0.1:{idle_trainer.port}")
    code, _, err = await _tfic(capsys, "jobs", "submit", "digits", "--model-name", "m", "--epochs", "0", *server)
    assert code == 2
    assert "epochs=0 is out of range" in err
    code, _, err = await _tfic(capsys, "jobs", "get", "nobody", *server)
    assert code == 2
    assert "no training job with id or name 'nobody'" in err


async def test_mxnet_augmentation_and_binary_mode_pass_through_submit(
    idle_trainer: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ("--server", f"127.0.0.1:{idle_trainer.port}")
    code, out, _ = await _tfic(
        capsys, "jobs", "submit", "digits", "--model-name", "m", "--name", "augmented", "--json",
        "--augmentation_type", "crop_color", "--max_random_rotate_angle", "10", "--min-random-scale", "0.9",
        "--early_stopping_tolerance", "0.01", *server,
    )  # fmt: skip
    assert code == 0
    extra = json.loads(out)["spec"]["hyperparameters"]["extra"]
    assert (extra["max_random_rotate_angle"], extra["min_random_scale"]) == ("10", "0.9")
    path = idle_trainer.settings.state_dir.parent / "hp.json"
    path.write_text(json.dumps({"max_random_hue": "36"}))
    code, _, err = await _tfic(
        capsys, "jobs", "submit", "digits", "--model-name", "m", "--hyperparameters", str(path), *server
    )
    assert code == 2
    assert "unknown hyperparameter 'max_random_hue'; did you mean 'max_random_h'" in err
    code, out, _ = await _tfic(
        capsys, "jobs", "submit", "digits", "--model-name", "m", "--name", "binary", "--json",
        "--binary_mode", "true", "--eval_metric", "prc", "--prediction_threshold", "0.4", *server,
    )  # fmt: skip
    assert code == 0
    extra = json.loads(out)["spec"]["hyperparameters"]["extra"]
    assert (extra["binary_mode"], extra["eval_metric"], extra["prediction_threshold"]) == ("true", "prc", "0.4")
    code, _, err = await _tfic(capsys, "jobs", "submit", "digits", "--model-name", "m", "--eval_metric", "auc", *server)
    assert code == 2 and "eval_metric=auc needs binary_mode=true" in err
