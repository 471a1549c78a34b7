"""Decoding in the worker pool, threads or processes: the model's own preprocessing definition, every image mode
normalised, the same errors, deadlines and cancellations either way; and what only processes can do (die)."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from inference_svc.metrics import Metrics
from inference_svc.preprocess import Preprocessor
from inference_svc.runtime.tensorflow import TensorFlowRuntime
from tests.inference_svc.support import MODEL, SIZE, encode, wait_until
from tfic.errors import ImageTooLarge, InvalidImage, ResourceExhausted
from tfic.imaging import DecodeLimits
from tfic.modeldir import read_metadata


@pytest.fixture(scope="module")
def runtime(model_store: Path) -> Iterator[TensorFlowRuntime]:
    path = model_store / MODEL / "1"
    yield TensorFlowRuntime(path, read_metadata(path))


@pytest.fixture(params=["threads", "processes"])
def pool(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def started(pre: Preprocessor) -> Preprocessor:
    await pre.start()
    return pre


def large_photo(seed: int, width: int = 2048, height: int = 1536) -> bytes:
    """A 3-megapixel JPEG with smooth structure and sensor-like noise (decoded at 1/8 scale with draft)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    noisy = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
    return encode(noisy, "JPEG", quality=90)


async def test_the_default_decode_is_the_signature_s_and_full_decoding_is_opt_in(
    runtime: TensorFlowRuntime, model_store: Path, pool: str
) -> None:
    photos = [large_photo(seed) for seed in range(3)]
    metrics = Metrics()
    default = await started(Preprocessor(2, DecodeLimits(max_pixels=10_000_000), metrics=metrics, pool=pool))
    full = await started(Preprocessor(2, DecodeLimits(max_pixels=10_000_000), use_draft=False, pool=pool))
    try:
        served = await default.decode(photos, (SIZE, SIZE), "bilinear")
        finer = await full.decode(photos, (SIZE, SIZE), "bilinear")
    finally:
        default.close()
        full.close()
    assert served.shape == finer.shape == (3, SIZE, SIZE, 3)
    signature = tf.saved_model.load(str(model_store / MODEL / "1")).signatures["serving_default"]
    expected = signature(image_bytes=tf.constant(photos))["probabilities"].numpy()
    np.testing.assert_allclose(runtime.predict(served), expected, atol=1e-4)  # the model's own answer
    # --no-use-draft decodes at full size: other pixels than the model's definition, hence opt-in.
    assert not np.array_equal(served, finer)
    assert metrics.decode_seconds._sum.get() > 0


