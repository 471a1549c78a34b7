"""Decode and resize images with Pillow: the one preprocessing definition tfic serves with.

Training decodes in the TensorFlow graph (``tf.io.decode_image`` + ``tf.image.resize`` with
antialiasing) and the exported ``serving_default`` signature does the same, so plain TensorFlow
Serving reproduces training exactly. The inference service decodes here instead, because Pillow
releases the GIL, can downscale JPEGs in the DCT (``draft``) and enforces size limits before it
allocates pixels. Both paths resize the whole image to the model's size (no crop), so there is no
train/serve skew from a crop in one place and a stretch in the other.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tfic.errors import ImageTooLarge, InvalidImage, UnsupportedFormat

# TensorFlow's interpolation names (SageMaker's image_resize_interpolation values) to Pillow's.
PIL_INTERPOLATION: dict[str, Image.Resampling] = {
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
    "lanczos3": Image.Resampling.LANCZOS,
    "lanczos5": Image.Resampling.LANCZOS,
    "gaussian": Image.Resampling.BILINEAR,
    "mitchellcubic": Image.Resampling.BICUBIC,
}
INTERPOLATIONS = tuple(PIL_INTERPOLATION)

# Formats whose Pillow decoders are mature and bounded; others (e.g. EPS, which shells out) are refused.
SAFE_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "MPO"})


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000


DEFAULT_LIMITS = DecodeLimits()


def open_image(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Image.Image:
    """Parse the header and check limits; no pixels are decoded yet."""
    if not data:
        raise InvalidImage("image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"image is {len(data)} bytes; the limit is {limits.max_bytes} bytes")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnsupportedFormat(
            "data is not an image in a supported format (JPEG, PNG, GIF, BMP, TIFF, WebP)"
        ) from None
    except Exception as exc:  # Pillow raises many types for malformed headers
        raise InvalidImage(f"cannot read image header: {exc}") from None
    if img.format not in SAFE_FORMATS:
        raise UnsupportedFormat(f"image format {img.format} is not supported; use JPEG or PNG")
    width, height = img.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"image has invalid dimensions {width}x{height}")
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels} pixels"
        )
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any mode (L, P, RGBA, CMYK, I;16 …) to 8-bit RGB."""
    try:
        if getattr(img, "is_animated", False):
            img.seek(0)
        img = ImageOps.exif_transpose(img) or img
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16/32-bit greyscale: scale to 8 bits rather than clipping at 255.
            arr = np.asarray(img, dtype=np.float64)
            peak = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
            img = Image.fromarray(np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8), mode="L")
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            # Composite on white: transparent pixels' colour values are arbitrary.
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        return img.convert("RGB") if img.mode != "RGB" else img
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage(f"image data is corrupt or truncated: {exc}") from None


# EXIF orientations that turn the stored picture by 90° or 270° (5–8): stored width becomes displayed height.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})
_ORIENTATION = 0x0112


def draft_size(img: Image.Image, size: tuple[int, int]) -> tuple[int, int]:
    """The (width, height) to ask ``draft`` for so the *displayed* image stays at least ``size`` = (width, height).

    ``draft`` scales the stored pixels, before EXIF orientation is applied; for a picture stored on its side
    the requested sides must be swapped, or a non-square input would be decoded too small in one direction
    and upsampled afterwards.
    """
    try:
        orientation = img.getexif().get(_ORIENTATION)
    except Exception:  # a malformed EXIF block: decoding will report what matters
        orientation = None
    width, height = size
    return (height, width) if orientation in _QUARTER_TURNS else (width, height)


def decode_resize(
    data: bytes,
    size: tuple[int, int],
    interpolation: str = "bilinear",
    limits: DecodeLimits = DEFAULT_LIMITS,
    use_draft: bool = True,
) -> np.ndarray:
    """Decode ``data`` and resize it to ``size`` = (height, width); returns uint8 [H, W, 3].

    ``use_draft`` lets libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is that much
    smaller, never below the target size, which makes large photos several times cheaper.
    """
    height, width = size
    img = open_image(data, limits)
    resample = PIL_INTERPOLATION.get(interpolation)
    if resample is None:
        raise UnsupportedFormat(f"unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            if use_draft and img.format in ("JPEG", "MPO"):
                img.draft("RGB", draft_size(img, (width, height)))
            img.load()
        except Image.DecompressionBombWarning as exc:
            raise ImageTooLarge(str(exc)) from None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise InvalidImage(f"image data is corrupt or truncated: {exc}") from None
    rgb = to_rgb(img)
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), resample=resample)
    return np.asarray(rgb, dtype=np.uint8)


def check_decodable(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> tuple[int, int]:
    """Fully decode once to prove the data is a usable image; returns (height, width)."""
    img = open_image(data, limits)
    try:
        img.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"image data is corrupt or truncated: {exc}") from None
    to_rgb(img)
    return img.size[1], img.size[0]
