"""MXNet's augmenter in TensorFlow: the colour space against colorsys, the warp's geometry, the random draws' ranges."""

from __future__ import annotations

import colorsys

import numpy as np
import tensorflow as tf

from trainer_svc.training import mxnet_augment as m
from trainer_svc.training.recipe import MXNetAugmentation


def test_hls_is_pythons_colorsys_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.random((500, 3)).astype(np.float32)
    pixels[:5] = np.array(
        [[0.5, 0.5, 0.5], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=np.float32
    )  # grey, primaries, white
    hls = m.rgb_to_hls(tf.constant(pixels)).numpy()
    reference = np.array([colorsys.rgb_to_hls(*p) for p in pixels])
    np.testing.assert_allclose(hls[:, 0] / 360.0, reference[:, 0], atol=1e-5)
    np.testing.assert_allclose(hls[:, 1:], reference[:, 1:], atol=1e-5)
    np.testing.assert_allclose(m.hls_to_rgb(tf.constant(hls)).numpy(), pixels, atol=1e-5)


def test_shifts_are_in_opencvs_units_and_clamped_as_mxnet_clamps_them() -> None:
    red = tf.constant([[[[200.0, 40.0, 40.0]]]])  # hue 0, lightness 120/255, saturation 0.667
    shifted = m.shift_hls(tf.concat([red, red], 0), tf.constant([30.0, -30.0]), tf.zeros([2]), tf.zeros([2])).numpy()
    # +30 OpenCV units is +60 degrees (red → yellow); -30 clamps at hue 0 (MXNet does not wrap round to magenta).
    expected = colorsys.hls_to_rgb(60 / 360, 120 / 255, 160 / 240)
    np.testing.assert_allclose(shifted[0, 0, 0] / 255.0, expected, atol=1e-4)
    np.testing.assert_allclose(shifted[1, 0, 0], [200.0, 40.0, 40.0], atol=1e-3)
    lighter = m.shift_hls(red, tf.zeros([1]), tf.constant([255.0]), tf.zeros([1])).numpy()
    np.testing.assert_allclose(lighter, np.full((1, 1, 1, 3), 255.0), atol=1e-3)


def test_the_warp_is_mxnets_matrix_about_the_centre() -> None:
    rng = np.random.default_rng(1)
    images = tf.constant(rng.random((1, 6, 8, 3)).astype(np.float32) * 255)
    one, zero, corner = tf.ones([1]), tf.zeros([1]), tf.zeros([1, 2])
    identity = m.warp_transforms(zero, zero, one, one, corner, (6, 8))
    np.testing.assert_allclose(m.warp(images, identity).numpy(), images.numpy(), atol=1e-3)
    turned = m.warp_transforms(tf.constant([180.0]), zero, one, one, corner, (6, 8))
    np.testing.assert_allclose(m.warp(images, turned).numpy(), images.numpy()[:, ::-1, ::-1], atol=1e-3)
    # Scale 2 into a 16×12 image, then the 8×6 crop at (4, 3): the centre, each pixel from half a pixel away.
    zoomed = m.warp_transforms(zero, zero, 2 * one, one, tf.constant([[4.0, 3.0]]), (6, 8)).numpy()
    np.testing.assert_allclose(zoomed[0], [0.5, 0, 1.75, 0, 0.5, 1.25, 0, 0], atol=1e-6)
    # Shear (x, y) -> (x + m y, y): a row y is shifted by m times its distance from the centre.
    sheared = m.warp_transforms(zero, tf.constant([0.5]), one, one, corner, (6, 8)).numpy()[0]
    np.testing.assert_allclose(sheared[:2], [1.0, -0.5], atol=1e-6)
    # Scale below 1 pads with MXNet's white fill.
    small = m.warp(images, m.warp_transforms(zero, zero, 0.5 * one, one, tf.constant([[-2.0, -1.5]]), (6, 8)))
    assert np.all(small.numpy()[0, 0] == m.FILL_VALUE) and np.all(small.numpy()[0, :, 0] == m.FILL_VALUE)


def test_random_draws_stay_in_mxnets_ranges() -> None:
    grey = tf.fill([64, 7, 7, 3], 128.0)
    lit = m.MXNetAugmenter(MXNetAugmentation(random_l=50), (7, 7), seed=3)(grey).numpy()
    per_image = lit[:, 0, 0, 0]
    assert np.all(lit == per_image[:, None, None, None])  # one shift per image, grey stays grey
    shift = per_image - 128.0  # lightness + l/255 of a grey is its pixels + l
    assert np.all(np.abs(shift) <= 50.5) and len(np.unique(np.round(shift))) > 10
    np.testing.assert_allclose(shift, np.round(shift), atol=0.02)  # whole OpenCV units
    # Rotation, shear and scale about the centre never move the centre pixel of an odd-sized image.
    rng = np.random.default_rng(2)
    images = tf.constant(np.repeat(rng.random((1, 7, 7, 3)).astype(np.float32) * 255, 16, axis=0))
    aug = MXNetAugmentation(max_rotate_angle=45, max_shear_ratio=0.2, max_aspect_ratio=0.3, min_scale=0.8)
    warped = m.MXNetAugmenter(aug, (7, 7), seed=4)(images).numpy()
    np.testing.assert_allclose(warped[:, 3, 3], np.repeat(images.numpy()[:1, 3, 3], 16, axis=0), atol=1e-2)
    assert len({warped[i].tobytes() for i in range(16)}) > 8
    # Nothing asked, nothing changed; a mirror is a horizontal flip of about half the images.
    assert np.array_equal(m.MXNetAugmenter(MXNetAugmentation(), (7, 7), 5)(images).numpy(), images.numpy())
    mirrored = m.MXNetAugmenter(MXNetAugmentation(random_mirror=True), (7, 7), 5)(images).numpy()
    flipped = [np.array_equal(mirrored[i], images.numpy()[0, :, ::-1]) for i in range(16)]
    kept = [np.array_equal(mirrored[i], images.numpy()[0]) for i in range(16)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and 2 <= sum(flipped) <= 14
