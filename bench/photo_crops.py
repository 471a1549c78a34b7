"""A small real-photo dataset that installs offline: crops of scikit-image's sample photographs.

Each class is one photograph (a cat, coffee, a rocket launch, an astronaut, the Hubble deep field,
a motorcycle, a retina scan, a stained tissue sample); each image is a random crop covering 25–55 %
of the photo's side, randomly flipped, resized to 256 px. Telling the classes apart from a few
crops needs features that generalise across parts of a scene, which is what pretrained networks
bring. It is a sample-efficiency probe, not a standard benchmark; point the benchmark at a real
dataset (e.g. `--data flowers/`) for that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _photos() -> dict[str, np.ndarray]:
    import skimage.data as d

    return {
        "astronaut": d.astronaut(),
        "cat": d.chelsea(),
        "coffee": d.coffee(),
        "hubble": d.hubble_deep_field(),
        "motorcycle": d.stereo_motorcycle()[0],
        "retina": d.retina(),
        "rocket": d.rocket(),
        "tissue": d.immunohistochemistry(),
    }


def write_photo_crops(root: Path, per_class: int, seed: int, size: int = 256, grayscale: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    for name, photo in _photos().items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        h, w = photo.shape[:2]
        for i in range(per_class):
            side = int(min(h, w) * rng.uniform(0.25, 0.55))
            top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = Image.fromarray(photo[top : top + side, left : left + side, :3]).resize(
                (size, size), Image.Resampling.BILINEAR
            )
            if grayscale:
                # Without colour, the classes cannot be told apart by their colour histograms alone.
                crop = crop.convert("L").convert("RGB")
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crop.save(folder / f"{i:03d}.jpg", quality=92)
    return root
