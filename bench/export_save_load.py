"""What Keras's per-layer call traces cost a version: save and load time, size, with them and without.

tfic saves versions without them (``trainer_svc.training.export.save_serving_model``); this writes the same
EfficientNet-Lite0 classifier both ways, loads each back with ``tf.saved_model.load`` (what the inference
service does), checks the ``predict_images`` signature gives the same probabilities, and that the variables
restore into a freshly built model bit for bit (incremental training). Rounds alternate the two orders::

    .venv/bin/python -m bench.export_save_load                     # 32 px, 2 rounds (~2 minutes on 2 cores)
    .venv/bin/python -m bench.export_save_load --size 224
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def measure(size: int, traces: bool, work: Path) -> dict[str, Any]:
    import tensorflow as tf
    from tf_keras.src.saving.legacy.saved_model.utils import keras_option_scope

    from tfic import modeldir
    from tfic.modeldir import ModelMetadata
    from trainer_svc.training import hyperparameters
    from trainer_svc.training.export import ServingModule, restore_into
    from trainer_svc.training.planning import plan
    from trainer_svc.training.train import build_model

    hp = hyperparameters.parse({"image_shape": f"3,{size},{size}"})
    labels = tuple(f"c{i}" for i in range(10))
    model = build_model(plan(hp, "efficientnet_lite0", labels), hp, len(labels))
    meta = ModelMetadata(labels=labels, image_shape=(size, size, 3))
    images = np.random.default_rng(0).uniform(0, 255, (3, size, size, 3)).astype(np.float32)
    expected = model.predict_on_batch(images)
    path = Path(tempfile.mkdtemp(dir=work)) / "1"
    module = ServingModule(model, labels, meta.image_shape, "bilinear")
    started = time.perf_counter()
    with keras_option_scope(save_traces=traces, in_tf_saved_model_scope=True):
        tf.saved_model.save(
            module,
            str(path),
            signatures={modeldir.SIGNATURE_BYTES: module.serve_bytes, modeldir.SIGNATURE_IMAGES: module.serve_images},
        )
    saved = time.perf_counter() - started
    started = time.perf_counter()
    loaded = tf.saved_model.load(str(path))
    load = time.perf_counter() - started
    served = loaded.signatures[modeldir.SIGNATURE_IMAGES](images=tf.constant(images))["probabilities"].numpy()
    fresh = build_model(plan(hp, "efficientnet_lite0", labels), hp, len(labels))
    restore_into(fresh, path)
    return {
        "traces": traces,
        "save_seconds": round(saved, 2),
        "load_seconds": round(load, 2),
        "megabytes": round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6, 2),
        "signature_max_abs_diff": float(np.abs(served - expected).max()),
        "restored_max_abs_diff": float(np.abs(fresh.predict_on_batch(images) - expected).max()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as work:
        for round_ in range(args.rounds):
            for traces in (True, False) if round_ % 2 == 0 else (False, True):
                result = {"round": round_ + 1, "size": args.size, **measure(args.size, traces, Path(work))}
                runs.append(result)
                print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
