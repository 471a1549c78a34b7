"""The exported signature's TensorFlow ops compute tfic's preprocessing definition bit for bit."""

from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
import tensorflow as tf
from PIL import Image

from tests.tfic.hard_images import EXIF_ROTATED, NOT_IN_SIGNATURE, encode, hard_images
from tfic import imaging
from trainer_svc.training import pillow_resize
from trainer_svc.training.graph_preprocess import decode_and_resize

INTERPOLATIONS = ("bilinear", "bicubic", "area", "lanczos3", "nearest")


def graph_resize(size: tuple[int, int], interpolation: str) -> tf.types.experimental.ConcreteFunction:
    """As in the signature: a graph (grappler on) whose input shape is unknown until it runs."""
    fn = tf.function(lambda image: pillow_resize.resize(image, size, interpolation))
    return fn.get_concrete_function(tf.TensorSpec([None, None, 3], tf.uint8))


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_resize_equals_pillow_for_many_sizes(interpolation: str) -> None:
    photo = skimage.data.astronaut()
    rng = np.random.default_rng(INTERPOLATIONS.index(interpolation))
    for size in ((16, 16), (37, 100), (224, 224)):
        resize = graph_resize(size, interpolation)
        for _ in range(8):  # down- and upscaling, non-square, in both axis orders Pillow picks
            height, width = (int(v) for v in rng.integers(3, 512, 2))
            crop = np.ascontiguousarray(photo[:height, :width])
            expected = np.asarray(imaging.resize(Image.fromarray(crop), size, interpolation))
            np.testing.assert_array_equal(resize(tf.constant(crop)).numpy(), expected, err_msg=f"{crop.shape}")


def test_resize_covers_the_edges_where_one_ulp_moves_a_tap() -> None:
    # 400 → 224 with the box filter puts tap edges exactly on ±0.5; grappler's float rewrites moved them.
    coffee = skimage.data.coffee()
    for interpolation in ("area", "bilinear"):
        expected = np.asarray(imaging.resize(Image.fromarray(coffee), (224, 224), interpolation))
        np.testing.assert_array_equal(graph_resize((224, 224), interpolation)(tf.constant(coffee)).numpy(), expected)


@pytest.fixture(scope="module")
def signature_decode() -> dict[tuple[int, int], tf.types.experimental.ConcreteFunction]:
    return {
        size: tf.function(lambda data, s=size: decode_and_resize(data, s, "bilinear")).get_concrete_function(
            tf.TensorSpec([], tf.string)
        )
        for size in ((16, 16), (224, 224), (300, 200))
    }


@pytest.mark.parametrize("name", sorted(set(hard_images()) - {EXIF_ROTATED, *NOT_IN_SIGNATURE}))
def test_decode_equals_the_definition(
    name: str, signature_decode: dict[tuple[int, int], tf.types.experimental.ConcreteFunction]
) -> None:
    data = hard_images()[name]
    for size, decode in signature_decode.items():
        expected = imaging.decode_resize(data, size)
        np.testing.assert_array_equal(decode(tf.constant(data)).numpy(), expected, err_msg=f"{size}")


def test_jpegs_are_scaled_in_the_dct_as_pillow_drafts_them() -> None:
    # 2048×1536 to 16×16: 1/8 (256×192); to 224×224: 1/4 (512×384); to 1000×1000: none. Each must match.
    data = hard_images()["astronaut-large.jpg"]
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (16, 16))
    assert img.size == (256, 192)
    for size in ((16, 16), (224, 224), (1000, 1000)):
        fn = tf.function(lambda d, s=size: decode_and_resize(d, s, "bicubic"))
        np.testing.assert_array_equal(fn(tf.constant(data)).numpy(), imaging.decode_resize(data, size, "bicubic"))


def test_the_signature_does_not_apply_exif_orientation() -> None:
    data = hard_images()[EXIF_ROTATED]
    served = decode_and_resize(tf.constant(data), (32, 16)).numpy()
    stored = Image.open(io.BytesIO(data))
    stored.draft("RGB", (16, 32))  # sized as stored, not as displayed
    unrotated = np.asarray(imaging.resize(stored.convert("RGB"), (32, 16)))
    np.testing.assert_array_equal(served, unrotated)  # the documented difference, and nothing else
    assert not np.array_equal(served, imaging.decode_resize(data, (32, 16)))


def test_what_tensorflow_cannot_decode_is_refused_not_guessed() -> None:
    chelsea = Image.fromarray(skimage.data.chelsea()).resize((30, 20))
    frames = [chelsea, chelsea.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    refused = {
        "palette BMP": encode(chelsea.convert("P"), "BMP"),
        "animated WebP": encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True),
    }
    for data in refused.values():
        imaging.decode_resize(data, (16, 16))  # tfic's own paths take it
        with pytest.raises(tf.errors.InvalidArgumentError, match="not supported by this signature"):
            decode_and_resize(tf.constant(data), (16, 16))
