"""Reading a model version's metadata: a malformed file is named in a clear InvalidArgument."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tfic.errors import InvalidArgument, ModelNotFound
from tfic.modeldir import METADATA_DIR, METADATA_FILE, read_metadata

GOOD: dict[str, Any] = {
    "labels": ["cat", "dog"],
    "image_shape": [32, 32, 3],
    "preprocessing": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
}


def _version(tmp_path: Path, data: dict[str, Any]) -> Path:
    (tmp_path / METADATA_DIR).mkdir(parents=True)
    (tmp_path / METADATA_DIR / METADATA_FILE).write_text(json.dumps(data))
    return tmp_path


def test_metadata_round_trips_its_triples(tmp_path: Path) -> None:
    meta = read_metadata(_version(tmp_path, GOOD))
    assert meta.image_shape == (32, 32, 3)
    assert meta.preprocessing.mean == (0.5, 0.5, 0.5)
    assert meta.preprocessing.std == (0.25, 0.25, 0.25)


@pytest.mark.parametrize(
    "change",
    [
        {"labels": None},
        {"image_shape": [32, 32]},
        {"preprocessing": {"mean": [0.5, 0.5]}},
        {"preprocessing": {"std": "wide"}},
    ],
    ids=["no-labels", "two-dim-shape", "two-means", "text-std"],
)
def test_malformed_metadata_names_the_file(tmp_path: Path, change: dict[str, Any]) -> None:
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(InvalidArgument, match="malformed") as info:
        read_metadata(_version(tmp_path, data))
    assert str(tmp_path / METADATA_DIR / METADATA_FILE) in str(info.value)


def test_missing_metadata_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound):
        read_metadata(tmp_path)
