from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tfic.errors import InvalidDataset, NotFound, PermissionDenied
from trainer_svc.data.lst import LstRow, parse_lst, read_lst, write_lst


@pytest.fixture
def images(make_dataset: Callable[..., Path]) -> Path:
    """``<root>/a/0.png, a/1.png, b/0.png, b/1.png, c/0.png``; .lst files go in the root."""
    return make_dataset({"a": 2, "b": 2, "c": 1})


def _write(root: Path, text: str, name: str = "train.lst") -> Path:
    path = root / name
    path.write_text(text)
    return path


def test_mxnet_float_labels_and_default_names(images: Path) -> None:
    lst = _write(images, "0\t0.000000\ta/0.png\n1\t1.000000\tb/0.png\n\n2\t2\tc/0.png\n3\t1.0\tb/1.png\n")
    source = read_lst(lst)
    assert [(s.key, s.labels) for s in source.samples] == [
        ("a/0.png", (0,)),
        ("b/0.png", (1,)),
        ("c/0.png", (2,)),
        ("b/1.png", (1,)),
    ]
    assert source.class_names == ("0", "1", "2")
    assert source.read(source.samples[2]) == (images / "c" / "0.png").read_bytes()
    assert not source.multi_label


def test_write_lst_round_trips_in_mxnet_layout(images: Path) -> None:
    rows = [LstRow(5, (1,), "b/0.png"), LstRow(7, (0,), "a/1.png")]
    lst = images / "out.lst"
    assert write_lst(lst, rows) == 2
    assert lst.read_text() == "5\t1.000000\tb/0.png\n7\t0.000000\ta/1.png\n"
    parsed = parse_lst(lst)
    assert [(r.index, r.labels, r.path, r.line) for r in parsed] == [(5, (1,), "b/0.png", 1), (7, (0,), "a/1.png", 2)]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("9\t1\n", r"line 3: expected at least 3 tab-separated columns .* found 2"),
        ("9 1 a/0.png\n", r"line 3: .*found 1 \(columns must be separated by tabs, not spaces\)"),
        ("x9\t1\ta/0.png\n", r"line 3: index 'x9' in column 1 is not an integer"),
        ("9\t1.5\ta/0.png\n", r"line 3: label '1.5' in column 2 is not a whole number"),
        ("9\t-1\ta/0.png\n", r"line 3: label '-1' in column 2 is negative"),
        ("9\tcat\ta/0.png\n", r"line 3: label 'cat' in column 2 is not a number"),
        ("9\tnan\ta/0.png\n", r"line 3: label 'nan' in column 2 is not a whole number"),
        ("0\t1\ta/1.png\n", r"line 3: duplicate index 0 \(first used on line 1\)"),
        ("9\t1\ta/missing.png\n", r"line 3: image file 'a/missing.png' not found"),
        ("9\t1\t\n", r"line 3: the path column is empty"),
    ],
)
def test_bad_rows_name_file_line_and_problem(images: Path, bad_line: str, message: str) -> None:
    lst = _write(images, "0\t0\ta/0.png\n1\t1\tb/0.png\n" + bad_line)
    with pytest.raises(InvalidDataset, match=message) as info:
        read_lst(lst)
    assert str(lst) in str(info.value)


def test_label_out_of_range_when_class_count_is_known(images: Path) -> None:
    (images / "classes.txt").write_text("a\nb\n")
    lst = _write(images, "0\t0\ta/0.png\n1\t2\tb/0.png\n")
    with pytest.raises(InvalidDataset, match=r"line 2: label 2 is out of range; there are 2 classes"):
        read_lst(lst)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../outside.png", r"line 2: path '../outside.png' contains '..'"),
        ("a/../../outside.png", r"line 2: path 'a/../../outside.png' contains '..'"),
        ("/etc/passwd", r"line 2: path '/etc/passwd' is absolute"),
    ],
)
def test_paths_may_not_escape_the_image_root(images: Path, path: str, message: str) -> None:
    (images.parent / "outside.png").write_bytes((images / "a" / "0.png").read_bytes())
    lst = _write(images, f"0\t0\ta/0.png\n1\t1\t{path}\n")
    with pytest.raises(PermissionDenied, match=message):
        read_lst(lst)


