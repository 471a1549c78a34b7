"""The embedded default dataset: scikit-learn's handwritten digits as class folders of PNGs.

1,797 real 8×8 greyscale scans (UCI), shipped inside scikit-learn, so the demo and the tests
need no download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASS_NAMES = tuple(f"digit_{i}" for i in range(10))


def write_digits(root: str | Path, size: int = 0, per_class: int | None = None) -> Path:
    """Write digits to ``root/digit_<n>/<index>.png``; ``size`` > 0 upsamples (nearest) to size×size."""
    from sklearn.datasets import load_digits

    out = Path(root)
    digits = load_digits()
    counts = dict.fromkeys(range(10), 0)
    for index, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        label = int(target)
        if per_class is not None and counts[label] >= per_class:
            continue
        counts[label] += 1
        folder = out / CLASS_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        # Values are 0..16 ink intensity; invert so digits are dark on white like a scan.
        grey = (255 - np.asarray(pixels) * (255 / 16)).round().astype(np.uint8)
        img = Image.fromarray(grey, mode="L")
        if size:
            img = img.resize((size, size), Image.Resampling.NEAREST)
        path = folder / f"{index:04d}.png"
        if not path.exists():
            img.save(path)
    return out
