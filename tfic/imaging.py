"""Encoded image bytes → model input: tfic's one preprocessing definition (Pillow), used by every tfic path.

The definition (``PREPROCESSING_DEFINITION`` in :mod:`tfic.modeldir`, recorded in each exported model):

1. **Decode.** JPEG (and MPO) with libjpeg's accurate integer IDCT, scaled in the DCT by 1/2, 1/4 or 1/8
   when the model's input is that much smaller (Pillow's ``draft`` rule: the largest of 8, 4, 2, 1 not
   above ``min(width // target_width, height // target_height)``, sides swapped for a picture stored on
   its side); other formats at full size; animated images: their first frame (a PNG's default image).
2. **Orient.** EXIF orientation (``0x0112``) is applied.
3. **Colour.** Grayscale and palette → RGB; CMYK → ``(255 - C) * (255 - K) // 255`` (what libjpeg-based
   TensorFlow computes); 16-bit → the high byte; alpha (RGBA, LA, palette or single-colour transparency)
   composited with ``(c * a + background * (255 - a) + 127) // 255`` on white, on black for GIF (a GIF's
   transparency is binary, and TensorFlow's GIF decoder paints it black).
4. **Resize** the whole image to the model's (height, width), no crop: Pillow's resampling (bilinear,
   bicubic, box, Lanczos) or, for ``nearest``, source index ``(2 i + 1) * in // (2 * out)``.
5. **Scale** happens inside the model (``Preprocessing.scale``/``offset``/``mean``/``std``).

The inference service, ``tfic predict``, ``tfic evaluate`` and training's input pipeline all run
:func:`decode_resize`. The exported ``serving_default`` signature runs the same definition in TensorFlow ops
(``trainer_svc.training.graph_preprocess``), bit for bit, except for what TensorFlow cannot do: EXIF
orientation and the formats it cannot decode (TIFF, PPM, animated WebP, palette BMP); see docs/inference.md.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from tfic.errors import ImageTooLarge, InvalidImage, UnsupportedFormat

# TensorFlow's interpolation names (SageMaker's image_resize_interpolation values) to Pillow's filters.
# ``nearest`` is computed with integers (see _nearest), not with Pillow's NEAREST, whose positions are
# accumulated floating-point sums that TensorFlow ops could not reproduce exactly.
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
# File name suffixes of those formats, for everything that lists images in folders.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
DCT_SCALED_FORMATS = frozenset({"JPEG", "MPO"})

WHITE = 255
BLACK = 0


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
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # the warning: where it is an error
        # Pillow refuses a header above twice its own ceiling inside Image.open, in its own words; read the size
        # from the header without that check, so that tfic's limit and message apply whatever the size.
        size = _header_size(data)
        if size is None:
            raise ImageTooLarge(str(exc)) from None
        img_width, img_height = size
        limit = min(limits.max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or limits.max_pixels))
        raise ImageTooLarge(
            f"image is {img_width}x{img_height} = {img_width * img_height} pixels; the limit is {limit} pixels"
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


def _header_size(data: bytes) -> tuple[int, int] | None:
    """The width and height a supported format's header declares, parsed without Pillow's bomb check."""
    Image.init()
    prefix = data[:16]
    for name in SAFE_FORMATS:
        if name not in Image.OPEN:
            continue
        factory, accept = Image.OPEN[name]
        if accept is not None and not accept(prefix):
            continue
        try:
            width, height = factory(io.BytesIO(data), "").size  # the plugin parses the header only
        except Exception:  # not this format after all, or a malformed header: try the next
            continue
        return int(width), int(height)
    return None


# EXIF orientation → the transpose that displays the picture upright (ImageOps.exif_transpose's table).
_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Orientations that turn the stored picture by 90° or 270° (5–8): stored width becomes displayed height.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


def orientation(img: Image.Image) -> int:
    """The EXIF orientation (1–8; 1 when absent or unreadable), as ``ImageOps.exif_transpose`` reads it."""
    try:
        value = img.getexif().get(_ORIENTATION, 1)
    except Exception:  # a malformed EXIF block: decoding will report what matters
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def draft_size(img: Image.Image, size: tuple[int, int]) -> tuple[int, int]:
    """The (width, height) to ask ``draft`` for so the *displayed* image stays at least ``size`` = (width, height).

    ``draft`` scales the stored pixels, before EXIF orientation is applied; for a picture stored on its side
    the requested sides must be swapped, or a non-square input would be decoded too small in one direction
    and upsampled afterwards.
    """
    width, height = size
    return (height, width) if orientation(img) in _QUARTER_TURNS else (width, height)


def _composite(rgba: np.ndarray, background: int) -> np.ndarray:
    """RGBA uint8 → RGB uint8 on a uniform background, in integers (the same formula runs in TensorFlow)."""
    colour = rgba[..., :3].astype(np.int32)
    alpha = rgba[..., 3:].astype(np.int32)
    return ((colour * alpha + background * (255 - alpha) + 127) // 255).astype(np.uint8)


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def to_rgb(img: Image.Image) -> Image.Image:
    """Steps 1–3 of the definition on a loaded image: first frame, EXIF orientation, any mode → 8-bit RGB."""
    try:
        if getattr(img, "is_animated", False):
            img.seek(0)
        turn = _TRANSPOSE.get(orientation(img))
        img = _colour(img)
        return img.transpose(turn) if turn is not None else img
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage(f"image data is corrupt or truncated: {exc}") from None


def _colour(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode.startswith("I;16"):
        # 16-bit greyscale: the high byte, as libpng's strip_16 (TensorFlow's decode_png) gives it.
        high = (np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8)
        return Image.fromarray(high, mode="L").convert("RGB")
    if mode in ("I", "F"):
        # 32-bit greyscale (TIFF only; TensorFlow cannot decode it): scaled by its own peak rather than clipped.
        arr = np.asarray(img, dtype=np.float64)
        peak = max(float(arr.max()), 1.0)
        scaled = np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if mode == "CMYK":
        # Pillow holds Adobe's inverted CMYK re-inverted; libjpeg-based TensorFlow truncates raw C·K / 255.
        cmyk = np.asarray(img, dtype=np.int32)
        rgb = (255 - cmyk[..., :3]) * (255 - cmyk[..., 3:]) // 255
        return Image.fromarray(rgb.astype(np.uint8), mode="RGB")
    if _has_alpha(img):
        background = BLACK if img.format == "GIF" else WHITE
        return Image.fromarray(_composite(np.asarray(img.convert("RGBA")), background), mode="RGB")
    return img.convert("RGB")


def _nearest(img: Image.Image, width: int, height: int) -> Image.Image:
    """Nearest neighbour with exact integer positions: output i takes input ``(2 i + 1) * in // (2 * out)``."""
    arr = np.asarray(img)
    rows = (2 * np.arange(height) + 1) * arr.shape[0] // (2 * height)
    cols = (2 * np.arange(width) + 1) * arr.shape[1] // (2 * width)
    return Image.fromarray(np.ascontiguousarray(arr[rows][:, cols]), mode="RGB")


