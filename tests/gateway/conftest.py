"""Fixtures: tiny real SavedModels, the real inference service serving them, the real gateway in front."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.settings import GatewaySettings
from tests.gateway.servers import (
    IMAGE_SHAPE,
    LABELS,
    MODEL,
    SECOND_MODEL,
    RunningGateway,
    RunningInference,
    encode,
    refusing_port,
    run_gateway,
    run_inference,
)


@pytest.fixture(scope="session")
def images() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    other = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    png = encode(pixels, "PNG")
    return {
        "png": png,
        "jpeg": encode(pixels, "JPEG"),
        "other_png": encode(other, "PNG"),
        "big_png": encode(rng.integers(0, 256, (400, 400, 3), dtype=np.uint8), "PNG"),
        "truncated_png": png[: len(png) // 2],
        "not_an_image": b"this is plain text, not an image",
    }


@pytest.fixture(scope="session")
def model_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny real models: tiny (versions 1 and 2, identical) and tiny2 (a copy); 3 classes, 16×16 input."""
    from tfic.modeldir import ModelMetadata, Preprocessing
    from trainer_svc.training import architectures
    from trainer_svc.training.export import export_version
    from trainer_svc.training.model import build_classifier

    base = tmp_path_factory.mktemp("gateway-models")
    model = build_classifier(
        architectures.small_cnn(IMAGE_SHAPE), len(LABELS), IMAGE_SHAPE, Preprocessing(), 0.0, 0.0, 3
    )
    _, path = export_version(base, MODEL, model, ModelMetadata(labels=LABELS, image_shape=IMAGE_SHAPE))
    shutil.copytree(path, path.parent / "2")
    shutil.copytree(base / MODEL, base / SECOND_MODEL)
    shutil.rmtree(base / SECOND_MODEL / "2")
    return base


@pytest.fixture(scope="session")
def inference(model_base: Path) -> Iterator[RunningInference]:
    with run_inference(model_base) as running:
        yield running


@pytest.fixture(scope="session")
def gateway(inference: RunningInference) -> Iterator[RunningGateway]:
    with run_gateway(GatewaySettings(inference=inference.target, default_model=MODEL)) as running:
        yield running


@pytest.fixture
def client(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with gateway.client() as c:
        yield c


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port bound but not listening: connections to it are refused for as long as the fixture lives."""
    with refusing_port() as port:
        yield port
