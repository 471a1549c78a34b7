"""Distribution strategies on TensorFlow's own engine (``--strategy``).

tfic trains with tf_keras (Keras 2), whose ``fit`` supports every ``tf.distribute`` strategy,
including MultiWorkerMirroredStrategy driven by ``TF_CONFIG`` (Keras 3's ``fit`` does not:
keras-team/keras#20585). See docs/training.md.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from tfic.errors import InvalidArgument
from trainer_svc.training.rendezvous import ClusterTask, WorkerStartup, terminable, tf_config, wait_for_workers

if TYPE_CHECKING:
    import tensorflow as tf

STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker")


def make_strategy(name: str, startup: WorkerStartup | None = None) -> tf.distribute.Strategy:
    """The strategy ``name``; a multi-worker one only once every worker in ``TF_CONFIG`` is listening
    (:func:`~trainer_svc.training.rendezvous.wait_for_workers`, with ``startup``'s timeout)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # RuntimeError: already initialised; growth must be set before first use.
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    if name == "auto":
        if os.environ.get("TF_CONFIG") and len(_tf_config().get("cluster", {}).get("worker", [])) > 1:
            return _multi_worker(startup or WorkerStartup())
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "one-device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        if not os.environ.get("TF_CONFIG"):
            raise InvalidArgument("--strategy multi-worker needs the TF_CONFIG environment variable (cluster and task)")
        return _multi_worker(startup or WorkerStartup())
    raise InvalidArgument(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def _multi_worker(startup: WorkerStartup) -> tf.distribute.Strategy:
    import tensorflow as tf

    wait_for_workers(ClusterTask.from_tf_config(_tf_config()), startup)
    with terminable():
        return tf.distribute.MultiWorkerMirroredStrategy()


def _tf_config() -> dict[str, Any]:
    return tf_config()


def is_chief(strategy: Any) -> bool:
    """Worker 0 (or the chief task) writes the model; other workers write to temporary dirs."""
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task = _tf_config().get("task", {})
    task_type, task_id = task.get("type"), int(task.get("index", 0))
    if task_type == "chief":
        return True
    has_chief = "chief" in _tf_config().get("cluster", {})
    return task_type == "worker" and task_id == 0 and not has_chief
