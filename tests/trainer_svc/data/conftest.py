"""Small real images on disk for the dataset-reader tests."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]


def image_bytes(seed: int = 0, size: tuple[int, int] = (12, 10), fmt: str = "PNG") -> bytes:
    """A real, decodable image (width, height = size) with content that depends on ``seed``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    pixels[..., seed % 3] = 255
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


MakeDataset = Callable[..., Path]


@pytest.fixture
def make_dataset(tmp_path: Path) -> MakeDataset:
    """``make_dataset({"cat": 3, "dog": 2})`` writes ``<tmp>/<name>/<class>/<i>.png`` and returns the root."""

    def make(counts: dict[str, int], name: str = "folders", fmt: str = "PNG", size: tuple[int, int] = (12, 10)) -> Path:
        root = tmp_path / name
        ext = ".png" if fmt == "PNG" else ".jpg"
        for c, (cls, n) in enumerate(sorted(counts.items())):
            (root / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (root / cls / f"{i}{ext}").write_bytes(image_bytes(seed=c * 100 + i, size=size, fmt=fmt))
        return root

    return make


@pytest.fixture
def make_image() -> Callable[..., bytes]:
    """``make_image(seed, size=(w, h), fmt="PNG")``: encoded bytes of a small real image."""
    return image_bytes
