"""tfic's preprocessing definition (:mod:`tfic.imaging`) in TensorFlow ops, for the exported signature.

``serving_default`` decodes and resizes inside the graph so that plain TensorFlow Serving answers with no
extra code. :func:`decode_and_resize` computes, bit for bit, what ``tfic.imaging.decode_resize`` computes
for JPEG (incl. CMYK and grayscale), PNG (8/16-bit, palette, transparency), GIF (first frame), BMP (24/32-bit)
and static WebP, with two differences TensorFlow cannot close: EXIF orientation is not applied (a JPEG stored
on its side stays on its side), and formats TensorFlow cannot decode (TIFF, PPM, palette BMP, animated WebP)
are refused. tfic's own paths (training, evaluation, ``tfic predict``, the inference service) run the Python
definition itself (training through ``tf.numpy_function`` in :mod:`trainer_svc.training.pipeline`), so they
agree exactly everywhere.
"""

from __future__ import annotations

import tensorflow as tf

from tfic import imaging
from trainer_svc.training import pillow_resize

WHITE = imaging.WHITE
BLACK = imaging.BLACK
_DCT_SCALES = (1, 2, 4, 8)


def _composite(rgba: tf.Tensor, background: int) -> tf.Tensor:
    """``tfic.imaging._composite``: ``(c * a + background * (255 - a) + 127) // 255`` in int32."""
    colour = tf.cast(rgba[..., :3], tf.int32)
    alpha = tf.cast(rgba[..., 3:], tf.int32)
    return tf.cast((colour * alpha + background * (255 - alpha) + 127) // 255, tf.uint8)


def _jpeg(data: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Pillow's ``draft`` rule (1/2, 1/4, 1/8 DCT scaling), accurate integer IDCT, CMYK as libjpeg gives it."""
    shape = tf.io.extract_jpeg_shape(data)
    height, width = size
    scale = tf.minimum(shape[1] // width, shape[0] // height)
    index = tf.reduce_sum(tf.cast(scale >= tf.constant(_DCT_SCALES[1:]), tf.int32))  # 0..3 → 1, 2, 4, 8
    branches = [
        lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r, dct_method="INTEGER_ACCURATE") for r in _DCT_SCALES
    ]
    return tf.switch_case(index, branches)


def _png(data: tf.Tensor) -> tf.Tensor:
    # channels=4: libpng expands palette, grey and tRNS to RGBA (16-bit: the high byte); opaque images get 255.
    return _composite(tf.io.decode_png(data, channels=4), WHITE)


def _gif(data: tf.Tensor) -> tf.Tensor:
    return tf.io.decode_gif(data)[0]  # the first frame; transparent pixels come out black


def _bmp(data: tf.Tensor) -> tf.Tensor:
    bits = tf.cast(tf.io.decode_raw(tf.strings.substr(data, 28, 2), tf.uint8), tf.int32)
    depth = bits[0] + 256 * bits[1]
    check = tf.debugging.assert_greater_equal(
        depth, 24, message="palette BMP images are not supported by this signature; send PNG or JPEG"
    )
    with tf.control_dependencies([check]):
        return tf.io.decode_bmp(data, channels=3)


def _webp(data: tf.Tensor) -> tf.Tensor:
    header = tf.io.decode_raw(tf.strings.substr(data, 0, 21), tf.uint8)
    animated = tf.equal(tf.strings.substr(data, 12, 4), "VP8X") & tf.not_equal(tf.bitwise.bitwise_and(header[20], 2), 0)
    # TensorFlow 2.21's decode_webp aborts the process on animated WebP: refuse it before decoding.
    check = tf.debugging.assert_equal(
        animated, False, message="animated WebP is not supported by this signature; send its first frame"
    )
    with tf.control_dependencies([check]):
        image = tf.io.decode_webp(data)[0]
    channels = tf.shape(image)[-1]
    return tf.cond(
        tf.equal(channels, 4),
        lambda: _composite(image, WHITE),
        lambda: tf.ensure_shape(image[..., :3], [None, None, 3]),
    )


def decode(data: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Encoded bytes (scalar string) → uint8 [h, w, 3]: steps 1 and 3 of the definition (no EXIF orientation)."""
    is_jpeg = tf.equal(tf.strings.substr(data, 0, 3), b"\xff\xd8\xff")
    is_png = tf.equal(tf.strings.substr(data, 0, 8), b"\x89PNG\r\n\x1a\n")
    is_gif = tf.equal(tf.strings.substr(data, 0, 3), b"GIF")
    is_bmp = tf.equal(tf.strings.substr(data, 0, 2), b"BM")
    is_webp = tf.equal(tf.strings.substr(data, 0, 4), b"RIFF") & tf.equal(tf.strings.substr(data, 8, 4), b"WEBP")

    def unknown() -> tf.Tensor:  # TensorFlow's own error for anything else
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    image = tf.case(
        [
            (is_jpeg, lambda: _jpeg(data, size)),
            (is_png, lambda: _png(data)),
            (is_gif, lambda: _gif(data)),
            (is_bmp, lambda: _bmp(data)),
            (is_webp, lambda: _webp(data)),
        ],
        default=unknown,
        exclusive=False,
    )
    return tf.ensure_shape(image, [None, None, 3])


def decode_and_resize(data: tf.Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> tf.Tensor:
    """Encoded bytes (scalar string) → float32 [H, W, 3] with whole values in 0..255, in TensorFlow ops only."""
    resized = pillow_resize.resize(decode(data, size), size, interpolation)
    return tf.ensure_shape(tf.cast(resized, tf.float32), [size[0], size[1], 3])
