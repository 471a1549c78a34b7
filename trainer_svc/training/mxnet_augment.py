"""MXNet's image augmenter (``src/io/image_aug_default.cc``) in TensorFlow ops, for SageMaker's MXNet names.

What MXNet's ``DefaultImageAugmenter`` does to one image, in its order:

1. one affine warp about the centre: rotation by a whole number of degrees in ``[-max_rotate_angle, v]``, shear
   ``(x, y) -> (x + m y, y)`` with ``m`` in ``[-max_shear_ratio, v]``, scale ``s`` in ``[min_scale, max_scale]``
   and aspect ratio ``r`` in ``[1 - max_aspect_ratio, 1 + v]`` (x scaled by ``2s / (1 + r)``, y by ``r`` times
   that), into an image of ``s`` times the size, the uncovered corners filled with MXNet's ``fill_value`` 255;
2. a crop back to the model's size: random with ``rand_crop``, else centred. MXNet refuses an image smaller
   than its crop; tfic resizes whole images to the model's size before augmenting (one preprocessing
   definition, no crop skew), so a scale below 1 is padded with the fill instead;
3. one random shift per image of hue, lightness and saturation in OpenCV's 8-bit HLS units (hue 0..180 in half
   degrees, the others 0..255), each clamped to its range as MXNet clamps them (hue too: it does not wrap);
4. the iterator's ``rand_mirror``: a horizontal flip with probability 1/2.

Differences, none of which changes what the hyperparameters mean: MXNet works on 8-bit BGR/HLS (every step
rounds), tfic on float pixels; tfic's warp maps pixel centres (a 180° rotation is an exact flip), MXNet's
OpenCV matrix is off by half a pixel; MXNet draws with its own generator, tfic with TensorFlow's (seeded).
"""

from __future__ import annotations

import math

import tensorflow as tf

from trainer_svc.training.recipe import MXNetAugmentation

FILL_VALUE = 255.0  # MXNet's default fill_value


def warp_transforms(
    angle: tf.Tensor,
    shear: tf.Tensor,
    scale: tf.Tensor,
    ratio: tf.Tensor,
    offset: tf.Tensor,
    size: tuple[int, int],
) -> tf.Tensor:
    """``ImageProjectiveTransformV3`` transforms [B, 8] for MXNet's warp followed by a crop of ``size`` at ``offset``.

    ``angle`` (degrees), ``shear``, ``scale``, ``ratio``: [B]; ``offset``: [B, 2] (x, y) of the crop's corner in
    the warped image of ``floor(scale × size)``. The transform maps each output pixel to the input point it
    samples (the inverse of MXNet's forward matrix).
    """
    height, width = size
    rad = angle * (math.pi / 180.0)
    a, b = tf.cos(rad), tf.sin(rad)
    hs = 2.0 * scale / (1.0 + ratio)
    ws = ratio * hs
    # MXNet's forward matrix (x' = m00 x + m01 y, y' = m10 x + m11 y), as in image_aug_default.cc.
    m00 = hs * a - shear * b * ws
    m01 = hs * b + shear * a * ws
    m10 = -b * ws
    m11 = a * ws
    det = m00 * m11 - m01 * m10
    p, q, r, s = m11 / det, -m01 / det, -m10 / det, m00 / det
    new_w = tf.floor(scale * width)
    new_h = tf.floor(scale * height)
    # Output index u is the warped image's point u + 0.5 + x0; relative to its centre new_w / 2.
    cx = 0.5 + offset[:, 0] - new_w / 2.0
    cy = 0.5 + offset[:, 1] - new_h / 2.0
    a2 = p * cx + q * cy + width / 2.0 - 0.5
    b2 = r * cx + s * cy + height / 2.0 - 0.5
    zeros = tf.zeros_like(p)
    return tf.stack([p, q, a2, r, s, b2, zeros, zeros], axis=1)


