"""Decode + resize speed: the new default (tfic's one preprocessing definition) against today's default.

Paths, timed side by side (interleaved, median of ``--repeat`` runs each, so drift hits them alike):

* ``before``: the inference service's default path before issue 14 (Pillow ``draft``; bench/legacy_preprocessing.py);
* ``definition``: the default now, ``tfic.imaging.decode_resize`` (DCT-scaled JPEG, Pillow's resampling);
* ``full``: ``--no-use-draft`` (full-size JPEG decode; opt-in, not the model's definition);
* ``signature``: the exported ``serving_default`` signature's TensorFlow ops (what plain TF Serving runs);
* ``simplejpeg``: libjpeg-turbo with the same DCT scaling, if installed (the fast path considered earlier).

Images: a 5-megapixel photo-like JPEG and, if present, clothing-small's 341 validation photos (400×533)::

    python -m bench.inference.decode --sizes 224,32
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.inference.fixtures import photo
from bench.legacy_preprocessing import service_decode_resize
from tfic.imaging import DecodeLimits, decode_resize

CLOTHING = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "clothing-small" / "validation"


def _time_side_by_side(fns: Sequence[Callable[[], object]], repeat: int) -> list[float]:
    """Median milliseconds of each function, their runs interleaved so that drift hits them alike."""
    for fn in fns:
        fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, samples, strict=True):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [float(np.median(s) * 1e3) for s in samples]


def _paths(images: list[bytes], size: int, limits: DecodeLimits) -> dict[str, Callable[[], object]]:
    import tensorflow as tf

    from trainer_svc.training.graph_preprocess import decode_and_resize

    target = (size, size)
    signature = tf.function(lambda d: decode_and_resize(d, target)).get_concrete_function(tf.TensorSpec([], tf.string))
    tensors = [tf.constant(d) for d in images]
    paths: dict[str, Callable[[], object]] = {
        "before": lambda: [service_decode_resize(d, target, "bilinear", limits) for d in images],
        "definition": lambda: [decode_resize(d, target, "bilinear", limits) for d in images],
        "full": lambda: [decode_resize(d, target, "bilinear", limits, use_draft=False) for d in images],
        "signature": lambda: [signature(t) for t in tensors],
    }
    try:
        import simplejpeg

        def turbo() -> object:
            return [
                np.asarray(
                    Image.fromarray(
                        simplejpeg.decode_jpeg(d, colorspace="RGB", min_height=size, min_width=size)
                    ).resize(target, Image.Resampling.BILINEAR)
                )
                for d in images
            ]

        paths["simplejpeg"] = turbo
    except ImportError:
        pass
    return paths


def measure_set(name: str, images: list[bytes], sizes: Sequence[int], repeat: int) -> dict[str, Any]:
    limits = DecodeLimits(max_pixels=60_000_000)
    results = []
    for size in sizes:
        paths = _paths(images, size, limits)
        times = dict(zip(paths, _time_side_by_side(list(paths.values()), repeat), strict=True))
        per_image = {k: v / len(images) for k, v in times.items()}
        same = all(
            np.array_equal(decode_resize(d, (size, size), "bilinear", limits), service_decode_resize(d, (size, size)))
            for d in images
        )
        results.append(
            {
                "target": size,
                # the keys bench.inference.run and report read: full decode vs the default (DCT-scaled) path
                "full_ms": round(per_image["full"], 3),
                "draft_ms": round(per_image["definition"], 3),
                "speedup": round(times["full"] / times["definition"], 2),
                "ms_per_image": {k: round(v, 3) for k, v in per_image.items()},
                "images_per_second": {k: round(1e3 / v, 1) for k, v in per_image.items()},
                "definition_vs_before_throughput": round(times["before"] / times["definition"], 3),
                "definition_pixels_equal_before": same,
            }
        )
    return {"images": name, "count": len(images), "results": results}


def measure(sizes: Sequence[int], repeat: int, clothing: Path = CLOTHING) -> dict[str, Any]:
    big = photo(7, 2592, 1944)  # 5.04 megapixels
    sets = [measure_set("2592x1944 JPEG (q90), 5.0 MP", [big], sizes, repeat)]
    if clothing.is_dir():
        photos = [p.read_bytes() for p in sorted(clothing.glob("*/*.jpg"))]
        sets.append(measure_set(f"clothing-small validation ({clothing})", photos, sizes, max(3, repeat // 5)))
    else:
        print(f"skipping clothing-small: {clothing} is absent", file=sys.stderr)
    big_set = sets[0]
    return {
        "image": big_set["images"],
        "bytes": len(big),
        "repeat": repeat,
        "results": big_set["results"],
        "sets": sets,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="224,32", help="model input sizes")
    parser.add_argument("--repeat", type=int, default=25, help="interleaved runs of each path (clothing: /5)")
    parser.add_argument("--clothing", type=Path, default=CLOTHING, help="clothing-small's validation folder")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    result = measure([int(s) for s in args.sizes.split(",")], args.repeat, args.clothing)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result), flush=True)  # one line: bench.inference.run reads it as JSON Lines
    return 0


if __name__ == "__main__":
    sys.exit(main())
