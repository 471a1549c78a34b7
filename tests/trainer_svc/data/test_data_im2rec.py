from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tfic.errors import AlreadyExists, InvalidArgument, InvalidDataset
from tfic.imaging import check_decodable
from trainer_svc.data.folders import read_folders
from trainer_svc.data.im2rec import make_lst, make_rec, rec_to_folder, rec_to_lst
from trainer_svc.data.lst import parse_lst, read_lst
from trainer_svc.data.recordio import RecordIOWriter, pack_image, read_rec


def test_folder_to_lst_to_rec_keeps_labels_and_images(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = make_dataset({"cat": 3, "dog": 2, "emu": 2}, fmt="JPEG", size=(20, 14))
    folders = read_folders(root)
    result = make_lst(root, tmp_path / "out" / "pets")
    assert list(result.lists) == ["all"]
    lst = result.lists["all"]
    assert lst == tmp_path / "out" / "pets.lst"
    assert result.counts == {"all": 7}
    assert json.loads(result.names_file.read_text()) == {"labels": ["cat", "dog", "emu"]}

    rows = parse_lst(lst)
    assert sorted(r.index for r in rows) == list(range(7))
    assert lst.read_text().splitlines()[0].split("\t")[1].endswith(".000000")  # im2rec's float labels

    from_lst = read_lst(lst, root)
    expected = {s.key: s.labels for s in folders.samples}
    assert {s.key: s.labels for s in from_lst.samples} == expected
    assert from_lst.class_names == folders.class_names

    packed = make_rec(lst, root, workers=2)
    assert packed.written == 7 and not packed.skipped
    assert [p.name for p in packed.outputs] == ["pets.rec", "pets.idx"]
    from_rec = read_rec(packed.outputs[0])
    assert from_rec.class_names == ("cat", "dog", "emu")
    index_to_key = {r.index: r.path for r in rows}
    for sample in from_rec.samples:
        record_id = int(sample.key.split("#")[1].split("@")[0])
        assert sample.labels == expected[index_to_key[record_id]]
        assert check_decodable(from_rec.read(sample)) == (14, 20)


def test_split_lists_are_stratified_disjoint_and_complete(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = make_dataset({"a": 10, "b": 4, "c": 2})
    result = make_lst(root, tmp_path / "ds", train_ratio=0.6, test_ratio=0.2, seed=3)
    assert {k: p.name for k, p in result.lists.items()} == {
        "train": "ds_train.lst",
        "val": "ds_val.lst",
        "test": "ds_test.lst",
    }
    parts = {k: parse_lst(p) for k, p in result.lists.items()}
    per_split = {k: Counter(r.labels[0] for r in rows) for k, rows in parts.items()}
    assert per_split["train"] == {0: 6, 1: 2, 2: 1}
    assert per_split["val"] == {0: 2, 1: 1, 2: 1}
    assert per_split["test"] == {0: 2, 1: 1}  # c has 2 images: one stays for training
    paths = [r.path for rows in parts.values() for r in rows]
    indices = [r.index for rows in parts.values() for r in rows]
    assert len(set(paths)) == len(paths) == 16
    assert sorted(indices) == list(range(16))

    again = make_lst(root, tmp_path / "again" / "ds", train_ratio=0.6, test_ratio=0.2, seed=3)
    assert again.lists["val"].read_text() == result.lists["val"].read_text()
    # The lists reuse labels.json, so the val list reads back with names.
    assert read_lst(result.lists["val"], root).class_names == ("a", "b", "c")


def test_bad_ratios_and_conflicting_labels_json(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = make_dataset({"a": 2, "b": 2})
    with pytest.raises(InvalidArgument, match="train_ratio"):
        make_lst(root, tmp_path / "x", train_ratio=0.8, test_ratio=0.5)
    (tmp_path / "labels.json").write_text('{"labels": ["other", "names"]}')
    with pytest.raises(AlreadyExists, match="already names other classes"):
        make_lst(root, tmp_path / "x")


def test_resize_crop_png_and_pass_through(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = make_dataset({"a": 1, "b": 1}, size=(40, 20))
    lst = make_lst(root, tmp_path / "l" / "ds", shuffle=False).lists["all"]

    def sizes(**options: object) -> list[tuple[int, int]]:
        rec = read_rec(make_rec(lst, root, tmp_path / "r" / str(len(options)), **options).outputs[0])  # type: ignore[arg-type]
        return [Image.open(io.BytesIO(rec.read(s))).size for s in rec.samples]

    assert sizes(resize=10) == [(20, 10), (20, 10)]  # shorter side 20 → 10, aspect kept
    assert sizes(resize=10, center_crop=True) == [(10, 10), (10, 10)]
    rec = read_rec(make_rec(lst, root, tmp_path / "png" / "ds", encoding=".png").outputs[0])
    assert all(rec.read(s).startswith(b"\x89PNG") for s in rec.samples)
    raw = read_rec(make_rec(lst, root, tmp_path / "raw" / "ds", pass_through=True).outputs[0])
    assert [raw.read(s) for s in raw.samples] == [
        (root / "a" / "0.png").read_bytes(),
        (root / "b" / "0.png").read_bytes(),
    ]
    with pytest.raises(InvalidArgument, match="encoding must be one of"):
        make_rec(lst, root, tmp_path / "bad", encoding=".gif")


def test_make_rec_skips_and_reports_undecodable_images(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = make_dataset({"a": 2, "b": 2})
    lst = make_lst(root, tmp_path / "ds").lists["all"]
    (root / "a" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = make_rec(lst, root, tmp_path / "out" / "ds")
    assert result.written == 3
    assert [(s.key, "corrupt" in s.reason or "cannot read" in s.reason) for s in result.skipped] == [("a/1.png", True)]
    assert len(read_rec(result.outputs[0], check_classes=False).samples) == 3


def test_rec_back_to_folders_and_to_lst(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = make_dataset({"cat": 2, "dog": 3})
    lst = make_lst(root, tmp_path / "ds" / "pets").lists["all"]
    rec = make_rec(lst, root, pass_through=True).outputs[0]

    out = tmp_path / "unpacked"
    assert rec_to_folder(rec, out).written == 5
    back = read_folders(out)
    assert back.class_names == ("cat", "dog")
    assert Counter(s.label for s in back.samples) == {0: 2, 1: 3}
    for sample in back.samples:
        assert sample.key.endswith(".png")
        assert any(
            sample.key.split("/")[0] == cls and back.read(sample) == p.read_bytes()
            for cls, p in ((p.parent.name, p) for p in root.glob("*/*.png"))
        )
    with pytest.raises(AlreadyExists, match="not empty"):
        rec_to_folder(rec, out)

    lst_out = tmp_path / "lst"
    converted = rec_to_lst(rec, lst_out)
    assert converted.written == 5
    again = read_lst(converted.outputs[0])
    assert again.class_names == ("cat", "dog")
    assert sorted((r.index, r.labels) for r in parse_lst(converted.outputs[0])) == sorted(
        (r.index, r.labels) for r in parse_lst(lst)
    )


def test_rec_to_folder_pads_numeric_classes_so_indices_survive(
    tmp_path: Path, make_image: Callable[..., bytes]
) -> None:
    rec = tmp_path / "n.rec"
    with RecordIOWriter(rec) as writer:
        for label in range(11):
            writer.write(pack_image(make_image(label), float(label), id=label), key=label)
    rec_to_folder(rec, tmp_path / "out")
    back = read_folders(tmp_path / "out")
    assert back.class_names == tuple(f"{i:02d}" for i in range(11))
    assert {s.key: s.label for s in back.samples} == {f"{i:02d}/{i}.png": i for i in range(11)}


def test_rec_to_folder_refuses_multi_label(tmp_path: Path) -> None:
    rec = tmp_path / "m.rec"
    with RecordIOWriter(rec) as writer:
        writer.write(pack_image(b"x", [0.0, 1.0]))
    with pytest.raises(InvalidDataset, match="multi-label"):
        rec_to_folder(rec, tmp_path / "out")
