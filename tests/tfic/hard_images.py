"""Real photos (scikit-image's) in every format and colour mode tfic's preprocessing definition covers.

Each entry is encoded bytes; ``EXIF_ROTATED`` names the one whose EXIF orientation the exported signature
cannot apply (its parity is checked against tfic's own definition).
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from typing import Any

import numpy as np
import skimage.data
from PIL import Image

EXIF_ROTATED = "astronaut-exif-rotated.jpg"
# Formats TensorFlow cannot decode: tfic's paths accept them, the exported signature refuses them.
NOT_IN_SIGNATURE = ("chelsea.tiff",)


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def _alpha(image: Image.Image) -> Image.Image:
    """The photo with a real alpha channel: opaque where bright, graded transparency elsewhere."""
    grey = np.asarray(image.convert("L"))
    alpha = np.where(grey > 120, 255, np.arange(grey.size).reshape(grey.shape) % 256).astype(np.uint8)
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


@functools.cache
def hard_images() -> dict[str, bytes]:
    astronaut = Image.fromarray(skimage.data.astronaut())  # 512×512
    chelsea = Image.fromarray(skimage.data.chelsea())  # 451×300
    coffee = Image.fromarray(skimage.data.coffee())  # 600×400
    camera = Image.fromarray(skimage.data.camera())  # 512×512 greyscale
    rgba = _alpha(chelsea)
    cmyk = np.concatenate([np.asarray(coffee), np.asarray(coffee)[..., :1] // 2 + 60], axis=2).astype(np.uint8)
    wide = np.asarray(coffee.convert("L")).astype(np.uint16) * 257 + np.arange(400 * 600).reshape(400, 600) % 200
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: rotate 90° clockwise to display
    frames = [chelsea, chelsea.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    images = {
        "astronaut.jpg": encode(astronaut, "JPEG", quality=90),
        "astronaut-large.jpg": encode(astronaut.resize((2048, 1536), Image.Resampling.BICUBIC), "JPEG", quality=90),
        "chelsea-progressive.jpg": encode(chelsea, "JPEG", quality=80, progressive=True, subsampling=0),
        "coffee.png": encode(coffee, "PNG"),
        "camera-grey.jpg": encode(camera, "JPEG", quality=90),
        "coffee-cmyk.jpg": encode(Image.fromarray(cmyk, "CMYK"), "JPEG", quality=90),
        "chelsea-grey.png": encode(chelsea.convert("L"), "PNG"),
        "chelsea-palette.png": encode(chelsea.convert("P"), "PNG"),
        "chelsea-palette-transparent.png": encode(rgba.quantize(), "PNG"),
        "chelsea-rgba.png": encode(rgba, "PNG"),
        "chelsea-la.png": encode(rgba.convert("LA"), "PNG"),
        "chelsea-grey-trns.png": encode(chelsea.convert("L"), "PNG", transparency=100),
        "chelsea-rgb-trns.png": encode(chelsea, "PNG", transparency=tuple(np.asarray(chelsea)[150, 200].tolist())),
        "coffee-16bit.png": encode(Image.fromarray(wide.astype(np.uint16)), "PNG"),
        "chelsea-transparent.gif": encode(rgba, "GIF"),
        "chelsea-animated.gif": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "chelsea-animated.png": encode(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        "coffee.bmp": encode(coffee, "BMP"),
        "coffee.webp": encode(coffee, "WEBP", quality=80),
        "chelsea-alpha.webp": encode(rgba, "WEBP", quality=80),
        EXIF_ROTATED: encode(astronaut.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90, exif=exif),
        "chelsea.tiff": encode(chelsea, "TIFF"),
    }
    return images


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (one empty IDAT): Pillow reads the size from IHDR alone."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
