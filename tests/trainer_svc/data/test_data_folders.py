from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tfic.errors import InvalidDataset, NotFound
from trainer_svc.data.folders import read_folders


def test_classes_are_sorted_folder_names_and_labels_follow(
    make_dataset: Callable[..., Path], make_image: Callable[..., bytes]
) -> None:
    root = make_dataset({"tulips": 2, "Roses": 1, "daisy": 3})
    source = read_folders(root)
    assert source.class_names == ("Roses", "daisy", "tulips")  # codepoint order, like os.listdir + sorted
    by_key = {s.key: s.label for s in source.samples}
    assert by_key == {
        "Roses/0.png": 0,
        "daisy/0.png": 1,
        "daisy/1.png": 1,
        "daisy/2.png": 1,
        "tulips/0.png": 2,
        "tulips/1.png": 2,
    }
    assert all(s.path is not None and Path(s.path).is_file() for s in source.samples)
    assert source.read(source.samples[0]) == Path(str(source.samples[0].path)).read_bytes()
    assert source.file_backed and not source.multi_label


def test_extensions_hidden_entries_nested_images_and_reported_non_images(
    make_dataset: Callable[..., Path], make_image: Callable[..., bytes]
) -> None:
    root = make_dataset({"a": 1, "b": 1})
    for name in ("UPPER.JPG", "x.Jpeg", "y.gif", "z.bmp", "w.webp"):
        (root / "a" / name).write_bytes(make_image(1))
    (root / "a" / "nested").mkdir()
    (root / "a" / "nested" / "deep.png").write_bytes(make_image(2))
    (root / "a" / ".hidden.png").write_bytes(make_image(3))
    (root / ".cache").mkdir()
    (root / ".cache" / "c.png").write_bytes(make_image(4))
    (root / "b" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("top-level file")

    source = read_folders(root)
    keys = sorted(s.key for s in source.samples if s.label == 0)
    assert keys == ["a/0.png", "a/UPPER.JPG", "a/nested/deep.png", "a/w.webp", "a/x.Jpeg", "a/y.gif", "a/z.bmp"]
    assert source.class_names == ("a", "b")
    skipped = {s.key: s.reason for s in source.skipped}
    assert skipped == {"README.md": "file is not inside a class folder", "b/notes.txt": "not an image file extension"}


def test_missing_root_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        read_folders(tmp_path / "nope")


def test_no_class_folders(tmp_path: Path, make_image: Callable[..., bytes]) -> None:
    (tmp_path / "loose.png").write_bytes(make_image())
    with pytest.raises(InvalidDataset, match="no class folders"):
        read_folders(tmp_path)


def test_one_class_is_an_error(make_dataset: Callable[..., Path]) -> None:
    with pytest.raises(InvalidDataset, match=r"only one class folder \('cats'\)"):
        read_folders(make_dataset({"cats": 3}))


def test_empty_class_folder_is_named(make_dataset: Callable[..., Path]) -> None:
    root = make_dataset({"cats": 2, "dogs": 2})
    (root / "birds").mkdir()
    (root / "birds" / "readme.txt").write_text("x")
    with pytest.raises(InvalidDataset, match=r"class folder\(s\) with no images in .*'birds'"):
        read_folders(root)


def test_empty_dataset(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(InvalidDataset, match="contains no images"):
        read_folders(tmp_path)


def test_fingerprint_is_independent_of_location(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    first = read_folders(make_dataset({"a": 2, "b": 2}, name="one"))
    second = read_folders(make_dataset({"a": 2, "b": 2}, name="two"))
    assert first.fingerprint() == second.fingerprint()
