"""tfic's two preprocessing paths before issue 14 (definition 1), frozen here to measure against.

* :func:`service_decode_resize`: the inference service's Pillow path (``draft``, mode conversion with
  ×255/65535 for 16-bit and Pillow's CMYK, ``Image.resize``), today's default serving path.
* :func:`graph_decode_resize`: training's and the exported signature's TensorFlow path (``decode_image``
  with the fast IDCT and no DCT scaling, ``tf.image.resize`` with antialiasing, rounded).
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image, ImageOps

from tfic.imaging import DEFAULT_LIMITS, PIL_INTERPOLATION, DecodeLimits, draft_size, open_image


def _to_rgb(img: Image.Image) -> Image.Image:
    if getattr(img, "is_animated", False):
        img.seek(0)
    img = ImageOps.exif_transpose(img) or img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        img = Image.fromarray(np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def service_decode_resize(
    data: bytes, size: tuple[int, int], interpolation: str = "bilinear", limits: DecodeLimits = DEFAULT_LIMITS
) -> np.ndarray:
    height, width = size
    img = open_image(data, limits)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        if img.format in ("JPEG", "MPO"):
            img.draft("RGB", draft_size(img, (width, height)))
        img.load()
    rgb = _to_rgb(img)
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), resample=PIL_INTERPOLATION[interpolation])
    return np.asarray(rgb, dtype=np.uint8)


def graph_decode_resize(data: bytes, size: tuple[int, int], interpolation: str = "bilinear") -> np.ndarray:
    import tensorflow as tf

    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    resized = tf.image.resize(tf.cast(image, tf.float32), size, method=interpolation, antialias=True)
    return np.asarray(tf.clip_by_value(tf.round(resized), 0.0, 255.0).numpy(), dtype=np.uint8)
