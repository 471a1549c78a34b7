from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tfic.errors import InvalidDataset, NotFound
from trainer_svc.data.tfrecord import read_tfrecord, write_tfrecord

tf = pytest.importorskip("tensorflow")


def _example(**features: Any) -> bytes:
    feature = {}
    for key, value in features.items():
        name = key.replace("__", "/")
        if isinstance(value, bytes):
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        elif isinstance(value, float):
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        else:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=list(value)))
    return bytes(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def _write_raw(path: Path, records: list[bytes]) -> Path:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return path


def test_round_trip_with_class_text(tmp_path: Path, make_image: Callable[..., bytes]) -> None:
    images = [make_image(i) for i in range(5)]
    labels = [0, 1, 2, 1, 0]
    path = tmp_path / "train.tfrecord"
    assert write_tfrecord(path, zip(images, labels, strict=True), class_names=["ant", "bee", "cat"]) == 5
    source = read_tfrecord(path)
    assert source.class_names == ("ant", "bee", "cat")
    assert [(s.key, s.labels) for s in source.samples] == [(f"train.tfrecord#{i}", (y,)) for i, y in enumerate(labels)]
    assert [source.read(s) for s in source.samples] == images
    assert not source.file_backed


def test_glob_of_files_names_from_labels_json_or_index(tmp_path: Path, make_image: Callable[..., bytes]) -> None:
    write_tfrecord(tmp_path / "part-0.tfrecord", [(make_image(0), 0), (make_image(1), 1)])
    write_tfrecord(tmp_path / "part-1.tfrecord", [(make_image(2), 2)])
    source = read_tfrecord(str(tmp_path / "part-*.tfrecord"))
    assert [s.key for s in source.samples] == ["part-0.tfrecord#0", "part-0.tfrecord#1", "part-1.tfrecord#0"]
    assert source.class_names == ("0", "1", "2")
    assert source.read(source.samples[2]) == make_image(2)
    (tmp_path / "labels.json").write_text('{"labels": ["x", "y", "z"]}')
    assert read_tfrecord(str(tmp_path / "part-*.tfrecord")).class_names == ("x", "y", "z")
    with pytest.raises(NotFound, match="no TFRecord files match"):
        read_tfrecord(str(tmp_path / "nothing-*.tfrecord"))


def test_integral_float_labels_are_accepted(tmp_path: Path, make_image: Callable[..., bytes]) -> None:
    path = _write_raw(
        tmp_path / "f.tfrecord",
        [
            _example(image__encoded=make_image(0), image__class__label=1.0),
            _example(image__encoded=b"x", image__class__label=[0]),
        ],
    )
    assert [s.labels for s in read_tfrecord(path).samples] == [(1,), (0,)]
    bad = _write_raw(tmp_path / "g.tfrecord", [_example(image__encoded=b"x", image__class__label=0.5)])
    with pytest.raises(InvalidDataset, match=r"g.tfrecord record #0: label 0.5 is not a whole"):
        read_tfrecord(bad)


def test_missing_features_are_named(tmp_path: Path) -> None:
    no_image = _write_raw(tmp_path / "a.tfrecord", [_example(image__class__label=[0], other=b"z")])
    with pytest.raises(
        InvalidDataset,
        match=r"a.tfrecord record #0 has no 'image/encoded' feature \(it has: image/class/label, other\)",
    ):
        read_tfrecord(no_image)
    no_label = _write_raw(tmp_path / "b.tfrecord", [_example(image__encoded=b"x")])
    with pytest.raises(InvalidDataset, match=r"record #0 has no 'image/class/label' feature"):
        read_tfrecord(no_label)
    not_example = _write_raw(tmp_path / "c.tfrecord", [b"\xff\xff\xff not a protobuf"])
    with pytest.raises(InvalidDataset, match=r"c.tfrecord record #0 is not a serialized tf.train.Example"):
        read_tfrecord(not_example)


def test_conflicting_class_text(tmp_path: Path) -> None:
    path = _write_raw(
        tmp_path / "t.tfrecord",
        [
            _example(image__encoded=b"x", image__class__label=[0], image__class__text=b"cat"),
            _example(image__encoded=b"y", image__class__label=[1], image__class__text=b"dog"),
            _example(image__encoded=b"z", image__class__label=[0], image__class__text=b"kitten"),
        ],
    )
    with pytest.raises(InvalidDataset, match=r"record #2: label 0 is named 'kitten', but t.tfrecord#0 names it 'cat'"):
        read_tfrecord(path)


def test_corrupt_truncated_and_foreign_files(tmp_path: Path, make_image: Callable[..., bytes]) -> None:
    good = tmp_path / "good.tfrecord"
    write_tfrecord(good, [(make_image(0), 0), (make_image(1), 1)])
    data = good.read_bytes()
    first_len = int.from_bytes(data[:8], "little") + 16

    corrupt = tmp_path / "corrupt.tfrecord"
    flipped = bytearray(data)
    flipped[first_len + 40] ^= 0xFF
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(InvalidDataset, match=rf"corrupt.tfrecord: record #1 at byte offset {first_len} is corrupt"):
        read_tfrecord(corrupt)

    truncated = tmp_path / "truncated.tfrecord"
    truncated.write_bytes(data[:-10])
    with pytest.raises(InvalidDataset, match=r"truncated.tfrecord: record #1 at byte offset \d+ is truncated"):
        read_tfrecord(truncated)

    garbage = tmp_path / "garbage.tfrecord"
    garbage.write_bytes(b"this is plain text, not a TFRecord file at all" * 3)
    with pytest.raises(InvalidDataset, match=r"record #0 at byte offset 0 is corrupt .* may not be a TFRecord"):
        read_tfrecord(garbage)

    gz = tmp_path / "gz.tfrecord"
    gz.write_bytes(b"\x1f\x8b" + data)
    with pytest.raises(InvalidDataset, match="GZIP-compressed"):
        read_tfrecord(gz)

    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    with pytest.raises(InvalidDataset, match="contains no records"):
        read_tfrecord(empty)


def test_missing_class_is_named(tmp_path: Path) -> None:
    path = tmp_path / "gap.tfrecord"
    write_tfrecord(path, [(b"x", 1), (b"y", 2)])
    with pytest.raises(InvalidDataset, match="class 0 has no samples"):
        read_tfrecord(path)
    assert read_tfrecord(path, check_classes=False).class_names == ("0", "1", "2")
