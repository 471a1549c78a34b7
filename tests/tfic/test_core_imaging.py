from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.tfic.hard_images import huge_png_header
from tfic.errors import ImageTooLarge, InvalidImage, UnsupportedFormat
from tfic.imaging import DecodeLimits, check_decodable, decode_resize, draft_size, open_image


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_modes_become_rgb_at_the_requested_size() -> None:
    rgb = Image.new("RGB", (30, 20), (200, 10, 10))
    for img in (rgb, rgb.convert("L"), rgb.convert("P"), rgb.convert("RGBA"), rgb.convert("CMYK")):
        fmt = "JPEG" if img.mode == "CMYK" else "PNG"
        out = decode_resize(_encode(img, fmt), (8, 12))
        assert out.shape == (8, 12, 3) and out.dtype == np.uint8


def test_sixteen_bit_greyscale_keeps_the_high_byte() -> None:
    arr = np.full((4, 4), 32768 + 255, dtype=np.uint16)  # what libpng's strip_16 (TensorFlow) gives: 128
    out = decode_resize(_encode(Image.fromarray(arr), "PNG"), (4, 4))
    assert (out == 128).all()


def test_colour_rules_are_integer_formulas() -> None:
    # CMYK: (255 - C) * (255 - K) // 255 on Pillow's (re-inverted) CMYK values.
    cmyk = Image.new("CMYK", (8, 8), (10, 100, 200, 50))
    out = decode_resize(_encode(cmyk, "TIFF"), (8, 8))  # TIFF keeps the values exactly
    assert out[0, 0].tolist() == [(255 - c) * (255 - 50) // 255 for c in (10, 100, 200)]
    # Alpha on white: (c * a + 255 * (255 - a) + 127) // 255.
    rgba = Image.new("RGBA", (8, 8), (200, 0, 100, 64))
    out = decode_resize(_encode(rgba, "PNG"), (8, 8))
    assert out[0, 0].tolist() == [(c * 64 + 255 * 191 + 127) // 255 for c in (200, 0, 100)]
    # A GIF's transparent pixels are black (TensorFlow's GIF decoder paints them so).
    transparent = Image.new("P", (8, 8), 1)
    transparent.putpalette([0, 0, 0, 250, 250, 250] + [0] * 762)
    out = decode_resize(_encode(transparent, "GIF", transparency=1), (8, 8))
    assert (out == 0).all()


def test_nearest_takes_the_source_pixel_under_each_centre() -> None:
    arr = np.arange(10, dtype=np.uint8)[None, :, None].repeat(3, 2).repeat(2, 0)
    out = decode_resize(_encode(Image.fromarray(arr), "PNG"), (2, 4), "nearest")
    assert out[0, :, 0].tolist() == [(2 * i + 1) * 10 // 8 for i in range(4)]  # [1, 3, 6, 8]


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    out = decode_resize(_encode(img, "JPEG", exif=exif), (40, 20), use_draft=False)
    assert out.shape == (40, 20, 3)


def test_bad_inputs_name_the_reason() -> None:
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    good = _encode(Image.fromarray(noise), "JPEG", quality=95)
    with pytest.raises(InvalidImage, match="empty"):
        decode_resize(b"", (8, 8))
    with pytest.raises(UnsupportedFormat, match="not an image"):
        decode_resize(b"hello world, not an image", (8, 8))
    with pytest.raises(InvalidImage, match="corrupt or truncated"):
        check_decodable(good[: len(good) // 2])
    with pytest.raises(ImageTooLarge, match="limit is 100 bytes"):
        decode_resize(good, (8, 8), limits=DecodeLimits(max_bytes=100))
    with pytest.raises(ImageTooLarge, match="64x64 = 4096 pixels; the limit is 1000 pixels"):
        decode_resize(good, (8, 8), limits=DecodeLimits(max_pixels=1000))


@pytest.mark.parametrize("side", [12_000, 40_000])  # below and above twice Pillow's own ceiling (2 x 89.5 MP)
def test_tfics_pixel_limit_and_message_apply_before_pillows_bomb_guard(side: int) -> None:
    with pytest.raises(ImageTooLarge) as info:
        open_image(huge_png_header(side, side))
    assert str(info.value) == f"image is {side}x{side} = {side * side} pixels; the limit is 50000000 pixels"


def test_draft_sizes_a_sideways_jpeg_by_its_displayed_shape() -> None:
    # Displayed: 400 wide, 1600 tall, vertical stripes 4 px wide; stored on its side (1600x400) with
    # "rotate 90°". The model wants 200 wide, 50 tall. Asking draft for 200x50 in stored coordinates
    # decodes at 1/8 (displayed 50 wide), which erases the stripes before the width is upsampled 4x.
    x = np.arange(400)
    stripes = ((x // 4) % 2 * 255).astype(np.uint8)
    shown = np.repeat(np.repeat(stripes[None, :, None], 1600, 0), 3, 2)
    stored = Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(stored, "JPEG", exif=exif, quality=95)

    assert draft_size(Image.open(io.BytesIO(data)), (200, 50)) == (50, 200)
    fast = decode_resize(data, (50, 200), "bilinear", use_draft=True).astype(np.float64)
    full = decode_resize(data, (50, 200), "bilinear", use_draft=False).astype(np.float64)
    # Measured: stripes' std 127.5 (full decode 95.9), mean |fast − full| 31.7; sized in stored
    # coordinates the stripes were gone (std 0.0, difference 95.8).
    assert fast.std() > 60
    assert np.abs(fast - full).mean() < 50
