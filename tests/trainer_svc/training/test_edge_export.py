"""``tfic export``: TFLite (float, int8) and ONNX files that run and agree with the SavedModel on real digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfic.imaging import decode_resize
from tfic_cli.main import main as tfic
from trainer_svc.data.loader import load_source
from trainer_svc.training.edge_export import TFLiteClassifier, export_model
from trainer_svc.training.predict import LocalPredictor


def pixels_of(paths: list[Path], size: tuple[int, int]) -> np.ndarray:
    return np.stack([decode_resize(p.read_bytes(), size).astype(np.float32) for p in paths])


@pytest.fixture(scope="module")
def held_out(digits_dir: Path) -> list[Path]:
    """Every 7th digit image: 58 images over the ten classes."""
    return sorted(digits_dir.rglob("*.png"))[::7]


def test_float_tflite_runs_with_the_interpreter_and_matches_the_saved_model(
    trained_model: Path, held_out: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "edge"
    assert tfic(["export", str(trained_model), "--output", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"] == str(out / "model.tflite") and printed["bytes"] == (out / "model.tflite").stat().st_size
    predictor = LocalPredictor(trained_model)
    pixels = pixels_of(held_out, predictor.size)
    expected = predictor.predict_prepared(list(pixels))
    got = TFLiteClassifier(out / "model.tflite").predict(pixels)
    assert got.shape == expected.shape == (len(held_out), 10)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # The labels and what the model expects travel beside it.
    labels = [f"digit_{i}" for i in range(10)]
    assert json.loads((out / "labels.json").read_text()) == {"labels": labels}
    assert (out / "labels.txt").read_text().split() == labels
    side = json.loads((out / "preprocessing.json").read_text())
    assert side["input"]["shape"] == [1, 16, 16, 3] and side["input"]["range"] == [0, 255]
    assert (side["input"]["resize"], side["input"]["color"], side["quantization"]) == ("stretch", "RGB", "none")
    assert side["output"]["kind"] == "multi_class" and side["output"]["columns"] == labels


def test_int8_calibrated_on_the_training_data_agrees_with_the_saved_model(
    trained_model: Path, digits_dir: Path, held_out: list[Path], tmp_path: Path
) -> None:
    float_dir, int8_dir = tmp_path / "float", tmp_path / "int8"
    export_model(trained_model, float_dir)
    source = load_source(str(digits_dir))
    result = export_model(trained_model, int8_dir, quantization="int8", calibration=source, calibration_limit=40)
    assert result.calibration_images == 40
    # Full-integer: every tensor between the float32 ends is int8 (or int32 biases); the file is ~3.5x smaller.
    interpreter = TFLiteClassifier(result.model).interpreter
    inner = {d["dtype"] for d in interpreter.get_tensor_details()[1:-1]}
    assert np.float32 not in inner and np.int8 in inner
    assert result.bytes * 3 < (float_dir / "model.tflite").stat().st_size
    predictor = LocalPredictor(trained_model)
    pixels = pixels_of(held_out, predictor.size)
    expected = predictor.predict_prepared(list(pixels))
    got = TFLiteClassifier(result.model).predict(pixels)
    assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.95
    assert np.abs(got - expected).max() < 0.1
    side = json.loads(result.sidecar.read_text())
    assert (side["quantization"], side["calibration_images"]) == ("int8", 40)


def test_onnx_export_runs_with_onnx_runtime(trained_model: Path, held_out: list[Path], tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    result = export_model(trained_model, tmp_path / "onnx", fmt="onnx")
    session = ort.InferenceSession(str(result.model))
    predictor = LocalPredictor(trained_model)
    pixels = pixels_of(held_out, predictor.size)
    (got,) = session.run(None, {"images": pixels})  # any batch size
    np.testing.assert_allclose(got, predictor.predict_prepared(list(pixels)), atol=1e-5)
    assert json.loads(result.sidecar.read_text())["input"]["shape"] == [None, 16, 16, 3]


def test_bad_export_requests_are_one_line_errors(
    trained_model: Path, digits_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "x")
    cases = [
        (["--quantize", "int8"], "--quantize int8 needs --calibration DATA"),
        (["--calibration", str(digits_dir)], "--calibration is for --quantize int8"),
        (["--format", "onnx", "--quantize", "float16"], "ONNX export is float32 only"),
    ]
    for extra, message in cases:
        assert tfic(["export", str(trained_model), "--output", out, *extra]) == 2
        assert message in capsys.readouterr().err
    assert tfic(["export", str(tmp_path / "nothing"), "--output", out]) != 0
    assert "no model version found" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