def test_symlink_out_of_the_root_is_refused_but_inside_is_fine(images: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes((images / "a" / "0.png").read_bytes())
    os.symlink(secret, images / "b" / "link.png")
    os.symlink(images / "a" / "1.png", images / "b" / "inside.png")
    ok = _write(images, "0\t0\ta/0.png\n1\t1\tb/inside.png\n", "ok.lst")
    assert read_lst(ok).samples[1].path == str((images / "a" / "1.png").resolve())
    bad = _write(images, "0\t0\ta/0.png\n1\t1\tb/link.png\n", "bad.lst")
    with pytest.raises(PermissionDenied, match=r"bad.lst, line 2: path 'b/link.png' is a symlink .* outside"):
        read_lst(bad)


def test_image_root_is_separate_from_the_list(images: Path, tmp_path: Path) -> None:
    lst_dir = tmp_path / "lists"
    lst_dir.mkdir()
    lst = _write(lst_dir, "0\t0\ta/0.png\n1\t1\tb\\1.png\n")  # backslash: lists made by im2rec on Windows
    with pytest.raises(InvalidDataset, match=r"line 1: image file 'a/0\.png' not found"):
        read_lst(lst)
    source = read_lst(lst, images)
    assert [s.key for s in source.samples] == ["a/0.png", "b/1.png"]
    with pytest.raises(NotFound, match="image root"):
        read_lst(lst, tmp_path / "nope")
    with pytest.raises(NotFound, match="list file"):
        read_lst(tmp_path / "nope.lst")


def test_a_missing_class_in_between_is_named(images: Path) -> None:
    lst = _write(images, "0\t0\ta/0.png\n1\t2\tc/0.png\n2\t3\tb/0.png\n")
    with pytest.raises(InvalidDataset, match=r"class 1 has no samples; labels must be 0..3"):
        read_lst(lst)
    assert read_lst(lst, check_classes=False).class_names == ("0", "1", "2", "3")


def test_one_class_and_empty_lists(images: Path) -> None:
    with pytest.raises(InvalidDataset, match="only one class"):
        read_lst(_write(images, "0\t0\ta/0.png\n1\t0\ta/1.png\n"))
    with pytest.raises(InvalidDataset, match="has no entries"):
        read_lst(_write(images, "\n\n", "empty.lst"))


def test_class_names_from_labels_json_classes_txt_or_argument(images: Path) -> None:
    lst = _write(images, "0\t0\ta/0.png\n1\t1\tb/0.png\n")
    (images / "classes.txt").write_text("apple\nbanana\n")
    assert read_lst(lst).class_names == ("apple", "banana")
    (images / "labels.json").write_text(json.dumps({"labels": ["ant", "bee"]}))
    assert read_lst(lst).class_names == ("ant", "bee")  # labels.json wins over classes.txt
    assert read_lst(lst, class_names=["x", "y"]).class_names == ("x", "y")
    with pytest.raises(InvalidDataset, match=r"class 2 \('c'\) has no samples"):
        read_lst(lst, class_names=["a", "b", "c"])
    (images / "labels.json").write_text(json.dumps({"labels": ["same", "same"]}))
    with pytest.raises(InvalidDataset, match="'same' is used by both class 0 and class 1"):
        read_lst(lst)
    (images / "labels.json").write_text("{not json")
    with pytest.raises(InvalidDataset, match=r"labels\.json: not valid JSON"):
        read_lst(lst)


def test_multi_label_rows_are_parsed_and_flagged(images: Path) -> None:
    lst = _write(images, "0\t0\t2\ta/0.png\n1\t1\tb/0.png\n2\t2.0\t1.0\tc/0.png\n")
    source = read_lst(lst)
    assert source.multi_label
    assert [s.labels for s in source.samples] == [(0, 2), (1,), (2, 1)]
    with pytest.raises(InvalidDataset, match=r"line 1: a label is repeated"):
        read_lst(_write(images, "0\t1\t1\ta/0.png\n", "rep.lst"))


def test_multi_hot_rows(images: Path) -> None:
    lst = _write(images, "0\t1\t0\t1\ta/0.png\n1\t0\t1\t0\tb/0.png\n")
    source = read_lst(lst, multi_hot=True)
    assert source.multi_label
    assert [s.labels for s in source.samples] == [(0, 2), (1,)]
    assert source.class_names == ("0", "1", "2")
    ragged = _write(images, "0\t1\t0\t1\ta/0.png\n1\t0\t1\tb/0.png\n", "ragged.lst")
    with pytest.raises(InvalidDataset, match="line 2: 2 label columns, but earlier lines have 3"):
        read_lst(ragged, multi_hot=True)
    not_binary = _write(images, "0\t2\t0\ta/0.png\n", "nb.lst")
    with pytest.raises(InvalidDataset, match="line 1: multi-hot label columns must be 0 or 1"):
        read_lst(not_binary, multi_hot=True)


def test_write_lst_refuses_paths_that_would_break_the_format(tmp_path: Path) -> None:
    with pytest.raises(InvalidDataset, match="tabs or newlines"):
        write_lst(tmp_path / "x.lst", [LstRow(0, (0,), "bad\tname.png")])


def test_auto_label_format_tells_multi_hot_from_class_ids(images: Path) -> None:
    hot = _write(images, "0\t1\t0\t1\ta/0.png\n1\t0\t1\t0\tb/0.png\n2\t0\t0\t1\tc/0.png\n", "hot.lst")
    assert [s.labels for s in read_lst(hot, label_format="auto").samples] == [(0, 2), (1,), (2,)]
    ids = _write(images, "0\t0\t2\ta/0.png\n1\t1\tb/0.png\n", "ids.lst")
    assert [s.labels for s in read_lst(ids, label_format="auto").samples] == [(0, 2), (1,)]
    # Single-label rows are class ids whatever the format; class ids stay the default.
    single = _write(images, "0\t1\ta/0.png\n1\t0\tb/0.png\n", "single.lst")
    assert [s.labels for s in read_lst(single, label_format="auto").samples] == [(1,), (0,)]
    with pytest.raises(InvalidDataset, match=r"a label is repeated in \(1, 0, 1\) \(it looks like a multi-hot vector"):
        read_lst(hot)
    assert [s.labels for s in read_lst(ids, label_format="class-id").samples] == [(0, 2), (1,)]
