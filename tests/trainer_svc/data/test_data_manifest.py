"""SageMaker's augmented manifest (JSON Lines with AttributeNames), read from local files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tfic.errors import InvalidArgument, InvalidDataset
from trainer_svc.data.loader import load_source
from trainer_svc.data.manifest import parse_attribute_names, read_manifest
from trainer_svc.data.source import DataSource

MakeDataset = Callable[..., Path]


def _write(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_source_ref_and_class_as_sagemaker_writes_them(make_dataset: MakeDataset) -> None:
    root = make_dataset({"cat": 2, "dog": 1})
    manifest = _write(
        root / "train.manifest",
        [
            {"source-ref": "cat/0.png", "class": "0"},  # relative to the manifest's folder
            {"source-ref": str(root / "cat" / "1.png"), "class": 0, "class-metadata": {"class-name": "cat"}},
            {"source-ref": "dog/0.png", "class": 1.0, "class-metadata": {"class-name": "dog", "type": "groundtruth"}},
            "",
        ],
    )
    source: DataSource = load_source(str(manifest))  # the format from the suffix
    assert [s.labels for s in source.samples] == [(0,), (0,), (1,)]
    assert source.class_names == ("cat", "dog")  # Ground Truth's class-name metadata
    assert source.file_backed and not source.multi_label
    assert source.samples[0].key == "cat/0.png"


def test_attribute_names_and_multi_label_lists(make_dataset: MakeDataset) -> None:
    root = make_dataset({"a": 3})
    records = [
        {"image-ref": "a/0.png", "labels": [1, 0, 1], "note": "x"},
        {"image-ref": "a/1.png", "labels": [0, 1, 0], "note": "y"},
        {"image-ref": "a/2.png", "labels": "[0, 0, 1]", "note": "z"},
    ]
    manifest = _write(root / "ml.jsonl", records)
    names = parse_attribute_names("image-ref, labels")
    with pytest.raises(InvalidDataset, match="line 1: no 'source-ref' attribute"):
        read_manifest(manifest)
    hot = read_manifest(manifest, attribute_names=names, label_format="auto")
    assert hot.multi_label and [s.labels for s in hot.samples] == [(0, 2), (1,), (2,)]
    with pytest.raises(InvalidDataset, match=r"line 1: a label is repeated in \(1, 0, 1\)"):
        read_manifest(manifest, attribute_names=names, label_format="class-id")
    # Ground Truth's multi-label output: class ids, named by its class-map.
    gt = [
        {"source-ref": "a/0.png", "tags": [0, 2], "tags-metadata": {"class-map": {"0": "red", "2": "blue"}}},
        {"source-ref": "a/1.png", "tags": [1], "tags-metadata": {"class-map": {"1": "green"}}},
    ]
    source = read_manifest(_write(root / "gt.manifest", gt), label_format="auto")
    assert [s.labels for s in source.samples] == [(0, 2), (1,)]
    assert source.class_names == ("red", "green", "blue")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("{not json", r"line 1: not a JSON object"),
        ([1, 2], r"line 1: expected a JSON object, found list"),
        (
            {"source-ref": "a/0.png", "class": 0, "other": 1},
            r"cannot tell the label attribute among \['class', 'other'\]",
        ),
        ({"source-ref": "a/0.png", "class": "cat"}, r"'class' holds 'cat', not a class number"),
        ({"source-ref": "a/0.png", "class": 1.5}, r"label 1.5 is not a whole non-negative number"),
        ({"source-ref": "a/9.png", "class": 0}, r"image 'a/9.png' not found"),
        (
            {"source-ref": "s3://bucket/a/0.png", "class": 0},
            r"s3://bucket/a/0.png is not a local path; give the manifest",
        ),
    ],
)
def test_bad_lines_name_the_file_line_and_what_is_wrong(make_dataset: MakeDataset, record: Any, message: str) -> None:
    root = make_dataset({"a": 1})
    with pytest.raises(InvalidDataset, match=message):
        read_manifest(_write(root / "bad.manifest", [record]))


def test_attribute_names_are_two_and_only_for_manifests(make_dataset: MakeDataset) -> None:
    with pytest.raises(InvalidDataset, match="give two, the image's then the label's"):
        parse_attribute_names("source-ref")
    assert parse_attribute_names(None) is None and parse_attribute_names(["source-ref", "class"]) == (
        "source-ref",
        "class",
    )
    with pytest.raises(InvalidArgument, match="attribute names apply to augmented manifests"):
        load_source(str(make_dataset({"a": 1, "b": 1})), attribute_names=("source-ref", "class"))
