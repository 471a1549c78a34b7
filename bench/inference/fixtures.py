"""The benchmark's models and images, deterministic.

Models: the trainer's ``small_cnn`` exported at a given input size (``NAME:SIZE``, e.g. ``bench32:32``:
little compute per image, so the server's own overhead shows), or a pretrained backbone with its
ImageNet head (``NAME:BACKBONE``, e.g. ``imagenet:efficientnet_lite0``: real weights, 224 px — what
a deployed classifier costs). Images: photo-like JPEGs.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def export_bench_model(base: Path, name: str, size: int | str, classes: int = 10, seed: int = 0) -> Path:
    """Version 1 of ``name`` under ``base`` (reused if present).

    ``size`` an int: the trainer's ``small_cnn`` at ``size``×``size``; a string: that pretrained
    backbone with its ImageNet classifier (``tfic backbones export``).
    """
    existing = base / name / "1"
    if (existing / "saved_model.pb").is_file():
        return existing
    if isinstance(size, str):
        from trainer_svc.training.pretrained import export_pretrained

        return export_pretrained(size, base, name)[1]
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


def parse_model_spec(spec: str) -> tuple[str, int | str]:
    """``bench32:32`` → ("bench32", 32); ``imagenet:efficientnet_lite0`` → ("imagenet", "efficientnet_lite0")."""
    name, _, kind = spec.partition(":")
    if not name or not kind:
        raise ValueError(f"model spec {spec!r}: expected NAME:SIZE or NAME:BACKBONE")
    return name, int(kind) if kind.isdigit() else kind
