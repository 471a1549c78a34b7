"""Do TensorFlow's thread settings change a model's answers? The same photos through one version with two
intra-op pool sizes, each in its own process (the pool is fixed once per process), compared element by element::

    python -m bench.inference.threads_parity --model-dir BASE/NAME/VERSION \\
        --photos ../shared/datasets/clothing-small/train --threads 0,1

Decodes with the service's own preprocessing (uint8, the version's size and interpolation) and runs batches of
``--batch`` through the runtime the service uses; prints one JSON line: max |Δp|, labels that differ, and
whether every probability is bit-identical.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _predict(model_dir: Path, photos: list[Path], intra: int, batch: int, out: Path) -> None:
    from inference_svc.preprocess import Preprocessor
    from inference_svc.runtime.tensorflow import TensorFlowOptions, TensorFlowRuntime, configure
    from tfic.modeldir import read_metadata

    configure(TensorFlowOptions(intra_op_threads=intra))
    meta = read_metadata(model_dir)
    runtime = TensorFlowRuntime(model_dir, meta)
    height, width, _ = meta.image_shape
    pre = Preprocessor(1)
    images = np.empty((len(photos), height, width, 3), np.uint8)
    for i, path in enumerate(photos):
        pre.decode_one(path.read_bytes(), (height, width), meta.preprocessing.interpolation, images[i])
    probabilities = np.concatenate([runtime.predict(images[i : i + batch]) for i in range(0, len(images), batch)])
    np.save(out, probabilities)
    pre.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--photos", type=Path, required=True, help="a folder of JPEGs (searched recursively)")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", default="0,1", help="two intra-op pool sizes (0: TensorFlow's default)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    photos = sorted(args.photos.rglob("*.jpg"))[: args.count]
    if not photos:
        raise SystemExit(f"{args.photos} holds no *.jpg files")
    if args.child is not None:
        _predict(args.model_dir, photos, args.child, args.batch, args.out)
        return 0
    first, second = (int(t) for t in args.threads.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for intra in (first, second):
            out = Path(tmp) / f"{intra}.npy"
            command = [sys.executable, "-m", "bench.inference.threads_parity", "--model-dir", str(args.model_dir)]
            command += ["--photos", str(args.photos), "--count", str(args.count), "--batch", str(args.batch)]
            subprocess.run([*command, "--child", str(intra), "--out", str(out)], check=True)
            results.append(np.load(out))
    a, b = results
    print(
        json.dumps(
            {
                "model_dir": str(args.model_dir),
                "photos": len(photos),
                "threads": [first, second],
                "max_abs_difference": float(np.abs(a - b).max()),
                "labels_differ": int((a.argmax(1) != b.argmax(1)).sum()),
                "bit_identical": bool((a == b).all()),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