def _mode_images() -> dict[str, bytes]:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    out: dict[str, bytes] = {}
    for name, image, fmt in (
        ("grayscale", rgb.convert("L"), "PNG"),
        ("palette", rgb.convert("P"), "PNG"),
        ("rgba", rgb.convert("RGBA"), "PNG"),
        ("cmyk", rgb.convert("CMYK"), "JPEG"),
        ("16-bit", Image.fromarray(np.arange(600, dtype=np.uint16).reshape(20, 30) * 100), "PNG"),
        ("bmp", rgb, "BMP"),
        ("webp", rgb, "WEBP"),
    ):
        buf = io.BytesIO()
        image.save(buf, fmt)
        out[name] = buf.getvalue()
    frames = [rgb, rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out["animated gif"] = buf.getvalue()
    return out


async def test_every_mode_becomes_rgb_at_the_model_size(pool: str) -> None:
    pre = await started(Preprocessor(2, pool=pool))
    try:
        images = _mode_images()
        pixels = await pre.decode(list(images.values()), (SIZE, SIZE), "bilinear")
    finally:
        pre.close()
    assert pixels.shape == (len(images), SIZE, SIZE, 3) and pixels.dtype == np.uint8  # the runtime casts
    assert pixels.min() >= 0 and pixels.max() <= 255


async def test_exif_orientation_is_applied(pool: str) -> None:
    # A wide image stored with "rotate 90°" EXIF: the decoded picture is tall (left column becomes the top row).
    array = np.zeros((16, 32, 3), np.uint8)
    array[:, :16] = (255, 0, 0)  # left half red
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    pre = await started(Preprocessor(1, pool=pool))
    try:
        (pixels,) = await pre.decode([buf.getvalue()], (32, 16), "bilinear")
    finally:
        pre.close()
    assert pixels[:8, :, 0].mean() > 200 and pixels[-8:, :, 0].mean() < 50  # red on top after rotation


async def test_limits_and_queue_bound(pool: str) -> None:
    pre = await started(Preprocessor(1, DecodeLimits(max_bytes=1000, max_pixels=100), max_queue=2, pool=pool))
    try:
        with pytest.raises(ImageTooLarge, match="1000 bytes"):
            await pre.decode([bytes(2000)], (SIZE, SIZE), "bilinear")
        with pytest.raises(ImageTooLarge, match="100 pixels"):
            await pre.decode([encode(np.zeros((20, 20, 3), np.uint8))], (SIZE, SIZE), "bilinear")
        with pytest.raises(InvalidImage, match="image 1: image is empty"):
            await pre.decode([encode(np.zeros((5, 5, 3), np.uint8)), b""], (SIZE, SIZE), "bilinear")
        with pytest.raises(ResourceExhausted, match="waiting to be decoded"):
            await pre.decode([b"a", b"b", b"c"], (SIZE, SIZE), "bilinear")
    finally:
        pre.close()


async def test_images_are_not_decoded_after_their_deadline_or_caller_is_gone(pool: str) -> None:
    import asyncio
    import time

    from tfic.errors import DeadlineExceeded

    metrics = Metrics()
    # One worker, kept busy by a full decode of a 3-megapixel photo (tens of milliseconds).
    pre = await started(
        Preprocessor(1, DecodeLimits(max_pixels=10_000_000), use_draft=False, metrics=metrics, pool=pool)
    )
    small = encode(np.zeros((20, 20, 3), np.uint8), "PNG")
    try:
        busy = asyncio.ensure_future(pre.decode([large_photo(0)], (SIZE, SIZE), "bilinear"))
        late = asyncio.ensure_future(pre.decode([small], (SIZE, SIZE), "bilinear", deadline=time.monotonic() + 0.001))
        gone = asyncio.ensure_future(pre.decode([small, small], (SIZE, SIZE), "bilinear"))
        # All three wait for (or hold) the one worker; _queued counts their images until each finishes.
        await wait_until(lambda: pre._queued == 4, 10, "all three requests queued for the worker", interval=0)
        gone.cancel()
        with pytest.raises(DeadlineExceeded, match="deadline passed while it waited to be decoded"):
            await late
        with pytest.raises(asyncio.CancelledError):
            await gone
        await busy
        after = await pre.decode([small], (SIZE, SIZE), "bilinear")  # the worker is past the skipped jobs
    finally:
        pre.close()
    assert after.shape == (1, SIZE, SIZE, 3)
    decoded = metrics.registry.get_sample_value("tfic_inference_decode_seconds_count")
    assert decoded == 2  # the photo and the last image: nothing for the late or the cancelled requests
    dropped = metrics.registry.get_sample_value
    assert dropped("tfic_inference_dropped_total", {"stage": "decode", "reason": "deadline"}) == 1
    assert (
        dropped("tfic_inference_dropped_total", {"stage": "decode", "reason": "cancelled"}) == 2
    )  # both images of the cancelled request


async def test_a_decode_process_that_dies_fails_its_images_and_is_replaced() -> None:
    import asyncio
    import os
    import signal

    from inference_svc.decode_processes import DecodeProcessError

    pre = await started(Preprocessor(1, DecodeLimits(max_pixels=10_000_000), use_draft=False, pool="processes"))
    small = encode(np.zeros((20, 20, 3), np.uint8), "PNG")
    try:
        (pid,) = pre.process_ids
        busy = asyncio.ensure_future(pre.decode([large_photo(0)], (SIZE, SIZE), "bilinear"))
        await wait_until(lambda: pre._queued == 1, 10, "the photo sent to the worker", interval=0)
        os.kill(pid, signal.SIGKILL)  # what a decoder crash looks like from the server
        with pytest.raises(DecodeProcessError, match=f"decode process {pid} exited"):
            await busy
        await wait_until(lambda: pre.process_ids != [pid], 30, "a new decode process")
        after = await pre.decode([small], (SIZE, SIZE), "bilinear")
    finally:
        pre.close()
    assert after.shape == (1, SIZE, SIZE, 3)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-process SCHED_IDLE is Linux's")
async def test_decode_processes_take_the_data_plane_priority_and_exit_with_the_pool() -> None:
    import os

    pre = await started(Preprocessor(2, pool="processes", priority=(7, True)))
    try:
        pids = pre.process_ids
        assert len(pids) == 2
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in pids] == [min(19, own + 7)] * 2
        assert [os.sched_getscheduler(pid) for pid in pids] == [os.SCHED_IDLE] * 2
        assert os.getpriority(os.PRIO_PROCESS, 0) == own  # the server's own threads are not touched
        await pre.decode([encode(np.zeros((8, 8, 3), np.uint8))], (SIZE, SIZE), "bilinear")
    finally:
        pre.close()
    for pid in pids:  # close() waits for them: no orphans
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