def resize(img: Image.Image, size: tuple[int, int], interpolation: str = "bilinear") -> Image.Image:
    """Step 4 of the definition: an RGB image to ``size`` = (height, width)."""
    resample = PIL_INTERPOLATION.get(interpolation)
    if resample is None:
        raise UnsupportedFormat(f"unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}")
    height, width = size
    if img.size == (width, height):
        return img
    if resample == Image.Resampling.NEAREST:
        return _nearest(img, width, height)
    return img.resize((width, height), resample=resample)


def decode_resize(
    data: bytes,
    size: tuple[int, int],
    interpolation: str = "bilinear",
    limits: DecodeLimits = DEFAULT_LIMITS,
    use_draft: bool = True,
) -> np.ndarray:
    """The definition: encoded ``data`` → uint8 [H, W, 3] at ``size`` = (height, width).

    ``use_draft=False`` decodes JPEGs at full size instead of the definition's DCT scaling: finer pixels, but
    not the ones the model was trained on (the inference service's opt-in ``--no-use-draft``).
    """
    if interpolation not in PIL_INTERPOLATION:
        raise UnsupportedFormat(f"unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}")
    height, width = size
    img = open_image(data, limits)
    # No warnings.catch_warnings() here: it swaps interpreter-global state, and this runs in many threads at
    # once (the service's decode pool, training's tf.data); open_image's pixel limit is the bomb check.
    try:
        if use_draft and img.format in DCT_SCALED_FORMATS:
            img.draft("RGB", draft_size(img, (width, height)))
        img.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"image data is corrupt or truncated: {exc}") from None
    return np.asarray(resize(to_rgb(img), size, interpolation), dtype=np.uint8)


def check_decodable(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> tuple[int, int]:
    """Fully decode once to prove the data is a usable image; returns (height, width)."""
    img = open_image(data, limits)
    try:
        img.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"image data is corrupt or truncated: {exc}") from None
    to_rgb(img)
    return img.size[1], img.size[0]
