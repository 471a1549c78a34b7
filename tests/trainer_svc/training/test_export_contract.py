"""The model-directory contract: what TensorFlow Serving and the inference service rely on."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfic import modeldir
from tfic.imaging import decode_resize


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def test_layout_and_metadata(trained_model: Path) -> None:
    assert trained_model.name == "1"
    assert (trained_model / "saved_model.pb").is_file()
    assert (trained_model / "variables").is_dir()
    meta = modeldir.read_metadata(trained_model)
    assert meta.labels == tuple(f"digit_{i}" for i in range(10))
    assert meta.image_shape == (16, 16, 3)
    assert meta.architecture == "small_cnn"
    assert meta.hyperparameters["epochs"] == 2
    assert 0.0 <= meta.metrics["validation:accuracy"] <= 1.0
    assert len(meta.dataset_fingerprint) == 16
    assert meta.preprocessing.definition == modeldir.PREPROCESSING_DEFINITION
    labels_json = json.loads((trained_model / "assets.extra" / "labels.json").read_text())
    assert labels_json == {"labels": list(meta.labels)}
    assert (trained_model / "assets.extra" / "labels.txt").read_text().splitlines() == list(meta.labels)
    assert not [p for p in trained_model.parent.iterdir() if p.name.startswith(".tmp-")]


def test_plain_tensorflow_serves_jpeg_and_png_bytes(trained_model: Path, digits_dir: Path) -> None:
    loaded = tf.saved_model.load(str(trained_model))
    assert set(loaded.signatures) == {"serving_default", "predict_images"}
    img = Image.open(sorted((digits_dir / "digit_3").glob("*.png"))[0]).convert("RGB").resize((40, 40))
    png, jpeg = _encode(img, "PNG"), _encode(img, "JPEG")
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([png, jpeg]))
    probs = out["probabilities"].numpy()
    assert probs.shape == (2, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    classes = out["classes"].numpy()
    assert classes.shape == (2, 10)
    assert [c.decode() for c in classes[0]] == [f"digit_{i}" for i in range(10)]
    # The tensor signature on tfic's definition of the pixels gives the same answer as the bytes signature.
    for i, data in enumerate((png, jpeg)):
        pixels = decode_resize(data, (16, 16)).astype(np.float32)
        tensor_out = loaded.signatures["predict_images"](images=pixels[None])
        np.testing.assert_allclose(tensor_out["probabilities"].numpy()[0], probs[i], atol=1e-6)


def test_version_numbers_increase_and_staging_is_invisible(tmp_path: Path, trained_model: Path) -> None:
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    import shutil

    shutil.copytree(trained_model, model_dir / "1")
    writer = modeldir.VersionWriter(tmp_path, "m")
    with pytest.raises(RuntimeError), writer as staging:
        (staging / "saved_model.pb").write_bytes(b"partial")
        assert modeldir.list_versions(model_dir) == [1]  # the staged version is not visible
        raise RuntimeError("crash while writing")
    assert sorted(p.name for p in model_dir.iterdir()) == ["1"]
    writer = modeldir.VersionWriter(tmp_path, "m")
    with writer as staging:
        shutil.copytree(trained_model, staging, dirs_exist_ok=True)
    assert writer.version == 2
    assert modeldir.list_versions(model_dir) == [1, 2]
    assert modeldir.resolve_version_dir(model_dir) == model_dir / "2"


def test_invalid_model_names_are_refused(tmp_path: Path) -> None:
    for bad in ("", "../x", "a/b", ".hidden", "x" * 200):
        with pytest.raises(Exception, match="invalid model name"):
            modeldir.VersionWriter(tmp_path, bad)
