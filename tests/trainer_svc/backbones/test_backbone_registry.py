"""Looking backbones up by name: aliases, typos, paths, weights arguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tfic.errors import InvalidArgument, NotFound, status_for
from trainer_svc.backbones import DEFAULT_BACKBONE, Backbone, get_backbone, list_backbones
from trainer_svc.backbones.base import parse_weights
from trainer_svc.backbones.registry import canonical_name


def test_list_backbones() -> None:
    names = list_backbones()
    assert names[0] == DEFAULT_BACKBONE == "efficientnet_lite0"
    assert set(names) == {
        "efficientnet_lite0",
        "mobilenet_v2",
        "mobilenet_v3_small",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "efficientnet_b1",
        "efficientnet_b2",
        "efficientnet_b3",
        "resnet50",
    }


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("EfficientNet-Lite0", "efficientnet_lite0"),
        ("efficientnetlite0", "efficientnet_lite0"),
        ("MobileNetV2", "mobilenet_v2"),
        ("mobilenet-v3-small", "mobilenet_v3_small"),
        (" ResNet50 ", "resnet50"),
    ],
)
def test_loose_spellings(spelling: str, name: str) -> None:
    assert canonical_name(spelling.strip()) == name


@pytest.mark.parametrize("name", list_backbones())
def test_every_name_resolves_without_building(name: str) -> None:
    backbone = get_backbone(name, weights="random")
    assert isinstance(backbone, Backbone)
    assert backbone.name == name
    assert backbone.feature_dim > 0 and min(backbone.input_size) >= 224
    assert not backbone.pretrained


def test_unknown_name_suggests_and_lists() -> None:
    with pytest.raises(InvalidArgument) as info:
        get_backbone("mobilnet_v2")
    message = str(info.value)
    assert "did you mean 'mobilenet_v2'?" in message
    assert "efficientnet_lite0" in message and "resnet50" in message
    assert status_for(info.value).grpc_code == "INVALID_ARGUMENT"
    with pytest.raises(InvalidArgument, match="unknown backbone 'vgg16'; available"):
        get_backbone("vgg16")


def test_missing_path_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as info:
        get_backbone(str(tmp_path / "no_such_model"))
    assert status_for(info.value).http_status == 404
    with pytest.raises(InvalidArgument, match="local SavedModel"):
        get_backbone("gs://bucket/model")


def test_parse_weights(tmp_path: Path) -> None:
    assert parse_weights(None) is None
    assert parse_weights("ImageNet") == "imagenet"
    assert parse_weights("none") == parse_weights("random") == parse_weights("") == "random"
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"")
    assert parse_weights(str(weights)) == weights
    with pytest.raises(NotFound, match="did you mean 'random'"):
        parse_weights("randm")


def test_importing_the_package_does_not_import_tensorflow() -> None:
    code = "import sys, trainer_svc.backbones as b; b.list_backbones(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
