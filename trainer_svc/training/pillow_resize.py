"""Pillow's ``Image.resize`` in TensorFlow ops, bit for bit (used by the exported ``serving_default`` signature).

Pillow (``libImaging/Resample.c``) resamples separably, one axis after the other, each pass rounding to
8 bits (which axis goes first matters; see :func:`resize`). For every output pixel it computes filter
weights in double precision around the source centre ``(i + 0.5) * in / out`` (the support widened by the
downscaling factor), normalises them by their sequential sum, converts them to fixed point with 22
fractional bits, and sums the integer products with ``2**21`` for rounding. Every step here is the same
IEEE double or integer operation in the same order (the weights summed sequentially, over padded taps whose
weights are exact zeros), so the result equals Pillow's for every input and output size. ``nearest`` is
tfic's integer rule (see :func:`tfic.imaging.resize`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf
from PIL import Image

from tfic import imaging

PRECISION_BITS = 22
_ONE = float(1 << PRECISION_BITS)
_HALF = 1 << (PRECISION_BITS - 1)

Filter = Callable[[tf.Tensor, "_Opaque"], tf.Tensor]


class _Opaque:
    """Float constants that grappler cannot see: ``value * one``, with ``one`` = 1.0 computed from the pixels.

    Grappler's constant folding (on in TensorFlow Serving as here) rewrites floating-point arithmetic with a
    constant operand: ``(a - b) + c`` becomes ``a + (c - b)``, ``x / c`` becomes ``x * (1 / c)``. Both round
    differently from Pillow's C, and the box filter's edges (``-0.5 < x <= 0.5``) are hit exactly, so one ulp
    moves a tap. Multiplying by an exact 1.0 changes no value and leaves nothing to rewrite.
    """

    def __init__(self, one: tf.Tensor) -> None:
        self.one = one

    def __call__(self, value: float) -> tf.Tensor:
        return tf.constant(value, tf.float64) * self.one


def _box(x: tf.Tensor, c: _Opaque) -> tf.Tensor:
    return tf.where((x > -0.5) & (x <= 0.5), c(1.0) + tf.zeros_like(x), tf.zeros_like(x))


def _bilinear(x: tf.Tensor, c: _Opaque) -> tf.Tensor:
    x = tf.abs(x)
    return tf.where(x < 1.0, c(1.0) - x, tf.zeros_like(x))


def _bicubic(x: tf.Tensor, c: _Opaque) -> tf.Tensor:
    a = c(-0.5)
    x = tf.abs(x)
    near = ((a + c(2.0)) * x - (a + c(3.0))) * x * x + c(1.0)
    far = (((x - c(5.0)) * x + c(8.0)) * x - c(4.0)) * a
    return tf.where(x < 1.0, near, tf.where(x < 2.0, far, tf.zeros_like(x)))


def _sinc(x: tf.Tensor, c: _Opaque) -> tf.Tensor:
    zero = tf.equal(x, 0.0)
    safe = tf.where(zero, c(1.0) + tf.zeros_like(x), x) * c(math.pi)
    return tf.where(zero, c(1.0) + tf.zeros_like(x), tf.sin(safe) / safe)


def _lanczos(x: tf.Tensor, c: _Opaque) -> tf.Tensor:
    inside = (x >= -3.0) & (x < 3.0)
    return tf.where(inside, _sinc(x, c) * _sinc(x / c(3.0), c), tf.zeros_like(x))


# Pillow's filters and their supports (Resample.c), by tfic's interpolation names through tfic.imaging's own
# name → filter table, so that a name added there cannot be missing here.
_PILLOW_FILTERS: dict[Image.Resampling, tuple[Filter, float]] = {
    Image.Resampling.BILINEAR: (_bilinear, 1.0),
    Image.Resampling.BICUBIC: (_bicubic, 2.0),
    Image.Resampling.BOX: (_box, 0.5),
    Image.Resampling.LANCZOS: (_lanczos, 3.0),
}
FILTERS: dict[str, tuple[Filter, float]] = {
    name: _PILLOW_FILTERS[f] for name, f in imaging.PIL_INTERPOLATION.items() if f != Image.Resampling.NEAREST
}


def _coefficients(
    in_size: tf.Tensor, out_size: int, filt: Filter, support: float, c: _Opaque
) -> tuple[tf.Tensor, tf.Tensor]:
    """``precompute_coeffs`` + ``normalize_coeffs_8bpc``: tap indices [out, K] and int32 weights [out, K]."""
    scale = tf.cast(in_size, tf.float64) / c(float(out_size))
    filterscale = tf.maximum(scale, c(1.0))
    width = c(support) * filterscale
    ksize = tf.cast(tf.math.ceil(width), tf.int32) * 2 + 1
    center = (tf.range(out_size, dtype=tf.float64) + c(0.5)) * scale
    ss = c(1.0) / filterscale
    # C's (int) truncates toward zero; clamping at 0 makes that equal to the cast's truncation here.
    xmin = tf.maximum(tf.cast(center - width + c(0.5), tf.int32), 0)
    xmax = tf.minimum(tf.cast(center + width + c(0.5), tf.int32), in_size) - xmin
    taps = tf.range(ksize)
    index = xmin[:, None] + taps[None, :]
    weights = filt((tf.cast(index, tf.float64) - center[:, None] + c(0.5)) * ss, c)
    weights = tf.where(taps[None, :] < xmax[:, None], weights, tf.zeros_like(weights))
    # Pillow sums the weights left to right; a reduction tree could round differently.
    total = tf.foldl(lambda acc, column: acc + column, tf.transpose(weights), tf.zeros([out_size], tf.float64))
    weights = tf.where(tf.not_equal(total, 0.0)[:, None], weights / total[:, None], weights)
    fixed = tf.where(weights < 0, c(-0.5) + weights * c(_ONE), c(0.5) + weights * c(_ONE))
    return tf.minimum(index, in_size - 1), tf.cast(fixed, tf.int32)  # the float→int cast truncates, like C


def _pass(image: tf.Tensor, axis: int, out_size: int, filt: Filter, support: float, c: _Opaque) -> tf.Tensor:
    """One separable pass along ``axis`` (1: horizontal, 0: vertical) of a uint8 [H, W, C] image."""
    index, fixed = _coefficients(tf.shape(image)[axis], out_size, filt, support, c)
    pixels = tf.cast(image, tf.int32)
    out_shape = tf.tensor_scatter_nd_update(tf.shape(image), [[axis]], [out_size])
    weight_shape = [1, -1, 1] if axis == 1 else [-1, 1, 1]

    def add_tap(k: tf.Tensor, acc: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        taken = tf.gather(pixels, index[:, k], axis=axis)
        return k + 1, acc + taken * tf.reshape(fixed[:, k], weight_shape)

    # Integer sums: any order gives Pillow's int32 result (|partial sums| stay below 255 · Σ|w| < 2**31).
    _, acc = tf.while_loop(
        lambda k, _: k < tf.shape(index)[1], add_tap, (tf.constant(0), tf.fill(out_shape, tf.constant(_HALF)))
    )
    return tf.cast(tf.clip_by_value(tf.math.floordiv(acc, 1 << PRECISION_BITS), 0, 255), tf.uint8)


def _nearest(image: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    shape = tf.shape(image)
    rows = (2 * tf.range(size[0]) + 1) * shape[0] // (2 * size[0])
    cols = (2 * tf.range(size[1]) + 1) * shape[1] // (2 * size[1])
    return tf.gather(tf.gather(image, rows, axis=0), cols, axis=1)


def resize(image: tf.Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> tf.Tensor:
    """uint8 [h, w, C] → uint8 [size[0], size[1], C], equal to ``tfic.imaging.resize``."""
    height, width = size
    if interpolation == "nearest":
        return _nearest(image, size)
    filt, support = FILTERS[interpolation]
    shape = tf.shape(image)
    c = _Opaque(tf.cast(tf.less_equal(image[0, 0, 0], 255), tf.float64))  # 1.0, known only at run time

    def horizontal(x: tf.Tensor) -> tf.Tensor:
        return tf.cond(tf.equal(tf.shape(x)[1], width), lambda: x, lambda: _pass(x, 1, width, filt, support, c))

    def vertical(x: tf.Tensor) -> tf.Tensor:
        return tf.cond(tf.equal(tf.shape(x)[0], height), lambda: x, lambda: _pass(x, 0, height, filt, support, c))

    # Pillow 13 runs the vertical pass first when the height shrinks and 2·(width change) > height change
    # (measured on about a thousand size pairs; tests/trainer_svc/training/test_graph_preprocess.py pins it).
    vertical_first = (height < shape[0]) & (2 * (width - shape[1]) > height - shape[0])
    return tf.cond(vertical_first, lambda: horizontal(vertical(image)), lambda: vertical(horizontal(image)))
