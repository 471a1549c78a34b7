"""The pretrained EfficientNet-Lite0 deployed as is recognises a real cat photo through serving_default."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfic import modeldir
from tfic_cli.main import main


def test_exported_imagenet_classifier_sees_a_cat(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    skdata = pytest.importorskip("skimage.data")
    assert (
        main(["backbones", "export", "efficientnet_lite0", "--model-base-path", str(tmp_path), "--model-name", "inet"])
        == 0
    )
    version = tmp_path / "inet" / "1"
    assert f"wrote inet version 1 to {version}" in capsys.readouterr().out
    meta = modeldir.read_metadata(version)
    assert len(meta.labels) == 1000 and meta.image_shape == (224, 224, 3)
    buf = io.BytesIO()
    Image.fromarray(skdata.chelsea()).save(buf, "JPEG", quality=95)
    out = tf.saved_model.load(str(version)).signatures["serving_default"](image_bytes=tf.constant([buf.getvalue()]))
    probs = out["probabilities"].numpy()[0]
    top = np.argsort(-probs)[:5]
    assert top[0] == 285 and meta.labels[285] == "Egyptian cat"
    assert {281, 282} <= set(top.tolist())
    assert probs[285] > 0.5
