"""The benchmark's model and images: a real exported small CNN and photo-like JPEGs, deterministic."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def export_bench_model(base: Path, name: str, size: int, classes: int = 10, seed: int = 0) -> Path:
    """A small CNN (trainer's ``small_cnn``) at ``size``×``size``, exported as version 1 (reused if present)."""
    existing = base / name / "1"
    if (existing / "saved_model.pb").is_file():
        return existing
    from tfic.modeldir import ModelMetadata, Preprocessing
    from trainer_svc.training import architectures
    from trainer_svc.training.export import export_version
    from trainer_svc.training.model import build_classifier

    shape = (size, size, 3)
    model = build_classifier(architectures.small_cnn(shape), classes, shape, Preprocessing(), 0.0, 0.0, seed)
    labels = tuple(f"class_{i}" for i in range(classes))
    _, path = export_version(base, name, model, ModelMetadata(labels=labels, image_shape=shape))
    return path


def photo(seed: int, width: int, height: int, quality: int = 90) -> bytes:
    """A JPEG with smooth structure, edges and sensor-like noise: compresses and decodes like a photo."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    # A few hard-edged rectangles (objects) on top of the smooth background.
    for _ in range(6):
        x0, y0 = rng.integers(0, width - 8), rng.integers(0, height - 8)
        x1, y1 = x0 + rng.integers(8, width // 3), y0 + rng.integers(8, height // 3)
        base[y0:y1, x0:x1] = rng.integers(0, 256, 3)
    noisy = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def write_images(directory: Path, count: int, width: int, height: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"photo_{width}x{height}_{i:03d}.jpg"
        if not path.is_file():
            path.write_bytes(photo(i, width, height))
        paths.append(path)
    return paths
