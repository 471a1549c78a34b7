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


def measure(sizes: Sequence[int], repeat: int) -> dict[str, Any]:
    data = photo(7, 2592, 1944)  # 5.04 megapixels
    limits = DecodeLimits(max_pixels=60_000_000)
    results = []
    for size in sizes:

        def full(s: int = size) -> object:
            return decode_resize(data, (s, s), "bilinear", limits, use_draft=False)

        def draft(s: int = size) -> object:
            return decode_resize(data, (s, s), "bilinear", limits, use_draft=True)

        fns: list[Callable[[], object]] = [full, draft]
        try:
            import simplejpeg

            def turbo(s: int = size) -> object:
                pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=s, min_width=s)
                return np.asarray(Image.fromarray(pixels).resize((s, s), Image.Resampling.BILINEAR))

            fns.append(turbo)
        except ImportError:
            pass
        times = _time_side_by_side(fns, repeat)
        entry: dict[str, Any] = {"target": size, "full_ms": times[0], "draft_ms": times[1]}
        entry["speedup"] = times[0] / times[1]
        if len(times) > 2:
            entry["simplejpeg_ms"] = times[2]
        a = decode_resize(data, (size, size), "bilinear", limits, use_draft=False).astype(np.float32)
        b = decode_resize(data, (size, size), "bilinear", limits, use_draft=True).astype(np.float32)
        entry["mean_abs_pixel_difference"] = float(np.abs(a - b).mean())
        results.append(entry)
    return {"image": "2592x1944 JPEG (q90)", "bytes": len(data), "results": results}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="224,32", help="model input sizes")
    parser.add_argument("--repeat", type=int, default=25, help="interleaved runs of each path")
    args = parser.parse_args(argv)
    print(json.dumps(measure([int(s) for s in args.sizes.split(",")], args.repeat)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
