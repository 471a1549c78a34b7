"""Training throughput: ``tfic train``'s pipeline against a bare ``model.fit`` on the same model and data.

Both sides train the same small CNN (32×32) on the same digits images with the same batch size,
optimizer and validation set; the bare side gets the images pre-decoded into NumPy arrays (the
best case for ``fit``). Runs alternate (tfic, bare, tfic, bare, …) so machine noise hits both;
the first epoch of each run (graph tracing, cache fill) is excluded. Reports images/s and the ratio.

    .venv/bin/python -m bench.train_throughput [--epochs 4] [--rounds 3] [--out bench/results/train_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _bare_fit(
    train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, epochs: int
) -> list[float]:
    import tf_keras as keras

    from tfic.modeldir import Preprocessing
    from trainer_svc.training import architectures
    from trainer_svc.training.hyperparameters import parse
    from trainer_svc.training.model import build_classifier
    from trainer_svc.training.optimizers import make_optimizer

    hp = parse({"learning_rate": "0.003"})
    model = build_classifier(architectures.small_cnn((32, 32, 3)), 10, (32, 32, 3), Preprocessing(), 0.2, 1e-4, 1)
    model.compile(
        optimizer=make_optimizer(hp),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(k=5, name="top_k_accuracy"),
        ],
    )
    rates: list[float] = []

    class Timer(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            rates.append(len(train_x) / (time.perf_counter() - self.start))

    model.fit(
        train_x,
        train_y,
        batch_size=32,
        epochs=epochs,
        validation_data=(val_x, val_y),
        callbacks=[Timer()],
        verbose=0,
        shuffle=True,
    )
    return rates[1:]


def _tfic(data: Path, base: Path, epochs: int) -> list[float]:
    from trainer_svc.training.hyperparameters import parse
    from trainer_svc.training.train import Channel, TrainRequest, run

    hp = parse(
        {
            "model": "small_cnn",
            "image_shape": "3,32,32",
            "epochs": str(epochs),
            "learning_rate": "0.003",
            "checkpoint_frequency": "0",
        }
    )
    result = run(TrainRequest(train=Channel(str(data)), model_base_path=base, model_name="bench", hyperparameters=hp))
    return [e["images_per_second"] for e in result.history[1:]]


def _arrays(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The same split tfic makes, decoded with the same graph ops, as arrays for ``fit``."""
    import tensorflow as tf

    from trainer_svc.data.loader import load_source, scan, stratified_split
    from trainer_svc.training.graph_preprocess import decode_and_resize

    train, val = stratified_split(scan(load_source(str(data))), 0.2, 12345)

    def to_arrays(src: Any) -> tuple[np.ndarray, np.ndarray]:
        x = np.stack([decode_and_resize(tf.constant(src.read(s)), (32, 32)).numpy() for s in src.samples])
        y = np.eye(10, dtype=np.float32)[[s.label for s in src.samples]]
        return x.astype(np.float32), y

    return (*to_arrays(train), *to_arrays(val))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/train_throughput.json"))
    args = parser.parse_args()
    from tfic_demo.digits import write_digits

    with tempfile.TemporaryDirectory() as tmp:
        data = write_digits(Path(tmp) / "digits")
        arrays = _arrays(data)
        tfic_rates: list[float] = []
        bare_rates: list[float] = []
        for i in range(args.rounds):
            tfic_rates += _tfic(data, Path(tmp) / f"models{i}", args.epochs)
            bare_rates += _bare_fit(*arrays, epochs=args.epochs)
    result = {
        "tfic_images_per_second": round(statistics.median(tfic_rates), 1),
        "bare_fit_images_per_second": round(statistics.median(bare_rates), 1),
        "ratio": round(statistics.median(tfic_rates) / statistics.median(bare_rates), 3),
        "epochs_measured": {"tfic": len(tfic_rates), "bare": len(bare_rates)},
        "setup": "small_cnn 32x32, 1438 train / 359 val digits, batch 32, adam; first epoch of each run excluded",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