def warp(images: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    """Bilinear warp of float [B, H, W, 3] images, outside points filled with MXNet's white."""
    shape = tf.shape(images)[1:3]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=shape,
        fill_value=FILL_VALUE,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def rgb_to_hls(rgb: tf.Tensor) -> tf.Tensor:
    """[..., 3] RGB in 0..1 → hue in degrees (0..360), lightness and saturation in 0..1 (OpenCV's, colorsys's)."""
    r, g, b = tf.unstack(rgb, axis=-1)
    high = tf.reduce_max(rgb, axis=-1)
    low = tf.reduce_min(rgb, axis=-1)
    lightness = (high + low) / 2.0
    delta = high - low
    grey = delta <= 0.0
    safe = tf.where(grey, tf.ones_like(delta), delta)
    saturation = tf.where(
        grey,
        tf.zeros_like(delta),
        tf.where(lightness <= 0.5, delta / tf.maximum(high + low, 1e-12), delta / tf.maximum(2.0 - high - low, 1e-12)),
    )
    hue = tf.where(
        high == r,
        60.0 * (g - b) / safe,
        tf.where(high == g, 120.0 + 60.0 * (b - r) / safe, 240.0 + 60.0 * (r - g) / safe),
    )
    hue = tf.where(grey, tf.zeros_like(hue), tf.math.floormod(hue, 360.0))
    return tf.stack([hue, lightness, saturation], axis=-1)


def hls_to_rgb(hls: tf.Tensor) -> tf.Tensor:
    """The inverse of :func:`rgb_to_hls`."""
    hue, lightness, saturation = tf.unstack(hls, axis=-1)
    chroma = saturation * tf.minimum(lightness, 1.0 - lightness)

    def channel(n: float) -> tf.Tensor:
        k = tf.math.floormod(n + hue / 30.0, 12.0)
        return lightness - chroma * tf.maximum(-1.0, tf.minimum(tf.minimum(k - 3.0, 9.0 - k), 1.0))

    return tf.stack([channel(0.0), channel(8.0), channel(4.0)], axis=-1)


def shift_hls(images: tf.Tensor, dh: tf.Tensor, dl: tf.Tensor, ds: tf.Tensor) -> tf.Tensor:
    """Add per-image [B] shifts in OpenCV's 8-bit HLS units to float [B, H, W, 3] pixels in 0..255, clamped."""
    hls = rgb_to_hls(images / 255.0)
    hue, lightness, saturation = tf.unstack(hls, axis=-1)
    hue = tf.clip_by_value(hue + 2.0 * dh[:, None, None], 0.0, 360.0)  # OpenCV stores hue / 2
    lightness = tf.clip_by_value(lightness + dl[:, None, None] / 255.0, 0.0, 1.0)
    saturation = tf.clip_by_value(saturation + ds[:, None, None] / 255.0, 0.0, 1.0)
    return hls_to_rgb(tf.stack([hue, lightness, saturation], axis=-1)) * 255.0


class MXNetAugmenter:
    """Random MXNet augmentation of float [B, H, W, 3] batches (pixels 0..255), seeded."""

    def __init__(self, aug: MXNetAugmentation, size: tuple[int, int], seed: int) -> None:
        self.aug = aug
        self.size = size
        self.seed = seed

    def _uniform(self, shape: tf.Tensor, index: int, low: float = 0.0, high: float = 1.0) -> tf.Tensor:
        return tf.random.uniform(shape, low, high, dtype=tf.float32, seed=self.seed + index)

    def _signed_int(self, batch: tf.Tensor, limit: int, index: int) -> tf.Tensor:
        """C++'s ``int(u * 2v - v)``: truncated towards zero, as MXNet draws its HSL shifts."""
        if limit == 0:
            return tf.zeros(batch)
        return tf.truncatediv(self._uniform(batch, index) * (2 * limit) - limit, 1.0)

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        aug = self.aug
        batch = tf.shape(images)[:1]
        height, width = self.size
        if aug.warps or aug.random_crop:
            v = aug.max_rotate_angle
            # A whole number of degrees in [-v, v], as std::uniform_int_distribution draws it.
            angle = tf.minimum(tf.floor(self._uniform(batch, 1) * (2 * v + 1)), 2 * v) - v
            shear = self._uniform(batch, 2, -aug.max_shear_ratio, aug.max_shear_ratio)
            scale = self._uniform(batch, 3, aug.min_scale, aug.max_scale)
            ratio = self._uniform(batch, 4, 1.0 - aug.max_aspect_ratio, 1.0 + aug.max_aspect_ratio)
            margin = tf.stack([tf.floor(scale * width) - width, tf.floor(scale * height) - height], axis=1)
            if aug.random_crop:
                # A whole offset in [0, margin] where there is a margin; centred (padded) where there is not.
                drawn = tf.minimum(tf.floor(self._uniform(tf.shape(margin), 5) * (margin + 1.0)), margin)
                offset = tf.where(margin >= 0, drawn, margin / 2.0)
            else:
                offset = margin / 2.0
            images = warp(images, warp_transforms(angle, shear, scale, ratio, offset, self.size))
        if aug.colours:
            images = shift_hls(
                images,
                self._signed_int(batch, aug.random_h, 6),
                self._signed_int(batch, aug.random_l, 7),
                self._signed_int(batch, aug.random_s, 8),
            )
        if aug.random_mirror:
            flip = self._uniform(batch, 9) < 0.5
            images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
        return tf.clip_by_value(images, 0.0, 255.0)
