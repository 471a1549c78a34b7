from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tfic.errors import InvalidArgument, InvalidDataset, NotFound
from trainer_svc.data.folders import read_folders
from trainer_svc.data.im2rec import make_lst, make_rec
from trainer_svc.data.loader import infer_format, load_source, scan, stratified_split
from trainer_svc.data.recordio import RecordIOWriter, pack_image
from trainer_svc.data.source import DataSource


def test_format_inference_and_dispatch(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = make_dataset({"a": 2, "b": 2})
    lists = make_lst(root, tmp_path / "out" / "ds", shuffle=False)
    lst = lists.lists["all"]
    rec = make_rec(lst, root).outputs[0]
    assert infer_format(str(root)) == "folders"
    assert infer_format(str(lst)) == "lst"
    assert infer_format(str(rec)) == "rec"
    assert infer_format(str(tmp_path / "x-*.tfrecord")) == "tfrecord"

    from_folders = load_source(str(root))
    from_lst = load_source(str(lst), image_root=str(root))
    from_rec = load_source(f"file://{rec}")
    assert type(from_folders).__name__ == "FileSource"
    assert type(from_rec).__name__ == "RecordSource"
    expected = sorted((s.key, s.labels) for s in from_folders.samples)
    assert sorted((s.key, s.labels) for s in from_lst.samples) == expected
    assert sorted(s.labels for s in from_rec.samples) == sorted(labels for _, labels in expected)
    assert from_folders.class_names == from_lst.class_names == from_rec.class_names == ("a", "b")
    # A channel folder holding just one .rec (+ .idx, labels.json) is read as that file.
    channel = tmp_path / "channel"
    channel.mkdir()
    for name in ("ds.rec", "ds.idx", "labels.json"):
        (channel / name).write_bytes((rec.parent / name).read_bytes())
    assert type(load_source(str(channel))).__name__ == "RecordSource"
    with pytest.raises(InvalidDataset, match=r"several kinds of dataset files \(ds.lst, ds.rec\)"):
        load_source(str(rec.parent))
    assert load_source(str(rec), fmt="recordio").num_classes == 2


def test_dispatch_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        load_source(str(tmp_path / "missing.rec"))
    (tmp_path / "data.csv").write_text("x")
    with pytest.raises(InvalidDataset, match=r"cannot tell the format of .*data\.csv"):
        load_source(str(tmp_path / "data.csv"))
    with pytest.raises(InvalidDataset, match="only local paths"):
        load_source("s3://bucket/train.rec")
    with pytest.raises(InvalidArgument, match="unknown dataset format 'csv'"):
        load_source(str(tmp_path / "data.csv"), fmt="csv")
    with pytest.raises(InvalidDataset, match="globs are supported for TFRecord files only"):
        load_source(str(tmp_path / "*.rec"))


def test_scan_skips_corrupt_truncated_and_empty_images_by_key(
    make_dataset: Callable[..., Path], make_image: Callable[..., bytes]
) -> None:
    root = make_dataset({"a": 3, "b": 3})
    (root / "a" / "garbage.jpg").write_bytes(b"definitely not a jpeg")
    (root / "b" / "truncated.png").write_bytes(make_image(5, size=(64, 64))[:200])
    (root / "b" / "empty.png").write_bytes(b"")
    source = read_folders(root)
    assert len(source.samples) == 9

    checked = scan(source, workers=4)
    assert sorted(s.key for s in checked.samples) == sorted(f"{c}/{i}.png" for c in "ab" for i in range(3))
    reasons = {s.key: s.reason for s in checked.skipped}
    assert set(reasons) == {"a/garbage.jpg", "b/truncated.png", "b/empty.png"}
    assert "not an image in a supported format" in reasons["a/garbage.jpg"]
    assert "corrupt or truncated" in reasons["b/truncated.png"]
    assert "empty" in reasons["b/empty.png"]
    assert checked.class_names == ("a", "b")
    assert checked.read(checked.samples[0]) == source.read(checked.samples[0])


def test_scan_works_on_records(tmp_path: Path, make_image: Callable[..., bytes]) -> None:
    rec = tmp_path / "r.rec"
    with RecordIOWriter(rec) as writer:
        writer.write(pack_image(make_image(0), 0.0, id=0), key=0)
        writer.write(pack_image(b"\xff\xd8\xff broken jpeg", 1.0, id=1), key=1)
        writer.write(pack_image(make_image(2), 1.0, id=2), key=2)
    source = load_source(str(rec))
    checked = scan(source)
    assert [s.key for s in checked.skipped] == [source.samples[1].key]
    assert checked.skipped[0].key.startswith("r.rec#1@")
    assert [s.labels for s in checked.samples] == [(0,), (1,)]


def test_scan_refuses_a_class_left_empty_or_a_single_class(
    make_dataset: Callable[..., Path], make_image: Callable[..., bytes]
) -> None:
    root = make_dataset({"a": 2, "b": 1, "c": 1})
    (root / "b" / "0.png").write_bytes(b"junk")
    with pytest.raises(InvalidDataset, match=r"class 'b' has no decodable images left .*b/0.png"):
        scan(read_folders(root))
    (root / "c" / "0.png").write_bytes(b"junk")
    with pytest.raises(InvalidDataset, match=r"class 'b', 'c' has no decodable images left"):
        scan(read_folders(root))


def _keys(source: DataSource) -> list[str]:
    return [s.key for s in source.samples]


def test_stratified_split_is_seeded_stratified_and_order_independent(make_dataset: Callable[..., Path]) -> None:
    source = read_folders(make_dataset({"a": 10, "b": 5, "c": 2, "d": 1}))
    train, val = stratified_split(source, 0.2, seed=1)
    assert sorted(_keys(train) + _keys(val)) == sorted(_keys(source))
    assert not set(_keys(train)) & set(_keys(val))
    val_counts = Counter(s.label for s in val.samples)
    train_counts = Counter(s.label for s in train.samples)
    assert val_counts == {0: 2, 1: 1, 2: 1}  # round(10*.2)=2, round(5*.2)=1, min 1 for c, none for d
    assert train_counts == {0: 8, 1: 4, 2: 1, 3: 1}
    assert val.class_names == train.class_names == source.class_names

    again = stratified_split(source, 0.2, seed=1)
    assert (_keys(again[0]), _keys(again[1])) == (_keys(train), _keys(val))
    others = {tuple(_keys(stratified_split(source, 0.2, seed=s)[1])) for s in range(2, 8)}
    assert len(others) > 1

    shuffled = source.samples[:]
    random.Random(0).shuffle(shuffled)
    assert sorted(_keys(stratified_split(source.with_samples(shuffled), 0.2, seed=1)[1])) == sorted(_keys(val))


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5])
def test_split_ratio_must_be_inside_0_1(make_dataset: Callable[..., Path], ratio: float) -> None:
    source = read_folders(make_dataset({"a": 2, "b": 2}))
    with pytest.raises(InvalidArgument, match="between 0 and 1"):
        stratified_split(source, ratio, seed=0)


def test_split_needs_a_class_with_two_samples(make_dataset: Callable[..., Path]) -> None:
    source = read_folders(make_dataset({"a": 1, "b": 1}))
    with pytest.raises(InvalidDataset, match="no class has 2 or more samples"):
        stratified_split(source, 0.5, seed=0)
