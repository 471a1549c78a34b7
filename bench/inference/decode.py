"""Preprocessing a 5-megapixel JPEG: DCT downscaling (Pillow ``draft``) vs a full decode + resize.

Both produce the model's input (RGB, resized with the model's interpolation); the draft path lets
libjpeg decode at 1/2, 1/4 or 1/8 scale, never below the target size. simplejpeg (libjpeg-turbo
with the same DCT scaling) is measured alongside, as the alternative fast path. Prints JSON::

    python -m bench.inference.decode --sizes 224,32
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from bench.inference.fixtures import photo
from tfic.imaging import DecodeLimits, decode_resize


def _time(fn: Callable[[], object], repeat: int) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples) * 1e3)


def measure(sizes: Sequence[int], repeat: int) -> dict[str, Any]:
    data = photo(7, 2592, 1944)  # 5.04 megapixels
    limits = DecodeLimits(max_pixels=60_000_000)
    results = []
    for size in sizes:
        full = _time(lambda s=size: decode_resize(data, (s, s), "bilinear", limits, use_draft=False), repeat)
        draft = _time(lambda s=size: decode_resize(data, (s, s), "bilinear", limits, use_draft=True), repeat)
        entry: dict[str, Any] = {"target": size, "full_ms": full, "draft_ms": draft, "speedup": full / draft}
        try:
            import simplejpeg

            def turbo(s: int = size) -> np.ndarray:
                pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=s, min_width=s)
                return np.asarray(Image.fromarray(pixels).resize((s, s), Image.Resampling.BILINEAR))

            entry["simplejpeg_ms"] = _time(turbo, repeat)
        except ImportError:
            pass
        a = decode_resize(data, (size, size), "bilinear", limits, use_draft=False).astype(np.float32)
        b = decode_resize(data, (size, size), "bilinear", limits, use_draft=True).astype(np.float32)
        entry["mean_abs_pixel_difference"] = float(np.abs(a - b).mean())
        results.append(entry)
    return {"image": "2592x1944 JPEG (q90)", "bytes": len(data), "results": results}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="224,32", help="model input sizes")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)
    print(json.dumps(measure([int(s) for s in args.sizes.split(",")], args.repeat)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
