"""The recipe under MirroredStrategy (what `--strategy auto` picks with several GPUs), on two logical CPUs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from trainer_svc.training import hyperparameters, train

    # Two replicas without GPUs: the devices are chosen here, everything else is tfic's own code.
    train.make_strategy = lambda name, startup=None: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    events = []
    result = train.run(
        train.TrainRequest(
            train=train.Channel(sys.argv[1]),
            model_base_path=Path(sys.argv[2]),
            model_name="mirrored",
            base_model="efficientnet_lite0",
            hyperparameters=hyperparameters.parse(
                {"image_shape": "3,32,32", "head_epochs": "2", "epochs": "1", "batch_size": "16", "seed": "5"}
            ),
        ),
        events.append,
    )
    print(json.dumps({"path": str(result.path), "phases": [e["phase"] for e in events if e["type"] == "epoch"],
                      "features": sum(e["type"] == "features" for e in events)}))
    """
)


def test_the_default_recipe_trains_mirrored_on_two_replicas(tmp_path: Path, few_digits: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(few_digits), str(tmp_path / "models")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["phases"] == ["head", "head", "fine_tune"] and out["features"] == 1
    assert (Path(out["path"]) / "saved_model.pb").is_file()
